"""Benchmarks of the implementation's hot paths, each beside the baseline it is held to.

Pairs (each benchmark's name says which): the foreground fast path against a no-op method, a
task's lifecycle against a lock-protected counter doing the same three updates, and four
threads against one driving the same controller. `report.py` turns one run of these into the
ratios. Every loop body repeats its call so that the loop's own cost is a small share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowpace import FlowController, FlowOptions

if TYPE_CHECKING:
    from pytest_benchmark.fixture import BenchmarkFixture

BATCH = 100
"""Loop iterations per timed call; the foreground loops repeat their call 10 times each."""

THREAD_OPS = 20_000
"""Task lifecycles each thread runs in the threaded benchmarks."""

THREADS = 4

OPTIONS = FlowOptions(enable_backpressure=True, enable_flush_pacing=True)
"""Both features on, upstream defaults: a 64 MiB flush unit, so 4 KiB tasks never delay."""


class NoOp:
    """The baseline of the foreground fast path: a method that does nothing."""

    def before_foreground_write(self, nbytes: int) -> int:
        """Return 0."""
        del nbytes
        return 0


class LockedCounter:
    """The baseline of a task lifecycle: one lock-protected field updated three times."""

    def __init__(self) -> None:
        """Start at 0."""
        self._lock = threading.Lock()
        self._debt = 0

    def add(self, delta: int) -> None:
        """Add ``delta`` under the lock."""
        with self._lock:
            self._debt += delta


class AcquiringCounter(LockedCounter):
    """A stricter baseline: the same counter taking its lock with acquire and release.

    On CPython 3.11 this is about twice as fast as ``with``. The controller takes its lock
    with ``with`` (`flowpace.controller` says why), so this baseline is informative only: it
    shows what the choice of ``with`` costs a lifecycle.
    """

    def add(self, delta: int) -> None:
        """Add ``delta`` under the lock."""
        lock = self._lock
        lock.acquire()
        try:
            self._debt += delta
        finally:
            lock.release()


def quiet_controller() -> FlowController:
    """Return a controller with debt outstanding but below soft: writes take the fast path."""
    ctl = FlowController(OPTIONS)
    ctl.on_enqueue_est(4_096)
    return ctl


def foreground_calls(target: FlowController | NoOp) -> Callable[[], None]:
    """Return a batch of ``BATCH * 10`` calls of ``target.before_foreground_write(4096)``."""

    def batch() -> None:
        for _ in range(BATCH):
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)
            target.before_foreground_write(4_096)

    return batch


def lifecycles(ctl: FlowController) -> Callable[[], None]:
    """Return a batch of ``BATCH`` task lifecycles: enqueue, I/O built, done."""

    def batch() -> None:
        for _ in range(BATCH):
            task = ctl.on_enqueue_est(4_096)
            ctl.on_io_built(task, 4_000, 1_000_000)
            ctl.on_mark_done(task)

    return batch


def counter_updates(counter: LockedCounter) -> Callable[[], None]:
    """Return a batch of ``BATCH`` triples of counter updates: the lifecycle's baseline."""

    def batch() -> None:
        for _ in range(BATCH):
            counter.add(4_096)
            counter.add(-96)
            counter.add(-4_000)

    return batch


def driver(ctl: FlowController, ops: int) -> None:
    """Run ``ops`` lifecycles with a foreground write and a flush decision each."""
    for _ in range(ops):
        task = ctl.on_enqueue_est(4_096)
        ctl.before_foreground_write(4_096)
        task.mark_force_bypass()
        ctl.before_flush(task)
        ctl.on_io_built(task, 4_000, 1_000_000)
        ctl.on_mark_done(task)


def timed_threads(threads: int, body: Callable[[], None]) -> float:
    """Run ``body`` in ``threads`` threads released together; return the seconds they took."""
    start = threading.Barrier(threads + 1)

    def worker_body() -> None:
        start.wait()
        body()

    workers = [threading.Thread(target=worker_body) for _ in range(threads)]
    for worker in workers:
        worker.start()
    began = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    return time.perf_counter() - began


def threaded_run(threads: int) -> Callable[[], float]:
    """Return a run of ``threads`` threads, each driving one shared controller; it returns s."""

    def run() -> float:
        ctl = FlowController(OPTIONS)
        elapsed = timed_threads(threads, lambda: driver(ctl, THREAD_OPS))
        assert ctl.snapshot().debt_bytes == 0
        return elapsed

    return run


def moving_averages() -> None:
    """Compute a moving average over ``THREAD_OPS * 20`` samples, touching nothing shared."""
    average = 0
    for sample in range(THREAD_OPS * 20):
        average = (average * 4 + sample) // 5


def lock_free_run(threads: int) -> Callable[[], float]:
    """
    Return a run of ``threads`` threads, each computing `moving_averages` alone; it returns s.

    The control of `threaded_run`: no lock and nothing shared, so its throughput ratio across
    threads is what the interpreter's own thread switching leaves of one thread's, on this
    machine (under the GIL, every forced switch hands the interpreter to another thread).
    """
    return lambda: timed_threads(threads, moving_averages)


def test_fg_fast_path(benchmark: BenchmarkFixture) -> None:
    # spec FC-6: before_foreground_write with no delay to apply (1 000 calls a round).
    benchmark(foreground_calls(quiet_controller()))


def test_fg_baseline_noop_method(benchmark: BenchmarkFixture) -> None:
    # The baseline of test_fg_fast_path: a no-op method (1 000 calls a round).
    benchmark(foreground_calls(NoOp()))


def test_lifecycle(benchmark: BenchmarkFixture) -> None:
    # spec FC-1, FC-2, FC-5: a task's lifecycle on the system clock (100 a round).
    benchmark(lifecycles(FlowController(OPTIONS)))


def test_lifecycle_baseline_locked_counter(benchmark: BenchmarkFixture) -> None:
    # The baseline of test_lifecycle: three lock-protected updates (100 triples a round).
    benchmark(counter_updates(LockedCounter()))


def test_lifecycle_baseline_acquiring_counter(benchmark: BenchmarkFixture) -> None:
    # The stricter baseline of test_lifecycle: acquire/release instead of with.
    benchmark(counter_updates(AcquiringCounter()))


def test_threads_one(benchmark: BenchmarkFixture) -> None:
    # spec DIV-6: one thread driving a controller (THREAD_OPS mixed lifecycles a round).
    # pytest-benchmark leaves pedantic unannotated.
    benchmark.pedantic(threaded_run(1), rounds=5, iterations=1, warmup_rounds=1)  # type: ignore[no-untyped-call]


def test_threads_four(benchmark: BenchmarkFixture) -> None:
    # spec DIV-6: four threads driving one controller (4 x THREAD_OPS lifecycles a round).
    benchmark.pedantic(  # type: ignore[no-untyped-call]  # unannotated, as above
        threaded_run(THREADS), rounds=5, iterations=1, warmup_rounds=1
    )
