"""The threaded flow controller: `FlowController` and its `FlowTask`.

**Atomicity (spec DIV-6, ST-1).** Every operation changes the state in one critical
section of the ``state`` lock, so the controller is linearizable against the reference model:
each operation takes effect at one instant inside its call, as the model's step for it would.
A blocking paced flush is two such steps, the model's decision and its commit (spec DIV-6).
A non-blocking flush decides from one critical section and commits in a second one only if
nothing it read has changed in between (else it decides again): its step is the commit.
Nothing relies on the GIL: every read-modify-write and every read of more than one field holds
the lock. The one lock-free read is the foreground fast path's read of ``_fg_quiet``, a single
attribute holding an immutable `bool` that every critical section changing the debt or the
sample count rewrites last (see `FlowController.before_foreground_write`).

**Locks and their order** are those of `flowpace._sync`: ``pacing`` before ``state``. Nothing
slow happens under ``state``: the clock is read and arguments are checked before it is taken,
tasks are allocated before it is taken, and observer calls and sleeps happen after it is
released. Every critical section is a ``with`` block, although on CPython 3.11 a ``with`` on a
`threading.Lock` costs about twice an ``acquire()``/``release()`` pair: under the GIL, the
interpreter may hand the GIL to another thread right after a *call* returns, so after
``acquire()`` the lock would often be held by a thread that is not running, and every other
thread would queue behind it (measured: 4 threads at 0.15 of one thread's throughput with
``acquire()``, 0.99 with ``with``, on a bare counter).

**Time.** The clock is read before the state lock is taken, so two threads may apply their
times out of order. Under the lock each operation uses ``max(its reading, the latest time
applied)``: the times the state and its tasks hold never go backwards, and every operation
sees a time at least every time the state holds, as the model requires of its callers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, NamedTuple, NoReturn

from flowpace import _rules
from flowpace._sync import PACING_LOCK, STATE_LOCK, LockFactory, thread_lock
from flowpace.clock import SYSTEM_CLOCK, AsyncSleep, Clock, SystemClock, asyncio_sleep_ns
from flowpace.observer import NoopObserver, Observer
from flowpace.options import FlowOptions
from flowpace_reference.types import (
    Config,
    ControllerState,
    DebtOverflowError,
    FlushDecision,
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

_BYPASS_METRICS: Final = {
    FlushDecision.BYPASS_TEARDOWN: Metric.FLUSH_PACING_BYPASS_TEARDOWN,
    FlushDecision.BYPASS_ARENA_STARVATION: Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION,
    FlushDecision.BYPASS_HIGH_DEBT: Metric.FLUSH_PACING_BYPASS_HIGH_DEBT,
}
"""The counter each bypass of flush pacing increments (spec FC-9)."""

_new_object = object.__new__

_FLUSHED: Final = Outcome.FLUSHED
_UNKNOWN: Final = Outcome.UNKNOWN


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
    _io_micros: int
    _outcome: Outcome
    _force_bypass: bool
    _done: bool

    def __init__(self) -> None:
        """Refuse: a task is made by `FlowController.on_enqueue_est`, which charges its debt."""
        raise TypeError("a FlowTask is made by FlowController.on_enqueue_est")

    @property
    def est_bytes(self) -> int:
        """The size estimated at enqueue (never changes)."""
        return self._est

    def mark_outcome(self, outcome: Outcome) -> None:
        """Record how the flush ended (spec FC-3); TaskStateError if the task is done."""
        if type(outcome) is not Outcome:
            raise TypeError(f"outcome must be a FlowOutcome, got {outcome!r}")
        with self._owner._state_lock:  # noqa: SLF001 - the task's fields belong to its controller
            if self._done:
                _raise_done(self, "mark_outcome")
            self._outcome = outcome

    def mark_force_bypass(self) -> None:
        """Make this task bypass flush pacing (spec FC-4); TaskStateError if it is done."""
        with self._owner._state_lock:  # noqa: SLF001 - the task's fields belong to its controller
            if self._done:
                _raise_done(self, "mark_force_bypass")
            self._force_bypass = True

    def snapshot(self) -> TaskState:
        """Return the task's fields, read atomically, as the model's `TaskState`."""
        with self._owner._state_lock:  # noqa: SLF001 - the task's fields belong to its controller
            actual = self._actual
            io_micros = self._io_micros
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
        state = self.snapshot()
        return (
            f"<FlowTask est_bytes={state.est_bytes} actual_bytes={state.actual_bytes} "
            f"outcome={state.outcome.name} done={state.done}>"
        )


class FlowController:
    """
    Debt-based foreground backpressure and flush pacing, safe to share between threads.

    ``clock`` defaults to the system monotonic clock, ``observer`` to one that ignores every
    call, ``async_sleep`` (awaited with nanoseconds by the async variants) to `asyncio.sleep`.
    ``_lock_factory`` is a test hook documented in `flowpace._sync`.
    """

    __slots__ = (
        "_adaptive_floor",
        "_async_sleep",
        "_config",
        "_debt",
        "_e2e_bps",
        "_fg_quiet",
        "_idle_reset_ns",
        "_idle_since",
        "_io_bps",
        "_last_ns",
        "_next_flush_at",
        "_now",
        "_observer",
        "_pacing_lock",
        "_quiet_debt",
        "_samples",
        "_sleep",
        "_starving",
        "_state_lock",
        "_teardown",
        "_tuning",
        "_warmup",
    )

    def __init__(
        self,
        options: FlowOptions | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
        observer: Observer | None = None,
        async_sleep: AsyncSleep = asyncio_sleep_ns,
        _lock_factory: LockFactory = thread_lock,
    ) -> None:
        """Build a controller with ``options`` (default: upstream's); its clock starts idle."""
        if options is None:
            options = FlowOptions()
        elif not isinstance(options, FlowOptions):
            raise TypeError(f"options must be FlowOptions, got {options!r}")
        self._config = options.normalised()
        self._tuning = _rules.tuning_of(self._config)
        self._warmup = self._tuning.warmup  # copies read on the lifecycle's hot path
        self._idle_reset_ns = self._tuning.idle_reset_ns
        # The system clock is read without the indirection of a method (it is the hot path).
        self._now = time.monotonic_ns if type(clock) is SystemClock else clock.monotonic_ns
        self._sleep = clock.sleep_ns
        self._async_sleep = async_sleep
        self._observer: Observer = NoopObserver() if observer is None else observer
        # Lock order: pacing, then state (flowpace._sync); each made once, by the factory.
        self._pacing_lock = _lock_factory(PACING_LOCK)
        self._state_lock = _lock_factory(STATE_LOCK)
        now = self._now()
        self._last_ns = now
        # spec ST-1: the initial state; the controller starts idle (seed: Some(Instant::now())).
        self._debt = 0
        self._io_bps = 0
        self._e2e_bps = 0
        self._samples = 0
        self._adaptive_floor = self._config.bp_floor_bps
        self._teardown = 0
        self._starving = 0
        self._idle_since: int | None = now
        self._next_flush_at: int | None = None
        self._quiet_debt = self._tuning.cold_quiet_debt
        self._fg_quiet = True

    @property
    def config(self) -> Config:
        """The normalised configuration this controller runs with (spec CFG-2)."""
        return self._config

    # --- the task lifecycle ------------------------------------------------------------------

    def on_enqueue_est(self, est_bytes: int) -> FlowTask:
        """Charge a new flush task's estimate to the debt and return the task (spec FC-1)."""
        if type(est_bytes) is not int or not 0 <= est_bytes <= U64_MAX:
            est_bytes = _u64_argument(est_bytes, "est_bytes")
        now = self._now()
        task = _new_object(FlowTask)
        task._owner = self  # noqa: SLF001 - the controller builds its own tasks
        task._est = est_bytes  # noqa: SLF001
        task._enqueue_at = now  # noqa: SLF001
        task._actual = None  # noqa: SLF001
        task._io_micros = 0  # noqa: SLF001
        task._outcome = _UNKNOWN  # noqa: SLF001
        task._force_bypass = False  # noqa: SLF001
        task._done = False  # noqa: SLF001
        lock = self._state_lock
        with lock:  # `with`, not acquire(): see the module docstring
            debt = self._debt + est_bytes
            if debt > U64_MAX:
                _raise_overflow("on_enqueue_est", self._debt, est_bytes)
            if now < self._last_ns:
                # Clamp: another thread applied a later reading first (module docstring).
                now = task._enqueue_at = self._last_ns  # noqa: SLF001
            else:
                self._last_ns = now
            idle_since = self._idle_since
            if idle_since is not None:
                if now - idle_since >= self._idle_reset_ns:
                    self._forget_history()  # spec FC-12: a long idle spell forgets samples
                self._idle_since = None
            self._debt = debt
            self._fg_quiet = debt <= self._quiet_debt
        return task

    def on_io_built(  # noqa: C901, PLR0912 - the hot path's arithmetic is inlined on purpose
        self, task: FlowTask, nbytes: int, elapsed_ns: int
    ) -> None:
        """Reconcile the debt with the bytes a task's I/O wrote; sample the disk (spec FC-2)."""
        if type(task) is not FlowTask:
            _raise_not_task(task)
        if type(nbytes) is not int or not 0 <= nbytes <= U64_MAX:
            nbytes = _u64_argument(nbytes, "nbytes")
        if type(elapsed_ns) is not int or not 0 <= elapsed_ns < _ELAPSED_LIMIT_NS:
            elapsed_ns = _elapsed_argument(elapsed_ns)
        # The sample depends on the arguments only: computed before the lock (spec AR-1, AR-4).
        io_micros = elapsed_ns // 1_000
        if io_micros > U64_MAX:
            io_micros = U64_MAX
        if nbytes != 0 and io_micros != 0:
            # spec FC-2: a report with bytes and time is a sample, counted even when its rate
            # truncates to 0 (the average then ignores it, AR-6).
            sample = nbytes * 1_000_000 // io_micros
            if sample > U64_MAX:
                sample = U64_MAX
        else:
            sample = -1  # no sample at all
        lock = self._state_lock
        with lock:  # `with`, not acquire(): see the module docstring
            if task._owner is not self or task._done or task._actual is not None:  # noqa: SLF001
                _raise_misuse(self, task, "on_io_built")
            debt = self._debt + nbytes - task._est  # noqa: SLF001
            if debt > U64_MAX:
                _raise_overflow("on_io_built", self._debt, nbytes - task._est)  # noqa: SLF001
            if debt < 0:
                debt = 0  # the seed's saturating settle; unreachable by INV-1
            self._debt = debt
            if sample >= 0:
                if sample != 0:
                    old = self._io_bps
                    # spec AR-6: the first sample is taken as is, later ones weigh 20 %.
                    self._io_bps = sample if old == 0 else (old * 80 + sample * 20) // 100
                    if sample >> 3 > self._adaptive_floor:
                        # spec AR-7: max(floor, sample // 8); the floor is already <= it (INV-9).
                        self._adaptive_floor = sample >> 3
                samples = self._samples
                if samples < U64_MAX:
                    self._samples = samples = samples + 1  # spec DIV-4: saturates
                if samples >= self._warmup:
                    self._quiet_debt = self._tuning.warm_quiet_debt  # steady state (AR-4)
            task._actual = nbytes  # noqa: SLF001
            task._io_micros = io_micros  # noqa: SLF001
            task._outcome = _FLUSHED  # noqa: SLF001
            self._fg_quiet = debt <= self._quiet_debt

    def on_mark_done(self, task: FlowTask) -> None:  # noqa: C901, PLR0912 - inlined, as above
        """Settle a finished task's charge; go idle at zero debt; sample end to end (FC-5)."""
        if type(task) is not FlowTask:
            _raise_not_task(task)
        now = self._now()
        lock = self._state_lock
        with lock:  # `with`, not acquire(): see the module docstring
            if task._owner is not self or task._done:  # noqa: SLF001
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
                self._next_flush_at = None
            self._debt = debt
            task._done = True  # noqa: SLF001
            if charge != 0 and task._outcome is _FLUSHED:  # noqa: SLF001
                e2e_micros = (now - task._enqueue_at) // 1_000  # noqa: SLF001
                if e2e_micros != 0:
                    if e2e_micros > U64_MAX:
                        e2e_micros = U64_MAX  # spec AR-1: micros() clamps
                    sample = charge * 1_000_000 // e2e_micros
                    if sample != 0:  # spec AR-6: a sample of 0 is ignored
                        if sample > U64_MAX:
                            sample = U64_MAX
                        old = self._e2e_bps
                        self._e2e_bps = sample if old == 0 else (old * 80 + sample * 20) // 100
                        if sample >> 3 > self._adaptive_floor:
                            self._adaptive_floor = sample >> 3  # spec AR-7, as in on_io_built
            self._fg_quiet = debt <= self._quiet_debt

    # --- foreground backpressure --------------------------------------------------------------

    def before_foreground_write(self, nbytes: int) -> int:
        """
        Sleep as backpressure requires before writing ``nbytes``; return microseconds slept.

        Spec FC-6 to FC-8. The fast path, taken whenever the debt is in a zero-delay regime,
        checks the argument and reads one attribute: ``_fg_quiet``, an immutable `bool` that
        every critical section changing the debt or the sample count rewrites as its last
        step, so the read sees the state after some complete operation (linearizable).
        """
        if type(nbytes) is int and 0 <= nbytes <= 0xFFFF_FFFF_FFFF_FFFF and self._fg_quiet:
            return 0
        delay_us = self._foreground_delay_us(nbytes)
        if delay_us != 0:
            self._sleep(delay_us * _NANOS_PER_MICRO)
            self._emit_foreground_delay(delay_us)
        return delay_us

    def before_foreground_write_nowait(self, nbytes: int) -> int:
        """
        Return, in nanoseconds, how long a write of ``nbytes`` must wait; never sleep.

        For callers that must not block: the decision and its metrics are those of
        `before_foreground_write`, reported at decision time; the caller does the waiting.
        """
        delay_us = self._foreground_delay_us(nbytes)
        if delay_us != 0:
            self._emit_foreground_delay(delay_us)
        return delay_us * _NANOS_PER_MICRO

    async def before_foreground_write_async(self, nbytes: int) -> int:
        """Await the backpressure delay before writing ``nbytes``; return microseconds waited."""
        delay_us = self._foreground_delay_us(nbytes)
        if delay_us != 0:
            await self._async_sleep(delay_us * _NANOS_PER_MICRO)
            self._emit_foreground_delay(delay_us)
        return delay_us

    def _foreground_delay_us(self, nbytes: object) -> int:
        """Return the delay a write of ``nbytes`` takes now, microseconds (spec FC-6..8)."""
        write_bytes = _u64_argument(nbytes, "nbytes")
        if write_bytes == 0 or not self._tuning.backpressure:
            return 0
        with self._state_lock:
            debt, samples = self._debt, self._samples
            io_bps, e2e_bps, adaptive_floor = self._io_bps, self._e2e_bps, self._adaptive_floor
        return _rules.foreground_delay_us(
            self._tuning,
            write_bytes,
            debt=debt,
            samples=samples,
            io_bps=io_bps,
            e2e_bps=e2e_bps,
            adaptive_floor=adaptive_floor,
        )

    def _emit_foreground_delay(self, delay_us: int) -> None:
        """Report a foreground delay to the observer (spec FC-8)."""
        self._observer.counter(Metric.FG_DELAY, 1)
        self._observer.histogram(Metric.FG_DELAY_MICROS, delay_us)

    # --- flush pacing -----------------------------------------------------------------------

    def before_flush(self, task: FlowTask) -> int:
        """
        Wait for the flush's pacing slot, unless it bypasses pacing; return microseconds slept.

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
        return sleep_ns // _NANOS_PER_MICRO

    def before_flush_nowait(self, task: FlowTask) -> int:
        """
        Reserve the flush's pacing slot and return, in nanoseconds, how long to wait; never sleep.

        For callers that must not block. The decision is `before_flush`'s; the next deadline is
        committed at once, as if the sleep ended exactly on time (the model's commit at
        decision time + sleep), so later flushers pace behind this one. Never takes the pacing
        lock: such a flusher does not wait behind a blocking flusher's sleep. Metrics are
        reported at decision time.
        """
        sleep_ns, decision = self._reserve_flush(task, "before_flush_nowait")
        self._emit_bypass(decision)
        if sleep_ns != 0:
            self._emit_pacing_sleep(sleep_ns)
        return sleep_ns

    async def before_flush_async(self, task: FlowTask) -> int:
        """Reserve the flush's slot as `before_flush_nowait`, await it; return us waited."""
        sleep_ns, decision = self._reserve_flush(task, "before_flush_async")
        self._emit_bypass(decision)
        if sleep_ns != 0:
            await self._async_sleep(sleep_ns)
            self._emit_pacing_sleep(sleep_ns)
        return sleep_ns // _NANOS_PER_MICRO

    def _reserve_flush(self, task: FlowTask, operation: str) -> tuple[int, FlushDecision]:
        """Decide a flush and commit its deadline at decision time + sleep; return the sleep."""
        self._check_task_type(task)
        while True:
            seen = self._read_flush_view(task, operation)
            decision, interval_us = self._decide_flush(task, seen)
            if decision is not FlushDecision.PACED:
                return 0, decision  # a decision that commits nothing took effect at the read
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
                    return sleep_ns, decision

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
            self._observer.counter(metric, 1)

    def _emit_pacing_sleep(self, sleep_ns: int) -> None:
        """Report a pacing sleep (spec FC-10)."""
        self._observer.counter(Metric.FLUSH_PACING_SLEEP, 1)
        self._observer.histogram(Metric.FLUSH_PACING_SLEEP_MICROS, sleep_ns // _NANOS_PER_MICRO)

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

    @contextmanager
    def teardown_bypass(self) -> Iterator[None]:
        """Hold a teardown scope open for the body of a ``with`` statement (spec FC-11)."""
        self.enter_teardown_bypass()
        try:
            yield
        finally:
            self.leave_teardown_bypass()

    @contextmanager
    def arena_starving(self) -> Iterator[None]:
        """Hold an arena-starvation scope open for the body of a ``with`` (spec FC-11)."""
        self.enter_arena_starving()
        try:
            yield
        finally:
            self.leave_arena_starving()

    # --- reading the state --------------------------------------------------------------------

    def snapshot(self) -> ControllerState:
        """Return the controller's state, read atomically (spec ST-1)."""
        with self._state_lock:  # plain reads into locals: nothing is allocated under the lock
            debt = self._debt
            io_bps = self._io_bps
            e2e_bps = self._e2e_bps
            samples = self._samples
            adaptive_floor = self._adaptive_floor
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

    def _forget_history(self) -> None:
        """Reset the throughput history after a long idle spell (spec FC-12); lock held."""
        self._io_bps = 0
        self._e2e_bps = 0
        self._samples = 0
        self._adaptive_floor = self._tuning.floor_bps
        self._quiet_debt = self._tuning.cold_quiet_debt

    def _check_task_type(self, task: object) -> None:
        """Raise TypeError unless ``task`` is a `FlowTask`."""
        if type(task) is not FlowTask:
            _raise_not_task(task)


# --- argument checks and errors (spec ERR-1 to ERR-3) ----------------------------------------


def _u64_argument(value: object, name: str) -> int:
    """Return ``value`` as an int if it is one in the u64 range; else raise, naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"{name} must be in [0, {U64_MAX}] (u64), got {value}")
    return int(value)


def _elapsed_argument(value: object) -> int:
    """Return ``value`` as an int if a Rust ``Duration`` holds it in nanoseconds; else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"elapsed_ns must be an int, got {value!r}")
    if not 0 <= value < _ELAPSED_LIMIT_NS:
        raise ValueError(f"elapsed_ns must be in [0, 2**64 * 10**9), got {value}")
    return int(value)


def _raise_not_task(value: object) -> NoReturn:
    """Raise TypeError for an argument that is not a `FlowTask`."""
    raise TypeError(f"task must be a FlowTask, got {value!r}")


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
