"""What the controller reports: the seven upstream flow metrics, as counters and histograms.

The controller calls its observer's `Observer.counter` and `Observer.histogram` with a
`Metric` (upstream's metric names) after it has slept and after it has released its locks, so an
observer may be slow, take its own locks, or raise: the controller stays consistent (an
exception propagates to the caller of the operation, whose change of state is already done).

- `NoopObserver`: the default; ignores every call.
- `InMemoryObserver`: keeps counters and histogram summaries (count, sum, max) users can read.
- `flowpace.testing.RecordingObserver`: also keeps the ordered list of calls.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from flowpace_reference.types import Metric

__all__ = [
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


class InMemoryObserver:
    """
    An observer that keeps totals users can read (upstream's ``InMemoryObserver``).

    Thread-safe: its own lock guards its totals; it never calls back into the controller.

    >>> observer = InMemoryObserver()
    >>> observer.histogram(Metric.FG_DELAY_MICROS, 7)
    >>> observer.snapshot().histograms[Metric.FG_DELAY_MICROS]
    HistogramSummary(count=1, total=7, max=7)
    """

    def __init__(self) -> None:
        """Start with every counter at 0 and every histogram empty."""
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(Metric, 0)
        self._histograms = dict.fromkeys(Metric, HistogramSummary())

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

    def snapshot(self) -> ObserverSnapshot:
        """Return every counter and histogram, read at one instant."""
        with self._lock:
            counters = dict(self._counters)
            histograms = dict(self._histograms)
        return ObserverSnapshot(
            counters=MappingProxyType(counters), histograms=MappingProxyType(histograms)
        )
