"""Combining observers, and the in-memory observer's buckets and percentiles (OBS-5, OBS-6).

Expected buckets and quantiles are worked out by hand from the 1-2-5 bounds in microseconds.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

from flowpace import FanOutObserver, FlowController, FlowOptions, InMemoryObserver, Metric
from flowpace.observer import DELAY_BUCKETS_US, Distribution
from flowpace.testing import ManualClock, RecordingObserver
from flowpace_reference.types import Emission, MetricKind


def test_every_observer_gets_every_call_in_order() -> None:
    """Spec OBS-5: a fan-out hands each call to every observer, the controller's order kept."""
    first, second = RecordingObserver(), RecordingObserver()
    clock = ManualClock()
    options = FlowOptions(
        enable_backpressure=True,
        bp_flush_unit_bytes=1_000,
        bp_soft_debt_units=1,
        bp_warmup_min_samples=1,
    )
    ctl = FlowController(options, clock=clock, observer=FanOutObserver(first, second))
    task = ctl.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    ctl.on_io_built(task, 1_000, 1_000_000)
    ctl.on_mark_done(task)
    ctl.on_enqueue_est(2_000)

    assert ctl.before_foreground_write(500) == 1_000_000  # ns (HARD-13): 1 000 us

    expected = (
        Emission(MetricKind.COUNTER, Metric.FG_DELAY, 1),
        Emission(MetricKind.HISTOGRAM, Metric.FG_DELAY_MICROS, 1_000),
    )
    assert first.calls == expected
    assert second.calls == expected


def test_a_failing_observer_hides_nothing_from_the_others() -> None:
    """Spec OBS-5: the later observers still get the call; the first exception is raised."""

    class Failing:
        def counter(self, metric: Metric, delta: int) -> None:
            raise LookupError(f"counter {metric.value} {delta}")

        def histogram(self, metric: Metric, value: int) -> None:
            raise KeyError(f"histogram {metric.value} {value}")

    kept = InMemoryObserver()
    fan_out = FanOutObserver(Failing(), kept, Failing())
    with pytest.raises(LookupError, match="counter FlowFgDelay 3"):
        fan_out.counter(Metric.FG_DELAY, 3)
    with pytest.raises(KeyError, match="histogram"):
        fan_out.histogram(Metric.FG_DELAY_MICROS, 9)
    snapshot = kept.snapshot()
    assert snapshot.counters[Metric.FG_DELAY] == 3
    assert snapshot.histograms[Metric.FG_DELAY_MICROS].count == 1
    assert len(fan_out.observers) == 3


def test_bucket_bounds_are_one_two_five_from_a_microsecond_to_ten_seconds() -> None:
    """Spec OBS-6: 22 inclusive bounds, 1 us to 10 s."""
    assert DELAY_BUCKETS_US == (
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000,
        100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
    )  # fmt: skip


def test_the_in_memory_observer_keeps_buckets_and_percentiles() -> None:
    """Spec OBS-6: 100 samples; p50 and p99 are bucket bounds, capped by the largest sample."""
    observer = InMemoryObserver()
    # 98 samples of 3 us (bucket (2, 5]), one of 700 us ((500, 1 000]), one of 20 s (overflow).
    for _ in range(98):
        observer.histogram(Metric.FG_DELAY_MICROS, 3)
    observer.histogram(Metric.FG_DELAY_MICROS, 700)
    observer.histogram(Metric.FG_DELAY_MICROS, 20_000_000)

    distribution = observer.snapshot().distributions[Metric.FG_DELAY_MICROS]
    assert distribution.count == 100
    assert distribution.counts[2] == 98  # the bucket (2, 5]
    assert distribution.counts[9] == 1  # the bucket (500, 1 000]
    assert distribution.counts[-1] == 1  # above 10 s
    assert distribution.p50 == 5
    assert distribution.p99 == 1_000  # the 99th sample is 700: its bucket's bound
    assert distribution.quantile(1) == distribution.max == 20_000_000
    assert observer.snapshot().distributions[Metric.FLUSH_PACING_SLEEP_MICROS].p99 == 0


def test_a_quantile_never_exceeds_the_largest_sample() -> None:
    """Spec OBS-6: one sample of 7 us: every quantile is 7, not the bucket's bound of 10."""
    distribution = Distribution.of([7])
    assert distribution.p50 == distribution.p99 == 7
    assert Distribution.of([10, 10]).p50 == 10  # a sample on a bound is in that bucket
    assert Distribution.of([]).p99 == 0
    with pytest.raises(ValueError, match="quantile"):
        distribution.quantile(1.5)


@pytest.mark.parametrize(
    "name",
    ["flowpace.observer", "flowpace.prometheus", "flowpace.opentelemetry", "flowpace.recording"],
)
def test_the_modules_examples_run(name: str) -> None:
    """Spec OBS-1, OBS-6, OBS-7: each module's docstring examples give what they show."""
    results = doctest.testmod(importlib.import_module(name))
    assert results.attempted > 0
    assert results.failed == 0
