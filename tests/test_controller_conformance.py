"""The threaded controller agrees with the reference model and the seed, answer for answer.

Three sources of truth, three checks: the seed's own answers (the conformance vectors, replayed
on both targets), the reference model (random traces, valid and invalid operations mixed,
replayed on both targets and compared line by line), and the command line that reports both.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from hypothesis import event, given
from hypothesis import strategies as st

from flowpace.cli import main
from flowpace.replay import ImplTarget, JsonObject, ReferenceTarget, load_vectors, replay
from flowpace_reference.types import Options, Outcome
from flowpace_reference.u64 import U64_MAX
from strategies import raw_options

if TYPE_CHECKING:
    import pytest

VECTORS = Path(__file__).parent / "vectors" / "seed-vectors.jsonl"


# --- the seed's answers ----------------------------------------------------------------------


def test_every_seed_vector_passes_on_the_implementation() -> None:
    # spec FC-1..FC-12: on protocol-respecting traces the implementation answers as the seed.
    failures = [
        vector.name for vector in load_vectors([VECTORS]) if replay(vector, ImplTarget) is not None
    ]
    assert failures == []


def test_replay_both_targets_passes_every_vector(capsys: pytest.CaptureFixture[str]) -> None:
    # spec FC-1..FC-12: the command line replays both targets; all 160 vectors pass on both.
    assert main(["replay", "--target", "both", str(VECTORS)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "160 passed, 0 failed"


def test_replay_reports_the_first_differing_line_per_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # spec FC-1: a wrong expected debt fails on both targets, each reported once, at its line.
    record = json.loads(VECTORS.read_text(encoding="utf-8").splitlines()[0])
    line = next(i for i, op in enumerate(record["trace"]) if op.get("op") == "enqueue")
    record["expected"][line]["state"]["debt_bytes"] += 1
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert main(["replay", "--target", "both", str(broken), str(VECTORS)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    fails = [text for text in out if text.startswith("FAIL")]
    assert len(fails) == 2
    assert {text.split()[2] for text in fails} == {"[impl]", "[reference]"}
    assert all(f"line {line}: state.debt_bytes differ" in text for text in fails)
    assert out[-1] == "160 passed, 1 failed"


# --- the model's answers, on random traces ---------------------------------------------------

OUTCOME_NAMES = [outcome.value for outcome in Outcome]


def sizes(unit: int) -> st.SearchStrategy[int]:
    """Return byte counts: mostly a few flush units, sometimes at or just past the u64 edges."""
    return st.one_of(
        st.integers(0, 4 * unit),
        st.integers(0, 4 * unit),
        st.integers(0, 4 * unit),
        st.sampled_from((0, 1, unit - 1, unit, unit + 1, U64_MAX - 1, U64_MAX)),
        st.integers(0, U64_MAX),
        st.sampled_from((-1, U64_MAX + 1)),  # ERR-3: rejected by both targets
    )


TASK_OPERATIONS = ("io_built", "mark_outcome", "force_bypass", "mark_done", "before_flush")
"""Operations that name an enqueued task."""

OPERATIONS = (
    "enqueue",
    "enqueue",
    "advance",
    *TASK_OPERATIONS,
    "mark_done",
    "fg_write",
    "fg_write",
    "before_flush",
    "enter_teardown",
    "leave_teardown",
    "enter_starving",
    "leave_starving",
)
"""Operations to draw from; the common ones twice."""


@st.composite
def configuration(draw: st.DrawFn) -> JsonObject:
    """Return a configuration line: accepted options, a small flush unit, short delays."""
    options = draw(raw_options())
    options = dataclasses.replace(
        options,
        bp_flush_unit_bytes=draw(st.sampled_from((1, 1_000, 4_096))),
        bp_warmup_min_samples=draw(st.integers(0, 3)),
        bp_max_delay_us=draw(st.integers(0, 50_000)),
        bp_idle_reset_ms=draw(st.integers(0, 5)),
        enable_backpressure=draw(st.sampled_from((True, True, False))),
        enable_flush_pacing=draw(st.sampled_from((True, True, False))),
    )
    if draw(st.booleans()):
        # Small thresholds, so that a few enqueues reach every regime.
        small = st.integers(0, 6)
        options = dataclasses.replace(
            options,
            bp_soft_debt_units=draw(small),
            bp_hard_debt_units=draw(small),
            bp_stop_debt_units=draw(small),
            bp_cold_start_fail_safe_units=draw(small),
            bp_pacing_soft_debt_units=draw(small),
        )
    return {field.name: getattr(options, field.name) for field in dataclasses.fields(Options)}


def operation_fields(draw: st.DrawFn, kind: str, unit: int) -> JsonObject:
    """Return the fields, other than ``op`` and ``task``, of an operation of ``kind``."""
    if kind == "enqueue":
        return {"est": draw(sizes(unit))}
    if kind == "advance":
        return {"us": draw(st.one_of(st.integers(0, 3_000), st.integers(0, 10**7)))}
    if kind == "io_built":
        elapsed = draw(st.one_of(st.integers(0, 20_000), st.just(U64_MAX)))
        return {"bytes": draw(sizes(unit)), "elapsed_us": elapsed}
    if kind == "mark_outcome":
        return {"outcome": draw(st.sampled_from(OUTCOME_NAMES))}
    if kind == "fg_write":
        return {"bytes": draw(sizes(unit))}
    return {}


@st.composite
def traces(draw: st.DrawFn) -> list[JsonObject]:
    """Return a configuration line and operations, valid and invalid, in the trace vocabulary."""
    config = draw(configuration())
    unit = config["bp_flush_unit_bytes"]
    assert isinstance(unit, int)
    trace: list[JsonObject] = [config]
    enqueued = 0
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(OPERATIONS))
        if kind in TASK_OPERATIONS and enqueued == 0:
            kind = "enqueue"
        op: JsonObject = {"op": kind, **operation_fields(draw, kind, unit)}
        if kind == "enqueue":
            op["task"] = enqueued
            enqueued += 1
        elif kind in TASK_OPERATIONS:
            op["task"] = draw(st.integers(0, enqueued - 1))  # finished tasks too: ERR-1
        trace.append(op)
    return trace


@given(traces())
def test_random_traces_answer_as_the_model(trace: list[JsonObject]) -> None:
    # spec FC-1..FC-12, ERR-1..ERR-3, DIV-1..DIV-5: every answer of the implementation,
    # errors included (an invalid operation changes nothing), equals the model's.
    impl, reference = ImplTarget(trace[0]), ReferenceTarget(trace[0])
    assert impl.start() == reference.start()
    for index, op in enumerate(trace[1:], start=1):
        answer = impl.apply(op)
        assert answer == reference.apply(op), f"line {index}: {op}"
        if "error" in answer:
            event(f"{op['op']} raised {answer['error']}")
        elif answer["slept_us"] != 0 or answer["metrics"]:
            event(f"{op['op']} slept or reported")
