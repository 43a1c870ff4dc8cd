"""A deterministic discrete-event storage engine around a flow-control law.

The plant, on a virtual clock in integer nanoseconds, with every random draw from one seeded
`random.Random` (integer draws only), is the engine of the upstream task lifecycle:

- **writers**, closed loop (ask, wait, copy the write into the arena at their own speed, think,
  ask again) or open loop (writes arrive at a rate, possibly in bursts, and queue at their
  writer); each write asks the law first and waits what it is told, in virtual time;
- an **arena** of a fixed number of buffers: a write goes into the active buffer, which seals
  once it holds the seal size and is enqueued as a flush task (its estimate, with an optional
  error, is charged to the debt). With no free buffer the arena is exhausted: the engine opens
  the arena-starvation scope and writers block until a flush frees a buffer;
- **k flushers** take sealed buffers in order, ask for their pacing slot, write them to
- a **disk**, one FIFO server whose rate is a step profile (steps, stalls at rate 0), with a
  per-I/O duration factor (noise), rare spikes and an overhead; the I/O's elapsed time, as the
  flusher sees it, includes its wait for the disk. Then the flusher reports the I/O, settles the
  task and frees the buffer.

The plant records every admission, every change of the debt, every I/O, every block at stop
and every spell of arena exhaustion: `Trace`. Metrics are computed from it afterwards
(`flowpace.simulation.metrics`).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from flowpace.options import FlowOptions
from flowpace.simulation.drivers import LAWS, Law, SimClock
from flowpace.simulation.laws import NANOS_PER_SECOND, Decision, Verdict, ceil_div

MIB: Final = 1 << 20
KIB: Final = 1 << 10
MS: Final = 1_000_000
SECOND: Final = NANOS_PER_SECOND


@dataclass(frozen=True, slots=True)
class Disk:
    """The disk: a rate profile, per-I/O noise, spikes and a fixed overhead."""

    steps: tuple[tuple[int, int], ...]
    """``(from_ns, bytes_per_second)``, in time order, the first from 0; a rate 0 is a stall."""
    noise_permille: tuple[int, int] = (1000, 1000)
    """Each I/O's transfer time is multiplied by a factor drawn in this range, per mille."""
    spike_permille: int = 0
    """Chance per I/O, per mille, of a spike of ``spike_ns`` more."""
    spike_ns: int = 0
    overhead_ns: int = 0
    """Fixed time added to every I/O (an fsync)."""

    def rate_at(self, t: int) -> int:
        """Return the disk's rate at time ``t``, bytes/s."""
        rate = self.steps[0][1]
        for start, bps in self.steps:
            if start > t:
                break
            rate = bps
        return rate

    def transfer_ns(self, start: int, nbytes: int) -> int:
        """Return how long ``nbytes`` take from ``start`` at the profile's rates, no noise."""
        t, left = start, nbytes
        bounds = [s for s, _ in self.steps[1:]]
        while True:
            rate = self.rate_at(t)
            ends = [b for b in bounds if b > t]
            end = ends[0] if ends else None
            if rate > 0:
                need = ceil_div(left * NANOS_PER_SECOND, rate)
                if end is None or t + need <= end:
                    return t + need - start
                left -= (end - t) * rate // NANOS_PER_SECOND
            if end is None:  # a stall that never ends
                return 2**62
            t = end

    def capacity_bytes(self, start: int, end: int) -> int:
        """Return the bytes the profile could transfer in ``[start, end)``."""
        total = 0
        for i, (seg_start, rate) in enumerate(self.steps):
            seg_end = self.steps[i + 1][0] if i + 1 < len(self.steps) else end
            lo, hi = max(seg_start, start), min(seg_end, end)
            if hi > lo:
                total += (hi - lo) * rate // NANOS_PER_SECOND
        return total


@dataclass(frozen=True, slots=True)
class Writers:
    """A group of identical writers."""

    count: int
    sizes: tuple[int, ...] = (4 * KIB,)
    """Write sizes, drawn uniformly for each write."""
    copy_bps: int = 200 * MIB
    """How fast one writer copies a write into the arena: a closed-loop writer's demand."""
    think_ns: int = 0
    """Closed loop: time between a write's end and the next ask."""
    windows: tuple[tuple[int, int], ...] = ((0, 2**62),)
    """``[start, end)`` spells in which the writers write."""
    arrivals: tuple[tuple[int, int], ...] | None = None
    """Open loop: ``(from_ns, bytes_per_second)`` of writes arriving at each writer; None for
    closed loop."""

    @property
    def open_loop(self) -> bool:
        """Whether writes arrive at a rate rather than as fast as the writer goes."""
        return self.arrivals is not None


@dataclass(frozen=True, slots=True)
class PlantConfig:
    """Everything the plant is made of, except the law."""

    groups: tuple[Writers, ...]
    disk: Disk
    duration_ns: int
    options: FlowOptions
    seal_bytes: int = 8 * MIB
    arena_buffers: int = 64
    flushers: int = 1
    est_error_permille: int = 0
    """A sealed buffer's estimate is off by up to this, per mille, either way."""
    stop_limit_us: int = 1_000_000
    """The user's bound on a write blocked at stop (laws that have one)."""
    external: tuple[tuple[int, int, int], ...] = ()
    """``(time, tasks, bytes)``: flush work another part of the engine enqueues at once on the
    shared controller (in upstream, one controller serves every bucket: a bucket's teardown
    seals its own arenas), flushed by the same flushers, holding no buffer of this arena."""


@dataclass(slots=True)
class Trace:
    """What happened in a run, for the metrics; times are nanoseconds."""

    writers: int
    adm_t: list[int] = field(default_factory=list)
    """When each write was admitted (its wait for the law over)."""
    adm_writer: list[int] = field(default_factory=list)
    adm_bytes: list[int] = field(default_factory=list)
    adm_computed: list[int] = field(default_factory=list)
    """The waits the law returned for the write, summed."""
    adm_waited: list[int] = field(default_factory=list)
    """From the write's first ask to its admission: the delay as waited."""
    adm_debt: list[int] = field(default_factory=list)
    """The debt, bytes, when the write was admitted."""
    adm_timed_out: list[bool] = field(default_factory=list)
    arena_waits: list[int] = field(default_factory=list)
    """Writes that found the arena exhausted: how long each waited for a buffer."""
    debt_t: list[int] = field(default_factory=list)
    debt_bytes: list[int] = field(default_factory=list)
    """The debt from ``debt_t[i]`` on (a step function)."""
    io: list[tuple[int, int, int]] = field(default_factory=list)
    """Each I/O on the disk: ``(start, end, bytes)``."""
    exhausted: list[tuple[int, int]] = field(default_factory=list)
    """Spells with no free buffer: ``[start, end)``."""
    blocks: list[tuple[int, int, bool]] = field(default_factory=list)
    """Each block at stop: ``(start, end, woken)``; woken is False when its deadline ended it."""
    end_ns: int = 0
    disk_bps_estimates: list[tuple[int, int]] = field(default_factory=list)
    """The controller's I/O average after each I/O: ``(time, bytes/s)``."""


# Event kinds, in the order they are processed at equal times (then by sequence number).
_ASK, _WAKE, _DEADLINE, _DONE, _ARRIVE, _FLUSH, _SUBMIT, _IO_END, _RESUME, _EXTERNAL = range(10)


class _Writer:
    __slots__ = (
        "asked_at",
        "block_token",
        "computed",
        "group",
        "index",
        "queue",
        "size",
        "windows",
    )

    def __init__(self, index: int, group: Writers) -> None:
        self.index = index
        self.group = group
        self.windows = group.windows
        self.queue: deque[int] = deque()
        self.asked_at = 0
        self.computed = 0
        self.size = 0
        self.block_token = 0


class _Task:
    __slots__ = ("actual", "buffer", "est", "handle", "submitted")

    def __init__(self, handle: object, est: int, actual: int, *, buffer: bool = True) -> None:
        self.handle = handle
        self.est = est
        self.actual = actual
        self.buffer = buffer
        self.submitted = 0


class Plant:
    """One run of one law on one plant configuration."""

    def __init__(self, config: PlantConfig, law_name: str, seed: int) -> None:
        """Build the plant, its clock and the law; nothing runs until `run`."""
        self.config = config
        self.rng = random.Random(seed)  # noqa: S311 - seeded simulation draws, not secrets
        self.clock = SimClock()
        self.law: Law = LAWS[law_name].build(config.options, self.clock, config.stop_limit_us)
        self.writers = [
            _Writer(i, group)
            for i, group in enumerate(g for g in config.groups for _ in range(g.count))
        ]
        self.trace = Trace(writers=len(self.writers))
        self.events: list[tuple[int, int, int, int]] = []
        self.seq = 0
        self.debt = 0
        self.fill = 0
        self.free_buffers = config.arena_buffers - 1
        self.active = True
        self.exhausted_since = 0
        self.arena_waiters: deque[tuple[int, int]] = deque()
        self.sealed: deque[_Task] = deque()
        self.idle_flushers = config.flushers
        self.disk_queue: deque[_Task] = deque()
        self.disk_busy = False
        self.tasks: dict[int, _Task] = {}
        self.blocked: list[tuple[int, int, int]] = []
        """Blocked writers: ``(writer, below_bytes, token)``, in the order they blocked."""
        self.block_started: dict[int, int] = {}

    def _at(self, t: int, kind: int, arg: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, kind, arg))

    def _debt_changed(self, t: int) -> None:
        trace = self.trace
        if trace.debt_t and trace.debt_t[-1] == t:
            trace.debt_bytes[-1] = self.debt
        else:
            trace.debt_t.append(t)
            trace.debt_bytes.append(self.debt)

    def run(self) -> Trace:
        """Run to the configured duration; return the trace."""
        self._debt_changed(0)
        for writer in self.writers:
            start = _next_window_start(writer.windows, 0)
            if start is None:
                continue
            if writer.group.open_loop:
                self._at(start, _ARRIVE, writer.index)
            else:
                self._at(start, _ASK, writer.index)
        for k, (t, _, _) in enumerate(self.config.external):
            self._at(t, _EXTERNAL, k)
        end = self.config.duration_ns
        events = self.events
        handlers = (
            self._ask,
            self._wake,
            self._deadline,
            self._done,
            self._arrive,
            self._flush,
            self._submit,
            self._io_end,
            self._resume,
            self._external,
        )
        clock = self.clock
        while events:
            t, _, kind, arg = heapq.heappop(events)
            if t >= end:
                break
            clock.now_ns = t
            handlers[kind](t, arg)
        if not self.active:
            self.trace.exhausted.append((self.exhausted_since, end))
        self.trace.end_ns = end
        return self.trace

    # --- writers ------------------------------------------------------------------------------

    def _arrive(self, t: int, index: int) -> None:
        writer = self.writers[index]
        group = writer.group
        arrivals = group.arrivals
        assert arrivals is not None  # noqa: S101 - only open-loop writers arrive
        if _in_window(writer.windows, t):
            rate = _rate_at(arrivals, t)
            if rate > 0:
                writer.queue.append(t)
                if len(writer.queue) == 1:
                    self._start_write(writer, t)
                size = sum(group.sizes) // len(group.sizes)
                gap = size * NANOS_PER_SECOND // rate * self.rng.randrange(500, 1501) // 1000
                self._at(t + max(gap, 1), _ARRIVE, index)
                return
        nxt = _next_change(arrivals, writer.windows, t)
        if nxt is not None:
            self._at(nxt, _ARRIVE, index)

    def _ask(self, t: int, index: int) -> None:
        writer = self.writers[index]
        if not _in_window(writer.windows, t):
            start = _next_window_start(writer.windows, t)
            if start is not None:
                self._at(start, _ASK, index)
            return
        self._start_write(writer, t)

    def _start_write(self, writer: _Writer, t: int) -> None:
        sizes = writer.group.sizes
        writer.size = sizes[0] if len(sizes) == 1 else sizes[self.rng.randrange(len(sizes))]
        writer.asked_at = t
        writer.computed = 0
        self._decided(writer, t, self.law.admit(writer.index, writer.size, t))

    def _decided(self, writer: _Writer, t: int, decision: Decision) -> None:
        if decision.verdict is Verdict.ADMIT:
            if decision.wait_ns == 0:
                self._admitted(writer, t, timed_out=False)
            else:
                writer.computed += decision.wait_ns
                self._at(t + decision.wait_ns, _WAKE, writer.index)
            return
        if decision.below_bytes > self.debt:
            self._decided(writer, t, self.law.admit(writer.index, writer.size, t))
            return
        writer.block_token += 1
        self.blocked.append((writer.index, decision.below_bytes, writer.block_token))
        self.block_started[writer.index] = t
        if decision.deadline_ns is not None:
            self._at(decision.deadline_ns, _DEADLINE, writer.index)

    def _wake(self, t: int, index: int) -> None:
        writer = self.writers[index]
        self._decided(writer, t, self.law.recheck(index, writer.size, t))

    def _deadline(self, t: int, index: int) -> None:
        writer = self.writers[index]
        for i, (blocked, _, token) in enumerate(self.blocked):
            if blocked == index and token == writer.block_token:
                del self.blocked[i]
                self.trace.blocks.append((self.block_started.pop(index), t, False))
                self._admitted(writer, t, timed_out=True)
                return

    def _wake_blocked(self, t: int) -> None:
        if not self.blocked:
            return
        ready = [entry for entry in self.blocked if entry[1] > self.debt]
        if not ready:
            return
        self.blocked = [entry for entry in self.blocked if entry[1] <= self.debt]
        for index, _, _ in ready:
            writer = self.writers[index]
            writer.block_token += 1  # its deadline event is now stale
            self.trace.blocks.append((self.block_started.pop(index), t, True))
            self._decided(writer, t, self.law.admit(index, writer.size, t))

    def _admitted(self, writer: _Writer, t: int, *, timed_out: bool) -> None:
        trace = self.trace
        trace.adm_t.append(t)
        trace.adm_writer.append(writer.index)
        trace.adm_bytes.append(writer.size)
        trace.adm_computed.append(writer.computed)
        trace.adm_waited.append(t - writer.asked_at)
        trace.adm_debt.append(self.debt)
        trace.adm_timed_out.append(timed_out)
        if not self.active:
            self.arena_waiters.append((writer.index, t))
            return
        self._copy(writer, t)

    def _copy(self, writer: _Writer, t: int) -> None:
        size = writer.size
        self.fill += size
        if self.fill >= self.config.seal_bytes:
            self._seal(t)
        copy_ns = ceil_div(size * NANOS_PER_SECOND, writer.group.copy_bps)
        self._at(t + copy_ns, _DONE, writer.index)

    def _done(self, t: int, index: int) -> None:
        writer = self.writers[index]
        group = writer.group
        if group.open_loop:
            writer.queue.popleft()
            if writer.queue:
                self._start_write(writer, t)
        elif group.think_ns == 0 and _in_window(writer.windows, t):
            self._start_write(writer, t)  # the next ask, without an event of its own
        else:
            self._at(t + group.think_ns, _ASK, index)

    # --- the arena ----------------------------------------------------------------------------

    def _seal(self, t: int) -> None:
        actual = self.fill
        self.fill = 0
        error = self.config.est_error_permille
        est = actual
        if error:
            est = max(actual * (1000 + self.rng.randrange(-error, error + 1)) // 1000, 1)
        handle = self.law.enqueue(est, t)
        self.debt += est
        self._debt_changed(t)
        self.sealed.append(_Task(handle, est, actual))
        if self.free_buffers > 0:
            self.free_buffers -= 1
        else:
            self.active = False
            self.exhausted_since = t
            self.law.enter_starving()
        if self.idle_flushers:
            self.idle_flushers -= 1
            self._at(t, _FLUSH, 0)

    def _external(self, t: int, k: int) -> None:
        _, tasks, nbytes = self.config.external[k]
        for _ in range(tasks):
            handle = self.law.enqueue(nbytes, t)
            self.debt += nbytes
            self.sealed.append(_Task(handle, nbytes, nbytes, buffer=False))
        self._debt_changed(t)
        while self.idle_flushers and self.sealed:
            self.idle_flushers -= 1
            self._at(t, _FLUSH, 0)

    def _release(self, t: int) -> None:
        if self.active:
            self.free_buffers += 1
            return
        self.active = True
        self.trace.exhausted.append((self.exhausted_since, t))
        self.law.leave_starving()
        self._at(t, _RESUME, 0)

    def _resume(self, t: int, _: int) -> None:
        while self.arena_waiters and self.active:
            index, since = self.arena_waiters.popleft()
            self.trace.arena_waits.append(t - since)
            self._copy(self.writers[index], t)

    # --- flushers and the disk ----------------------------------------------------------------

    def _flush(self, t: int, _: int) -> None:
        if not self.sealed:
            self.idle_flushers += 1
            return
        task = self.sealed.popleft()
        wait = self.law.before_flush(task.handle, t)
        key = id(task)
        self.tasks[key] = task
        self._at(t + wait, _SUBMIT, key)

    def _submit(self, t: int, key: int) -> None:
        task = self.tasks[key]
        task.submitted = t
        self.disk_queue.append(task)
        if not self.disk_busy:
            self._start_io(t)

    def _start_io(self, t: int) -> None:
        task = self.disk_queue[0]
        disk = self.config.disk
        duration = disk.transfer_ns(t, task.actual)
        low, high = disk.noise_permille
        if high > low:
            duration = duration * self.rng.randrange(low, high + 1) // 1000
        if disk.spike_permille and self.rng.randrange(1000) < disk.spike_permille:
            duration += disk.spike_ns
        duration += disk.overhead_ns
        self.disk_busy = True
        self.trace.io.append((t, t + duration, task.actual))
        self._at(t + duration, _IO_END, id(task))

    def _io_end(self, t: int, key: int) -> None:
        task = self.tasks.pop(key)
        self.disk_queue.popleft()
        self.disk_busy = False
        law = self.law
        law.io_built(task.handle, task.actual, t - task.submitted, t)
        law.mark_done(task.handle, t)
        self.debt -= task.est
        self._debt_changed(t)
        self.trace.disk_bps_estimates.append((t, law.state().io_bps_ewma))
        if task.buffer:
            self._release(t)
        if self.disk_queue:
            self._start_io(t)
        self._flush(t, 0)
        self._wake_blocked(t)


def run(config: PlantConfig, law_name: str, seed: int) -> Trace:
    """Return the trace of ``law_name`` on the plant ``config`` with the random ``seed``."""
    return Plant(config, law_name, seed).run()


def _in_window(windows: tuple[tuple[int, int], ...], t: int) -> bool:
    for start, end in windows:  # noqa: SIM110 - a loop, not any(): this is on the hot path
        if start <= t < end:
            return True
    return False


def _next_window_start(windows: tuple[tuple[int, int], ...], t: int) -> int | None:
    if _in_window(windows, t):
        return t
    later = [start for start, _ in windows if start > t]
    return min(later) if later else None


def _rate_at(profile: tuple[tuple[int, int], ...], t: int) -> int:
    rate = 0
    for start, bps in profile:
        if start > t:
            break
        rate = bps
    return rate


def _next_change(
    profile: tuple[tuple[int, int], ...], windows: tuple[tuple[int, int], ...], t: int
) -> int | None:
    """Return the next time after ``t`` an open-loop writer may get arrivals again."""
    candidates = sorted(
        {start for start, _ in profile if start > t} | {start for start, _ in windows if start > t}
    )
    for c in candidates:
        if _in_window(windows, c) and _rate_at(profile, c) > 0:
            return c
    return None
