"""What the controller reports: the seven upstream flow metrics, as counters and histograms.

The controller calls its observer's `Observer.counter` and `Observer.histogram` with a
`Metric` (upstream's metric names) after it has slept and after it has released its locks, so an
observer may be slow, take its own locks, or raise: the controller stays consistent (what it
does with an observer's exception is for `flowpace.FlowController` to say).

- `NoopObserver`: the default; ignores every call.
- `InMemoryObserver`: keeps counters, histogram summaries (count, sum, max) and bucketed
  distributions (`Distribution`: p50, p99) users can read.
- `FanOutObserver`: hands every call to several observers (spec OBS-5).
- `flowpace.testing.RecordingObserver`: also keeps the ordered list of calls.

Exporters to metrics systems live in modules of their own, each behind an optional extra:
`flowpace.prometheus` and `flowpace.opentelemetry` (spec OBS-1 to OBS-4).
"""

from __future__ import annotations

import bisect
import operator
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from flowpace_reference.types import Metric

__all__ = [
    "DELAY_BUCKETS_US",
    "Distribution",
    "FanOutObserver",
    "HistogramSummary",
    "InMemoryObserver",
    "Metric",
    "NoopObserver",
    "Observer",
    "ObserverSnapshot",
]


class Observer(Protocol):
    """Receives the controller's metrics (upstream's ``Observer`` trait, flow metrics only)."""

    def counter(self, metric: Metric, delta: int) -> None:
        """Add ``delta`` to the counter ``metric``."""
        ...

    def histogram(self, metric: Metric, value: int) -> None:
        """Record ``value`` as one sample of the histogram ``metric``."""
        ...


class NoopObserver:
    """An observer that ignores every call (upstream's ``NoopObserver``; the default)."""

    __slots__ = ()

    def counter(self, metric: Metric, delta: int) -> None:
        """Ignore a counter increment."""

    def histogram(self, metric: Metric, value: int) -> None:
        """Ignore a histogram sample."""


DELAY_BUCKETS_US: Final = (
    *(mantissa * 10**exponent for exponent in range(7) for mantissa in (1, 2, 5)),
    10_000_000,
)
"""
The histogram buckets' upper bounds, microseconds: 1, 2, 5, 10, 20, 50, ... 5 s, 10 s (OBS-2).

A 1-2-5 series covers every foreground delay and pacing sleep the options allow (1 us to
``bp_max_delay_us``, 10 ms by default) at a relative resolution of at most 2.5x in 22 buckets;
a bound is inclusive (a sample equal to it counts in its bucket), as Prometheus's ``le``.
"""


class FanOutObserver:
    """
    An observer that hands every call to each of its observers, in order (spec OBS-5).

    Every observer receives the call even when an earlier one raises; the first exception is
    then raised again, so a failing exporter neither hides the call from the others nor fails
    silently.

    >>> first, second = InMemoryObserver(), InMemoryObserver()
    >>> both = FanOutObserver(first, second)
    >>> both.counter(Metric.FG_DELAY, 2)
    >>> first.snapshot().counters[Metric.FG_DELAY], second.snapshot().counters[Metric.FG_DELAY]
    (2, 2)
    """

    __slots__ = ("_observers",)

    def __init__(self, *observers: Observer) -> None:
        """Hand every call to ``observers``, in the order given."""
        self._observers = observers

    @property
    def observers(self) -> tuple[Observer, ...]:
        """The observers every call goes to, in order."""
        return self._observers

    def counter(self, metric: Metric, delta: int) -> None:
        """Add ``delta`` to the counter ``metric`` of every observer."""
        self._to_each(lambda observer: observer.counter(metric, delta))

    def histogram(self, metric: Metric, value: int) -> None:
        """Record ``value`` in the histogram ``metric`` of every observer."""
        self._to_each(lambda observer: observer.histogram(metric, value))

    def _to_each(self, call: Callable[[Observer], None]) -> None:
        """Make ``call`` on every observer in order, then raise the first exception (OBS-5)."""
        error: BaseException | None = None
        for observer in self._observers:
            try:
                call(observer)
            except Exception as raised:  # noqa: BLE001 - re-raised below, after the others
                error = error or raised
        if error is not None:
            raise error


@dataclass(frozen=True, slots=True)
class Distribution:
    """
    A histogram's samples counted in buckets, with the quantiles the buckets bound (OBS-6).

    ``counts[k]`` counts the samples ``s`` with ``bounds[k-1] < s <= bounds[k]``; the last
    count, ``counts[len(bounds)]``, those above every bound.

    >>> Distribution.of([3, 3, 40, 900], bounds=(1, 10, 100)).counts
    (0, 2, 1, 1)
    """

    bounds: tuple[int, ...] = DELAY_BUCKETS_US
    """The buckets' inclusive upper bounds, increasing, in the metric's unit (microseconds)."""
    counts: tuple[int, ...] = (0,) * (len(DELAY_BUCKETS_US) + 1)
    """The samples in each bucket; one more count than bounds (the overflow bucket)."""
    max: int = 0
    """The largest sample, or 0 if none."""

    @classmethod
    def of(cls, samples: list[int], *, bounds: tuple[int, ...] = DELAY_BUCKETS_US) -> Distribution:
        """Return the distribution of ``samples`` over ``bounds``."""
        counts = [0] * (len(bounds) + 1)
        for sample in samples:
            counts[bucket_index(bounds, sample)] += 1
        return cls(bounds=bounds, counts=tuple(counts), max=max(samples, default=0))

    @property
    def count(self) -> int:
        """How many samples were counted."""
        return sum(self.counts)

    def quantile(self, q: float) -> int:
        """
        Return an upper bound of the ``q`` quantile: the bound of the bucket holding it, or max.

        The rank is ``ceil(q * count)`` (at least 1); the answer is the upper bound of the
        bucket holding that sample, never more than the largest sample (the exact answer for
        the overflow bucket and for ``q == 1``). 0 when there is no sample.

        >>> Distribution.of([3, 3, 40, 900], bounds=(1, 10, 100)).quantile(0.5)
        10
        """
        if not 0 <= q <= 1:
            raise ValueError(f"a quantile is in [0, 1], got {q}")
        count = self.count
        if count == 0:
            return 0
        rank = max(1, -int(-q * count // 1))  # ceil without floats' rounding at integers
        seen = 0
        for index, bucket in enumerate(self.counts):
            seen += bucket
            if seen >= rank:
                return self.max if index == len(self.bounds) else min(self.bounds[index], self.max)
        return self.max  # unreachable: the counts sum to count

    @property
    def p50(self) -> int:
        """The median's upper bound (`quantile` 0.5)."""
        return self.quantile(0.5)

    @property
    def p99(self) -> int:
        """The 99th percentile's upper bound (`quantile` 0.99)."""
        return self.quantile(0.99)


def bucket_index(bounds: tuple[int, ...], sample: int) -> int:
    """Return the index of the bucket ``sample`` falls in: the first bound at or above it."""
    return bisect.bisect_left(bounds, sample)


@dataclass(frozen=True, slots=True)
class HistogramSummary:
    """The samples a histogram received, summarised as upstream's in-memory observer does."""

    count: int = 0
    """How many samples were recorded."""
    total: int = 0
    """The sum of the samples (unbounded: a Python int)."""
    max: int = 0
    """The largest sample, or 0 if none."""


@dataclass(frozen=True, slots=True)
class ObserverSnapshot:
    """An `InMemoryObserver`'s counters and histograms at one instant."""

    counters: Mapping[Metric, int]
    """Every metric's counter total (0 for those never incremented)."""
    histograms: Mapping[Metric, HistogramSummary]
    """Every metric's histogram summary (empty for those never sampled)."""
    distributions: Mapping[Metric, Distribution] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Every metric's samples in `DELAY_BUCKETS_US` buckets, with p50 and p99 (spec OBS-6)."""


class InMemoryObserver:
    """
    An observer that keeps totals users can read (upstream's ``InMemoryObserver``).

    Thread-safe: its own lock guards its totals; it never calls back into the controller.

    >>> observer = InMemoryObserver()
    >>> observer.histogram(Metric.FG_DELAY_MICROS, 7)
    >>> observer.snapshot().histograms[Metric.FG_DELAY_MICROS]
    HistogramSummary(count=1, total=7, max=7)
    >>> observer.snapshot().distributions[Metric.FG_DELAY_MICROS].p99  # bucket 5 < s <= 10
    7
    """

    def __init__(self) -> None:
        """Start with every counter at 0 and every histogram empty."""
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(Metric, 0)
        self._histograms = dict.fromkeys(Metric, HistogramSummary())
        empty = [0] * (len(DELAY_BUCKETS_US) + 1)
        self._buckets = {metric: list(empty) for metric in Metric}

    def counter(self, metric: Metric, delta: int) -> None:
        """Add ``delta`` to the counter ``metric``."""
        with self._lock:
            self._counters[metric] += delta

    def histogram(self, metric: Metric, value: int) -> None:
        """Add one sample ``value`` to the histogram ``metric``."""
        with self._lock:
            old = self._histograms[metric]
            self._histograms[metric] = HistogramSummary(
                count=old.count + 1, total=old.total + value, max=max(old.max, value)
            )
            self._buckets[metric][bucket_index(DELAY_BUCKETS_US, value)] += 1

    def snapshot(self) -> ObserverSnapshot:
        """Return every counter and histogram, read at one instant."""
        with self._lock:
            counters = dict(self._counters)
            histograms = dict(self._histograms)
            buckets = {metric: tuple(counts) for metric, counts in self._buckets.items()}
        distributions = {
            metric: Distribution(counts=counts, max=histograms[metric].max)
            for metric, counts in buckets.items()
        }
        return ObserverSnapshot(
            counters=MappingProxyType(counters),
            histograms=MappingProxyType(histograms),
            distributions=MappingProxyType(distributions),
        )


def outstanding_reader(
    controller: object, given: Callable[[], int] | None
) -> Callable[[], int] | None:
    """
    Return what reads the outstanding-task count for a gauge: ``given``, else the controller's.

    A `FlowController` (or a recorder) counts its outstanding tasks (spec HARD-11); a snapshot
    source without ``outstanding_tasks`` has no count, and its exporters no task gauge (OBS-4).
    """
    if given is not None:
        return given
    if not hasattr(controller, "outstanding_tasks"):
        return None
    read = operator.attrgetter("outstanding_tasks")

    def count() -> int:
        return int(read(controller))

    return count
