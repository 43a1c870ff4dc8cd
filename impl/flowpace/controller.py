"""The threaded flow controller: `FlowController` and its `FlowTask`.

**Atomicity (spec DIV-6, ST-1).** Every operation changes the state in one critical
section of the ``state`` lock, so the controller is linearizable against the reference model:
each operation takes effect at one instant inside its call, as the model's step for it would.
A blocking paced flush is two such steps, the model's decision and its commit (spec DIV-6).
A non-blocking flush decides from one critical section and commits in a second one only if
nothing it read has changed in between (else it decides again): its step is the commit.
Nothing relies on the GIL: every read-modify-write and every read of more than one field holds
the lock. The one lock-free read is the foreground fast path's read of ``_fg_quiet``, a single
attribute holding an immutable `bool` (see `FlowController.before_foreground_write`).

**The quiet flag.** After every critical section, ``_fg_quiet`` is ``debt <= _quiet_debt``: true
exactly when a write takes no delay (AR-4). A critical section that changes the debt or the
limit writes the flag at most once, with that final value, so a lock-free read sees the state
after some complete operation. It is written only when its value changes, which the lifecycle
decides from the direction of its change: a charge only raises the debt and a settle only
lowers it, so each compares one way (a store and a comparison whose result is stored cost more
than a comparison that jumps, most of all on a free-threaded build, where nothing specialises).

**Locks and their order** are those of `flowpace._sync`: ``pacing`` before ``state``. Nothing
slow happens under ``state``: the clock is read and arguments are checked before it is taken,
tasks are allocated before it is taken, and observer calls and sleeps happen after it is
released. Every critical section is a ``with`` block, although on CPython 3.11 a ``with`` on a
`threading.Lock` costs about twice an ``acquire()``/``release()`` pair: under the GIL, the
interpreter may hand the GIL to another thread right after a *call* returns, so after
``acquire()`` the lock would often be held by a thread that is not running, and every other
thread would queue behind it (measured: 4 threads at 0.15 of one thread's throughput with
``acquire()``, 0.99 with ``with``, on a bare counter).

**Calls.** CPython 3.11 does not specialise ``self._now()``, a method call on a function held
in an instance attribute (``LOAD_METHOD`` finds no method on the type), while it does specialise
loading the attribute and calling the function it holds: the lifecycle loads it first.

**Time.** The clock is read before the state lock is taken, so two threads may apply their
times out of order. Under the lock each operation uses ``max(its reading, the latest time
applied)``: the times the state and its tasks hold never go backwards, and every operation
sees a time at least every time the state holds, as the model requires of its callers.

**Hardening (spec HARD-1 to HARD-8).** Tasks and controllers refuse to be copied or pickled, and
a task made without its controller is a TypeError; arguments are converted to plain ints once
(`flowpace._rules.exact_int`); collaborators are checked at construction and a non-default
clock's readings on every read (`flowpace.clock.reader_of`); a cancelled async flush gives its
pacing slot back; observer exceptions are isolated (`FlowController._observer_failed`); a
forked child makes every controller's locks anew.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Generator
from dataclasses import replace
from types import TracebackType
from typing import Any, Final, NamedTuple, NoReturn, TypeAlias

from flowpace import _ext_rules, _rules
from flowpace._rules import exact_int, shown
from flowpace._scopes import ScopeContexts
from flowpace._sync import (
    PACING_LOCK,
    STATE_LOCK,
    LockLike,
    current_lock_factory,
)
from flowpace.clock import (
    SYSTEM_CLOCK,
    AsyncSleep,
    Clock,
    Nanoseconds,
    asyncio_sleep_ns,
    checked_async_sleep,
    checked_clock,
    reader_of,
)
from flowpace.observer import NoopObserver, Observer
from flowpace.options import FlowOptions
from flowpace_reference.types import (
    Config,
    ControllerState,
    DebtOverflowError,
    FlushDecision,
    ForegroundAdmit,
    ForegroundBlock,
    ForegroundRegime,
    Metric,
    Outcome,
    TaskState,
    TaskStateError,
)
from flowpace_reference.u64 import U64_MAX

__all__ = ["FlowController", "FlowTask"]

_ELAPSED_LIMIT_NS: Final = 2**64 * 10**9
"""Exclusive upper bound of an I/O duration: anything a Rust ``Duration`` holds (spec ERR-3)."""

_NANOS_PER_MICRO: Final = 1_000

# Compact ints: the hot paths compare with 0x3FFF_FFFF (2**30 - 1, a literal, not a global:
# a global costs a dictionary lookup on a free-threaded build) before any u64 bound. CPython
# 3.11 to 3.13 specialise a comparison of two ints only when both fit in one 30-bit digit; a
# u64 bound has three, so testing it alone always takes the generic path (spec ERR-3, AR-1).

_BYPASS_METRICS: Final = {
    FlushDecision.BYPASS_TEARDOWN: Metric.FLUSH_PACING_BYPASS_TEARDOWN,
    FlushDecision.BYPASS_ARENA_STARVATION: Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION,
    FlushDecision.BYPASS_HIGH_DEBT: Metric.FLUSH_PACING_BYPASS_HIGH_DEBT,
}
"""The counter each bypass of flush pacing increments (spec FC-9)."""

_new_object = object.__new__

# The builtins the hot paths call, bound as module globals: a free-threaded CPython 3.13 does not
# specialise LOAD_GLOBAL, and finds a builtin with two dictionary lookups (the module's, then
# the builtins'), a module global with one (callgrind: 935 against 622 instructions for
# ``type(x) is not int``). With the GIL both are specialised and cost the same.
_type: Final = type
_int: Final = int

_FLUSHED: Final = Outcome.FLUSHED
_UNKNOWN: Final = Outcome.UNKNOWN
_SKIP: Final = Outcome.SKIP

LOGGER: Final = logging.getLogger("flowpace")
"""Where the controller reports what it cannot return: observer failures (spec HARD-5, DIV-8), idle
resets (HARD-7)."""

_IDLE_RESET_LOG_INTERVAL_NS: Final = 60 * 10**9
"""At most one idle-reset line a minute of the controller's time (spec HARD-7)."""

_LIVE: Final[weakref.WeakSet[FlowController]] = weakref.WeakSet()
"""Every controller alive in this process: a forked child makes their locks anew (HARD-6)."""


_ExtWait: TypeAlias = ForegroundAdmit | ForegroundBlock
"""A wait the extended law's loop asks a form to carry out (`FlowController._ext_steps`)."""


def _sent(steps: Generator[_ExtWait, bool | None, None], value: bool | None) -> _ExtWait | None:
    """Return the next wait of ``steps`` after sending it ``value``; None once it is done."""
    try:
        return steps.send(value)
    except StopIteration:
        return None


class _FlushView(NamedTuple):
    """What a decision on a flush reads, from one critical section of the state lock (FC-9)."""

    now: int
    """The time applied: the clock's reading, raised to the latest time applied."""
    deadline: int | None
    debt: int
    samples: int
    io_bps: int
    teardown: int
    starving: int
    force_bypass: bool


class FlowTask:
    """
    One flush, from `FlowController.on_enqueue_est` to `FlowController.on_mark_done` (ST-2).

    Made only by its controller. Its fields are guarded by its controller's state lock; read
    them with `snapshot`. Once done, a task takes no further operation (spec ERR-1).
    """

    __slots__ = (
        "_actual",
        "_done",
        "_enqueue_at",
        "_est",
        "_force_bypass",
        "_io_micros",
        "_outcome",
        "_owner",
    )

    _owner: FlowController
    _enqueue_at: int
    _est: int
    _actual: int | None  # None until on_io_built reports the task (spec DIV-1)
    _io_micros: int  # unset until on_io_built (read only once `_actual` is not None)
    _outcome: Outcome
    _force_bypass: bool
    _done: bool

    def __new__(cls) -> FlowTask:  # noqa: PYI034 - it never returns
        """Refuse: a task is made by `FlowController.on_enqueue_est`, which charges its debt."""
        raise TypeError("a FlowTask is made by FlowController.on_enqueue_est")

    def __init__(self) -> None:
        """Refuse, as `__new__` does (spec ST-2)."""
        raise TypeError("a FlowTask is made by FlowController.on_enqueue_est")

    def __init_subclass__(cls, **kwargs: object) -> NoReturn:
        """Refuse: the controller accepts its own tasks only, so a subclass is no task (HARD-1)."""
        raise TypeError("FlowTask cannot be subclassed: a task is made by on_enqueue_est")

    # spec HARD-1: a task is the one handle on its charge; a copy would settle it twice.
    def __copy__(self) -> NoReturn:
        """Refuse: a second handle on the same charge would settle it twice (spec HARD-1)."""
        _raise_copy("a FlowTask", "its charge to the debt would be settled twice")

    def __deepcopy__(self, memo: object) -> NoReturn:
        """Refuse, as `__copy__` does (spec HARD-1)."""
        _raise_copy("a FlowTask", "its charge to the debt would be settled twice")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refuse pickling (and every copy made through it), as `__copy__` does (HARD-1)."""
        _raise_copy("a FlowTask", "its charge to the debt would be settled twice")

    def __enter__(self) -> FlowTask:  # noqa: PYI034 - FlowTask is final: no subclass exists
        """Return the task; leaving the ``with`` settles it (spec HARD-9)."""
        self._lock()  # a forged task is refused here, not on leaving
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """
        Settle the task unless the body did; if the body raised, as a flush that failed.

        Spec HARD-9. A body that raised (an I/O error, an interrupt) records `FlowOutcome.SKIP`
        first, even over the ``FLUSHED`` of an `on_io_built`: a flush that did not end is not
        an end-to-end sample. The exception propagates.
        """
        with self._lock():
            if self._done:
                return  # the body settled it
            if exc_type is not None:
                self._outcome = _SKIP
        self._owner.on_mark_done(self)

    def __del__(self) -> None:
        """
        Warn, as an unclosed file does, when a charged task is collected unsettled (HARD-10).

        Its charge would stay in the debt for ever; it is queued on its controller for
        `FlowController.write_off_lost_tasks`. No lock is taken here: a finaliser may run on
        any thread, inside a critical section of that thread's own.
        """
        try:
            if self._done:
                return  # settled
        except AttributeError:
            # `_done` is set only once the charge is made (HARD-10): a task whose enqueue was
            # rejected, or a forged one, owes nothing.
            return
        owner = self._owner
        charge = self._actual
        if charge is None:
            charge = self._est
        owner._lost.append(charge)  # noqa: SLF001 - deque.append is atomic: no lock needed
        warnings.warn(
            f"a FlowTask was garbage-collected unsettled (est_bytes={self._est}): its charge of "
            f"{charge} bytes stays in the debt until write_off_lost_tasks(); settle every task "
            f"with on_mark_done, or use it as a context manager ('with task:')",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )

    @property
    def est_bytes(self) -> int:
        """The size estimated at enqueue (never changes)."""
        try:
            return self._est
        except AttributeError:
            _raise_forged(self)

    def mark_outcome(self, outcome: Outcome) -> None:
        """Record how the flush ended (spec FC-3); TaskStateError if the task is done."""
        if type(outcome) is not Outcome:
            raise TypeError(f"outcome must be a FlowOutcome, got {shown(outcome)}")
        with self._lock():
            if self._done:
                _raise_done(self, "mark_outcome")
            self._outcome = outcome

    def mark_force_bypass(self) -> None:
        """Make this task bypass flush pacing (spec FC-4); TaskStateError if it is done."""
        with self._lock():
            if self._done:
                _raise_done(self, "mark_force_bypass")
            self._force_bypass = True

    def _lock(self) -> LockLike:
        """Return the state lock of the task's controller; TypeError for a forged task."""
        try:
            return self._owner._state_lock  # noqa: SLF001 - the task's fields are its controller's
        except AttributeError:
            _raise_forged(self)

    def snapshot(self) -> TaskState:
        """Return the task's fields, read atomically, as the model's `TaskState`."""
        with self._lock():
            actual = self._actual
            # `_io_micros` is unset until `on_io_built` stores it with `_actual`: until then
            # the task's I/O time is 0 (spec ST-2), and the enqueue saves a store.
            io_micros = self._io_micros if actual is not None else 0
            outcome = self._outcome
            force_bypass = self._force_bypass
            done = self._done
        return TaskState(
            enqueue_at=self._enqueue_at,
            est_bytes=self._est,
            actual_bytes=0 if actual is None else actual,
            io_micros=io_micros,
            outcome=outcome,
            force_bypass=force_bypass,
            io_reported=actual is not None,
            done=done,
        )

    def __repr__(self) -> str:
        """Return the task's fields."""
        try:
            self._owner  # noqa: B018 - probes for a task made without its controller
        except AttributeError:
            return "<FlowTask not made by a controller>"
        state = self.snapshot()
        return (
            f"<FlowTask est_bytes={state.est_bytes} actual_bytes={state.actual_bytes} "
            f"outcome={state.outcome.name} done={state.done}>"
        )


class FlowController(ScopeContexts):
    """
    Debt-based foreground backpressure and flush pacing, safe to share between threads.

    ``clock`` defaults to the system monotonic clock, ``observer`` to one that ignores every
    call, ``async_sleep`` (awaited with nanoseconds by the async variants) to `asyncio.sleep`;
    each is checked here (spec HARD-3). Its locks come from the test hook documented in
    `flowpace._sync`. A controller cannot be copied or pickled (spec HARD-1).
    """

    __slots__ = (
        "__weakref__",
        "_async_sleep",
        "_config",
        "_debt",
        "_e2e_bps",
        "_ext",
        "_ext_async_waiters",
        "_ext_below",
        "_ext_blocked",
        "_ext_cond",
        "_ext_known_bps",
        "_ext_next_admit",
        "_fg_quiet",
        "_floor_bound",
        "_idle_reset_logged_at",
        "_idle_reset_ns",
        "_idle_resets_suppressed",
        "_idle_resets_unlogged",
        "_idle_since",
        "_io_bps",
        "_last_ns",
        "_lock_factory",
        "_lost",
        "_next_flush_at",
        "_now",
        "_observer",
        "_observer_failures",
        "_observer_raises",
        "_outstanding",
        "_pacing_lock",
        "_pacing_resets",
        "_quiet_debt",
        "_samples",
        "_sleep",
        "_starving",
        "_state_lock",
        "_stop_logged",
        "_stop_logged_at",
        "_stops_unlogged",
        "_teardown",
        "_tuning",
        "_wait_until",
        "_warm_at",
    )

    def __init__(
        self,
        options: FlowOptions | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        observer: Observer | None = None,
        async_sleep: AsyncSleep = asyncio_sleep_ns,
    ) -> None:
        """Build a controller with ``options`` (default: upstream's); its clock starts idle."""
        if options is None:
            options = FlowOptions()
        elif type(options) is not FlowOptions:  # a subclass could bypass its checks (HARD-2)
            raise TypeError(f"options must be FlowOptions, got {shown(options)}")
        # spec HARD-3: every collaborator is checked here, before anything is built, so that a
        # wrong one fails at construction, not at its first use, after some state changed.
        clock = checked_clock(clock)
        async_sleep = checked_async_sleep(async_sleep)
        observer = _checked_observer(observer)
        self._config = options.normalised()
        self._tuning = _rules.tuning_of(self._config)
        self._ext = _ext_rules.ext_tuning_of(self._config)  # spec EXT-1: None when off
        if self._ext is not None:
            # spec EXT-5: no fast path under the extended law (its rule 3 clears the timeline):
            # the quiet flag is never set, so the seed's fast path costs nothing more.
            self._tuning = replace(self._tuning, cold_quiet_debt=-1, warm_quiet_debt=-1)
        # spec AR-4: the sample count at which the fast path's limit becomes the steady
        # state's (`on_io_built`): the first count reaching the warm-up, counting from 0.
        self._warm_at = max(self._tuning.warmup, 1)
        self._idle_reset_ns = self._tuning.idle_reset_ns
        # The system clock is read without the indirection of a method (it is the hot path);
        # any other clock's readings are checked before they are used (spec HARD-3).
        self._now = reader_of(clock)
        self._sleep = clock.sleep_ns
        self._wait_until = getattr(clock, "wait_until_ns", None)  # spec EXT-7 (optional)
        self._async_sleep = async_sleep
        self._observer: Observer = observer
        # spec HARD-5: observer failures are isolated unless a test double asks otherwise.
        self._observer_raises = getattr(observer, "_flowpace_observer_raises", False) is True
        self._observer_failures = 0
        # Lock order: pacing, then state (flowpace._sync); each made once, by the factory
        # (and again in a forked child, spec HARD-6).
        _lock_factory = current_lock_factory()  # the test hook of flowpace._sync, else Lock
        self._lock_factory = _lock_factory
        self._pacing_lock = _lock_factory(PACING_LOCK)
        self._state_lock = _lock_factory(STATE_LOCK)
        now = self._now()
        self._last_ns = now
        # spec ST-1: the initial state; the controller starts idle (seed: Some(Instant::now())).
        self._debt = 0
        self._io_bps = 0
        self._e2e_bps = 0
        self._samples = 0
        # spec AR-7: the adaptive floor, held as the largest sample that leaves it unchanged,
        # floor * 8 + 7, so that the lifecycle tests a sample with one specialised comparison
        # (`sample > bound` is `sample // 8 > floor`) instead of a shift that is not specialised.
        self._floor_bound = self._config.bp_floor_bps * 8 + 7
        self._teardown = 0
        self._starving = 0
        self._idle_since: int | None = now
        self._next_flush_at: int | None = None
        self._pacing_resets = 0  # idle markings that dropped the deadline (HARD-4)
        self._outstanding = 0  # tasks charged and not yet settled (HARD-11)
        self._stop_logged = False  # the stop regime was logged and not yet left (HARD-12)
        self._stop_logged_at: int | None = None
        self._stops_unlogged = 0
        self._lost: deque[int] = deque()  # charges of tasks collected unsettled (HARD-10)
        self._idle_resets_unlogged = 0  # spec HARD-7: idle resets not yet seen by the log
        self._idle_resets_suppressed = 0
        self._idle_reset_logged_at: int | None = None
        self._quiet_debt = self._tuning.cold_quiet_debt
        self._init_extended()
        _LIVE.add(self)  # spec HARD-6: known to the fork handler

    def _init_extended(self) -> None:
        """Set up the extended law's state (spec EXT-2, EXT-7); the quiet flag with the law on."""
        self._fg_quiet = self._ext is None
        self._ext_next_admit: int | None = None  # spec EXT-2
        self._ext_known_bps = 0
        self._ext_blocked = 0  # writers blocked at stop (EXT-7): the lifecycle's one check
        self._ext_below = 0 if self._ext is None else self._ext.below_bytes
        # A test's lock stands in for a Lock (LockLike): Condition needs only acquire/release.
        lock: Any = self._state_lock
        self._ext_cond = None if self._ext is None else threading.Condition(lock)
        self._ext_async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # spec HARD-1: a copy would share the locks, or hold debt that only the original's tasks
    # can settle; it is refused rather than made independent (see the spec's Hardening).
    def __copy__(self) -> NoReturn:
        """Refuse: a copy would share this controller's locks and its tasks' debt (HARD-1)."""
        _raise_copy("a FlowController", "its debt is owed by tasks only it can settle")

    def __deepcopy__(self, memo: object) -> NoReturn:
        """Refuse, as `__copy__` does (spec HARD-1)."""
        _raise_copy("a FlowController", "its debt is owed by tasks only it can settle")

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refuse pickling (and every copy made through it), as `__copy__` does (HARD-1)."""
        _raise_copy("a FlowController", "its debt is owed by tasks only it can settle")

    @property
    def config(self) -> Config:
        """The normalised configuration this controller runs with (spec CFG-2)."""
        return self._config

    def __repr__(self) -> str:
        """Return the debt, the foreground regime and the options in use (spec HARD-8)."""
        state = self.snapshot()
        config = self._config
        regime = _rules.foreground_regime(self._tuning, state.debt_bytes, state.io_sample_count)
        return (
            f"<FlowController debt_bytes={state.debt_bytes} regime={regime.name} "
            f"samples={state.io_sample_count} io_bps={state.io_bps_ewma} "
            f"backpressure={'on' if config.enable_backpressure else 'off'} "
            f"pacing={'on' if config.enable_flush_pacing else 'off'} "
            f"unit={config.bp_flush_unit_bytes}B soft/hard/stop="
            f"{config.bp_soft_debt_units}/{config.bp_hard_debt_units}/"
            f"{config.bp_stop_debt_units} units>"
        )

    @property
    def outstanding_tasks(self) -> int:
        """How many tasks are charged and not yet settled, lost ones included (spec HARD-11)."""
        with self._state_lock:
            return self._outstanding

    def write_off_lost_tasks(self) -> tuple[int, int]:
        """
        Settle the charges of tasks collected unsettled; return how many, and their bytes.

        Spec HARD-10. Each is settled as `on_mark_done` settles a task whose outcome is not
        ``FLUSHED``: its charge leaves the debt, no sample is taken, and the controller goes
        idle if the debt reaches 0. A task still referenced is never written off: settle it.
        """
        now = self._now()
        with self._state_lock:
            count = charges = 0
            while self._lost:
                charges += self._lost.popleft()
                count += 1
            if count == 0:
                return 0, 0
            if now < self._last_ns:
                now = self._last_ns
            else:
                self._last_ns = now
            debt = self._debt - charges
            if debt <= 0:
                debt = 0  # below 0 is unreachable by INV-1
                if self._idle_since is None:
                    self._idle_since = now  # spec FC-12, as in on_mark_done
                if self._next_flush_at is not None:  # spec HARD-4, as in on_mark_done
                    self._next_flush_at = None
                    self._pacing_resets += 1
            self._debt = debt
            self._outstanding -= count
            self._fg_quiet = debt <= self._quiet_debt
            if self._ext_blocked and debt < self._ext_below:
                self._ext_wake()  # spec EXT-7, as in on_io_built
        return count, charges

    @property
    def observer_failures(self) -> int:
        """How many observer calls raised an `Exception` that was isolated (spec HARD-5)."""
        with self._state_lock:
            return self._observer_failures

    # --- the task lifecycle ------------------------------------------------------------------

    def on_enqueue_est(self, est_bytes: int) -> FlowTask:
        """Charge a new flush task's estimate to the debt and return the task (spec FC-1)."""
        # Compact ints (below 2**30, the common case) pass with comparisons CPython specialises;
        # any other value gets the full check (spec ERR-3, HARD-2), which returns the same int
        # for every valid one.
        if _type(est_bytes) is not _int or est_bytes < 0 or est_bytes > 0x3FFF_FFFF:
            est_bytes = _u64_argument(est_bytes, "est_bytes")
        read_clock = self._now  # a load and a call: see "Calls" in the module docstring
        now = read_clock()
        task = _new_object(FlowTask)
        task._owner = self  # noqa: SLF001 - the controller builds its own tasks
        task._est = est_bytes  # noqa: SLF001
        task._enqueue_at = now  # noqa: SLF001
        task._actual = None  # noqa: SLF001 - `_io_micros` stays unset until on_io_built
        task._outcome = _UNKNOWN  # noqa: SLF001
        task._force_bypass = False  # noqa: SLF001
        with self._state_lock:  # `with`, not acquire(): see the module docstring
            debt = self._debt + est_bytes
            if debt > 0x3FFF_FFFF and debt > U64_MAX:  # compact test first (see "Compact ints")
                _raise_overflow("on_enqueue_est", self._debt, est_bytes)
            if now < self._last_ns:
                # Clamp: another thread applied a later reading first (module docstring).
                now = task._enqueue_at = self._last_ns  # noqa: SLF001
            else:
                self._last_ns = now
            self._debt = debt
            task._done = False  # noqa: SLF001 - charged: it must now be settled
            self._outstanding += 1  # spec HARD-11
            # The quiet flag is rewritten only when it changes ("The quiet flag", above): a
            # charge only raises the debt, so the flag can only fall, unless a reset moves the
            # limit (FC-12), when it is set from scratch.
            idle_since = self._idle_since
            if idle_since is not None and now - idle_since >= self._idle_reset_ns:
                reset = True
                self._forget_history()  # spec FC-12: a long idle spell forgets samples
                self._idle_since = None
                self._fg_quiet = debt <= self._quiet_debt
            else:
                reset = False
                if idle_since is not None:
                    self._idle_since = None
                if debt > self._quiet_debt and self._fg_quiet:
                    self._fg_quiet = False
        if reset:  # spec HARD-7: logged by the enqueue that reset, after the lock
            self._log_idle_reset(now)
        return task

    def on_io_built(  # noqa: C901, PLR0912 - the hot path's arithmetic is inlined on purpose
        self, task: FlowTask, nbytes: int, elapsed_ns: int
    ) -> None:
        """Reconcile the debt with the bytes a task's I/O wrote; sample the disk (spec FC-2)."""
        if _type(task) is not FlowTask:
            _raise_not_task(task)
        try:
            owner = task._owner  # noqa: SLF001 - fixed at enqueue: read before the lock
        except AttributeError:
            _raise_forged(task)  # spec HARD-1: made without its controller
        # Compact fast checks, full checks otherwise, as in on_enqueue_est (spec ERR-3, HARD-2).
        if _type(nbytes) is not _int or nbytes < 0 or nbytes > 0x3FFF_FFFF:
            nbytes = _u64_argument(nbytes, "nbytes")
        # The sample depends on the arguments only: computed before the lock (spec AR-1, AR-4).
        if _type(elapsed_ns) is not _int or elapsed_ns < 0 or elapsed_ns > 0x3FFF_FFFF:
            io_micros = _io_micros_argument(elapsed_ns)  # checked, clamped to u64 (AR-1)
        else:
            io_micros = elapsed_ns // 1_000  # below 2**30 ns: no clamp can apply
        # Every clamp and overflow test tries the compact bound first: a specialised
        # comparison that settles the common case; the u64 bound's is generic (3 digits).
        if nbytes != 0 and io_micros != 0:
            # spec FC-2: a report with bytes and time is a sample, counted even when its rate
            # truncates to 0 (the average then ignores it, AR-6).
            sample = nbytes * 1_000_000 // io_micros
            if sample > 0x3FFF_FFFF and sample > U64_MAX:
                sample = U64_MAX
        else:
            sample = -1  # no sample at all
        with self._state_lock:  # `with`, not acquire(): see the module docstring
            if owner is not self or task._done or task._actual is not None:  # noqa: SLF001
                _raise_misuse(self, task, "on_io_built")
            debt = self._debt + nbytes - task._est  # noqa: SLF001
            if debt > 0x3FFF_FFFF and debt > U64_MAX:
                _raise_overflow("on_io_built", self._debt, nbytes - task._est)  # noqa: SLF001
            if debt < 0:
                debt = 0  # the seed's saturating settle; unreachable by INV-1
            self._debt = debt
            if sample >= 0:
                if sample != 0:
                    old = self._io_bps
                    # spec AR-6: the first sample is taken as is, later ones weigh 20 %:
                    # (old * 80 + sample * 20) // 100, computed as (old * 4 + sample) // 5,
                    # equal for all ints (floor(20a / 100) = floor(a / 5)) and cheaper.
                    self._io_bps = sample if old == 0 else (old * 4 + sample) // 5
                    if sample > self._floor_bound:
                        # spec AR-7: max(floor, sample // 8), held as its bound (`__init__`),
                        # which for the new floor is the sample with its low three bits set.
                        self._floor_bound = sample | 7
                samples = self._samples
                if samples < 0x3FFF_FFFF or samples < U64_MAX:
                    self._samples = samples = samples + 1  # spec DIV-4: saturates
                # spec AR-4: the fast path's limit is the steady state's from the first count
                # >= the warm-up on. The count rises by 1 from 0 (a new controller, an idle
                # reset, FC-12) and the limit is cold only below that count, so the limit is
                # set when the count *reaches* it (`_warm_at`), and not rewritten on every sample.
                if samples == self._warm_at:
                    self._quiet_debt = self._tuning.warm_quiet_debt
            task._actual = nbytes  # noqa: SLF001
            task._io_micros = io_micros  # noqa: SLF001
            task._outcome = _FLUSHED  # noqa: SLF001
            # The quiet flag, rewritten only when it changes ("The quiet flag", above); off
            # the quiet regime, the extended law's wake-up (spec EXT-7), which that regime
            # never needs: the law keeps the limit below every debt.
            if debt <= self._quiet_debt:
                if not self._fg_quiet:
                    self._fg_quiet = True
            elif self._fg_quiet:
                self._fg_quiet = False
            elif self._ext_blocked and debt < self._ext_below:
                self._ext_wake()  # only while writers are blocked at stop

    def on_mark_done(self, task: FlowTask) -> None:  # noqa: C901, PLR0912 - inlined, as above
        """Settle a finished task's charge; go idle at zero debt; sample end to end (FC-5)."""
        if _type(task) is not FlowTask:
            _raise_not_task(task)
        try:
            owner = task._owner  # noqa: SLF001 - fixed at enqueue: read before the lock
        except AttributeError:
            _raise_forged(task)  # spec HARD-1: made without its controller
        read_clock = self._now  # a load and a call: see "Calls" in the module docstring
        now = read_clock()
        with self._state_lock:  # `with`, not acquire(): see the module docstring
            if owner is not self or task._done:  # noqa: SLF001
                _raise_misuse(self, task, "on_mark_done")
            if now < self._last_ns:
                now = self._last_ns
            else:
                self._last_ns = now
            charge = task._actual  # noqa: SLF001
            if charge is None:
                charge = task._est  # noqa: SLF001 - spec AR-8, DIV-1: no I/O reported yet
            debt = self._debt - charge
            if debt <= 0:
                debt = 0  # below 0 is unreachable by INV-1
                # spec FC-12: the controller goes idle; the pacing deadline is dropped.
                if self._idle_since is None:
                    self._idle_since = now
                if self._next_flush_at is not None:
                    # spec HARD-4: no reservation made before survives. Counted only when a
                    # deadline is dropped: a reservation leaves one until an idle marking drops
                    # it, so `_give_back_slot`'s comparison decides as if every marking counted.
                    self._next_flush_at = None
                    self._pacing_resets += 1
            self._debt = debt
            task._done = True  # noqa: SLF001
            self._outstanding -= 1  # spec HARD-11
            if charge != 0 and task._outcome is _FLUSHED:  # noqa: SLF001
                e2e_micros = (now - task._enqueue_at) // 1_000  # noqa: SLF001
                if e2e_micros != 0:
                    if e2e_micros > 0x3FFF_FFFF and e2e_micros > U64_MAX:
                        e2e_micros = U64_MAX  # spec AR-1: micros() clamps
                    sample = charge * 1_000_000 // e2e_micros
                    if sample != 0:  # spec AR-6: a sample of 0 is ignored
                        if sample > 0x3FFF_FFFF and sample > U64_MAX:
                            sample = U64_MAX
                        old = self._e2e_bps
                        # spec AR-6: the 80/20 average, as in on_io_built
                        self._e2e_bps = sample if old == 0 else (old * 4 + sample) // 5
                        if sample > self._floor_bound:
                            self._floor_bound = sample | 7  # spec AR-7, as in on_io_built
            # The quiet flag, as in on_io_built: a settle only lowers the debt, so the flag can
            # only rise, and a debt above the limit was above it before (the flag is False).
            if debt <= self._quiet_debt:
                if not self._fg_quiet:
                    self._fg_quiet = True
            elif self._ext_blocked and debt < self._ext_below:
                self._ext_wake()  # spec EXT-7, as in on_io_built

    # --- foreground backpressure --------------------------------------------------------------

    def before_foreground_write(self, nbytes: int) -> Nanoseconds:
        """
        Sleep as backpressure requires before writing ``nbytes``; return nanoseconds slept.

        Under the extended law (``ext_admission_timeline``), wait as it decides, blocking at
        stop, and return the nanoseconds waited (spec EXT-5 to EXT-7).

        Spec FC-6 to FC-8. The fast path, taken whenever the debt is in a zero-delay regime,
        checks the argument and reads one attribute: ``_fg_quiet``, an immutable `bool` that
        every critical section changing the debt or the sample count leaves holding its final
        value, written at most once, so the read sees the state after some complete operation
        (linearizable; see "The quiet flag" in the module docstring).
        """
        # The range test is the compact one (below 2**30): CPython specialises an int
        # comparison only when both ints fit in one digit, and `nbytes <= U64_MAX` takes the
        # generic path. A larger write takes the slow path, which returns 0 as well when
        # `_fg_quiet` holds: the delay depends on the write's size only through whether it is
        # 0 (spec FC-6, `_rules.foreground_delay_us`).
        if _type(nbytes) is _int and nbytes >= 0 and nbytes <= 0x3FFF_FFFF and self._fg_quiet:
            return 0
        if self._ext is not None:
            return self._ext_write(nbytes)  # spec EXT-5 to EXT-7: ns waited
        delay_us = self._foreground_delay_us(nbytes)
        if delay_us != 0:
            self._sleep(delay_us * _NANOS_PER_MICRO)
            self._emit_foreground_delay(delay_us)
        return delay_us * _NANOS_PER_MICRO  # spec HARD-13: nanoseconds in every form

    def before_foreground_write_nowait(self, nbytes: int) -> Nanoseconds:
        """
        Return, in nanoseconds, how long a write of ``nbytes`` must wait; never sleep.

        For callers that must not block: the decision and its metrics are those of
        `before_foreground_write`, reported at decision time; the caller does the waiting.
        Under the extended law, an admit's wait, or a block's time to its deadline (EXT-7).
        """
        if self._ext is not None:
            return self._ext_nowait_ns(nbytes)
        delay_us = self._foreground_delay_us(nbytes)
        if delay_us != 0:
            self._emit_foreground_delay(delay_us)
        return delay_us * _NANOS_PER_MICRO

    async def before_foreground_write_async(self, nbytes: int) -> Nanoseconds:
        """
        Await the backpressure delay before writing ``nbytes``; return nanoseconds waited.

        Under the extended law, await as it decides, blocking at stop (EXT-7).
        """
        if self._ext is not None:
            return await self._ext_write_async(nbytes)  # spec EXT-7: ns waited
        delay_us = self._foreground_delay_us(nbytes)
        if delay_us != 0:
            await self._async_sleep(delay_us * _NANOS_PER_MICRO)
            self._emit_foreground_delay(delay_us)
        return delay_us * _NANOS_PER_MICRO  # spec HARD-13

    def _foreground_delay_us(self, nbytes: object) -> int:
        """Return the delay a write of ``nbytes`` takes now, microseconds (spec FC-6..8)."""
        write_bytes = _u64_argument(nbytes, "nbytes")
        if write_bytes == 0 or not self._tuning.backpressure:
            return 0
        with self._state_lock:
            debt, samples = self._debt, self._samples
            io_bps, e2e_bps, adaptive_floor = self._io_bps, self._e2e_bps, self._floor_bound >> 3
        delay_us = _rules.foreground_delay_us(
            self._tuning,
            write_bytes,
            debt=debt,
            samples=samples,
            io_bps=io_bps,
            e2e_bps=e2e_bps,
            adaptive_floor=adaptive_floor,
        )
        # spec HARD-12: only a delay at the maximum can be the stop regime (INV-4), so a write
        # below it pays one comparison for the log, and only on this slow path.
        if delay_us == self._tuning.max_delay_us or self._stop_logged:
            self._log_stop_regime(debt, samples)
        return delay_us

    def _log_stop_regime(self, debt: int, samples: int) -> None:
        """
        Log the debt reaching stop (WARNING) and falling below it (INFO), as writes see it.

        Spec HARD-12. Decided from the state a foreground write read, outside every lock; the
        flag is the log's own, so two writers racing may log a change twice, never corrupt a
        state. Entries into stop within a minute of the controller's time after the last one
        logged are counted and reported with the next.
        """
        in_stop = _rules.foreground_regime(self._tuning, debt, samples) is ForegroundRegime.STOP
        if in_stop == self._stop_logged:
            return
        now = self._last_ns
        if not in_stop:
            self._stop_logged = False
            if LOGGER.isEnabledFor(logging.INFO):
                LOGGER.info("flowpace: debt of %d bytes is below stop again at %d ns", debt, now)
            return
        last = self._stop_logged_at
        if last is not None and now - last < _IDLE_RESET_LOG_INTERVAL_NS:
            self._stops_unlogged += 1
            return
        self._stop_logged, self._stop_logged_at = True, now
        entries, self._stops_unlogged = self._stops_unlogged + 1, 0
        LOGGER.warning(
            "flowpace: debt of %d bytes reached stop (%d units of %d bytes) at %d ns: writes "
            "are delayed the maximum, %d us each (%d time(s) since the last report)",
            debt,
            self._config.bp_stop_debt_units,
            self._config.bp_flush_unit_bytes,
            now,
            self._config.bp_max_delay_us,
            entries,
        )

    def _emit_foreground_delay(self, delay_us: int) -> None:
        """Report a foreground delay to the observer (spec FC-8)."""
        observer = self._observer
        try:  # spec HARD-5: a failing observer never fails the write (a try costs nothing)
            observer.counter(Metric.FG_DELAY, 1)
        except Exception as error:  # noqa: BLE001 - isolated, logged and counted
            self._observer_failed(error, Metric.FG_DELAY)
        try:
            observer.histogram(Metric.FG_DELAY_MICROS, delay_us)
        except Exception as error:  # noqa: BLE001 - as above
            self._observer_failed(error, Metric.FG_DELAY_MICROS)

    # --- the extended law (spec/extension.md, EXT-1 to EXT-9) ------------------------------

    def decide_foreground_write(self, nbytes: int) -> ForegroundAdmit | ForegroundBlock:
        """
        Return the decision on a write of ``nbytes``; never wait (the nowait form, EXT-7).

        Under the extended law (``ext_admission_timeline``), EXT-5's decision: the write takes
        its slot on the shared timeline now. The caller waits ``wait_ns`` of an admit and calls
        `recheck_foreground_write`; at a block it waits until the debt is below
        ``below_bytes`` (then decides again) or until ``deadline_ns`` (then writes). With the
        law off, the seed's delay as an admit (FC-6 to FC-8). Metrics at decision time (EXT-9).
        """
        if self._ext is None:
            return ForegroundAdmit(self.before_foreground_write_nowait(nbytes))
        decision = self._ext_decide(_u64_argument(nbytes, "nbytes"))
        if type(decision) is ForegroundAdmit and decision.wait_ns != 0:
            self._emit_foreground_delay(decision.wait_ns // _NANOS_PER_MICRO)
        return decision

    def recheck_foreground_write(self) -> ForegroundAdmit | ForegroundBlock:
        """
        Return, for a write whose wait ended, admit now or block at stop (spec EXT-6).

        Changes nothing. With the extended law off, always admit: the seed never re-checks.
        """
        ext = self._ext
        if ext is None:
            return _ext_rules.ADMIT_NOW
        now = self._now()
        with self._state_lock:
            if now > self._last_ns:
                self._last_ns = now
            else:
                now = self._last_ns
            debt = self._debt
        return _ext_rules.recheck(ext, debt, now)

    def _ext_decide(self, write_bytes: int) -> ForegroundAdmit | ForegroundBlock:
        """Decide a write and move the timeline, in one critical section (spec EXT-5)."""
        ext = self._ext
        assert ext is not None  # noqa: S101 - called only with the law on
        now = self._now()
        # The decision reads and moves the shared timeline: a read-modify-write, so it is
        # made under the lock (one call, on the extended law's path only).
        with self._state_lock:
            if now > self._last_ns:
                self._last_ns = now
            else:
                now = self._last_ns
            step = _ext_rules.decide(
                ext,
                write_bytes,
                now,
                debt=self._debt,
                samples=self._samples,
                io_bps=self._io_bps,
                adaptive_floor=self._floor_bound >> 3,
                next_admit_ns=self._ext_next_admit,
                known_bps=self._ext_known_bps,
            )
            self._ext_next_admit = step.next_admit_ns
            self._ext_known_bps = step.known_bps
        return step.decision

    def _ext_nowait_ns(self, nbytes: int) -> int:
        """Return an admit's wait, or a block's time to its deadline, ns (spec EXT-7)."""
        decision = self.decide_foreground_write(nbytes)
        if type(decision) is ForegroundAdmit:
            return decision.wait_ns
        assert type(decision) is ForegroundBlock  # noqa: S101 - the only other decision
        return max(decision.deadline_ns - self._last_ns, 0)

    def _ext_steps(self, write_bytes: int) -> Generator[_ExtWait, bool | None, None]:
        """
        Decide a write under the extended law, yielding each wait for a form to carry out.

        Spec EXT-5 to EXT-7, EXT-9: one definition of the law's loop for the blocking and the
        async forms, which differ only in how they wait. An admit with a wait is yielded for the
        form to sleep it (sent back: None); a block, for the form to wait on (sent back:
        whether the debt fell below its threshold before its deadline). A form cancelled in
        its wait leaves the generator there: what the wait had taken stays taken (EXT-7).
        """
        decision = self._ext_decide(write_bytes)
        while True:
            if type(decision) is ForegroundAdmit:
                if decision.wait_ns == 0:
                    return
                yield decision
                self._emit_foreground_delay(decision.wait_ns // _NANOS_PER_MICRO)  # EXT-9
                decision = self.recheck_foreground_write()  # EXT-6
                if type(decision) is ForegroundAdmit:
                    return
            assert type(decision) is ForegroundBlock  # noqa: S101 - the only other decision
            blocked_at = self._last_ns
            woken = yield decision
            self._emit_block(blocked_at)
            if not woken:
                return  # EXT-7: timed out, the write proceeds
            decision = self._ext_decide(write_bytes)  # EXT-7: ask again, take a slot

    def _ext_write(self, nbytes: int) -> int:
        """Wait as the extended law decides, blocking at stop; return ns waited (EXT-5..7)."""
        write_bytes = _u64_argument(nbytes, "nbytes")
        started = self._now()
        steps = self._ext_steps(write_bytes)
        wait = next(steps, None)
        while wait is not None:
            if type(wait) is ForegroundAdmit:
                self._sleep(wait.wait_ns)
                wait = _sent(steps, None)
            else:
                assert type(wait) is ForegroundBlock  # noqa: S101 - the only other wait
                wait = _sent(steps, self._ext_block(wait))
        return max(self._now() - started, 0)

    def _ext_block(self, block: ForegroundBlock) -> bool:
        """
        Wait until the debt is below the block's threshold (True) or its deadline (False).

        Spec EXT-7. On the condition tied to the state lock, notified by the operations that
        lower the debt below it (`_ext_wake`); the clock's ``wait_until_ns`` if it has one (a
        `flowpace.testing.ManualClock` drives the wait deterministically), else a timed
        `threading.Condition.wait`. The clock is read with the lock held, here only: the
        deadline is checked after every wake-up.
        """
        cond = self._ext_cond
        assert cond is not None  # noqa: S101 - made with the law on
        wait_until = self._wait_until
        with cond:
            self._ext_blocked += 1
            try:
                while self._debt >= block.below_bytes:
                    now = self._now()
                    if now >= block.deadline_ns:
                        return False
                    if wait_until is not None:
                        wait_until(cond, block.deadline_ns)
                    else:
                        cond.wait((block.deadline_ns - now) / 1_000_000_000)
                return True
            finally:
                self._ext_blocked -= 1

    def _emit_block(self, blocked_at: int) -> None:
        """Report the time a write was blocked at stop, if any (spec EXT-9)."""
        blocked = self._now() - blocked_at
        if blocked > 0:
            self._emit_foreground_delay(blocked // _NANOS_PER_MICRO)

    def _ext_wake(self) -> None:
        """Wake every writer blocked at stop; state lock held (spec EXT-7)."""
        cond = self._ext_cond
        assert cond is not None  # noqa: S101 - writers block only with the law on
        cond.notify_all()
        for loop, event in self._ext_async_waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # a closed loop: its waiter is gone with it
                continue

    async def _ext_write_async(self, nbytes: int) -> int:
        """Await as the extended law decides, blocking at stop; return ns waited (EXT-7)."""
        write_bytes = _u64_argument(nbytes, "nbytes")
        started = self._now()
        steps = self._ext_steps(write_bytes)
        wait = next(steps, None)
        while wait is not None:
            if type(wait) is ForegroundAdmit:
                # Cancelled here, the slot stays taken (spec EXT-7): writers behind it queued.
                await self._async_sleep(wait.wait_ns)
                wait = _sent(steps, None)
            else:
                assert type(wait) is ForegroundBlock  # noqa: S101 - the only other wait
                wait = _sent(steps, await self._ext_block_async(wait))
        return max(self._now() - started, 0)

    async def _ext_block_async(self, block: ForegroundBlock) -> bool:
        """
        Await the debt below the block's threshold (True) or its deadline (False) (EXT-7).

        An event the lowering operation sets through the loop, raced against the controller's
        async sleep to the deadline. Cancelled, it unregisters its event before propagating.
        """
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        with self._state_lock:
            if self._debt < block.below_bytes:
                return True
            self._ext_blocked += 1
            self._ext_async_waiters.append(waiter)
        try:
            while True:
                now = self._now()
                if now >= block.deadline_ns:
                    return False
                woken = asyncio.ensure_future(event.wait())
                timer = asyncio.ensure_future(self._async_sleep(block.deadline_ns - now))
                try:
                    await asyncio.wait({woken, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                    timer.cancel()
                if event.is_set():
                    return True
        finally:
            with self._state_lock:
                self._ext_blocked -= 1
                self._ext_async_waiters.remove(waiter)

    # --- flush pacing -----------------------------------------------------------------------

    def before_flush(self, task: FlowTask) -> Nanoseconds:
        """
        Wait for the flush's pacing slot, unless it bypasses pacing; return nanoseconds slept.

        Spec FC-9, FC-10, DIV-6. A flush that bypasses pacing never waits for the pacing lock.
        A paced flush takes the pacing lock, then decides again and, behind a deadline in the
        future, sleeps holding the pacing lock (never the state lock) and commits the next
        deadline when it wakes, as the seed does.
        """
        self._check_task_type(task)
        decision, _ = self._decide_flush(task, self._read_flush_view(task, "before_flush"))
        if decision is not FlushDecision.PACED:
            self._emit_bypass(decision)
            return 0
        sleep_ns = 0
        with self._pacing_lock:
            # spec DIV-6: the two steps of a paced flush, the decision and then the commit,
            # each a critical section of its own that reads or writes fields and calls nothing.
            seen = self._read_flush_view(task, "before_flush")
            decision, interval_us = self._decide_flush(task, seen)
            if decision is FlushDecision.PACED:
                now = seen.now
                sleep_ns = _rules.pacing_sleep_ns(seen.deadline, now, self._tuning.max_sleep_ns)
                if sleep_ns != 0:
                    self._sleep(sleep_ns)
                    now = self._now()
                interval_ns = interval_us * _NANOS_PER_MICRO
                with self._state_lock:
                    if now > self._last_ns:
                        self._last_ns = now
                    else:
                        now = self._last_ns
                    # spec FC-10, DIV-6: one interval past the later of now and the deadline
                    # as it is at commit time (`_rules.next_deadline`, inlined: no call here).
                    deadline = self._next_flush_at
                    if deadline is None or deadline < now:
                        deadline = now
                    self._next_flush_at = deadline + interval_ns
        if decision is not FlushDecision.PACED:
            self._emit_bypass(decision)
            return 0
        if sleep_ns != 0:
            self._emit_pacing_sleep(sleep_ns)
        return sleep_ns  # spec HARD-13: the sleep as planned, not rounded to microseconds

    def before_flush_nowait(self, task: FlowTask) -> Nanoseconds:
        """
        Reserve the flush's pacing slot and return, in nanoseconds, how long to wait; never sleep.

        For callers that must not block. The decision is `before_flush`'s; the next deadline is
        committed at once, as if the sleep ended exactly on time (the model's commit at
        decision time + sleep), so later flushers pace behind this one. Never takes the pacing
        lock: such a flusher does not wait behind a blocking flusher's sleep. Metrics are
        reported at decision time.
        """
        sleep_ns, decision, _, _ = self._reserve_flush(task, "before_flush_nowait")
        self._emit_bypass(decision)
        if sleep_ns != 0:
            self._emit_pacing_sleep(sleep_ns)
        return sleep_ns

    async def before_flush_async(self, task: FlowTask) -> Nanoseconds:
        """
        Reserve the flush's slot as `before_flush_nowait`, await it; return nanoseconds waited.

        Cancelled (or failing) while it waits, it gives its slot back before the exception
        propagates: the deadline moves back by its interval (spec HARD-4, DIV-7).
        """
        sleep_ns, decision, resets, interval_ns = self._reserve_flush(task, "before_flush_async")
        self._emit_bypass(decision)
        if sleep_ns != 0:
            try:
                await self._async_sleep(sleep_ns)
            except BaseException:  # CancelledError, a timeout, a failing sleep: no flush
                self._give_back_slot(resets, interval_ns)
                raise
            self._emit_pacing_sleep(sleep_ns)
        return sleep_ns  # spec HARD-13

    def _give_back_slot(self, resets: int, interval_ns: int) -> None:
        """
        Undo an async flush's reservation it will not use (spec HARD-4, DIV-7).

        The reservation pushed the deadline ``interval_ns`` further; unless an idle marking
        dropped the deadline since (``resets`` is the count of those the reservation saw), the
        deadline moves back by as much, and the slots later flushers stacked behind this one
        with it. A deadline dropped since is left as it is: the reservation is already gone.
        """
        with self._state_lock:
            deadline = self._next_flush_at
            if deadline is not None and self._pacing_resets == resets:
                self._next_flush_at = deadline - interval_ns

    def _reserve_flush(self, task: FlowTask, operation: str) -> tuple[int, FlushDecision, int, int]:
        """
        Decide a flush and commit its deadline at decision time + sleep.

        Return the sleep, the decision, the count of deadline resets at the reservation and
        the interval it added to the deadline, in ns (0 and 0 for a decision that reserves
        nothing).
        """
        self._check_task_type(task)
        while True:
            seen = self._read_flush_view(task, operation)
            decision, interval_us = self._decide_flush(task, seen)
            if decision is not FlushDecision.PACED:
                return 0, decision, 0, 0  # a decision that commits nothing took effect at the read
            sleep_ns = _rules.pacing_sleep_ns(seen.deadline, seen.now, self._tuning.max_sleep_ns)
            reserved = _rules.next_deadline(seen.deadline, seen.now + sleep_ns, interval_us)
            with self._state_lock:
                # Decided outside the lock, the reservation stands only if nothing the decision
                # read has changed since; then it takes effect here, as one step (spec DIV-6).
                # Otherwise some other operation took effect in between: decide again.
                if (
                    self._next_flush_at == seen.deadline
                    and self._last_ns == seen.now
                    and self._debt == seen.debt
                    and self._samples == seen.samples
                    and self._io_bps == seen.io_bps
                    and self._teardown == seen.teardown
                    and self._starving == seen.starving
                    and task._force_bypass == seen.force_bypass  # noqa: SLF001
                    and not task._done  # noqa: SLF001
                ):
                    # Not a time applied: the state's clamp stays at `now`, the decision time.
                    self._next_flush_at = reserved
                    return sleep_ns, decision, self._pacing_resets, interval_us * _NANOS_PER_MICRO

    def _read_flush_view(self, task: FlowTask, operation: str) -> _FlushView:
        """Apply the time now and return what a decision on flushing ``task`` reads (FC-9)."""
        now = self._now() if self._tuning.pacing else -1
        # Plain reads into locals, and no call, under the lock: under the GIL a call can hand
        # the interpreter to another thread while the lock is held (module docstring).
        with self._state_lock:
            if now > self._last_ns:
                self._last_ns = now
            else:
                now = self._last_ns
            live = task._owner is self and not task._done  # noqa: SLF001 - spec ERR-1
            force_bypass = task._force_bypass  # noqa: SLF001
            teardown = self._teardown
            starving = self._starving
            debt = self._debt
            samples = self._samples
            io_bps = self._io_bps
            deadline = self._next_flush_at
        if not live:
            _raise_misuse(self, task, operation)
        return _FlushView(now, deadline, debt, samples, io_bps, teardown, starving, force_bypass)

    def _decide_flush(self, task: FlowTask, seen: _FlushView) -> tuple[FlushDecision, int]:
        """Return the decision on flushing ``task`` from ``seen``, and its pacing interval."""
        return _rules.flush_decision(
            self._tuning,
            task._est,  # noqa: SLF001 - fixed when the task was made
            force_bypass=seen.force_bypass,
            teardown_scopes=seen.teardown,
            starving_scopes=seen.starving,
            debt=seen.debt,
            samples=seen.samples,
            io_bps=seen.io_bps,
        )

    def _emit_bypass(self, decision: FlushDecision) -> None:
        """Report a bypass of flush pacing, if ``decision`` is one (spec FC-9)."""
        metric = _BYPASS_METRICS.get(decision)
        if metric is not None:
            try:  # spec HARD-5, as in _emit_foreground_delay
                self._observer.counter(metric, 1)
            except Exception as error:  # noqa: BLE001 - isolated, logged and counted
                self._observer_failed(error, metric)

    def _emit_pacing_sleep(self, sleep_ns: int) -> None:
        """Report a pacing sleep (spec FC-10)."""
        observer = self._observer
        try:  # spec HARD-5, as in _emit_foreground_delay
            observer.counter(Metric.FLUSH_PACING_SLEEP, 1)
        except Exception as error:  # noqa: BLE001 - isolated, logged and counted
            self._observer_failed(error, Metric.FLUSH_PACING_SLEEP)
        try:
            observer.histogram(Metric.FLUSH_PACING_SLEEP_MICROS, sleep_ns // _NANOS_PER_MICRO)
        except Exception as error:  # noqa: BLE001 - as above
            self._observer_failed(error, Metric.FLUSH_PACING_SLEEP_MICROS)

    def _observer_failed(self, error: Exception, metric: Metric) -> None:
        """
        Count an observer's failure and log it, sparsely; re-raise for a strict test double.

        Spec HARD-5. Called after the operation's change of state and outside every lock. The
        1st, 2nd, 4th, 8th, ... failure is logged (a warning with the traceback): an outage
        of the metrics backend logs some 40 lines in 2**40 calls, never one per call, and
        the count needs no clock.
        """
        if self._observer_raises:
            raise error
        with self._state_lock:
            self._observer_failures = failures = self._observer_failures + 1
        if failures & (failures - 1) == 0:
            LOGGER.warning(
                "flowpace: observer %s failed reporting %s (%d failure(s) so far; "
                "the operation completed, the report is lost)",
                shown(self._observer),
                metric.value,
                failures,
                exc_info=error,
            )

    # --- scopes -------------------------------------------------------------------------------

    def enter_teardown_bypass(self) -> None:
        """Open a teardown scope: every flush bypasses pacing until it closes (spec FC-11)."""
        with self._state_lock:
            if self._teardown == U64_MAX:
                _raise_overflow("enter_teardown_bypass", self._teardown, 1)
            self._teardown += 1

    def leave_teardown_bypass(self) -> None:
        """Close a teardown scope; closing when none is open does nothing (spec FC-11)."""
        with self._state_lock:
            if self._teardown != 0:
                self._teardown -= 1

    def enter_arena_starving(self) -> None:
        """Open an arena-starvation scope: flushes bypass pacing until it closes (FC-11)."""
        with self._state_lock:
            if self._starving == U64_MAX:
                _raise_overflow("enter_arena_starving", self._starving, 1)
            self._starving += 1

    def leave_arena_starving(self) -> None:
        """Close an arena-starvation scope; closing when none is open does nothing (FC-11)."""
        with self._state_lock:
            if self._starving != 0:
                self._starving -= 1

    # --- reading the state --------------------------------------------------------------------

    def snapshot(self) -> ControllerState:
        """Return the controller's state, read atomically (spec ST-1)."""
        with self._state_lock:  # plain reads into locals: nothing is allocated under the lock
            debt = self._debt
            io_bps = self._io_bps
            e2e_bps = self._e2e_bps
            samples = self._samples
            adaptive_floor = self._floor_bound >> 3
            teardown = self._teardown
            starving = self._starving
            idle_since = self._idle_since
            next_flush_at = self._next_flush_at
        return ControllerState(
            debt_bytes=debt,
            io_bps_ewma=io_bps,
            e2e_bps_ewma=e2e_bps,
            io_sample_count=samples,
            adaptive_floor_bps=adaptive_floor,
            teardown_bypass_scopes=teardown,
            arena_starving_scopes=starving,
            idle_since=idle_since,
            next_flush_at=next_flush_at,
        )

    # --- helpers; the state lock is held where they say so ------------------------------------

    def _log_idle_reset(self, now: int) -> None:
        """
        Log the idle resets since the last call, at most once a minute of the controller's time.

        Spec HARD-7. At INFO, through the `flowpace` logger. Resets within a minute of the
        last one logged are counted and reported with the next line; none is logged when the
        logger does not log INFO. Only the time applied is read: no clock, no wall time.
        """
        with self._state_lock:
            resets, self._idle_resets_unlogged = self._idle_resets_unlogged, 0
            last = self._idle_reset_logged_at
            due = last is None or now - last >= _IDLE_RESET_LOG_INTERVAL_NS
            if due:
                self._idle_reset_logged_at = now
                resets += self._idle_resets_suppressed
                self._idle_resets_suppressed = 0
            else:
                self._idle_resets_suppressed += resets
        if due and LOGGER.isEnabledFor(logging.INFO):
            LOGGER.info(
                "flowpace: idle reset at %d ns: throughput history forgotten after %d ms of "
                "zero debt (%d reset(s) since the last report)",
                now,
                self._config.bp_idle_reset_ms,
                resets,
            )

    def _forget_history(self) -> None:
        """Reset the throughput history after a long idle spell (spec FC-12); lock held."""
        self._idle_resets_unlogged += 1  # logged after the lock (spec HARD-7)
        self._io_bps = 0
        self._e2e_bps = 0
        self._samples = 0
        self._floor_bound = self._tuning.floor_bps * 8 + 7  # spec AR-7, held as in __init__
        self._quiet_debt = self._tuning.cold_quiet_debt

    def _check_task_type(self, task: object) -> None:
        """Raise TypeError unless ``task`` is a `FlowTask` made by a controller (HARD-1)."""
        if type(task) is not FlowTask:
            _raise_not_task(task)
        try:
            task._owner  # noqa: B018, SLF001 - probes for a task made without its controller
        except AttributeError:
            _raise_forged(task)


# --- argument checks and errors (spec ERR-1 to ERR-3) ----------------------------------------


def _u64_argument(value: object, name: str) -> int:
    """Return ``value`` as a plain int if it is one in the u64 range; else raise, naming it."""
    # spec ERR-3, HARD-2: converted once; the range is checked on, and the caller uses, that int.
    number = exact_int(value, name)
    if not 0 <= number <= U64_MAX:
        raise ValueError(f"{name} must be in [0, {U64_MAX}] (u64), got {shown(number)}")
    return number


def _io_micros_argument(value: object) -> int:
    """
    Return the whole microseconds of ``elapsed_ns``, clamped to u64 (spec AR-1); else raise.

    The argument must be a plain int that a Rust ``Duration`` holds, in nanoseconds.
    """
    number = exact_int(value, "elapsed_ns")  # spec ERR-3, HARD-2, as _u64_argument
    if not 0 <= number < _ELAPSED_LIMIT_NS:
        raise ValueError(f"elapsed_ns must be in [0, 2**64 * 10**9), got {shown(number)}")
    return min(number // 1_000, U64_MAX)  # Duration::as_micros() as u64 saturates (AR-1)


def _raise_not_task(value: object) -> NoReturn:
    """Raise TypeError for an argument that is not a `FlowTask`."""
    raise TypeError(f"task must be a FlowTask, got {shown(value)}")


def _raise_forged(task: object) -> NoReturn:
    """Raise TypeError for a `FlowTask` made without its controller (spec HARD-1)."""
    del task
    raise TypeError(
        "task must be a FlowTask made by FlowController.on_enqueue_est, "
        "got one made without a controller"
    )


def _raise_copy(what: str, why: str) -> NoReturn:
    """Raise TypeError for a copy or a pickle of a task or a controller (spec HARD-1)."""
    raise TypeError(f"{what} cannot be copied or pickled: {why}")


def _checked_observer(observer: object) -> Observer:
    """Return ``observer`` (a `NoopObserver` for None) if it can report; else TypeError."""
    if observer is None:
        return NoopObserver()
    for method in ("counter", "histogram"):  # spec HARD-3
        if not callable(getattr(observer, method, None)):
            raise TypeError(
                f"observer must be a flowpace.Observer (with counter() and histogram()), "
                f"got {shown(observer)}: it has no callable {method}"
            )
    return observer  # type: ignore[return-value]  # checked structurally just above


def _raise_done(task: FlowTask, operation: str) -> NoReturn:
    """Raise TaskStateError for an operation on a finished task (spec ERR-1)."""
    del task
    raise TaskStateError(f"{operation}: the task is done (on_mark_done already settled it)")


def _raise_misuse(controller: FlowController, task: FlowTask, operation: str) -> NoReturn:
    """Raise TaskStateError saying how ``task`` breaks its lifecycle (spec ERR-1)."""
    if task._owner is not controller:  # noqa: SLF001
        raise TaskStateError(f"{operation}: the task belongs to another controller")
    if task._done:  # noqa: SLF001
        _raise_done(task, operation)
    raise TaskStateError(f"{operation}: the task's I/O was already reported")


def _raise_overflow(operation: str, current: int, delta: int) -> NoReturn:
    """Raise DebtOverflowError: ``current + delta`` exceeds u64::MAX (spec ERR-2)."""
    raise DebtOverflowError(
        f"{operation}: {current} + {delta} would exceed u64::MAX ({U64_MAX}); state unchanged"
    )


# --- fork safety (spec HARD-6) -----------------------------------------------------------------


def _renew_locks_in_child() -> None:
    """
    Give every controller in a forked child new locks, made by its lock factory (HARD-6).

    The child has one thread, the one that forked: a lock another thread of the parent held
    at the fork (a blocking flusher's pacing lock across its sleep, the state lock) would be
    held forever. The state it guards is as that thread left it: a paced flush asleep has
    decided and never commits, as if interrupted before its commit (spec DIV-7). Under the GIL
    a thread is switched out inside a critical section only at a call (the idle reset), so a
    torn state is rare but possible; the child's locks are free in every case, and the fast
    path's flag agrees with the child's debt and limit.
    """
    for controller in list(_LIVE):
        factory = controller._lock_factory  # noqa: SLF001 - the module's own controllers
        controller._pacing_lock = factory(PACING_LOCK)  # noqa: SLF001 - in lock order
        controller._state_lock = factory(STATE_LOCK)  # noqa: SLF001
        if controller._ext_cond is not None:  # noqa: SLF001 - spec EXT-7: on the new lock
            lock: Any = controller._state_lock  # noqa: SLF001 - as in _init_extended
            controller._ext_cond = threading.Condition(lock)  # noqa: SLF001
        # The fast path's flag from the child's state ("The quiet flag"): the lifecycle writes
        # it only when it changes, so a flag that a fork cut off from its operation's change
        # of the debt or the limit would otherwise stay wrong after the next operations.
        controller._fg_quiet = controller._debt <= controller._quiet_debt  # noqa: SLF001


if hasattr(os, "register_at_fork"):  # POSIX only; there is no fork elsewhere
    os.register_at_fork(after_in_child=_renew_locks_in_child)
