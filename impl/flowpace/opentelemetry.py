"""The controller's metrics for OpenTelemetry: an observer and observable gauges (OBS-1..4).

Needs the ``opentelemetry`` extra (``pip install "flowpace[opentelemetry]"``). Names follow
OpenTelemetry's conventions: dotted lower-case names under ``flowpace.``, the unit in the
instrument's ``unit`` (UCUM: ``s``, ``By``, ``By/s``, ``{task}``), never in the name.

- ``flowpace.foreground.delay`` and ``flowpace.flush.pacing.sleep`` (``s``): histograms of
  the foreground delays and the pacing sleeps, converted from the controller's microseconds,
  with `flowpace.prometheus`'s bucket bounds as the advised explicit boundaries (OBS-2).
- ``flowpace.flush.pacing.bypasses`` (``{flush}``): one counter, the attribute ``reason``
  ``high_debt``, ``teardown`` or ``arena_starvation`` (OBS-3).
- ``flowpace.debt`` (``By``), ``flowpace.io.throughput`` and ``flowpace.e2e.throughput``
  (``By/s``) and, when a count is bound, ``flowpace.tasks.outstanding`` (``{task}``):
  observable gauges whose callbacks read the bound controller's ``snapshot()`` (OBS-4).

>>> from opentelemetry.sdk.metrics import MeterProvider
>>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
>>> from flowpace import Metric
>>> reader = InMemoryMetricReader()
>>> observer = OpenTelemetryObserver(MeterProvider(metric_readers=[reader]))
>>> observer.histogram(Metric.FG_DELAY_MICROS, 1_500)
>>> [metric.name for resource in reader.get_metrics_data().resource_metrics
...  for scope in resource.scope_metrics for metric in scope.metrics]
['flowpace.foreground.delay']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as error:  # pragma: no cover - exercised by the tests with the module hidden
    raise ImportError(
        "flowpace.opentelemetry needs opentelemetry-api and -sdk: "
        'pip install "flowpace[opentelemetry]"'
    ) from error

from flowpace.observer import DELAY_BUCKETS_US, outstanding_reader
from flowpace_reference.types import ControllerState, Metric

__all__ = ["BYPASS_REASONS", "SECONDS_BUCKETS", "OpenTelemetryObserver", "SnapshotSource"]

_MICROS_PER_SECOND: Final = 1_000_000

SECONDS_BUCKETS: Final = tuple(bound / _MICROS_PER_SECOND for bound in DELAY_BUCKETS_US)
"""The histograms' advised bucket bounds, seconds: `flowpace.observer.DELAY_BUCKETS_US`."""

BYPASS_REASONS: Final = {
    Metric.FLUSH_PACING_BYPASS_HIGH_DEBT: "high_debt",
    Metric.FLUSH_PACING_BYPASS_TEARDOWN: "teardown",
    Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION: "arena_starvation",
}
"""The ``reason`` attribute of each bypass counter (spec OBS-3)."""

_SCOPE: Final = "flowpace"
"""The instrumentation scope the meter is named after."""


class SnapshotSource(Protocol):
    """Anything with a controller's ``snapshot()``: a `FlowController`, a recorded one."""

    def snapshot(self) -> ControllerState:
        """Return the controller's state, read atomically."""
        ...


class OpenTelemetryObserver:
    """
    An observer that feeds OpenTelemetry histograms and a counter, and exports a bound state.

    Its instruments come from the meter ``flowpace`` of ``meter_provider`` (default: the
    global one). `bind` adds the state's observable gauges.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        """Create the histograms and the bypass counter on ``meter_provider``'s meter."""
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        self._meter = provider.get_meter(_SCOPE)
        self._fg_delay = self._meter.create_histogram(
            "flowpace.foreground.delay",
            unit="s",
            description="Foreground write delays for backpressure (upstream FlowFgDelayMicros).",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._pacing_sleep = self._meter.create_histogram(
            "flowpace.flush.pacing.sleep",
            unit="s",
            description="Sleeps of paced flushes (upstream FlowFlushPacingSleepMicros).",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._bypasses = self._meter.create_counter(
            "flowpace.flush.pacing.bypasses",
            unit="{flush}",
            description="Flushes that bypassed pacing, by reason (FlowFlushPacingBypass*).",
        )
        self._bound = False

    def counter(self, metric: Metric, delta: int) -> None:
        """Add to the bypass counter; the delay and sleep counters are the histograms' counts."""
        reason = BYPASS_REASONS.get(metric)
        if reason is not None:
            self._bypasses.add(delta, {"reason": reason})

    def histogram(self, metric: Metric, value: int) -> None:
        """Record a delay or sleep of ``value`` microseconds as seconds (spec OBS-2)."""
        if metric is Metric.FG_DELAY_MICROS:
            self._fg_delay.record(value / _MICROS_PER_SECOND)
        elif metric is Metric.FLUSH_PACING_SLEEP_MICROS:
            self._pacing_sleep.record(value / _MICROS_PER_SECOND)

    def bind(
        self, controller: SnapshotSource, *, outstanding_tasks: Callable[[], int] | None = None
    ) -> None:
        """
        Export ``controller``'s state as observable gauges, read at each collection (OBS-4).

        Each gauge's callback takes its own snapshot. ``flowpace.tasks.outstanding`` reads
        ``outstanding_tasks()`` if given, else the controller's ``outstanding_tasks``
        (HARD-11); a source with neither has no task gauge. An
        observer binds one controller: binding again raises ValueError.
        """
        if self._bound:
            raise ValueError("this OpenTelemetryObserver is already bound to a controller")
        self._bound = True
        for name, unit, description, field in _STATE_GAUGES:
            self._meter.create_observable_gauge(
                name, [_state_callback(controller, field)], unit=unit, description=description
            )
        outstanding_tasks = outstanding_reader(controller, outstanding_tasks)
        if outstanding_tasks is not None:
            self._meter.create_observable_gauge(
                "flowpace.tasks.outstanding",
                [_count_callback(outstanding_tasks)],
                unit="{task}",
                description="Flush tasks enqueued and not yet done.",
            )


_STATE_GAUGES: Final[tuple[tuple[str, str, str, Callable[[ControllerState], int]], ...]] = (
    (
        "flowpace.debt",
        "By",
        "Bytes of flush work enqueued and not yet settled (the debt).",
        lambda state: state.debt_bytes,
    ),
    (
        "flowpace.io.throughput",
        "By/s",
        "Moving average of the disk write throughput (I/O time only).",
        lambda state: state.io_bps_ewma,
    ),
    (
        "flowpace.e2e.throughput",
        "By/s",
        "Moving average of the enqueue-to-done throughput.",
        lambda state: state.e2e_bps_ewma,
    ),
)
"""The observable gauges read from a snapshot: name, unit, description, field (OBS-4)."""


def _state_callback(
    controller: SnapshotSource, field: Callable[[ControllerState], int]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """Return a gauge callback observing ``field`` of ``controller``'s snapshot."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        del options
        return [Observation(field(controller.snapshot()))]

    return observe


def _count_callback(count: Callable[[], int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """Return a gauge callback observing ``count()``."""

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        del options
        return [Observation(count())]

    return observe
