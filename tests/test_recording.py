"""Recording live runs as traces and replaying them against the model (spec OBS-7, OBS-8).

The oracle is the replay: a recorded run must pass `flowpace replay` on the reference model,
which shares no code with the recorder or the controller's logic. The runs are built so that
they sleep, pace, bypass, raise and move the clock by sub-microsecond amounts, and each test
checks that its run did, so a pass is never vacuous. Planted mismatches, in the file and in
the controller, must fail the replay, naming the field.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from flowpace import FlowOptions, FlowOutcome, Metric, TaskStateError
from flowpace.cli import main
from flowpace.clock import SystemClock
from flowpace.recording import TraceRecorder, recording
from flowpace.replay import TARGETS, Vector, load_vectors, replay
from flowpace.testing import ManualClock

OPTIONS = FlowOptions(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=1,
    bp_hard_debt_units=2,
    bp_stop_debt_units=4,
    bp_pacing_soft_debt_units=4,
    bp_warmup_min_samples=1,
    bp_idle_reset_ms=1,
    bp_max_delay_us=2_000,
)
"""Small units and delays: a few tasks reach every zone, a sleep is at most 2 ms."""


def recorded_vector(path: Path) -> Vector:
    """Return the one trace a recording wrote to ``path``."""
    vectors = list(load_vectors([path]))
    assert len(vectors) == 1
    return vectors[0]


def assert_replays_clean(path: Path) -> Vector:
    """Spec OBS-8: the recording at ``path`` passes on the model and on the implementation."""
    vector = recorded_vector(path)
    for target in ("reference", "impl"):
        mismatch = replay(vector, TARGETS[target])
        assert mismatch is None, (target, mismatch)
    return vector


def untyped(rows: list[Any]) -> list[dict[str, Any]]:
    """Return trace or expected lines as plain dicts (JSON values are checked at run time)."""
    return rows


def ops_of(vector: Vector, op: str) -> list[dict[str, Any]]:
    """Return the expected lines answering the operations named ``op``."""
    return [line for line in untyped(vector.expected)[1:] if line["op"] == op]


def sequential_run(recorder: TraceRecorder, clock: ManualClock) -> None:
    """Drive every operation once or more: sleeps, pacing, bypasses, errors, odd times."""
    first = recorder.on_enqueue_est(1_000)
    clock.advance_ns(1_000_500)  # 1 000 us and 500 ns: the 500 ns reach the next advance
    recorder.on_io_built(first, 1_000, 1_000_999)  # 1 000 us: 1 MB/s
    recorder.on_mark_done(first)
    with pytest.raises(TaskStateError):
        recorder.on_mark_done(first)  # recorded with its error
    backlog = [recorder.on_enqueue_est(1_000) for _ in range(3)]
    assert recorder.before_foreground_write(500) > 0  # above soft: sleeps on the clock
    assert recorder.before_foreground_write_nowait(500) > 0  # recorded as a sleep
    assert asyncio.run(recorder.before_foreground_write_async(500)) > 0
    backlog[0].mark_outcome(FlowOutcome.EMPTY)
    for task in backlog:
        recorder.on_mark_done(task)  # the debt falls below the pacing threshold
    paced = recorder.on_enqueue_est(100)
    recorder.before_flush(paced)  # first paced flush: sets the deadline
    second = recorder.on_enqueue_est(100)
    assert recorder.before_flush(second) > 0  # behind the deadline: sleeps
    third = recorder.on_enqueue_est(100)
    assert recorder.before_flush_nowait(third) > 0
    fourth = recorder.on_enqueue_est(100)
    assert asyncio.run(recorder.before_flush_async(fourth)) > 0
    with recorder.teardown_bypass():
        recorder.before_flush(fourth)  # teardown bypass
    with recorder.arena_starving():
        recorder.before_flush(fourth)
    fourth.mark_force_bypass()
    recorder.before_flush(fourth)
    for task in [paced, second, third, fourth]:
        clock.advance_ns(777)
        recorder.on_mark_done(task)
    with pytest.raises(ValueError, match="est_bytes"):
        recorder.on_enqueue_est(-1)  # recorded with its error
    clock.advance_ns(5_000_000)  # past the idle reset, and past the waits not slept on clock
    recorder.on_enqueue_est(5)


def test_a_sequential_recording_replays_clean(tmp_path: Path) -> None:
    """Spec OBS-7, OBS-8: every operation, its time and its answers replay exactly."""
    start_ns = 123_456_789  # the trace's times count from the start
    clock = ManualClock(start_ns=start_ns)
    path = tmp_path / "run.jsonl"
    with recording(path, OPTIONS, clock=clock, async_sleep=clock.async_sleep_ns) as recorder:
        sequential_run(recorder, clock)

    vector = assert_replays_clean(path)
    # The run did what it claims, so the pass above is not vacuous.
    assert all(line["slept_us"] > 0 for line in ops_of(vector, "fg_write"))
    flush_sleeps = [line["slept_us"] for line in ops_of(vector, "before_flush")]
    assert sum(1 for slept in flush_sleeps if slept > 0) == 3
    expected, trace = untyped(vector.expected), untyped(vector.trace)
    metrics = {m["metric"] for line in expected[1:] for m in line["metrics"]}
    assert {
        Metric.FLUSH_PACING_BYPASS_TEARDOWN.value,
        Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION.value,
        Metric.FLUSH_PACING_SLEEP_MICROS.value,
    } <= metrics
    assert [line["error"] for line in expected if "error" in line] == [
        "TaskStateError",
        "ValueError",
    ]
    # 1 000 500 ns: an advance of 1 000 us, the 500 ns carried. The trace's clock moves only
    # by advances and sleeps, and ends on the wrapped clock's last reading, in whole us.
    advances = [op["us"] for op in trace[1:] if op["op"] == "advance"]
    assert advances[0] == 1_000
    slept_us = sum(line["slept_us"] for line in expected[1:])
    assert (sum(advances) + slept_us) * 1_000 == expected[-1]["now_ns"]
    assert expected[-1]["now_ns"] == (clock.monotonic_ns() - start_ns) // 1_000 * 1_000
    assert expected[-1]["state"]["io_sample_count"] == 0  # the idle reset happened
    # The I/O duration is recorded in the whole microseconds the controller uses (AR-1).
    assert next(op for op in trace[1:] if op["op"] == "io_built")["elapsed_us"] == 1_000


def test_the_cli_passes_a_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Spec OBS-8: `flowpace replay --target both` passes a recorded run and exits 0."""
    clock = ManualClock()
    path = tmp_path / "run.jsonl"
    with recording(path, OPTIONS, clock=clock, async_sleep=clock.async_sleep_ns) as recorder:
        sequential_run(recorder, clock)

    status = main(["replay", "--target", "both", str(path)])

    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"
    assert status == 0


def alter(path: Path, edit: Any) -> Path:
    """Rewrite the recording at ``path`` after ``edit(record)``; return the new file."""
    record = json.loads(path.read_text(encoding="utf-8"))
    edit(record)
    altered = path.with_name("altered.jsonl")
    altered.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return altered


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        (
            "state.debt_bytes",
            lambda line: line["state"].update(debt_bytes=line["state"]["debt_bytes"] + 1),
        ),
        ("now_ns", lambda line: line.update(now_ns=line["now_ns"] + 1)),
        ("slept_us", lambda line: line.update(slept_us=line["slept_us"] + 1)),
    ],
    ids=["debt", "time", "sleep"],
)
def test_a_planted_mismatch_fails_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, edit: Any
) -> None:
    """Spec OBS-8: a recording edited on one field fails the replay, naming that field."""
    clock = ManualClock()
    path = tmp_path / "run.jsonl"
    with recording(path, OPTIONS, clock=clock) as recorder:
        sequential_run_blocking_only(recorder, clock)
    target_line = next(
        index
        for index, line in enumerate(recorded_vector(path).expected)
        if line.get("op") == "fg_write"
    )
    altered = alter(path, lambda record: edit(record["expected"][target_line]))

    status = main(["replay", str(altered)])

    out = capsys.readouterr().out
    fail = next(line for line in out.splitlines() if line.startswith("FAIL"))
    assert f"line {target_line}" in fail
    assert field in out
    assert status == 1


def sequential_run_blocking_only(recorder: TraceRecorder, clock: ManualClock) -> None:
    """A short run with one delayed foreground write."""
    first = recorder.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    recorder.on_io_built(first, 1_000, 1_000_000)
    recorder.on_mark_done(first)
    recorder.on_enqueue_est(3_000)
    assert recorder.before_foreground_write(500) > 0


def test_a_wrong_controller_fails_its_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spec OBS-7: trace validation finds a controller that delays writes 1 us too long."""
    from flowpace import _rules  # noqa: PLC0415 - the module the planted bug patches

    correct = _rules.foreground_delay_us
    monkeypatch.setattr(
        _rules, "foreground_delay_us", lambda *args, **kwargs: correct(*args, **kwargs) + 1
    )
    clock = ManualClock()
    path = tmp_path / "run.jsonl"
    with recording(path, OPTIONS, clock=clock) as recorder:
        sequential_run_blocking_only(recorder, clock)
    monkeypatch.undo()

    mismatch = replay(recorded_vector(path), TARGETS["reference"])

    assert mismatch is not None
    assert "slept_us" in mismatch.fields
    assert vector_op(path, mismatch.index) == "fg_write"


def vector_op(path: Path, index: int) -> object:
    """Return the operation on line ``index`` of the recording at ``path``."""
    return recorded_vector(path).trace[index]["op"]


THREADED = dataclasses.replace(OPTIONS, bp_idle_reset_ms=10**9)
"""`OPTIONS` without idle resets (one would need an idle spell of 11 days)."""

ROUNDS = 15


def threaded_run(recorder: TraceRecorder, clock: ManualClock | None, workers: int) -> None:
    """
    Run ``workers`` threads of task lifecycles, writes and flushes on one recorder.

    Each thread's own task is above the soft threshold, so from its second round on (warm:
    its first I/O report is a sample) every one of its foreground writes is delayed.
    """
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            barrier.wait()
            for round_ in range(ROUNDS):
                task = recorder.on_enqueue_est(1_500 + 100 * seed)
                if clock is not None:
                    clock.advance_ns(1_000 * (seed + 1) + round_)
                recorder.before_foreground_write(200)
                recorder.before_flush(task)
                recorder.on_io_built(task, 1_250 + 50 * seed, 100_000 + 333 * round_)
                if round_ % 4 == seed % 4:
                    with recorder.teardown_bypass():
                        recorder.before_flush_nowait(recorder.on_enqueue_est(10))
                recorder.on_mark_done(task)
        except BaseException as error:  # noqa: BLE001 - re-raised by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)  # a safety net only: the run takes milliseconds
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)


def test_a_threaded_recording_on_a_manual_clock_replays_clean(tmp_path: Path) -> None:
    """Spec OBS-8: four threads' operations are recorded in the order they took effect."""
    clock = ManualClock()
    path = tmp_path / "threads.jsonl"
    with recording(path, THREADED, clock=clock) as recorder:
        threaded_run(recorder, clock, workers=4)

    vector = assert_replays_clean(path)
    assert len(ops_of(vector, "enqueue")) >= 4 * ROUNDS
    delayed = [line for line in ops_of(vector, "fg_write") if line["slept_us"] > 0]
    assert len(delayed) >= 4 * (ROUNDS - 1)


def test_a_threaded_recording_on_the_system_clock_replays_clean(tmp_path: Path) -> None:
    """Spec OBS-8: real threads on the system clock, real sleeps, replayed exactly."""
    path = tmp_path / "system.jsonl"
    with recording(path, THREADED, clock=SystemClock()) as recorder:
        threaded_run(recorder, None, workers=3)

    vector = assert_replays_clean(path)
    assert len(ops_of(vector, "mark_done")) >= 3 * ROUNDS
    delayed = [line for line in ops_of(vector, "fg_write") if line["slept_us"] > 0]
    assert len(delayed) >= 3 * (ROUNDS - 1)  # real sleeps, during which other threads run


def test_an_observer_that_raises_loses_nothing_from_the_recording(tmp_path: Path) -> None:
    """Spec OBS-7: a failing observer is the controller's business; every call is recorded."""

    class Failing:
        def __init__(self) -> None:
            self.calls: list[Metric] = []

        def counter(self, metric: Metric, delta: int) -> None:
            del delta
            self.calls.append(metric)

        def histogram(self, metric: Metric, value: int) -> None:
            del value
            self.calls.append(metric)
            raise LookupError(metric.value)

    clock, observer = ManualClock(), Failing()
    path = tmp_path / "run.jsonl"
    with recording(path, OPTIONS, clock=clock, observer=observer) as recorder:
        sequential_run_blocking_only(recorder, clock)
        failures = recorder.observer_failures

    vector = assert_replays_clean(path)
    line = ops_of(vector, "fg_write")[0]
    assert "error" not in line
    assert [m["metric"] for m in line["metrics"]] == ["FlowFgDelay", "FlowFgDelayMicros"]
    assert observer.calls == [Metric.FG_DELAY, Metric.FG_DELAY_MICROS]
    assert failures == 1


def test_recording_and_exporters_are_not_imported_by_the_core() -> None:
    """Spec OBS-7: recording off costs nothing: the core never imports it, nor any exporter."""
    code = (
        "import sys, flowpace; from flowpace import FlowController; FlowController();"
        "print(sorted(m for m in sys.modules if m.startswith(('flowpace.recording',"
        " 'flowpace.prometheus', 'flowpace.opentelemetry', 'prometheus_client',"
        " 'opentelemetry'))))"
    )
    out = subprocess.run(  # noqa: S603 - this interpreter, on a constant program
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip() == "[]"


def test_a_recording_of_the_extended_law_is_refused(tmp_path: Path) -> None:
    # spec OBS-7: the trace format replays the seed's law only; a recording of the extended
    # law would be a trace that fails its replay for no fault of the run.
    options = FlowOptions(enable_backpressure=True, ext_admission_timeline=True)
    with pytest.raises(ValueError, match="ext_admission_timeline=True cannot be recorded"):
        TraceRecorder(options, clock=ManualClock())
    path = tmp_path / "run.jsonl"
    with pytest.raises(ValueError, match="spec OBS-7"), recording(path, options):
        pass
    assert not path.exists()
