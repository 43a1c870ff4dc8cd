"""The OpenTelemetry observer, read back through the SDK's in-memory reader (spec OBS-1..4).

Each test builds its own `MeterProvider` with an `InMemoryMetricReader`, drives a controller
on a manual clock and reads the collected data points. Expected values are written out.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from flowpace import FlowController, FlowOptions
from flowpace.opentelemetry import OpenTelemetryObserver
from flowpace.testing import ManualClock

OPTIONS = FlowOptions(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=1,
    bp_warmup_min_samples=1,
)


def collected(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Return the collected metrics by name."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def rig() -> tuple[FlowController, ManualClock, OpenTelemetryObserver, InMemoryMetricReader]:
    """Return a controller with one sample of 1 MB/s, debt 0, and its observer and reader."""
    reader = InMemoryMetricReader()
    observer = OpenTelemetryObserver(MeterProvider(metric_readers=[reader]))
    clock = ManualClock()
    ctl = FlowController(OPTIONS, clock=clock, observer=observer)
    task = ctl.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    ctl.on_io_built(task, 1_000, 1_000_000)
    ctl.on_mark_done(task)
    return ctl, clock, observer, reader


def test_a_foreground_delay_is_a_histogram_in_seconds() -> None:
    """Spec OBS-1, OBS-2: a 1 000 us delay is 0.001 s, unit s, in the (0.0005, 0.001] bucket."""
    ctl, _, _, reader = rig()
    ctl.on_enqueue_est(2_000)
    assert ctl.before_foreground_write(500) == 1_000_000  # ns (HARD-13): 1 000 us

    metric = collected(reader)["flowpace.foreground.delay"]
    (point,) = metric.data.data_points
    assert metric.unit == "s"
    assert point.count == 1
    assert point.sum == pytest.approx(0.001)
    bounds = list(point.explicit_bounds)
    assert bounds == pytest.approx([m * 10.0**e for e in range(-6, 1) for m in (1, 2, 5)] + [10.0])
    assert point.bucket_counts[bounds.index(pytest.approx(0.001))] == 1
    assert sum(point.bucket_counts) == 1


def test_a_pacing_sleep_and_the_bypasses() -> None:
    """Spec OBS-2, OBS-3: a 100 us sleep is 0.0001 s; one counter with a reason attribute."""
    ctl, _, _, reader = rig()
    first, second = ctl.on_enqueue_est(100), ctl.on_enqueue_est(100)
    ctl.before_flush(first)
    assert ctl.before_flush(second) == 100_000  # ns: 100 us
    with ctl.teardown_bypass():
        ctl.before_flush(first)
    with ctl.arena_starving():
        ctl.before_flush(first)
        ctl.before_flush(second)

    metrics = collected(reader)
    (sleep,) = metrics["flowpace.flush.pacing.sleep"].data.data_points
    assert sleep.sum == pytest.approx(0.0001)
    assert sleep.count == 1
    bypasses = metrics["flowpace.flush.pacing.bypasses"]
    by_reason = {point.attributes["reason"]: point.value for point in bypasses.data.data_points}
    assert by_reason == {"teardown": 1, "arena_starvation": 2}
    assert bypasses.data.is_monotonic


def test_the_state_gauges_are_observed_at_collection() -> None:
    """Spec OBS-4: observable gauges read the bound controller's snapshot when collected."""
    ctl, _, observer, reader = rig()
    outstanding = [ctl.on_enqueue_est(700), ctl.on_enqueue_est(50)]
    observer.bind(ctl)  # the task count is the controller's own (HARD-11)

    def values() -> dict[str, tuple[str, int]]:
        return {
            name: (metric.unit, metric.data.data_points[0].value)
            for name, metric in collected(reader).items()
            if name
            in {
                "flowpace.debt",
                "flowpace.io.throughput",
                "flowpace.e2e.throughput",
                "flowpace.tasks.outstanding",
            }
        }

    assert values() == {
        "flowpace.debt": ("By", 750),
        "flowpace.io.throughput": ("By/s", 1_000_000),
        "flowpace.e2e.throughput": ("By/s", 1_000_000),
        "flowpace.tasks.outstanding": ("{task}", 2),
    }
    ctl.on_mark_done(outstanding.pop())
    assert values()["flowpace.debt"] == ("By", 700)
    with pytest.raises(ValueError, match="already bound"):
        observer.bind(ctl)


def test_without_the_sdk_the_import_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec OBS-1: importing the module without opentelemetry names the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "flowpace.opentelemetry")
    with pytest.raises(ImportError, match=r'pip install "flowpace\[opentelemetry\]"'):
        importlib.import_module("flowpace.opentelemetry")
