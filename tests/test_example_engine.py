"""The example engine (examples/write_behind.py) runs as the guide says: bounded debt, nothing left.

A short real run: writer threads, a flusher thread writing and fsyncing real files, the system
clock. Nothing here depends on how fast the machine or the disk is: the assertions are about
bytes and states, which every schedule must give.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import write_behind as example
from flowpace import FlowController, FlowOutcome, FlowTask
from flowpace.cli import main
from flowpace.recording import recording

if TYPE_CHECKING:
    import pytest

MEMTABLE_BYTES = 32 << 10
ARENA_BUFFERS = 4
WRITERS = 4
RECORDS = 100
VALUE_BYTES = 1_000


def _record_bytes(writer: int, number: int) -> int:
    """Return the bytes one record costs in a memtable, computed apart from the store."""
    return 8 + len(f"{writer}:{number}".encode()) + VALUE_BYTES


def _run(tmp_path: Path, controller: FlowController) -> example.WriteBehindStore:
    store = example.WriteBehindStore(
        tmp_path, controller, memtable_bytes=MEMTABLE_BYTES, arena_buffers=ARENA_BUFFERS
    )
    with store:
        example.run_writers(store, WRITERS, RECORDS, VALUE_BYTES)
    return store


def test_a_real_run_keeps_the_debt_bounded_and_settles_everything(tmp_path: Path) -> None:
    controller = FlowController(example.options_for(MEMTABLE_BYTES, ARENA_BUFFERS))
    store = _run(tmp_path, controller)
    expected = sum(_record_bytes(w, n) for w in range(WRITERS) for n in range(RECORDS))
    on_disk = sum(path.stat().st_size for path in tmp_path.iterdir())
    assert on_disk == expected
    assert sum(f.nbytes for f in store.flushed) == expected
    assert store.errors == []
    state = controller.snapshot()
    assert state.debt_bytes == 0
    assert state.io_sample_count == len(store.flushed)
    assert state.io_bps_ewma > 0
    assert state.teardown_bypass_scopes == 0
    assert state.arena_starving_scopes == 0
    # At most ARENA_BUFFERS memtables are charged at once, each at most one record past full.
    biggest_record = max(_record_bytes(w, n) for w in range(WRITERS) for n in range(RECORDS))
    assert 0 < store.max_debt_bytes <= ARENA_BUFFERS * (MEMTABLE_BYTES + biggest_record)


def test_a_failed_write_is_settled_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = example._write_durably
    failures: list[Path] = []

    def failing_once(path: Path, chunks: list[bytes]) -> int:
        if not failures:
            failures.append(path)
            raise OSError(28, "No space left on device", str(path))
        return real_write(path, chunks)

    monkeypatch.setattr(example, "_write_durably", failing_once)
    controller = FlowController(example.options_for(MEMTABLE_BYTES, ARENA_BUFFERS))
    store = _run(tmp_path, controller)
    assert len(store.errors) == 1
    assert store.errors[0].errno == 28
    # The failed memtable's charge left the debt, and it gave no throughput sample.
    state = controller.snapshot()
    assert state.debt_bytes == 0
    assert state.io_sample_count == len(store.flushed)


def test_an_empty_last_memtable_is_marked_empty(tmp_path: Path) -> None:
    outcomes: list[FlowOutcome] = []

    class Watching(FlowController):
        def on_mark_done(self, task: FlowTask) -> None:
            outcomes.append(task.snapshot().outcome)
            super().on_mark_done(task)

    controller = Watching(example.options_for(MEMTABLE_BYTES, ARENA_BUFFERS))
    store = example.WriteBehindStore(
        tmp_path, controller, memtable_bytes=MEMTABLE_BYTES, arena_buffers=ARENA_BUFFERS
    )
    store.close()
    assert outcomes == [FlowOutcome.EMPTY]
    assert controller.snapshot().debt_bytes == 0
    assert list(tmp_path.iterdir()) == []


def test_options_keep_stop_below_the_arena() -> None:
    for buffers in (4, 8, 16, 64):
        config = example.options_for(4 << 20, buffers).normalised()
        assert config.bp_stop_debt_units < buffers
        assert config.bp_soft_debt_units < config.bp_hard_debt_units < config.bp_stop_debt_units
        assert config.bp_cold_start_fail_safe_units == config.bp_soft_debt_units


def test_a_recorded_real_run_replays_against_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # spec OBS-7, OBS-8: the engine's real run (threads, files, the system clock), recorded,
    # is a trace the model reproduces call by call.
    data, trace = tmp_path / "data", tmp_path / "run.jsonl"
    data.mkdir()
    with recording(trace, example.options_for(MEMTABLE_BYTES, ARENA_BUFFERS)) as recorder:
        # The recorder has the controller's methods; the example is typed for the controller.
        store = _run(data, cast("FlowController", recorder))
    assert recorder.snapshot().debt_bytes == 0
    assert len(store.flushed) > 1
    lines = trace.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1  # one trace, one line
    assert main(["replay", "--target", "both", str(trace)]) == 0
    assert capsys.readouterr().out.strip().endswith("1 passed, 0 failed")
