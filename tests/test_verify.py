"""The campaign's verdicts: passed, failed or incomplete, and an exit status for each (DIV-6).

A newcomer reads the summary line and the exit status of ``flowpace verify``: a time limit that
ran out, a process that died or a missing tool must never read as a bug found, nor as a pass.
These tests build each case on purpose (a tiny throwaway project whose check fails, a safety
net too short for any machine) and check what the campaign says about it.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowpace.verify import (
    EXIT_STATUS,
    FAILED,
    HYPOTHESIS_CHECKS,
    INCOMPLETE,
    PASSED,
    SEQUENTIAL,
    TIMED_OUT,
    Campaign,
    Outcome,
    PatchError,
    combined,
    hunt,
    hunt_order,
    load_planted_bugs,
    parse_patch,
    pytest_verdict,
    run_pytest_check,
    summary,
)

ROOT = Path(__file__).resolve().parents[1]

PATCH = """Planted bug: off by one
Spec: FC-1
Found-by: interleavings

--- a/pkg/answer.py
+++ b/pkg/answer.py
@@ -1,2 +1,2 @@
 def answer():
-    return 42
+    return 43
"""


def test_exit_statuses_tell_the_three_verdicts_apart() -> None:
    # spec DIV-6 (the campaign's self-report): 0 passed, 1 failed, 3 incomplete; 2 is argparse's.
    assert EXIT_STATUS == {PASSED: 0, FAILED: 1, INCOMPLETE: 3}


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ((), PASSED),
        ((PASSED, PASSED), PASSED),
        ((PASSED, INCOMPLETE), INCOMPLETE),
        ((INCOMPLETE, FAILED, PASSED), FAILED),
        ((FAILED,), FAILED),
    ],
)
def test_a_failure_found_wins_over_an_incomplete_check(
    verdicts: tuple[str, ...], expected: str
) -> None:
    # spec DIV-6: something found is reported even when another check was cut short.
    assert combined(verdicts) == expected


@pytest.mark.parametrize(
    ("status", "log", "expected"),
    [
        (0, "1 passed", PASSED),
        (1, "E   AssertionError: debt 3 != 0\n1 failed", FAILED),
        (TIMED_OUT, "ran past the 5 s safety net (--timeout)", INCOMPLETE),
        (2, "Interrupted: 1 error during collection", INCOMPLETE),
        (3, "INTERNALERROR> boom", INCOMPLETE),
        (4, "ERROR: usage", INCOMPLETE),
        (5, "no tests ran", INCOMPLETE),
        (-9, "", INCOMPLETE),
        (1, "/usr/bin/python: No module named pytest", INCOMPLETE),
    ],
)
def test_only_a_failing_test_is_a_failure(status: int, log: str, expected: str) -> None:
    # spec DIV-6: pytest's status 1 is a test that failed; any other non-zero status means the
    # tests did not all run, so nothing was learnt.
    verdict, reason = pytest_verdict(status, log)
    assert verdict == expected
    assert (reason == "") == (expected == PASSED)


def test_a_missing_pytest_says_what_to_install() -> None:
    # spec DIV-6: a missing dependency is incomplete, with one line that says what to do.
    verdict, reason = pytest_verdict(1, "/usr/bin/python3: No module named pytest")
    assert verdict == INCOMPLETE
    assert "pytest is not installed" in reason


def test_the_summary_names_what_failed_and_what_is_incomplete() -> None:
    # spec DIV-6: the last lines say which checks failed, which were cut short, and how to
    # rerun them; a passing run says PASSED and nothing else.
    passed = Outcome("conformance", "seed traces", seconds=1.0)
    cut = Outcome("symbolic", "CrossHair", verdict=INCOMPLETE, recipe=["rerun me"])
    broken = Outcome("sequential", "state machine", verdict=FAILED, recipe=["replay me"])
    assert summary([passed], 2.0).endswith("PASSED in 2 s")
    text = summary([passed, cut], 3.0)
    assert "INCOMPLETE (symbolic) in 3 s" in text
    assert "no check failed" in text
    assert "rerun symbolic:" in text
    assert "FAILED" not in text
    both = summary([passed, cut, broken], 4.0)
    assert "FAILED (sequential) in 4 s" in both
    assert "(also incomplete: symbolic)" in both
    assert "replay sequential:" in both
    assert "replay me" in both
    assert "rerun me" in both


def throwaway_project(tmp_path: Path, body: str) -> Path:
    """Return a project root whose ``sequential`` check is the test module ``body``."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "pyproject.toml").write_text("[tool.pytest]\n", encoding="utf-8")
    (tmp_path / "tests" / "test_stateful.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return tmp_path


def campaign_at(root: Path, timeout: float = 600.0) -> Campaign:
    """Return a campaign over ``root`` with its logs under ``root``."""
    logs = root / "logs"
    logs.mkdir()
    return Campaign(
        root=root, profile="ci", workers=1, shards=1, only=(), logs=logs, timeout=timeout
    )


def test_a_falsifying_example_fails_the_check_with_a_replay_recipe(tmp_path: Path) -> None:
    # spec DIV-6: a check that finds a counterexample fails, and says how to replay it.
    root = throwaway_project(
        tmp_path,
        """
        from hypothesis import given, strategies as st

        @given(st.integers())
        def test_small(x):
            assert x < 10
        """,
    )
    outcome = run_pytest_check(campaign_at(root), SEQUENTIAL)
    assert outcome.verdict == FAILED, outcome
    assert any("uv run pytest tests/test_stateful.py" in step for step in outcome.recipe)
    assert any("test_small(" in step for step in outcome.recipe), outcome.recipe


def test_a_check_stopped_by_the_safety_net_is_incomplete(tmp_path: Path) -> None:
    # spec DIV-6: a time limit that ran out is never a failure and never a pass. No machine
    # starts Python and pytest in 10 ms, so this cut is certain.
    root = throwaway_project(tmp_path, "def test_fine():\n    assert True\n")
    outcome = run_pytest_check(campaign_at(root, timeout=0.01), SEQUENTIAL)
    assert outcome.verdict == INCOMPLETE, outcome
    assert any("safety net" in note for note in outcome.notes), outcome.notes


def test_a_check_that_collects_no_test_is_incomplete(tmp_path: Path) -> None:
    # spec DIV-6: pytest's "no tests ran" (status 5) is not a pass.
    root = throwaway_project(tmp_path, "X = 1\n")
    outcome = run_pytest_check(campaign_at(root), SEQUENTIAL)
    assert outcome.verdict == INCOMPLETE, outcome


def test_found_by_names_a_check_and_that_check_runs_first() -> None:
    # spec DIV-6: a hunt starts with the check its patch names, whatever the default order.
    bug = parse_patch("off_by_one", PATCH)
    assert bug.found_by == "interleavings"
    order = [check.name for check in hunt_order(bug)]
    assert order[0] == "interleavings"
    assert sorted(order) == sorted(check.name for check in HYPOTHESIS_CHECKS)
    with pytest.raises(PatchError, match="Found-by names 'fuzzing'"):
        parse_patch("bad", PATCH.replace("Found-by: interleavings", "Found-by: fuzzing"))


def test_every_planted_bug_names_the_check_that_finds_it() -> None:
    # spec DIV-6: each hunt is aimed, so the default run stays short and its time is stable.
    missing = [bug.name for bug in load_planted_bugs(ROOT) if not bug.found_by]
    assert not missing


def test_a_hunt_cut_short_is_incomplete_not_a_missed_bug() -> None:
    # spec DIV-6: a hunt that ran out of time says so; it does not claim the bug went unseen.
    bug = next(iter(load_planted_bugs(ROOT)))
    result = hunt(bug, ROOT, timeout=0.01)
    assert result.incomplete
    assert result.verdict == INCOMPLETE
    assert result.detected_by is None
    assert "safety net" in str(result.error)


def test_the_command_exits_3_when_a_check_is_incomplete() -> None:
    # spec DIV-6: end to end, from the command line: the verdict line and the exit status.
    done = subprocess.run(  # this interpreter, our own command
        [
            sys.executable,
            "-m",
            "flowpace.cli",
            "verify",
            "--only",
            "conformance",
            "--only",
            "linearizability",
            "--timeout",
            "0.01",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_STATUS[INCOMPLETE], done.stdout + done.stderr
    assert "INCOMPLETE (linearizability)" in done.stdout
    assert re.search(r"^conformance +pass ", done.stdout, re.MULTILINE), done.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workers", "0"], "--workers: must be at least 1, got 0"),
        (["--shards", "two"], "--shards: not a whole number: 'two'"),
        (["--timeout", "-5"], "--timeout: must be positive, got -5"),
        (["--profile", "weekly"], "invalid choice: 'weekly'"),
    ],
)
def test_bad_options_are_rejected_before_anything_runs(arguments: list[str], message: str) -> None:
    # spec DIV-6: a usage error is exit 2 with one line naming the bad value, at once.
    done = subprocess.run(  # noqa: S603  # this interpreter, our own command
        [sys.executable, "-m", "flowpace.cli", "verify", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "started" not in done.stdout


def test_an_unknown_profile_in_the_environment_is_a_usage_error() -> None:
    # spec DIV-6: HYPOTHESIS_PROFILE=weekly would fail every check later; it is refused first.
    done = subprocess.run(  # this interpreter, our own command
        [sys.executable, "-m", "flowpace.cli", "verify"],
        cwd=ROOT,
        env={**os.environ, "HYPOTHESIS_PROFILE": "weekly"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown profile 'weekly'" in done.stderr
    assert done.stdout == ""


def test_the_command_says_its_version() -> None:
    # The installed version, as packaging metadata has it.
    done = subprocess.run(  # this interpreter, our own command
        [sys.executable, "-m", "flowpace.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"flowpace {importlib.metadata.version('flowpace')}"
