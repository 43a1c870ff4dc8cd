"""Deterministic doubles for tests and replays: a manual clock, a recording observer and more.

`controller_from_state` builds a controller in a given state, for tests that start far from a
new controller's (counters at their ``u64`` limits, rare combinations of regimes).

>>> from flowpace import FlowController, FlowOptions
>>> clock, observer = ManualClock(), RecordingObserver()
>>> ctl = FlowController(FlowOptions(), clock=clock, observer=observer)
>>> clock.advance_ns(1_500)
>>> ctl.on_enqueue_est(10).snapshot().enqueue_at
1500
"""

from __future__ import annotations

import asyncio
import threading

from flowpace._rules import exact_int, shown
from flowpace._sync import current_lock_factory, lock_factory
from flowpace.clock import TIME_LIMIT_NS, AsyncSleep, Clock, asyncio_sleep_ns
from flowpace.controller import FlowController
from flowpace.observer import InMemoryObserver, Observer
from flowpace.options import FlowOptions
from flowpace_reference.types import ControllerState, Emission, Metric, MetricKind
from flowpace_reference.u64 import U64_MAX

__all__ = ["ManualClock", "RecordingObserver", "controller_from_state", "lock_factory"]


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

    __slots__ = ("_blocking_waits", "_lock", "_now_ns", "_sleeps", "_waiters", "_waiting")

    def __init__(self, start_ns: int = 0, *, blocking_waits: bool = False) -> None:
        """
        Start at ``start_ns``; the clock's lock (named "clock") comes from `lock_factory`.

        ``blocking_waits``: whether `wait_until_ns` blocks (until notified or advanced) rather
        than advancing the clock to its deadline (spec EXT-7).
        """
        start_ns = exact_int(start_ns, "start_ns")  # spec HARD-2: the value checked is used
        if not 0 <= start_ns < TIME_LIMIT_NS:  # spec HARD-3: a reading a controller accepts
            raise ValueError(f"start_ns must be in [0, 2**64 * 10**9), got {shown(start_ns)}")
        self._lock = current_lock_factory()("clock")
        self._now_ns = start_ns
        self._sleeps: list[int] = []
        self._blocking_waits = blocking_waits
        self._waiters: list[threading.Condition] = []  # conditions waited on (EXT-7)
        self._waiting = threading.Condition()  # tells a test how many threads wait

    def monotonic_ns(self) -> int:
        """Return the current time in nanoseconds."""
        return self._now_ns  # one attribute holding an immutable int: no lock needed

    def advance_ns(self, duration_ns: int) -> None:
        """Move the clock forward by ``duration_ns`` nanoseconds (a non-negative integer)."""
        duration_ns = _checked_duration(duration_ns)
        with self._lock:
            self._now_ns = _moved(self._now_ns, duration_ns)
            waiters = tuple(self._waiters)
        _notify(waiters)

    def sleep_ns(self, duration_ns: int) -> None:
        """Advance the clock by ``duration_ns`` and record the sleep; return at once."""
        duration_ns = _checked_duration(duration_ns)
        with self._lock:
            self._now_ns = _moved(self._now_ns, duration_ns)
            self._sleeps.append(duration_ns)
            waiters = tuple(self._waiters)
        _notify(waiters)

    def wait_until_ns(self, condition: threading.Condition, deadline_ns: int) -> None:
        """
        Wait on ``condition``, whose lock the caller holds, until notified or ``deadline_ns``.

        Spec EXT-7. By default it never blocks: the clock moves to the deadline (if it is not
        there yet) and the call returns, as a sleep does. With ``blocking_waits=True`` it
        blocks until the condition is notified or the clock is advanced (by anyone), so a test
        drives a wait across threads deterministically: `wait_for_waiters` tells it when.
        """
        with self._lock:
            if not self._blocking_waits:
                self._now_ns = max(self._now_ns, deadline_ns)
                return
            if self._now_ns >= deadline_ns:
                return
            # Registered under the clock's lock: an advance either sees it (and notifies it
            # once the caller waits, since the notifier needs the caller's lock) or came first.
            self._waiters.append(condition)
        with self._waiting:
            self._waiting.notify_all()
        try:
            condition.wait()
        finally:
            with self._lock:
                self._waiters.remove(condition)
            with self._waiting:
                self._waiting.notify_all()

    @property
    def waiting(self) -> int:
        """How many threads wait in `wait_until_ns` now (``blocking_waits`` only)."""
        with self._lock:
            return len(self._waiters)

    def wait_for_waiters(self, count: int, *, timeout_s: float = 60.0) -> bool:
        """
        Block until ``count`` threads wait in `wait_until_ns`; return whether they did.

        For tests that drive blocked writers: the timeout is a safety net against a hang, not
        a measurement (the result does not depend on the machine's speed).
        """
        with self._waiting:
            return self._waiting.wait_for(lambda: self.waiting == count, timeout_s)

    async def async_sleep_ns(self, duration_ns: int) -> None:
        """Advance the clock as `sleep_ns` does, then yield to the event loop once."""
        self.sleep_ns(duration_ns)
        await asyncio.sleep(0)

    @property
    def sleeps(self) -> tuple[int, ...]:
        """Every sleep taken on this clock, nanoseconds, in the order they were taken."""
        with self._lock:
            return tuple(self._sleeps)

    @property
    def sleep_count(self) -> int:
        """How many sleeps were taken on this clock (cheaper than ``len(sleeps)``)."""
        with self._lock:
            return len(self._sleeps)

    def sleeps_since(self, start: int) -> tuple[int, ...]:
        """Return the sleeps taken after the first ``start`` ones, in order."""
        with self._lock:
            return tuple(self._sleeps[start:])


def _notify(conditions: tuple[threading.Condition, ...]) -> None:
    """Wake the threads waiting on ``conditions``: the clock moved (spec EXT-7)."""
    for condition in conditions:
        with condition:
            condition.notify_all()


def _checked_duration(duration_ns: object) -> int:
    """Return ``duration_ns`` as a plain non-negative int; else TypeError or ValueError."""
    duration = exact_int(duration_ns, "duration_ns")  # spec HARD-2: the value checked is used
    if not 0 <= duration < TIME_LIMIT_NS:
        raise ValueError(f"duration_ns must be in [0, 2**64 * 10**9), got {shown(duration)}")
    return duration


def _moved(now_ns: int, duration_ns: int) -> int:
    """Return ``now_ns`` moved on by ``duration_ns``; ValueError at the limit (HARD-3)."""
    moved = now_ns + duration_ns
    if moved >= TIME_LIMIT_NS:
        raise ValueError(
            f"duration_ns must keep the clock below 2**64 * 10**9 ns: "
            f"{now_ns} + {duration_ns} is not"
        )
    return moved


class RecordingObserver(InMemoryObserver):
    """
    An `InMemoryObserver` that also keeps every call, in order, as model `Emission` values.

    A test double: an exception raised while it records (by a subclass that fails on purpose,
    or by a bug in a test) reaches the caller of the controller's operation, instead of being
    isolated as every other observer's is (spec HARD-5). ``raises=False`` makes it an ordinary
    observer, whose failures the controller logs and counts.

    >>> observer = RecordingObserver()
    >>> observer.counter(Metric.FG_DELAY, 1)
    >>> [(call.kind.value, call.metric.value, call.value) for call in observer.calls]
    [('counter', 'FlowFgDelay', 1)]
    """

    def __init__(self, *, raises: bool = True) -> None:
        """Start with no call recorded; ``raises``: let this observer's exceptions propagate."""
        super().__init__()
        self._calls: list[Emission] = []
        # spec HARD-5: the controller's test-only switch, read once when it is built.
        self._flowpace_observer_raises = raises

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

    @property
    def call_count(self) -> int:
        """How many calls were received so far (cheaper than ``len(calls)``)."""
        with self._lock:
            return len(self._calls)

    def calls_since(self, start: int) -> tuple[Emission, ...]:
        """Return the calls received after the first ``start`` ones, in order."""
        with self._lock:
            return tuple(self._calls[start:])


def controller_from_state(
    options: FlowOptions,
    state: ControllerState,
    *,
    clock: Clock,
    observer: Observer | None = None,
    async_sleep: AsyncSleep = asyncio_sleep_ns,
) -> FlowController:
    """
    Return a controller with ``options`` on ``clock`` whose state is ``state`` (spec ST-1).

    For tests only: it lets a test start from a state that ordinary operations reach only
    after some 2**64 of them (scope counts or the sample count at ``u64::MAX``, a debt next to
    it), or from one of their rare combinations. ``state`` must be in the model's domain
    (``flowpace_reference.contracts.state_in_domain``): every counter a ``u64``, the
    adaptive floor at least the configured floor, times non-negative; else ValueError. No task
    holds the state's debt: the controller's tasks are those enqueued from now on. The
    controller's latest time applied is the clock's reading now, as for a new controller.

    >>> from flowpace_reference.types import ControllerState
    >>> far = ControllerState(debt_bytes=5, io_bps_ewma=0, e2e_bps_ewma=0, io_sample_count=0,
    ...                       adaptive_floor_bps=16 << 20, teardown_bypass_scopes=U64_MAX,
    ...                       arena_starving_scopes=0, idle_since=None, next_flush_at=None)
    >>> ctl = controller_from_state(FlowOptions(), far, clock=ManualClock())
    >>> ctl.snapshot() == far
    True
    """
    ctl = FlowController(
        options,
        clock=clock,
        observer=observer,
        async_sleep=async_sleep,
    )
    _check_in_domain(ctl.config.bp_floor_bps, state)
    tuning = ctl._tuning  # noqa: SLF001 - a test hook sets the controller's private state
    # spec AR-4, FC-6: the fast path's limit is the steady state's once the warm-up is done,
    # exactly as the controller's own operations leave it.
    warm = state.io_sample_count >= tuning.warmup
    quiet_debt = tuning.warm_quiet_debt if warm else tuning.cold_quiet_debt
    with ctl._state_lock:  # noqa: SLF001
        ctl._debt = state.debt_bytes  # noqa: SLF001
        ctl._io_bps = state.io_bps_ewma  # noqa: SLF001
        ctl._e2e_bps = state.e2e_bps_ewma  # noqa: SLF001
        ctl._samples = state.io_sample_count  # noqa: SLF001
        ctl._floor_bound = state.adaptive_floor_bps * 8 + 7  # noqa: SLF001 - held so (AR-7)
        ctl._teardown = state.teardown_bypass_scopes  # noqa: SLF001
        ctl._starving = state.arena_starving_scopes  # noqa: SLF001
        ctl._idle_since = state.idle_since  # noqa: SLF001
        ctl._next_flush_at = state.next_flush_at  # noqa: SLF001
        ctl._quiet_debt = quiet_debt  # noqa: SLF001
        ctl._fg_quiet = state.debt_bytes <= quiet_debt  # noqa: SLF001
    return ctl


def _check_in_domain(floor_bps: int, state: ControllerState) -> None:
    """Raise ValueError unless ``state`` is in the model's state domain (spec ST-1, INV-9)."""
    counters = {
        "debt_bytes": state.debt_bytes,
        "io_bps_ewma": state.io_bps_ewma,
        "e2e_bps_ewma": state.e2e_bps_ewma,
        "io_sample_count": state.io_sample_count,
        "adaptive_floor_bps": state.adaptive_floor_bps,
        "teardown_bypass_scopes": state.teardown_bypass_scopes,
        "arena_starving_scopes": state.arena_starving_scopes,
    }
    for name, value in counters.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MAX:
            raise ValueError(f"{name} must be a u64, got {value!r}")
    if state.adaptive_floor_bps < floor_bps:
        raise ValueError(
            f"adaptive_floor_bps must be at least bp_floor_bps ({floor_bps}), "
            f"got {state.adaptive_floor_bps}"
        )
    for name, time in (("idle_since", state.idle_since), ("next_flush_at", state.next_flush_at)):
        if time is not None and (isinstance(time, bool) or not isinstance(time, int) or time < 0):
            raise ValueError(f"{name} must be None or a non-negative int, got {time!r}")
