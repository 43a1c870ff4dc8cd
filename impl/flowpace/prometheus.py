"""The controller's metrics for Prometheus: an observer and a collector of its state (OBS-1..4).

Needs the ``prometheus`` extra (``pip install "flowpace[prometheus]"``). Names follow
Prometheus's conventions: a ``flowpace_`` prefix, base units in the name (seconds, bytes),
``_total`` on counters.

- ``flowpace_foreground_delay_seconds`` and ``flowpace_flush_pacing_sleep_seconds``:
  histograms of the foreground delays and the pacing sleeps, converted from the controller's
  microseconds to seconds, with the buckets `SECONDS_BUCKETS` (1 us to 10 s, 1-2-5). Their
  ``_count`` is upstream's ``FlowFgDelay`` and ``FlowFlushPacingSleep`` counters (OBS-2).
- ``flowpace_flush_pacing_bypasses_total{reason}``: the three bypass counters as one, the
  reason ``high_debt``, ``teardown`` or ``arena_starvation`` (OBS-3).
- ``flowpace_debt_bytes``, ``flowpace_io_throughput_bytes_per_second``,
  ``flowpace_e2e_throughput_bytes_per_second`` and, when a count is bound,
  ``flowpace_outstanding_tasks``: gauges read from the bound controller's ``snapshot()`` at
  collection time, so the controller's operations pay nothing for them (OBS-4).

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> from flowpace import FlowController, Metric
>>> registry = CollectorRegistry()
>>> observer = PrometheusObserver(registry)
>>> controller = FlowController(observer=observer)
>>> observer.bind(controller)
>>> observer.histogram(Metric.FG_DELAY_MICROS, 1_500)
>>> text = generate_latest(registry).decode()
>>> "flowpace_foreground_delay_seconds_sum 0.0015" in text, "flowpace_debt_bytes 0.0" in text
(True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Final, Protocol

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as error:  # pragma: no cover - exercised by the tests with the module hidden
    raise ImportError(
        'flowpace.prometheus needs prometheus-client: pip install "flowpace[prometheus]"'
    ) from error

from flowpace.observer import DELAY_BUCKETS_US, outstanding_reader
from flowpace_reference.types import ControllerState, Metric

__all__ = [
    "BYPASS_REASONS",
    "SECONDS_BUCKETS",
    "PrometheusObserver",
    "SnapshotSource",
    "StateCollector",
]

_MICROS_PER_SECOND: Final = 1_000_000

SECONDS_BUCKETS: Final = tuple(bound / _MICROS_PER_SECOND for bound in DELAY_BUCKETS_US)
"""The histograms' bucket bounds, seconds: `flowpace.observer.DELAY_BUCKETS_US` (spec OBS-2)."""

BYPASS_REASONS: Final = {
    Metric.FLUSH_PACING_BYPASS_HIGH_DEBT: "high_debt",
    Metric.FLUSH_PACING_BYPASS_TEARDOWN: "teardown",
    Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION: "arena_starvation",
}
"""The ``reason`` label of each bypass counter (spec OBS-3)."""


class SnapshotSource(Protocol):
    """Anything with a controller's ``snapshot()``: a `FlowController`, a recorded one."""

    def snapshot(self) -> ControllerState:
        """Return the controller's state, read atomically."""
        ...


class PrometheusObserver:
    """
    An observer that feeds Prometheus histograms and a counter, and exports a bound state.

    Its metrics are registered in ``registry`` (default: the client's global registry) when it
    is built, so a registry holds one such observer (a second raises the client's
    ``Duplicated timeseries`` ValueError); `bind` adds the state gauges of a controller.
    Thread-safe, as the client's metrics are.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        """Register the histograms and the bypass counter in ``registry``."""
        self._registry = registry
        self._fg_delay = Histogram(
            "flowpace_foreground_delay_seconds",
            "Foreground write delays for backpressure (upstream FlowFgDelayMicros), seconds.",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self._pacing_sleep = Histogram(
            "flowpace_flush_pacing_sleep_seconds",
            "Sleeps of paced flushes (upstream FlowFlushPacingSleepMicros), seconds.",
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        bypasses = Counter(
            "flowpace_flush_pacing_bypasses",
            "Flushes that bypassed pacing, by reason (upstream FlowFlushPacingBypass*).",
            ["reason"],
            registry=registry,
        )
        # Every reason is exported from the start, at 0, so a rate() has a series to read.
        self._bypasses = {metric: bypasses.labels(name) for metric, name in BYPASS_REASONS.items()}
        self._collector: StateCollector | None = None

    def counter(self, metric: Metric, delta: int) -> None:
        """Add to the bypass counter; the delay and sleep counters are the histograms' counts."""
        child = self._bypasses.get(metric)
        if child is not None:
            child.inc(delta)

    def histogram(self, metric: Metric, value: int) -> None:
        """Record a delay or sleep of ``value`` microseconds as seconds (spec OBS-2)."""
        if metric is Metric.FG_DELAY_MICROS:
            self._fg_delay.observe(value / _MICROS_PER_SECOND)
        elif metric is Metric.FLUSH_PACING_SLEEP_MICROS:
            self._pacing_sleep.observe(value / _MICROS_PER_SECOND)

    def bind(
        self, controller: SnapshotSource, *, outstanding_tasks: Callable[[], int] | None = None
    ) -> None:
        """
        Export ``controller``'s state as gauges, read when the registry is collected (OBS-4).

        ``flowpace_outstanding_tasks`` reads ``outstanding_tasks()`` if given, else the
        controller's ``outstanding_tasks`` (HARD-11), at collection time; a source with neither
        has no task gauge. An
        observer binds one controller: binding again raises ValueError.
        """
        if self._collector is not None:
            raise ValueError("this PrometheusObserver is already bound to a controller")
        collector = StateCollector(
            controller, outstanding_tasks=outstanding_reader(controller, outstanding_tasks)
        )
        self._registry.register(collector)
        self._collector = collector


_STATE_GAUGES: Final[tuple[tuple[str, str, Callable[[ControllerState], int]], ...]] = (
    (
        "flowpace_debt_bytes",
        "Bytes of flush work enqueued and not yet settled (the debt).",
        lambda state: state.debt_bytes,
    ),
    (
        "flowpace_io_throughput_bytes_per_second",
        "Moving average of the disk write throughput (I/O time only), bytes per second.",
        lambda state: state.io_bps_ewma,
    ),
    (
        "flowpace_e2e_throughput_bytes_per_second",
        "Moving average of the enqueue-to-done throughput, bytes per second.",
        lambda state: state.e2e_bps_ewma,
    ),
)
"""The gauges read from a snapshot: name, help text, and the field (spec OBS-4)."""

_OUTSTANDING_TASKS: Final = ("flowpace_outstanding_tasks", "Flush tasks enqueued and not yet done.")


class StateCollector(Collector):
    """A Prometheus collector of a controller's debt and averages, from one snapshot (OBS-4)."""

    def __init__(
        self, controller: SnapshotSource, *, outstanding_tasks: Callable[[], int] | None = None
    ) -> None:
        """Read ``controller.snapshot()`` (and ``outstanding_tasks()``) at each collection."""
        self._controller = controller
        self._outstanding_tasks = outstanding_tasks

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Return the gauges, every one read from the same snapshot."""
        state = self._controller.snapshot()
        for name, documentation, field in _STATE_GAUGES:
            yield GaugeMetricFamily(name, documentation, value=field(state))
        if self._outstanding_tasks is not None:
            yield GaugeMetricFamily(*_OUTSTANDING_TASKS, value=self._outstanding_tasks())

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """Return the gauges without values: the registry checks names without a snapshot."""
        for name, documentation, _ in _STATE_GAUGES:
            yield GaugeMetricFamily(name, documentation)
        if self._outstanding_tasks is not None:
            yield GaugeMetricFamily(*_OUTSTANDING_TASKS)
