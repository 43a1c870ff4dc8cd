"""A small write-behind store on real files, driven by a flowpace controller as the guide says.

Writers append records to an in-memory *memtable*; a full memtable is sealed and queued for a
flusher thread, which writes it to its own file with ``os.write`` and ``fsync``. The store holds
at most ``arena_buffers`` sealed memtables; a writer that finds them all queued waits for one
to be flushed. The controller sees each sealed memtable as a flush task: it is charged when the
memtable is sealed, reconciled with the bytes written, and settled when the file is durable.

Where each call goes, and why (docs/guide.md says it at length):

- ``before_foreground_write`` is called by the writer *before* it takes the store's lock: a
  delayed writer must not hold up the flusher or the other writers while it sleeps.
- ``on_enqueue_est`` is called when a memtable is sealed, with its size as the estimate.
- The flusher handles each task inside ``with task:``, which settles it (``on_mark_done``) on
  leaving, whatever happens: it calls ``before_flush`` (pacing), writes, then ``on_io_built``
  with the bytes the file holds and the time from the first ``os.write`` to the end of
  ``fsync``. A memtable with nothing to write is marked `FlowOutcome.EMPTY`; a write that fails
  is marked `FlowOutcome.SKIP`, so its charge never stays in the debt and it is no sample.
- A writer that waits for a free buffer holds the arena-starvation scope open (pacing is
  bypassed meanwhile, so the flusher frees buffers at full speed); `close` seals the last
  memtable as a forced bypass and drains the queue inside the teardown scope.

Run it: ``uv run python examples/write_behind.py DIRECTORY`` writes a few MiB with four writers
and prints the controller's state at the end.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from flowpace import FlowController, FlowOptions, FlowOutcome, FlowTask

RECORD_HEADER = 8
"""Bytes of framing each record costs in a memtable: two 32-bit lengths."""


@dataclass(slots=True)
class _Memtable:
    """Records buffered in memory until the memtable is sealed."""

    number: int
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass(frozen=True, slots=True)
class FlushedFile:
    """One memtable made durable: its file and the bytes the file holds."""

    path: Path
    nbytes: int


def options_for(memtable_bytes: int, arena_buffers: int) -> FlowOptions:
    """
    Return options sized for ``arena_buffers`` memtables of ``memtable_bytes`` each.

    The flush unit is one memtable: the debt counts sealed, unflushed memtables. The stop
    threshold lies below the arena's size, so the delays start before writers would block on
    a full arena; soft is a quarter of stop and hard half of it (the seed's 8/24/48 spacing,
    compressed to fit), and the cold-start fail-safe is lowered with soft, since its default of
    8 units would otherwise let 8 memtables pile up before the first flush is measured.
    """
    stop = max(3, arena_buffers - 1)
    soft = max(1, stop // 4)
    hard = max(soft + 1, stop // 2)
    return FlowOptions(
        enable_backpressure=True,
        enable_flush_pacing=True,
        bp_flush_unit_bytes=memtable_bytes,
        bp_soft_debt_units=soft,
        bp_hard_debt_units=hard,
        bp_stop_debt_units=stop,
        bp_cold_start_fail_safe_units=soft,
        bp_pacing_soft_debt_units=max(1, soft // 2),
        bp_warmup_min_samples=1,
    )


class WriteBehindStore:
    """
    Writers buffer records in memory; one flusher thread writes sealed memtables to files.

    Use it as a context manager, or call `close`. ``clock_ns`` times the I/O; it must be the
    controller's clock (the default system clock's ``time.monotonic_ns`` for a controller built
    with the default clock).
    """

    def __init__(
        self,
        directory: Path,
        controller: FlowController,
        *,
        memtable_bytes: int,
        arena_buffers: int,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """Open a store writing into ``directory`` (which must exist) under ``controller``."""
        if memtable_bytes < 1 or arena_buffers < 1:
            raise ValueError(
                f"memtable_bytes and arena_buffers must be at least 1, "
                f"got {memtable_bytes} and {arena_buffers}"
            )
        self._directory = directory
        self._controller = controller
        self._memtable_bytes = memtable_bytes
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._sealed: queue.Queue[tuple[_Memtable, FlowTask] | None] = queue.Queue()
        self._free = threading.Semaphore(arena_buffers)
        self._active = _Memtable(0)
        self._next_number = 1
        self._closed = False
        self.flushed: list[FlushedFile] = []
        self.errors: list[OSError] = []
        self.max_debt_bytes = 0
        """The highest debt the flusher saw when it took a memtable: a measure of the backlog."""
        self._flusher = threading.Thread(target=self._flush_loop, name="flusher", daemon=True)
        self._flusher.start()

    def __enter__(self) -> Self:
        """Return the store; `close` runs on leaving the ``with``."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store: flush everything, then stop the flusher."""
        self.close()

    def put(self, key: bytes, value: bytes) -> None:
        """Buffer one record; delayed first if the flush backlog is high."""
        nbytes = RECORD_HEADER + len(key) + len(value)
        # Outside the store's lock: the delay may sleep, and the flusher must keep going.
        self._controller.before_foreground_write(nbytes)
        record = len(key).to_bytes(4, "little") + len(value).to_bytes(4, "little") + key + value
        with self._lock:
            if self._closed:
                raise ValueError("the store is closed")
            self._active.chunks.append(record)
            self._active.size += nbytes
            full = self._active.size >= self._memtable_bytes
            sealed = self._seal_locked() if full else None
        if sealed is not None:
            self._queue(sealed, bypass=False)

    def close(self) -> None:
        """Flush the last memtable and everything queued, then stop the flusher thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            last = self._seal_locked()
        # Teardown: the remaining flushes must not wait behind the pacing of a busy disk.
        with self._controller.teardown_bypass():
            self._queue(last, bypass=True)
            self._sealed.join()
        self._sealed.put(None)
        self._flusher.join()

    def _seal_locked(self) -> _Memtable:
        """Return the active memtable, replaced by an empty one; the store's lock is held."""
        sealed, self._active = self._active, _Memtable(self._next_number)
        self._next_number += 1
        return sealed

    def _queue(self, memtable: _Memtable, *, bypass: bool) -> None:
        """Take a free buffer for ``memtable`` (waiting if none), charge it and queue it."""
        if not self._free.acquire(blocking=False):
            # No free buffer: writers are starved until the flusher frees one, so pacing
            # must not hold the flusher back meanwhile.
            with self._controller.arena_starving():
                self._free.acquire()
        task = self._controller.on_enqueue_est(memtable.size)
        if bypass:
            task.mark_force_bypass()
        self._sealed.put((memtable, task))

    def _flush_loop(self) -> None:
        """Write queued memtables until `close` queues the end marker."""
        while (item := self._sealed.get()) is not None:
            memtable, task = item
            self.max_debt_bytes = max(self.max_debt_bytes, self._controller.snapshot().debt_bytes)
            try:
                self._flush_one(memtable, task)
            finally:
                self._free.release()
                self._sealed.task_done()

    def _flush_one(self, memtable: _Memtable, task: FlowTask) -> None:
        """Write one memtable to its file; leaving the ``with`` settles its task, come what may."""
        # `with task:` settles on leaving; if the body raises, as a flush that failed (SKIP):
        # the charge never stays in the debt, and a failed flush is not a throughput sample.
        with task:
            self._controller.before_flush(task)
            if memtable.size == 0:
                task.mark_outcome(FlowOutcome.EMPTY)  # nothing to write: no I/O sample
                return
            path = self._directory / f"{memtable.number:08d}.data"
            try:
                started = self._clock_ns()
                nbytes = _write_durably(path, memtable.chunks)
                elapsed_ns = self._clock_ns() - started
            except OSError as error:
                # The data is still in memory: an engine would keep it for a retry.
                task.mark_outcome(FlowOutcome.SKIP)
                self.errors.append(error)
                return
            self._controller.on_io_built(task, nbytes, elapsed_ns)
            # Here an engine would publish the file (manifest, WAL truncation): a failure
            # there raises out of the `with`, which settles the task as SKIP.
        self.flushed.append(FlushedFile(path, nbytes))


def _write_durably(path: Path, chunks: list[bytes]) -> int:
    """Write ``chunks`` to a new file at ``path``, fsync it; return the bytes written."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        written = 0
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                count = os.write(descriptor, view)
                written += count
                view = view[count:]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return written


def run_writers(store: WriteBehindStore, writers: int, records: int, value_bytes: int) -> None:
    """Have ``writers`` threads put ``records`` records of ``value_bytes`` each, and wait."""

    def write(writer: int) -> None:
        value = bytes([writer % 256]) * value_bytes
        for number in range(records):
            store.put(f"{writer}:{number}".encode(), value)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main(argv: list[str] | None = None) -> int:
    """Write a few MiB into DIRECTORY with four writers; print what the controller saw."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)
    memtable_bytes, arena_buffers = 256 << 10, 8
    controller = FlowController(options_for(memtable_bytes, arena_buffers))
    with WriteBehindStore(
        args.directory, controller, memtable_bytes=memtable_bytes, arena_buffers=arena_buffers
    ) as store:
        run_writers(store, writers=4, records=2_000, value_bytes=1_000)
    state = controller.snapshot()
    sys.stdout.write(
        f"{len(store.flushed)} files, {sum(f.nbytes for f in store.flushed)} bytes; "
        f"highest debt {store.max_debt_bytes} bytes; debt now {state.debt_bytes}; "
        f"disk {state.io_bps_ewma} B/s\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
