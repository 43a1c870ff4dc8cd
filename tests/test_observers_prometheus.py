"""The Prometheus observer, read back through the client's exposition text (spec OBS-1..4).

Each test builds a fresh `CollectorRegistry`, drives a controller on a manual clock and parses
`generate_latest`'s text with the client's own parser. Expected values are written out: a
delay of 1 000 us is 0.001 s in the histogram's sum and counts in the ``le="0.001"`` bucket.
"""

from __future__ import annotations

import importlib
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flowpace import ControllerState, FlowController, FlowOptions, Metric
from flowpace.prometheus import PrometheusObserver
from flowpace.testing import ManualClock

OPTIONS = FlowOptions(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=1,
    bp_warmup_min_samples=1,
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of the registry's exposition text, by name and labels."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def warm_controller(observer: PrometheusObserver) -> tuple[FlowController, ManualClock]:
    """Return a controller with one sample of 1 MB/s (1 000 bytes in 1 ms), debt 0."""
    clock = ManualClock()
    ctl = FlowController(OPTIONS, clock=clock, observer=observer)
    task = ctl.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    ctl.on_io_built(task, 1_000, 1_000_000)
    ctl.on_mark_done(task)
    return ctl, clock


def test_a_foreground_delay_is_exported_in_seconds() -> None:
    """Spec OBS-1, OBS-2: 500 bytes at 1 MB/s with the share halved: 1 000 us = 0.001 s."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    ctl, _ = warm_controller(observer)
    ctl.on_enqueue_est(2_000)  # 2 units, above soft (1)

    assert ctl.before_foreground_write(500) == 1_000_000  # ns (HARD-13): 1 000 us

    got = samples(registry)
    assert got["flowpace_foreground_delay_seconds_count", ()] == 1
    assert got["flowpace_foreground_delay_seconds_sum", ()] == pytest.approx(0.001)
    assert got["flowpace_foreground_delay_seconds_bucket", (("le", "0.0005"),)] == 0
    assert got["flowpace_foreground_delay_seconds_bucket", (("le", "0.001"),)] == 1
    assert got["flowpace_foreground_delay_seconds_bucket", (("le", "+Inf"),)] == 1
    assert got["flowpace_flush_pacing_sleep_seconds_count", ()] == 0


def test_buckets_span_a_microsecond_to_ten_seconds() -> None:
    """Spec OBS-2: 22 bounds, 1-2-5 from 1e-06 s to 10 s, then +Inf."""
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    bounds = [
        float(dict(labels)["le"])
        for name, labels in samples(registry)
        if name == "flowpace_foreground_delay_seconds_bucket"
    ]
    expected = [m * 10.0**e for e in range(-6, 1) for m in (1, 2, 5)] + [10.0, float("inf")]
    assert sorted(bounds) == pytest.approx(expected)


def test_a_pacing_sleep_and_the_bypasses_are_exported() -> None:
    """Spec OBS-2, OBS-3: a 100 us pacing sleep is 0.0001 s; bypasses count by reason."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    ctl, _ = warm_controller(observer)
    first, second = ctl.on_enqueue_est(100), ctl.on_enqueue_est(100)
    ctl.before_flush(first)  # sets the deadline 100 us ahead (100 bytes at 1 MB/s)
    assert ctl.before_flush(second) == 100_000  # ns: 100 us
    with ctl.teardown_bypass():
        ctl.before_flush(first)
        ctl.before_flush(second)
    with ctl.arena_starving():
        ctl.before_flush(first)

    got = samples(registry)
    assert got["flowpace_flush_pacing_sleep_seconds_sum", ()] == pytest.approx(0.0001)
    assert got["flowpace_flush_pacing_sleep_seconds_count", ()] == 1
    bypasses = "flowpace_flush_pacing_bypasses_total"
    assert got[bypasses, (("reason", "teardown"),)] == 2
    assert got[bypasses, (("reason", "arena_starvation"),)] == 1
    assert got[bypasses, (("reason", "high_debt"),)] == 0


def test_the_state_gauges_are_read_at_collection() -> None:
    """Spec OBS-4: debt and averages come from the bound controller's snapshot when scraped."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    ctl, _ = warm_controller(observer)
    outstanding = [ctl.on_enqueue_est(700), ctl.on_enqueue_est(50)]
    observer.bind(ctl)  # the task count is the controller's own (HARD-11)

    got = samples(registry)
    assert got["flowpace_debt_bytes", ()] == 750
    assert got["flowpace_io_throughput_bytes_per_second", ()] == 1_000_000
    assert got["flowpace_e2e_throughput_bytes_per_second", ()] == 1_000_000
    assert got["flowpace_outstanding_tasks", ()] == 2

    ctl.on_mark_done(outstanding.pop())  # read again at the next scrape
    got = samples(registry)
    assert got["flowpace_debt_bytes", ()] == 700
    assert got["flowpace_outstanding_tasks", ()] == 1


class _SnapshotOnly:
    """A snapshot source that counts no tasks."""

    def __init__(self) -> None:
        self._controller = FlowController(OPTIONS, clock=ManualClock())

    def snapshot(self) -> ControllerState:
        return self._controller.snapshot()


def test_without_a_task_count_there_is_no_task_gauge() -> None:
    """Spec OBS-4: a source with no task count has no task gauge, unless one is given."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.bind(_SnapshotOnly())
    names = {name for name, _ in samples(registry)}
    assert "flowpace_debt_bytes" in names
    assert "flowpace_outstanding_tasks" not in names
    with pytest.raises(ValueError, match="already bound"):
        observer.bind(FlowController(OPTIONS, clock=ManualClock()))


def test_upstream_counters_are_the_histograms_counts() -> None:
    """Spec OBS-2: the delay and sleep counters add no series of their own."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    before = samples(registry)
    observer.counter(Metric.FG_DELAY, 1)
    observer.counter(Metric.FLUSH_PACING_SLEEP, 1)
    assert samples(registry).keys() == before.keys()


def test_without_the_client_the_import_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spec OBS-1: importing the module without prometheus-client names the extra."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "flowpace.prometheus")
    with pytest.raises(ImportError, match=r'pip install "flowpace\[prometheus\]"'):
        importlib.import_module("flowpace.prometheus")
