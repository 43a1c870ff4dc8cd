"""The campaign's verdicts: passed, failed or incomplete, and an exit status for each (VER-2).

A newcomer reads the summary line and the exit status of ``flowpace verify``: a time limit that
ran out, a process that died or a missing tool must never read as a bug found, nor as a pass.
These tests build each case on purpose (a tiny throwaway project whose check fails, a safety
net too short for any machine) and check what the campaign says about it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowpace import cli, symbolic, verify
from flowpace.verify import (
    DETECTION_MARKERS,
    EXIT_STATUS,
    EXTRA_MISSING,
    FAILED,
    HYPOTHESIS_CHECKS,
    INCOMPLETE,
    PASSED,
    SEQUENTIAL,
    TIMED_OUT,
    Campaign,
    CampaignNotFoundError,
    CampaignSource,
    Outcome,
    PatchError,
    PlantedBug,
    apply_bug,
    combined,
    copy_project,
    find_campaign,
    hunt,
    hunt_order,
    hunt_schedule,
    hunt_steps,
    is_flowpace_clone,
    load_planted_bugs,
    missing_tools,
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
    # spec VER-2: 0 passed, 1 failed, 3 incomplete; 2 is argparse's.
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
    # spec VER-2: something found is reported even when another check was cut short.
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
    # spec VER-1: pytest's status 1 is a test that failed; any other non-zero status means the
    # tests did not all run, so nothing was learnt.
    verdict, reason = pytest_verdict(status, log)
    assert verdict == expected
    assert (reason == "") == (expected == PASSED)


def test_a_missing_pytest_says_what_to_install() -> None:
    # spec VER-1: a missing dependency is incomplete, with one line that says what to do.
    verdict, reason = pytest_verdict(1, "/usr/bin/python3: No module named pytest")
    assert verdict == INCOMPLETE
    assert "pytest is not installed" in reason


def test_the_summary_names_what_failed_and_what_is_incomplete() -> None:
    # spec VER-2: the last lines say which checks failed, which were cut short, and how to
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
    for name in SEQUENTIAL.tests[1:]:  # the check's other modules (spec EXT-1..9): empty here
        (tmp_path / name).write_text("", encoding="utf-8")
    return tmp_path


def campaign_at(root: Path, timeout: float = 600.0) -> Campaign:
    """Return a campaign over ``root`` with its logs under ``root``."""
    logs = root / "logs"
    logs.mkdir()
    return Campaign(
        root=root, profile="ci", workers=1, shards=1, only=(), logs=logs, timeout=timeout
    )


def test_a_falsifying_example_fails_the_check_with_a_replay_recipe(tmp_path: Path) -> None:
    # spec VER-1: a check that finds a counterexample fails, and says how to replay it.
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
    # spec VER-1, VER-3: a time limit that ran out is never a failure and never a pass. No machine
    # starts Python and pytest in 10 ms, so this cut is certain.
    root = throwaway_project(tmp_path, "def test_fine():\n    assert True\n")
    outcome = run_pytest_check(campaign_at(root, timeout=0.01), SEQUENTIAL)
    assert outcome.verdict == INCOMPLETE, outcome
    assert any("safety net" in note for note in outcome.notes), outcome.notes


def test_a_check_that_collects_no_test_is_incomplete(tmp_path: Path) -> None:
    # spec VER-1: pytest's "no tests ran" (status 5) is not a pass.
    root = throwaway_project(tmp_path, "X = 1\n")
    outcome = run_pytest_check(campaign_at(root), SEQUENTIAL)
    assert outcome.verdict == INCOMPLETE, outcome


def test_found_by_names_a_check_and_that_check_runs_first() -> None:
    # spec VER-4: a hunt starts with the check its patch names, whatever the default order.
    bug = parse_patch("off_by_one", PATCH)
    assert bug.found_by == "interleavings"
    order = [check.name for check in hunt_order(bug)]
    assert order[0] == "interleavings"
    assert sorted(order) == sorted(check.name for check in HYPOTHESIS_CHECKS)
    with pytest.raises(PatchError, match="Found-by names 'fuzzing'"):
        parse_patch("bad", PATCH.replace("Found-by: interleavings", "Found-by: fuzzing"))


def test_every_planted_bug_names_the_check_that_finds_it() -> None:
    # spec VER-4: each hunt is aimed, so the default run stays short and its time is stable.
    missing = [bug.name for bug in load_planted_bugs(ROOT) if not bug.found_by]
    assert not missing


def test_a_hunt_runs_its_found_in_tests_first_then_the_whole_check() -> None:
    # spec VER-4: aimed at the tests named, never narrower than the check that names them.
    node = "tests/test_interleavings.py::test_controller_is_linearizable_under_every_drawn_schedule"
    bug = parse_patch(
        "aimed",
        PATCH.replace("Found-by: interleavings", f"Found-by: interleavings\nFound-in: {node}"),
    )
    assert bug.found_in == (node,)
    steps = [(check.name, tests) for check, tests in hunt_steps(bug)]
    interleavings = next(check for check in HYPOTHESIS_CHECKS if check.name == "interleavings")
    assert steps[:2] == [("interleavings", (node,)), ("interleavings", interleavings.tests)]
    assert sorted(name for name, _ in steps[1:]) == sorted(c.name for c in HYPOTHESIS_CHECKS)
    unaimed = parse_patch("unaimed", PATCH)
    assert hunt_steps(unaimed)[0][1] == interleavings.tests
    stray = PATCH.replace(
        "Found-by: interleavings", "Found-by: interleavings\nFound-in: tests/test_stateful.py"
    )
    with pytest.raises(
        PatchError,
        match=r"Found-in names tests/test_stateful\.py, not tests of the interleavings check",
    ):
        parse_patch("stray", stray)


def test_the_slow_hunts_start_first_so_that_none_runs_alone_at_the_end() -> None:
    # The interleavings hunts take about a minute each on a busy machine, the sequential ones
    # seconds: started last, one long hunt would be the campaign's tail on its own.
    def bug(name: str, found_by: str) -> PlantedBug:
        return PlantedBug(name, name, "", (), found_by=found_by)

    bugs = [
        bug("a_quick", "sequential"),
        bug("b_slow", "interleavings"),
        bug("c_medium", "linearizability"),
        bug("d_unaimed", ""),
        bug("e_slow", "interleavings"),
    ]
    order = [planted.name for planted in hunt_schedule(bugs)]
    assert order == ["b_slow", "e_slow", "c_medium", "a_quick", "d_unaimed"]


def test_a_hunt_cut_short_is_incomplete_not_a_missed_bug() -> None:
    # spec VER-1: a hunt that ran out of time says so; it does not claim the bug went unseen.
    bug = next(iter(load_planted_bugs(ROOT)))
    result = hunt(bug, ROOT, timeout=0.01)
    assert result.incomplete
    assert result.verdict == INCOMPLETE
    assert result.detected_by is None
    assert "safety net" in str(result.error)


def test_the_command_exits_3_when_a_check_is_incomplete() -> None:
    # spec VER-2: end to end, from the command line: the verdict line and the exit status.
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
    # spec VER-2: a usage error is exit 2 with one line naming the bad value, at once.
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
    # spec VER-2: HYPOTHESIS_PROFILE=weekly would fail every check later; it is refused first.
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


# --- where the campaign lives ----------------------------------------------------------------


def fake_clone(root: Path, name: str = "flowpace") -> Path:
    """Return ``root`` laid out as a clone of a project called ``name``."""
    for tree in ("impl/flowpace", "reference/flowpace_reference", "tests"):
        (root / tree).mkdir(parents=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n', encoding="utf-8")
    return root


def fake_installed_package(site: Path, *, shipped: bool) -> Path:
    """Return an installed-looking ``flowpace`` package under ``site``, with its campaign."""
    package = site / "flowpace"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "controller.py").write_text("LIMIT = 1\n", encoding="utf-8")
    (package / "spec").mkdir()
    (package / "spec" / "flow-control.md").write_text("# spec\n", encoding="utf-8")
    if shipped:
        campaign = package / "_campaign"
        (campaign / "tests" / "vectors").mkdir(parents=True)
        (campaign / "tests" / "planted_bugs").mkdir()
        (campaign / "tests" / "vectors" / "seed-vectors.jsonl").write_text("", encoding="utf-8")
        (campaign / "pyproject.toml").write_text("[tool.pytest]\n", encoding="utf-8")
    return package


def test_a_clone_runs_its_own_campaign() -> None:
    # The clone this flowpace is imported from, not a copy shipped anywhere.
    assert find_campaign() == CampaignSource(ROOT, shipped=False)
    assert is_flowpace_clone(ROOT)


@pytest.mark.parametrize(
    ("name", "missing", "expected"),
    [
        ("flowpace", None, True),
        ("decoy", None, False),
        ("flowpace", "reference/flowpace_reference", False),
        ("flowpace", "impl/flowpace", False),
    ],
)
def test_a_tree_is_a_clone_only_if_it_is_flowpaces_own(
    tmp_path: Path, name: str, missing: str | None, expected: bool
) -> None:
    root = fake_clone(tmp_path / "clone", name)
    if missing:
        (root / missing).rmdir()
    assert is_flowpace_clone(root) == expected
    (root / "pyproject.toml").write_text("[project\n", encoding="utf-8")
    assert not is_flowpace_clone(root)


# spec VER-5
def test_an_installed_package_runs_the_campaign_it_ships_wherever_it_is_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From inside another project that looks like flowpace (pyproject, tests/, impl/), the
    # installed package still takes its own campaign: where the command runs plays no part.
    decoy = fake_clone(tmp_path / "decoy")
    monkeypatch.chdir(decoy)
    package = fake_installed_package(tmp_path / "venv" / "site-packages", shipped=True)
    assert find_campaign(package) == CampaignSource(package / "_campaign", shipped=True)
    bare = fake_installed_package(tmp_path / "other" / "site-packages", shipped=False)
    with pytest.raises(CampaignNotFoundError, match="ships no campaign"):
        find_campaign(bare)
    # A package inside a tree that is flowpace's own is that clone's.
    clone = fake_clone(tmp_path / "clone")
    assert find_campaign(clone / "impl" / "flowpace") == CampaignSource(clone, shipped=False)


def test_a_hunt_on_a_shipped_campaign_plants_its_bug_in_the_installed_code(
    tmp_path: Path,
) -> None:
    # The patches name impl/flowpace/... as in a clone; the copy lays the installed package out
    # that way, without the campaign and the spec it ships.
    package = fake_installed_package(tmp_path / "site-packages", shipped=True)
    copy = tmp_path / "copy"
    copy_project(package / "_campaign", copy)
    assert (copy / "impl" / "flowpace" / "controller.py").is_file()
    assert not (copy / "impl" / "flowpace" / "_campaign").exists()
    assert not (copy / "impl" / "flowpace" / "spec").exists()
    assert (copy / "reference" / "flowpace_reference" / "transitions.py").is_file()
    assert (copy / "tests" / "vectors" / "seed-vectors.jsonl").is_file()
    target = "impl/flowpace/controller.py"
    patch = f"Planted bug: limit\n\n--- a/{target}\n+++ b/{target}\n"
    apply_bug(parse_patch("limit", patch + "@@ -1 +1 @@\n-LIMIT = 1\n+LIMIT = 2\n"), copy)
    assert "LIMIT = 2" in (copy / "impl" / "flowpace" / "controller.py").read_text("utf-8")
    assert "LIMIT = 1" in (package / "controller.py").read_text("utf-8")


# spec VER-6
def test_a_missing_verify_extra_is_one_line_and_nothing_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without its tools no check could say anything: one line names the extra, exit 3
    # (incomplete), before any check starts.
    monkeypatch.setitem(verify.TOOLS, "sequential", ("flowpace_no_such_tool",))
    assert cli.main(["verify", "--only", "sequential", "--only", "conformance"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    hint = "in a clone, uv sync installs them"
    assert err == f"{EXTRA_MISSING} (missing: flowpace_no_such_tool; {hint})\n"
    assert missing_tools(["conformance"]) == []
    assert missing_tools(["sequential", "linearizability"]) == ["flowpace_no_such_tool"]


def test_a_shipped_campaigns_replay_recipe_runs_as_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From an installed package there is no clone to `uv run` in: the recipe runs pytest with
    # the package's interpreter in the shipped campaign, and reproduces the failure.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = throwaway_project(
        tmp_path,
        """
        from hypothesis import given, strategies as st

        @given(st.integers())
        def test_small(x):
            assert x < 10
        """,
    )
    campaign = campaign_at(root)
    campaign.shipped = True
    outcome = run_pytest_check(campaign, SEQUENTIAL)
    assert outcome.verdict == FAILED, outcome
    recipe = outcome.recipe[0]
    assert recipe.startswith(f"cd {root} && HYPOTHESIS_PROFILE=ci "), recipe
    assert "uv run" not in recipe
    done = subprocess.run(  # noqa: S602  # the recipe is a shell command line, as printed
        recipe, shell=True, capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert any(marker in done.stdout for marker in DETECTION_MARKERS), done.stdout


def test_every_commands_help_reads_as_plain_text() -> None:
    # --help is read in a terminal: no reStructuredText or Markdown markup, no Python reprs,
    # and every argument says what it is.
    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    parsers = {"flowpace": parser, **commands.choices, "symbolic": symbolic.build_parser()}
    assert {"replay", "verify"} <= set(parsers)
    for name, each in parsers.items():
        text = each.format_help()
        for markup in ("``", "**", "{'", "['", "$$"):
            assert markup not in text, f"{name} --help shows {markup!r}:\n{text}"
        silent = [
            action.dest
            for action in each._actions
            if not action.help and not isinstance(action, argparse._HelpAction)
        ]
        assert not silent, f"{name} --help leaves {silent} unexplained"
