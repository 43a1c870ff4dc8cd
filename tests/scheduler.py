"""A deterministic scheduler: real threads that take turns where a test says (spec DIV-6).

Each thread of a scheduled run is a real `threading.Thread`, but only one runs at a time. A
running thread gives the turn back to the scheduler at every *schedule point*: every acquire and
release of a `ScheduledLock` (the implementation builds its locks through its private lock
factory, so a test hands it these), and every call the test routes through `Scheduler.point`,
such as reads of the clock. At each point where more than one thread could run, the scheduler
asks its ``choose`` function which one runs next. A test draws those choices from Hypothesis, so
an interleaving is part of the example: it shrinks (towards fewer context switches), is saved in
the example database, and replays like any other failing example.

**Line-level preemption.** Lock-level points never split a read-modify-write, or a read of
several fields, that the code does *outside* the lock: no point lies between its lines, and the
interpreter rarely switches real threads there. Given ``preempt_lines`` (the source files to
watch, e.g. `CORE_FILES`), the scheduler also makes lines of those files schedule points: each
worker thread runs under `sys.settrace`, whose 'line' events, reported only for frames whose code
lives in a watched file, may hand the turn back (label ``"line controller.py:123"``). Nothing
else is traced: the scheduler, the test harness and the clock live in other files. A line point
inside a critical section is fine: a thread that wants the lock meanwhile blocks on it, and the
scheduler knows it. To keep runs short and examples small, not every line asks ``choose``: after
each turn handed out, ``line_gap`` says how many line points the thread runs before the next
line-level choice (a test draws it as "stay unless drawn otherwise", so that shrinking goes to
long gaps and few switches), and a line point where no other thread could run never hands the
turn back at all.

**Bounded preemption.** Given ``max_preemptions``, a run switches away from a thread that could
go on at most that many times (as CHESS does); `exhaust` then walks every schedule within the
bound. With one preemption at any line, each operation of one thread runs whole at every line of
another's: the interleaving a race between two lines needs, in a few runs per line.

Draws happen on the thread that called `Scheduler.run` (Hypothesis's draws must stay on one
thread); the worker threads only ever wait for their turn. A worker blocked on a held lock is
not offered a turn until the lock is released; no runnable thread left while some are blocked is
a deadlock and fails the run. A thread that does not come back to the scheduler within
``step_timeout`` seconds (it blocked on something the scheduler does not control) fails the run
with a dump of every thread's stack; the default is generous, so that a loaded machine never
fails a run that would pass on an idle one (nothing here depends on speed).
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Final

from flowpace import _rules, controller

if TYPE_CHECKING:
    from _typeshed import TraceFunction

Chooser = Callable[[Sequence[str]], int]
"""Given the names of the runnable threads, the one that ran last first, return an index."""

DEFAULT_MAX_STEPS: Final = 5_000
"""Schedule points a run may take before it is declared livelocked."""

DEFAULT_STEP_TIMEOUT: Final = 300.0
"""
Seconds a thread may run between two schedule points before it is declared hung.

Wall-clock time, so generous: a step takes microseconds, and only a thread blocked outside the
scheduler (a bug) ever waits this long; a loaded machine must never fail a run by it.
"""

CORE_FILES: Final = frozenset(
    str(Path(module.__file__).resolve()) for module in (controller, _rules) if module.__file__
)
"""The implementation's files whose lines are schedule points under line-level preemption:
the controller and its decision rules (the code that reads and writes the state)."""

LineGap = Callable[[], int]
"""Return how many line points the thread given the turn runs before the next line choice."""


class ScheduleError(AssertionError):
    """A scheduled run went wrong as a run: deadlock, livelock or a hung thread."""


class DeadlockError(ScheduleError):
    """Every unfinished thread waits for a lock another one holds."""


class HangError(ScheduleError):
    """A thread blocked outside the scheduler's control; the message holds every stack."""


class _AbortError(BaseException):
    """Raised in a worker to unwind it when its run is abandoned; never caught by user code."""


@dataclass(eq=False)
class _Worker:
    """One scheduled thread and what the scheduler knows about it."""

    name: str
    target: Callable[[], None]
    turn: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    thread: threading.Thread | None = None
    blocked_on: ScheduledLock | None = None
    finished: bool = False
    error: BaseException | None = None


class Scheduler:
    """Run threads one at a time, switching only at schedule points, as ``choose`` decides."""

    def __init__(
        self,
        choose: Chooser,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        preempt_lines: Iterable[str] = (),
        line_gap: LineGap | None = None,
        max_preemptions: int | None = None,
    ) -> None:
        """
        Prepare a run whose switches ``choose`` decides, bounded by ``max_steps`` points.

        ``preempt_lines`` names source files (absolute paths) whose lines are schedule points
        too; ``line_gap`` (default: 0, a choice at every line point) spaces the line choices.
        ``max_preemptions`` bounds the *preemptions*: switches away from a thread that could
        have gone on (a thread that blocks or finishes hands over for free). Once they are
        spent, ``choose`` is asked only where the running thread cannot go on, so `exhaust`
        walks exactly the schedules within the bound.
        """
        self.choose = choose
        self.max_preemptions = max_preemptions
        self.preemptions = 0
        """How many switches so far were preemptions."""
        self.max_steps = max_steps
        self.step_timeout = step_timeout
        self.preempt_lines = frozenset(str(Path(path).resolve()) for path in preempt_lines)
        self.line_gap: LineGap = line_gap if line_gap is not None else _no_gap
        self.trace: list[tuple[str, str]] = []
        """Every schedule point passed, as (thread, what it was about to do)."""
        self.switches = 0
        """How many times the turn passed from one thread to another."""
        self.line_points = 0
        """How many traced lines ran (each a potential point) while another thread could run."""
        self._gap = 0  # line points the running thread passes before its next line choice
        self._workers: list[_Worker] = []
        self._by_ident: dict[int, _Worker] = {}
        self._back = threading.Semaphore(0)
        self._aborting = False
        self._running = False

    # --- building a run ----------------------------------------------------------------------

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        """Add a thread named ``name`` that runs ``target`` when the run starts."""
        if self._running:
            raise RuntimeError("threads are added before the run starts")
        self._workers.append(_Worker(name=name, target=target))

    def lock(self, name: str) -> ScheduledLock:
        """Return a new lock whose acquires and releases are schedule points."""
        return ScheduledLock(self, name)

    # --- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """
        Run every thread to completion, one at a time; re-raise the first worker's error.

        Raises DeadlockError, HangError or ScheduleError (too many steps) when the run itself
        fails.
        """
        self._running = True
        for worker in self._workers:
            thread = threading.Thread(target=self._body, args=(worker,), name=worker.name)
            thread.daemon = True  # a hung worker must not keep the test process alive
            worker.thread = thread
            thread.start()
            assert thread.ident is not None
            self._by_ident[thread.ident] = worker
        try:
            self._drive()
        finally:
            # After a worker's error (or the run's own), unwind the threads still waiting.
            if not all(worker.finished for worker in self._workers):
                self._abort()
            self._running = False
        for worker in self._workers:
            if worker.thread is not None:
                worker.thread.join(self.step_timeout)
        for worker in self._workers:
            if worker.error is not None:
                raise worker.error

    def _drive(self) -> None:
        """Hand out turns until every thread finished or one failed."""
        last: _Worker | None = None
        steps = 0
        while True:
            runnable = [w for w in self._workers if not w.finished and w.blocked_on is None]
            if not runnable:
                if all(w.finished for w in self._workers):
                    return
                raise DeadlockError(self._describe_deadlock())
            if any(w.error is not None for w in self._workers):
                return
            steps += 1
            if steps > self.max_steps:
                raise ScheduleError(f"run exceeded {self.max_steps} schedule points")
            # The thread that ran last comes first, so index 0 means "do not switch".
            stayable = False  # whether the thread that ran last could go on
            if last is not None and last in runnable:
                stayable = True
                runnable.remove(last)
                runnable.insert(0, last)
            pinned = len(runnable) == 1 or (stayable and self._preemptions_spent())
            index = 0 if pinned else self.choose([w.name for w in runnable])
            chosen = runnable[index]
            if last is not None and chosen is not last:
                self.switches += 1
                if stayable:
                    self.preemptions += 1
            last = chosen
            # Only the running thread touches the gap: the scheduler waits meanwhile.
            self._gap = self.line_gap() if self.preempt_lines and len(runnable) > 1 else 0
            chosen.turn.release()
            if not self._back.acquire(timeout=self.step_timeout):
                raise HangError(self._describe_hang(chosen))

    def _preemptions_spent(self) -> bool:
        """Return whether the run may preempt no more (`max_preemptions` reached)."""
        return self.max_preemptions is not None and self.preemptions >= self.max_preemptions

    def _body(self, worker: _Worker) -> None:
        """Run ``worker``'s target once the scheduler first gives it the turn."""
        worker.turn.acquire()
        try:
            if not self._aborting:
                if self.preempt_lines:
                    sys.settrace(self._trace_call)  # this thread only; removed below
                worker.target()
        except _AbortError:
            pass
        except BaseException as error:  # noqa: BLE001  # reported by run() on the main thread
            worker.error = error
        finally:
            sys.settrace(None)
            worker.finished = True
            self._back.release()

    def _abort(self) -> None:
        """Unwind every unfinished worker, one at a time, after the run failed."""
        self._aborting = True
        for worker in self._workers:
            if worker.finished:
                continue
            worker.blocked_on = None
            worker.turn.release()
            self._back.acquire(timeout=self.step_timeout)

    # --- called from the workers -------------------------------------------------------------

    def current(self) -> _Worker | None:
        """Return the scheduled worker running this code, or None off the scheduler."""
        return self._by_ident.get(threading.get_ident()) if self._running else None

    def point(self, label: str) -> None:
        """Give the turn back to the scheduler; return when it gives this thread a turn."""
        worker = self.current()
        if worker is None or worker.finished:
            return
        if self._aborting:
            raise _AbortError
        self.trace.append((worker.name, label))
        self._back.release()
        worker.turn.acquire()
        if self._aborting:
            raise _AbortError

    def _trace_call(self, frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        """Trace the lines of a new frame iff its code lives in a watched file (`settrace`)."""
        del event, arg
        if frame.f_code.co_name == "__del__":
            # A finaliser runs wherever the garbage collector happens to run, even inside
            # `point` while it hands the turn over: a schedule point there would wait on its
            # own thread. Finalisers take no lock and change no state, so nothing is lost.
            return None
        return self._trace_line if frame.f_code.co_filename in self.preempt_lines else None

    def _trace_line(self, frame: FrameType, event: str, arg: object) -> TraceFunction:
        """Make a line of a watched frame a schedule point, as the gap allows (`settrace`)."""
        del arg
        if event == "line":
            self._line_point(frame)
        return self._trace_line

    def _line_point(self, frame: FrameType) -> None:
        """Give the turn back at this line unless the gap runs on or no other thread could run."""
        worker = self.current()
        if worker is None or worker.finished:
            return
        if not any(
            other is not worker and not other.finished and other.blocked_on is None
            for other in self._workers
        ):
            return  # nobody to switch to: not a choice, not even counted
        self.line_points += 1
        if self._preemptions_spent():
            return  # only "go on" is left: no need to ask
        if self._gap > 0:
            self._gap -= 1
            return
        self.point(f"line {Path(frame.f_code.co_filename).name}:{frame.f_lineno}")

    # --- diagnostics -------------------------------------------------------------------------

    def _describe_deadlock(self) -> str:
        """Return which thread waits for which lock, held by whom."""
        lines = ["deadlock: every unfinished thread waits for a lock"]
        for worker in self._workers:
            lock = worker.blocked_on
            if lock is not None:
                holder = lock.owner.name if lock.owner is not None else "nobody"
                lines.append(f"  {worker.name} waits for {lock.name}, held by {holder}")
        lines.append(self.describe_trace())
        return "\n".join(lines)

    def _describe_hang(self, worker: _Worker) -> str:
        """Return the stacks of every thread, for a worker that did not come back."""
        frames = sys._current_frames()  # the documented way to dump stacks
        header = (
            f"thread {worker.name} ran {self.step_timeout} s without reaching a schedule point"
            " (blocked outside the scheduler?); stacks:"
        )
        lines = [header]
        for thread in threading.enumerate():
            frame = frames.get(thread.ident) if thread.ident is not None else None
            if frame is not None:
                lines.append(f"--- {thread.name}")
                lines.extend(line.rstrip() for line in traceback.format_stack(frame))
        return "\n".join(lines)

    def describe_trace(self, last: int = 60) -> str:
        """Return the last ``last`` schedule points of the run, one a line."""
        shown = self.trace[-last:]
        skipped = len(self.trace) - len(shown)
        lines = f", {self.line_points} traced lines" if self.preempt_lines else ""
        head = [f"schedule ({len(self.trace)} points, {self.switches} switches{lines}):"]
        if skipped:
            head.append(f"  ... {skipped} earlier points")
        return "\n".join(head + [f"  {name}: {label}" for name, label in shown])


class ScheduledLock:
    """
    A non-reentrant lock for scheduled runs; acquire and release are schedule points.

    Off a scheduled run (building the controller, reading it after the run), it behaves as a
    plain lock on one thread: taking a lock that is already held is an error there, since no
    other thread could ever release it.
    """

    def __init__(self, scheduler: Scheduler, name: str) -> None:
        """Create the lock ``name`` of ``scheduler``."""
        self.scheduler = scheduler
        self.name = name
        self.owner: _Worker | None = None
        self._held_off_schedule = False

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, waiting (as the scheduler decides) while another thread holds it."""
        del timeout  # waiting is counted in schedule points, not seconds
        worker = self.scheduler.current()
        if worker is None:
            if self._held_off_schedule or self.owner is not None:
                if not blocking:
                    return False
                raise RuntimeError(f"lock {self.name} taken twice outside a scheduled run")
            self._held_off_schedule = True
            return True
        self.scheduler.point(f"acquire {self.name}")
        while self.owner is not None or self._held_off_schedule:
            if self.owner is worker:
                raise RuntimeError(f"lock {self.name} taken twice by {worker.name}")
            if not blocking:
                return False
            worker.blocked_on = self
            self.scheduler.point(f"wait for {self.name}")
        self.owner = worker
        return True

    def release(self) -> None:
        """Release the lock and wake its waiters; then let the scheduler switch."""
        worker = self.scheduler.current()
        if worker is None:
            if not self._held_off_schedule:
                raise RuntimeError(f"lock {self.name} released but not held")
            self._held_off_schedule = False
            return
        if self.owner is not worker:
            raise RuntimeError(
                f"lock {self.name} released by {worker.name}, which does not hold it"
            )
        self.owner = None
        for other in self.scheduler._workers:  # the lock is part of the scheduler
            if other.blocked_on is self:
                other.blocked_on = None
        self.scheduler.point(f"release {self.name}")

    def locked(self) -> bool:
        """Return whether some thread holds the lock."""
        return self.owner is not None or self._held_off_schedule

    def __enter__(self) -> bool:
        """Take the lock."""
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release the lock."""
        self.release()


def _no_gap() -> int:
    """Return 0: every line point is a choice (the default ``line_gap``)."""
    return 0


# --- choosing schedules ----------------------------------------------------------------------


class ReplayChooser:
    """
    Follow a list of choices, then always choose 0 (do not switch); record every choice point.

    `exhaust` uses it to walk the tree of schedules; a test can use it to replay one schedule.
    """

    def __init__(self, prefix: Sequence[int] = ()) -> None:
        """Follow ``prefix`` first."""
        self.prefix = list(prefix)
        self.taken: list[tuple[int, int]] = []
        """Every choice made: (index chosen, number of threads it was chosen from)."""

    def __call__(self, names: Sequence[str]) -> int:
        """Return the next choice for a point where ``names`` could run."""
        position = len(self.taken)
        index = self.prefix[position] if position < len(self.prefix) else 0
        index = min(index, len(names) - 1)
        self.taken.append((index, len(names)))
        return index


def exhaust(run_once: Callable[[Chooser], None], *, max_runs: int = 10_000) -> int:
    """
    Run ``run_once`` under every schedule, depth first; return how many schedules there were.

    ``run_once`` builds a fresh `Scheduler` with the chooser it is given, runs it and checks
    the outcome (raising to fail). This is bounded exhaustive search without partial-order
    reduction: fine for a few threads and a few schedule points each, or for many points when
    ``run_once``'s scheduler bounds its preemptions (``max_preemptions``, as CHESS does: every
    schedule with one preemption is a few runs per point). Raises ScheduleError if there are
    more than ``max_runs`` schedules.
    """
    prefix: list[int] = []
    runs = 0
    while True:
        runs += 1
        if runs > max_runs:
            raise ScheduleError(f"more than {max_runs} schedules")
        chooser = ReplayChooser(prefix)
        run_once(chooser)
        # The next schedule: bump the deepest choice that still has an untried alternative.
        taken = chooser.taken
        while taken and taken[-1][0] + 1 >= taken[-1][1]:
            taken.pop()
        if not taken:
            return runs
        prefix = [index for index, _ in taken[:-1]] + [taken[-1][0] + 1]
