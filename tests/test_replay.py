"""The seed's conformance vectors replayed on the reference model, and the replay command line.

Every vector holds the seed's own answers (tests/vectors/FORMAT.md); the model must give the
same on every field of every line (spec CFG-2, ST-1, FC-1 to FC-12, DIV-4 agreement on the
protocol). The command line must report a failing vector precisely and never pass a trace it
could not replay.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowpace.cli import main
from flowpace.replay import TARGETS, Vector, load_vectors, replay

VECTORS = Path(__file__).parent / "vectors" / "seed-vectors.jsonl"
"""The 160 traces of the seed (tests/vectors/FORMAT.md)."""

SEED_VECTORS = list(load_vectors([VECTORS]))


def test_every_vector_is_loaded_once() -> None:
    """Spec FC-1 to FC-12: the file holds 160 vectors with distinct ids, each fully answered."""
    assert len(SEED_VECTORS) == 160
    assert len({vector.name for vector in SEED_VECTORS}) == 160
    assert all(len(vector.trace) == len(vector.expected) for vector in SEED_VECTORS)


@pytest.mark.parametrize("vector", SEED_VECTORS, ids=[vector.name for vector in SEED_VECTORS])
def test_vector_replays_clean_on_the_reference(vector: Vector) -> None:
    """Spec CFG-2, ST-1, FC-1 to FC-12: the model answers as the seed on every line."""
    assert replay(vector, TARGETS["reference"]) is None


def write_vectors(path: Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` one JSON object a line to ``path``; return it."""
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def raw_record(vector_id: str) -> dict[str, Any]:
    """Return one vector of the file as parsed JSON, free to alter (JSON is untyped here)."""
    records = (json.loads(line) for line in VECTORS.read_text(encoding="utf-8").splitlines())
    return next(record for record in records if record["id"] == vector_id)


def test_cli_replays_every_vector(capsys: pytest.CaptureFixture[str]) -> None:
    """Spec FC-1 to FC-12: `flowpace replay` passes all 160 vectors and exits 0."""
    status = main(["replay", str(VECTORS)])
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "160 passed, 0 failed"
    assert "FAIL" not in out
    assert status == 0


def altered_vector() -> tuple[dict[str, Any], int, str, int, int]:
    """Return a seed vector with one expected debt changed, its line, field, old and new value."""
    record = raw_record("conf-0000")
    index = 3  # the first io_built line of conf-0000
    state = record["expected"][index]["state"]
    original = state["debt_bytes"]
    state["debt_bytes"] = original + 1
    return record, index, "state", original, original + 1


def test_cli_reports_an_altered_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spec FC-2: a wrong expected debt fails, naming vector, line and field; exits 1."""
    record, index, field, original, altered = altered_vector()
    path = write_vectors(tmp_path / "altered.jsonl", [record])

    status = main(["replay", str(path)])

    lines = capsys.readouterr().out.splitlines()
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1
    assert "conf-0000" in fails[0]
    assert f"line {index}" in fails[0]
    assert field in fails[0]
    expected_line = next(line for line in lines if line.strip().startswith("expected:"))
    got_line = next(line for line in lines if line.strip().startswith("got:"))
    assert f'"debt_bytes": {altered}' in expected_line
    assert f'"debt_bytes": {original}' in got_line
    assert lines[-1] == "0 passed, 1 failed"
    assert status == 1


def test_cli_reports_an_unknown_operation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spec ERR-3: an operation the trace format does not define fails; it is never skipped."""
    record = raw_record("conf-0000")
    trace, expected = record["trace"], record["expected"]
    # Keep the configuration and the first enqueue, then an operation no controller has; its
    # expected line claims the state did not change, as a silently ignored line would answer.
    unknown = {"op": "frobnicate", "task": 1}
    answer = {**expected[1], "i": 2, "op": "frobnicate"}
    record = {
        "id": "unknown-op",
        "trace": [*trace[:2], unknown],
        "expected": [*expected[:2], answer],
    }
    path = write_vectors(tmp_path / "unknown.jsonl", [record])

    status = main(["replay", str(path)])

    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1
    assert "unknown-op" in fails[0]
    assert "line 2" in fails[0]
    assert out.splitlines()[-1] == "0 passed, 1 failed"
    assert status == 1


def test_cli_fails_a_vector_with_missing_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spec FC-1 to FC-12: a trace with more lines than answers fails; none passes cut short."""
    record = raw_record("conf-0000")
    record["expected"] = record["expected"][:3]
    path = write_vectors(tmp_path / "short.jsonl", [record])

    status = main(["replay", str(path)])

    out = capsys.readouterr().out
    assert "FAIL conf-0000" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"
    assert status == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, ": is a directory, not a trace file"),
        ("", ": no traces (the file is empty)"),
        ('{"trace": [}\n', ":1: not JSON: Expecting value (column 12)"),
        ("\n[1, 2]\n", ":2: a trace is a JSON object, got list"),
        ('{"trace": [{"op": "x"}]}\n', ":1: 'expected' must be a list of JSON objects"),
        (
            '{"trace": [], "expected": []}\n',
            ":1: 'trace' is empty: its first line is the configuration",
        ),
    ],
)
def test_cli_rejects_bad_input_in_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    """Spec FC-1 to FC-12: input that is not traces is a usage error naming file and line."""
    path = tmp_path / "traces.jsonl"
    if content is None:
        path.mkdir()
    else:
        path.write_text(content, encoding="utf-8")

    status = main(["replay", str(VECTORS), str(path)])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == f"flowpace replay: {path}{message}\n"
    assert captured.out == "", "nothing is replayed when any input is bad"


def test_cli_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Spec FC-1 to FC-12: a missing file is named, with status 2 and no traceback."""
    missing = tmp_path / "nowhere.jsonl"
    assert main(["replay", str(missing)]) == 2
    assert capsys.readouterr().err == f"flowpace replay: {missing}: no such file\n"


def test_cli_names_the_nested_field_that_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Spec FC-2: a wrong debt is reported as ``state.debt_bytes``, not as the whole state."""
    record, index, _, _, _ = altered_vector()
    path = write_vectors(tmp_path / "altered.jsonl", [record])
    assert main(["replay", str(path)]) == 1
    fails = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert fails == [f"FAIL conf-0000 [reference] line {index}: state.debt_bytes differ"]
