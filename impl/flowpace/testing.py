"""Deterministic doubles for tests and replays: a manual clock and a recording observer.

>>> from flowpace import FlowController, FlowOptions
>>> clock, observer = ManualClock(), RecordingObserver()
>>> ctl = FlowController(FlowOptions(), clock=clock, observer=observer)
>>> clock.advance_ns(1_500)
>>> ctl.on_enqueue_est(10).snapshot().enqueue_at
1500
"""

from __future__ import annotations

import asyncio

from flowpace._sync import LockFactory, thread_lock
from flowpace.observer import InMemoryObserver
from flowpace_reference.types import Emission, Metric, MetricKind

__all__ = ["ManualClock", "RecordingObserver"]


class ManualClock:
    """
    A clock that moves only when advanced or slept on, by exactly the requested time.

    A sleep does not block: it advances the clock by its duration and returns, so a test that
    sleeps on this clock runs at full speed and still sees the controller's delays in the
    clock's reading. Thread-safe: concurrent sleeps each advance the clock by their own
    duration. Implements `flowpace.clock.Clock`; `async_sleep_ns` is the matching async sleep
    to pass as a controller's ``async_sleep``.

    >>> clock = ManualClock(start_ns=5)
    >>> clock.sleep_ns(10)
    >>> clock.monotonic_ns(), clock.sleeps
    (15, (10,))
    """

    __slots__ = ("_lock", "_now_ns", "_sleeps")

    def __init__(self, start_ns: int = 0, *, _lock_factory: LockFactory = thread_lock) -> None:
        """Start at ``start_ns``; ``_lock_factory`` makes the clock's lock (named "clock")."""
        if isinstance(start_ns, bool) or not isinstance(start_ns, int):
            raise TypeError(f"start_ns must be an int, got {start_ns!r}")
        if start_ns < 0:
            raise ValueError(f"start_ns must be non-negative, got {start_ns}")
        self._lock = _lock_factory("clock")
        self._now_ns = start_ns
        self._sleeps: list[int] = []

    def monotonic_ns(self) -> int:
        """Return the current time in nanoseconds."""
        return self._now_ns  # one attribute holding an immutable int: no lock needed

    def advance_ns(self, duration_ns: int) -> None:
        """Move the clock forward by ``duration_ns`` nanoseconds (a non-negative integer)."""
        _check_duration(duration_ns)
        with self._lock:
            self._now_ns += duration_ns

    def sleep_ns(self, duration_ns: int) -> None:
        """Advance the clock by ``duration_ns`` and record the sleep; return at once."""
        _check_duration(duration_ns)
        with self._lock:
            self._now_ns += duration_ns
            self._sleeps.append(duration_ns)

    async def async_sleep_ns(self, duration_ns: int) -> None:
        """Advance the clock as `sleep_ns` does, then yield to the event loop once."""
        self.sleep_ns(duration_ns)
        await asyncio.sleep(0)

    @property
    def sleeps(self) -> tuple[int, ...]:
        """Every sleep taken on this clock, nanoseconds, in the order they were taken."""
        with self._lock:
            return tuple(self._sleeps)


def _check_duration(duration_ns: object) -> None:
    """Raise TypeError or ValueError unless ``duration_ns`` is a non-negative int."""
    if isinstance(duration_ns, bool) or not isinstance(duration_ns, int):
        raise TypeError(f"duration_ns must be an int, got {duration_ns!r}")
    if duration_ns < 0:
        raise ValueError(f"duration_ns must be non-negative, got {duration_ns}")


class RecordingObserver(InMemoryObserver):
    """
    An `InMemoryObserver` that also keeps every call, in order, as model `Emission` values.

    >>> observer = RecordingObserver()
    >>> observer.counter(Metric.FG_DELAY, 1)
    >>> [(call.kind.value, call.metric.value, call.value) for call in observer.calls]
    [('counter', 'FlowFgDelay', 1)]
    """

    def __init__(self) -> None:
        """Start with no call recorded."""
        super().__init__()
        self._calls: list[Emission] = []

    def counter(self, metric: Metric, delta: int) -> None:
        """Add ``delta`` to the counter, then record the call."""
        super().counter(metric, delta)
        with self._lock:
            self._calls.append(Emission(MetricKind.COUNTER, metric, delta))

    def histogram(self, metric: Metric, value: int) -> None:
        """Add the sample to the histogram, then record the call."""
        super().histogram(metric, value)
        with self._lock:
            self._calls.append(Emission(MetricKind.HISTOGRAM, metric, value))

    @property
    def calls(self) -> tuple[Emission, ...]:
        """Every call received so far, in order."""
        with self._lock:
            return tuple(self._calls)
