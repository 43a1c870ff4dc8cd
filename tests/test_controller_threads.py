"""The controller under real threads: conservation, lock discipline, pacing (spec DIV-6).

Threads run on a manual clock, so the controller's sleeps advance time instead of waiting; every
join and every wait is bounded, so a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from types import TracebackType

import pytest

from flowpace import FlowController, FlowOptions, FlowOutcome, FlowTask, Metric
from flowpace._sync import LOCK_ORDER, LockLike
from flowpace.testing import ManualClock, RecordingObserver
from flowpace.testing import lock_factory as using_locks
from flowpace_reference.types import ControllerState

BOUND_S = 60.0
"""The longest any join or wait may take before the test fails."""

THREADED = FlowOptions(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=2,
    bp_hard_debt_units=4,
    bp_stop_debt_units=6,
    bp_cold_start_fail_safe_units=3,
    bp_pacing_soft_debt_units=2,
    bp_warmup_min_samples=2,
    bp_floor_bps=1_000_000,
    bp_idle_reset_ms=1,
    bp_max_delay_us=2_000,
)
"""Small thresholds: a few tasks per thread cross every regime, idle resets included."""


# --- instrumentation -------------------------------------------------------------------------


class CheckedLocks:
    """A lock factory whose locks record, per thread, what is held, and every breach of order."""

    def __init__(self) -> None:
        """Start with no lock and no breach."""
        self.local = threading.local()
        self.breaches: list[str] = []
        self.contended = {name: threading.Event() for name in LOCK_ORDER}
        self.locks: dict[str, CheckedLock] = {}

    def __call__(self, name: str) -> LockLike:
        """Make the lock ``name``."""
        lock = CheckedLock(self, name)
        self.locks[name] = lock
        return lock

    def mine(self) -> set[str]:
        """Return the names of the locks the calling thread holds."""
        held: set[str] | None = getattr(self.local, "held", None)
        if held is None:
            held = set()
            self.local.held = held
        return held

    def breach(self, what: str) -> None:
        """Record a breach of the lock discipline."""
        self.breaches.append(f"{threading.current_thread().name}: {what}")


class CheckedLock:
    """A `threading.Lock` that checks the lock order and signals when a thread must wait."""

    def __init__(self, owner: CheckedLocks, name: str) -> None:
        """Create the lock ``name`` of ``owner``."""
        self.owner = owner
        self.name = name
        self.lock = threading.Lock()

    def acquire(self) -> bool:
        """Take the lock; record a breach if a lock at or after this one is already held."""
        rank = LOCK_ORDER.index(self.name)
        held = self.owner.mine()
        if any(LOCK_ORDER.index(name) >= rank for name in held):
            self.owner.breach(f"took {self.name} while holding {sorted(held)}")
        if not self.lock.acquire(blocking=False):
            self.owner.contended[self.name].set()
            if not self.lock.acquire(timeout=BOUND_S):
                raise AssertionError(f"lock {self.name} not acquired within {BOUND_S} s")
        held.add(self.name)
        return True

    def release(self) -> None:
        """Release the lock."""
        self.owner.mine().discard(self.name)
        self.lock.release()

    def locked(self) -> bool:
        """Return whether some thread holds the lock."""
        return self.lock.locked()

    def __enter__(self) -> bool:
        """Take the lock."""
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release the lock."""
        self.release()


class CheckedClock(ManualClock):
    """A manual clock that records a breach when read or slept on under the state lock."""

    def __init__(self, locks: CheckedLocks) -> None:
        """Watch the locks of ``locks``."""
        super().__init__()
        self.watched = locks

    def monotonic_ns(self) -> int:
        """Check, then read."""
        if "state" in self.watched.mine():
            self.watched.breach("read the clock under the state lock")
        return super().monotonic_ns()

    def sleep_ns(self, duration_ns: int) -> None:
        """Check, then sleep."""
        if "state" in self.watched.mine():
            self.watched.breach("slept under the state lock")
        super().sleep_ns(duration_ns)


class CheckedObserver(RecordingObserver):
    """A recording observer that records a breach when called under any controller lock."""

    def __init__(self, locks: CheckedLocks) -> None:
        """Watch the locks of ``locks``."""
        super().__init__()
        self.watched = locks

    def counter(self, metric: Metric, delta: int) -> None:
        """Check, then record."""
        if self.watched.mine():
            self.watched.breach(f"reported {metric.value} under {sorted(self.watched.mine())}")
        super().counter(metric, delta)

    def histogram(self, metric: Metric, value: int) -> None:
        """Check, then record."""
        if self.watched.mine():
            self.watched.breach(f"reported {metric.value} under {sorted(self.watched.mine())}")
        super().histogram(metric, value)


def run_threads(bodies: list[Callable[[], None]]) -> None:
    """Run each body on its own thread, started together; re-raise the first failure."""
    barrier = threading.Barrier(len(bodies))
    errors: list[BaseException] = []

    def wrap(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait(timeout=BOUND_S)
                body()
            except BaseException as error:  # noqa: BLE001 - handed to the main thread
                errors.append(error)

        return run

    threads = [threading.Thread(target=wrap(body), name=f"w{i}") for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BOUND_S)
        assert not thread.is_alive(), f"{thread.name} did not finish within {BOUND_S} s"
    if errors:
        raise errors[0]


# --- a concurrent workload -------------------------------------------------------------------


def workload(ctl: FlowController, seed: int, rounds: int) -> Callable[[], None]:
    """Return a thread body that drives tasks through every operation, a few outstanding."""

    def body() -> None:
        rng = random.Random(seed)  # noqa: S311 - a seeded workload, not cryptography
        pending: list[FlowTask] = []
        for _ in range(rounds):
            task = ctl.on_enqueue_est(rng.randrange(0, 2_500))
            pending.append(task)
            write = rng.randrange(0, 2_000)
            choice = rng.randrange(6)
            if choice == 0:
                ctl.before_foreground_write_nowait(write)
            else:
                ctl.before_foreground_write(write)
            if choice == 1:
                task.mark_force_bypass()
            if choice == 2:
                with ctl.arena_starving():
                    ctl.before_flush(task)
            elif choice == 3:
                ctl.before_flush_nowait(task)
            else:
                ctl.before_flush(task)
            if choice == 4:
                task.mark_outcome(FlowOutcome.EMPTY)
            else:
                ctl.on_io_built(task, rng.randrange(0, 2_500), rng.randrange(0, 3_000_000))
            if len(pending) > rng.randrange(1, 4):
                ctl.on_mark_done(pending.pop(rng.randrange(len(pending))))
        for task in pending:
            ctl.on_mark_done(task)

    return body


def check_snapshot(state: ControllerState) -> list[str]:
    """Return the invariants a single consistent snapshot breaks (spec INV-7, INV-9)."""
    broken = []
    if state.adaptive_floor_bps < THREADED.bp_floor_bps:
        broken.append("adaptive floor below the floor")
    if state.io_sample_count == 0 and state.io_bps_ewma != 0:
        broken.append("an I/O average without a sample")
    if state.teardown_bypass_scopes < 0 or state.arena_starving_scopes < 0:
        broken.append("a negative scope count")
    if not 0 <= state.debt_bytes < 2**64:
        broken.append("debt outside u64")
    return broken


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Make the interpreter switch threads every few microseconds, for more interleavings."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("frequent_switches")
def test_threads_leave_exactly_zero_debt_and_keep_the_lock_discipline() -> None:
    # spec INV-1, INV-7, INV-9, DIV-6: four threads run whole lifecycles concurrently while a
    # fifth takes snapshots. At the end every charge is settled exactly; no snapshot broke an
    # invariant; no clock read, sleep or report happened under the state lock; no lock was
    # taken out of order.
    locks = CheckedLocks()
    clock, observer = CheckedClock(locks), CheckedObserver(locks)
    with using_locks(locks):
        ctl = FlowController(THREADED, clock=clock, observer=observer)
    running = threading.Event()
    running.set()
    broken: list[str] = []
    snapshots = 0

    def sampler() -> None:
        nonlocal snapshots
        while running.is_set():
            broken.extend(check_snapshot(ctl.snapshot()))
            snapshots += 1

    watcher = threading.Thread(target=sampler)
    watcher.start()
    try:
        run_threads([workload(ctl, seed, rounds=1_000) for seed in range(4)])
    finally:
        running.clear()
        watcher.join(timeout=BOUND_S)
    assert not watcher.is_alive()
    state = ctl.snapshot()
    assert state.debt_bytes == 0
    assert state.teardown_bypass_scopes == state.arena_starving_scopes == 0
    assert broken == []
    assert snapshots > 10
    assert locks.breaches == []
    totals = observer.snapshot()
    assert totals.counters[Metric.FG_DELAY] == totals.histograms[Metric.FG_DELAY_MICROS].count
    assert totals.counters[Metric.FG_DELAY] > 0
    assert totals.counters[Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION] > 0
    assert totals.histograms[Metric.FG_DELAY_MICROS].max <= THREADED.bp_max_delay_us  # INV-2


@pytest.mark.usefixtures("frequent_switches")
def test_concurrent_enqueues_and_settles_conserve_the_debt_at_every_quiescent_point() -> None:
    # spec INV-1, DIV-6: after each round of concurrent enqueues the debt is exactly their sum;
    # after the settles it is exactly zero again (no lost update).
    ctl = FlowController(THREADED, clock=ManualClock())
    for round_number in range(3):
        made: list[list[FlowTask]] = [[] for _ in range(4)]

        def enqueue(slot: list[FlowTask], base: int) -> None:
            slot.extend(ctl.on_enqueue_est(est + base) for est in range(1, 301))

        run_threads([partial(enqueue, slot, round_number) for slot in made])
        assert ctl.snapshot().debt_bytes == 4 * sum(est + round_number for est in range(1, 301))

        def settle(slot: list[FlowTask]) -> None:
            for task in slot:
                ctl.on_mark_done(task)

        run_threads([partial(settle, slot) for slot in made])
        assert ctl.snapshot().debt_bytes == 0


# --- pacing: serialised flushers, unblocked writers ------------------------------------------


class GateClock(ManualClock):
    """A manual clock whose sleeps wait for the test to open a gate, then advance the clock."""

    def __init__(self) -> None:
        """Start closed."""
        super().__init__()
        self.sleeping = threading.Event()
        self.gate = threading.Event()

    def sleep_ns(self, duration_ns: int) -> None:
        """Signal, wait (bounded) for the gate, then advance."""
        self.sleeping.set()
        if not self.gate.wait(timeout=BOUND_S):
            raise AssertionError("the gate was never opened")
        super().sleep_ns(duration_ns)


def test_a_pacing_sleep_holds_only_the_pacing_lock_and_blocks_only_flushers() -> None:
    # spec FC-10, DIV-6: while one flusher sleeps for its slot it holds the pacing lock and
    # not the state lock: writers, enqueues, settles, snapshots and bypassing flushes go on; a
    # second paced flusher waits for the pacing lock and is paced behind the first.
    locks = CheckedLocks()
    clock = GateClock()
    with using_locks(locks):
        ctl = FlowController(THREADED, clock=clock)
    for _ in range(2):  # two I/O samples of 1 MB/s: warm
        primer = ctl.on_enqueue_est(1_000)
        ctl.on_io_built(primer, 1_000, 1_000_000)
        ctl.on_mark_done(primer)
    first, second, third = (ctl.on_enqueue_est(500) for _ in range(3))
    assert ctl.before_flush(first) == 0  # sets the deadline 500 us ahead
    results: dict[str, int] = {}
    sleeper = threading.Thread(target=lambda: results.update(second=ctl.before_flush(second)))
    sleeper.start()
    assert clock.sleeping.wait(timeout=BOUND_S)
    try:
        assert locks.locks["pacing"].locked()
        assert not locks.locks["state"].locked()
        # Everything but a paced flush proceeds while the flusher sleeps.
        extra = ctl.on_enqueue_est(10)
        assert ctl.before_foreground_write(1) == 0
        assert ctl.before_foreground_write_nowait(1) == 0
        ctl.on_io_built(extra, 10, 1)
        ctl.on_mark_done(extra)
        with ctl.teardown_bypass():
            assert ctl.before_flush(third) == 0
        assert ctl.snapshot().debt_bytes == 1_500  # the three flushes still outstanding
        # A second paced flush waits for the pacing lock.
        waiter = threading.Thread(target=lambda: results.update(third=ctl.before_flush(third)))
        waiter.start()
        assert locks.contended["pacing"].wait(timeout=BOUND_S)
        assert "third" not in results
    finally:
        clock.gate.set()
        sleeper.join(timeout=BOUND_S)
    waiter.join(timeout=BOUND_S)
    assert not sleeper.is_alive()
    assert not waiter.is_alive()
    assert results == {"second": 500_000, "third": 500_000}  # ns (HARD-13): 500 us each
    assert clock.sleeps == (500_000, 500_000)
    assert ctl.snapshot().next_flush_at == 1_500_000  # three slots of 500 us from t = 0
    assert locks.breaches == []


@pytest.mark.parametrize("idle_meanwhile", [True, False])
def test_the_commit_reads_the_deadline_when_the_sleep_ends(idle_meanwhile: bool) -> None:
    # spec FC-10, FC-12, DIV-6: a flush decides at 0 behind a deadline 4 ms away, sleeps the
    # 2 ms maximum, and commits at 2 ms against the deadline as it is then: cleared by an idle
    # marking during the sleep (the commit starts afresh at 2 ms), or still 4 ms.
    clock = GateClock()
    options = dataclasses.replace(THREADED, bp_soft_debt_units=8, bp_pacing_soft_debt_units=8)
    ctl = FlowController(options, clock=clock)
    for _ in range(2):  # two I/O samples of 1 MB/s: warm
        primer = ctl.on_enqueue_est(1_000)
        ctl.on_io_built(primer, 1_000, 1_000_000)
        ctl.on_mark_done(primer)
    first, second = ctl.on_enqueue_est(2_000), ctl.on_enqueue_est(2_000)  # 2 ms slots
    flushed = ctl.on_enqueue_est(0)  # a 1 us slot, and no charge of its own
    assert ctl.before_flush_nowait(first) == 0
    assert ctl.before_flush_nowait(second) == 2_000_000
    assert ctl.snapshot().next_flush_at == 4_000_000
    sleeper = threading.Thread(target=ctl.before_flush, args=(flushed,))
    sleeper.start()
    try:
        assert clock.sleeping.wait(timeout=BOUND_S)
        if idle_meanwhile:
            ctl.on_mark_done(first)
            ctl.on_mark_done(second)  # debt 0: idle, the deadline is dropped
            assert ctl.snapshot().next_flush_at is None
    finally:
        clock.gate.set()
        sleeper.join(timeout=BOUND_S)
    assert not sleeper.is_alive()
    assert clock.sleeps == (2_000_000,)
    expected = 2_000_000 + 1_000 if idle_meanwhile else 4_000_000 + 1_000
    assert ctl.snapshot().next_flush_at == expected


def pacing_rig() -> tuple[FlowController, ManualClock, list[FlowTask]]:
    """Return a warm controller at 1 MB/s and 40 live tasks of 100 bytes: 100 us slots."""
    clock = ManualClock()
    options = FlowOptions(
        enable_flush_pacing=True,
        bp_flush_unit_bytes=1_000_000,
        bp_soft_debt_units=8,
        bp_pacing_soft_debt_units=8,
        bp_warmup_min_samples=1,
        bp_max_delay_us=1_000_000,
    )
    ctl = FlowController(options, clock=clock)
    primer = ctl.on_enqueue_est(1_000)
    ctl.on_io_built(primer, 1_000, 1_000_000)
    ctl.on_mark_done(primer)
    return ctl, clock, [ctl.on_enqueue_est(100) for _ in range(40)]


def flush_all(flush: Callable[[FlowTask], int], tasks: list[FlowTask], out: list[int]) -> None:
    """Flush each task in turn and keep what each call returned."""
    out.extend(flush(task) for task in tasks)


def test_concurrent_blocking_flushers_are_serialised_one_slot_apart() -> None:
    # spec FC-10, DIV-6: the pacing lock serialises flushers: whatever the interleaving, the
    # first flush goes at once and each other one sleeps exactly one slot, and the deadline
    # ends 40 slots after the start. The clock moves only by those sleeps.
    ctl, clock, tasks = pacing_rig()
    slept: list[int] = []
    run_threads([partial(flush_all, ctl.before_flush, tasks[i::4], slept) for i in range(4)])
    assert sorted(slept) == [0] + [100_000] * 39  # ns (HARD-13): one 100 us slot apart
    assert clock.monotonic_ns() == 39 * 100_000
    assert ctl.snapshot().next_flush_at == 40 * 100_000


def test_concurrent_nowait_flushers_reserve_distinct_slots() -> None:
    # spec FC-10, DIV-6: non-blocking flushers never sleep; their reservations are atomic, so
    # the waits they are told are exactly 0, 1, ..., 39 slots, each once.
    ctl, clock, tasks = pacing_rig()
    waits: list[int] = []
    run_threads([partial(flush_all, ctl.before_flush_nowait, tasks[i::4], waits) for i in range(4)])
    assert sorted(waits) == [slot * 100_000 for slot in range(40)]
    assert clock.sleeps == ()
    assert ctl.snapshot().next_flush_at == 40 * 100_000
