"""The campaign checks itself: each planted bug must be found (spec DIV-1, FC-6, FC-7, AR-6, DIV-6).

Each patch in ``tests/planted_bugs`` plants one known bug in a copy of the implementation. A
hunt (`flowpace.verify.hunt`) copies the project to a temporary directory, applies the patch,
and runs the campaign's Hypothesis checks on the copy, in subprocesses whose import path
points at it, until one of them fails with a falsifying example. Every bug must be found, and
the time it took is reported. The hunts use the current profile without shrinking or the
example database: a reduced campaign that still finds every bug.

The first tests pin the patch machinery itself, so that a stale patch fails as such, not as a
bug the campaign missed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import planted_hunts
from flowpace.verify import (
    PatchError,
    PlantedBug,
    apply_bug,
    load_planted_bugs,
    parse_patch,
    planted_bug,
    record_stats,
)

ROOT = Path(__file__).resolve().parents[1]
"""The project's root: the tree the bugs are planted in copies of."""

BUGS = load_planted_bugs(ROOT)
"""Every planted bug, by name."""

REQUIRED = {
    "zero_byte_double_settle",
    "soft_threshold_strict",
    "missing_double_above_hard",
    "lost_ewma_update",
    "unlocked_debt_rmw",
}
"""The bugs the campaign must find, at least (the issue's list)."""

EXAMPLE_PATCH = """Planted bug: the answer is off by one
Spec: FC-1

--- a/pkg/answer.py
+++ b/pkg/answer.py
@@ -1,3 +1,3 @@
 def answer():
-    return 42
+    return 43
 # end
"""


def test_a_patch_is_parsed_and_applied_by_its_text_not_its_line_numbers(tmp_path: Path) -> None:
    # spec DIV-6 (the self-test's machinery): the hunk applies where its text is, once.
    bug = parse_patch("example", EXAMPLE_PATCH)
    assert (bug.title, bug.spec) == ("the answer is off by one", "FC-1")
    (tmp_path / "pkg").mkdir()
    target = tmp_path / "pkg" / "answer.py"
    target.write_text("# moved down\ndef answer():\n    return 42\n# end\n", encoding="utf-8")
    apply_bug(bug, tmp_path)
    assert (
        target.read_text(encoding="utf-8") == "# moved down\ndef answer():\n    return 43\n# end\n"
    )


def test_a_patch_that_no_longer_applies_says_so(tmp_path: Path) -> None:
    # spec DIV-6: a stale patch is an error of the patch, never a missed bug.
    bug = parse_patch("example", EXAMPLE_PATCH)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "answer.py").write_text("def answer():\n    return 7\n", encoding="utf-8")
    with pytest.raises(PatchError, match="occurs 0 times"):
        apply_bug(bug, tmp_path)
    with pytest.raises(PatchError, match="no hunk"):
        parse_patch("empty", "Planted bug: nothing\n")


def test_every_required_bug_is_planted_and_applies_to_the_current_tree(tmp_path: Path) -> None:
    # spec DIV-1, FC-6, FC-7, AR-6, DIV-6: the bugs are all there, and each patch
    # changes text that exists exactly once in today's implementation.
    assert {bug.name for bug in BUGS} >= REQUIRED
    for bug in BUGS:
        assert bug.spec, f"{bug.name} names no requirement"
        for hunk in bug.hunks:
            source = ROOT / hunk.path
            copy = tmp_path / bug.name / hunk.path
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
        apply_bug(bug, tmp_path / bug.name)


@pytest.mark.no_crosshair("subprocesses running the campaign")
@pytest.mark.skipif(
    planted_bug() is not None,
    reason="this process is itself a hunt on a patched copy: hunting again would recurse",
)
@pytest.mark.parametrize("bug", BUGS, ids=[bug.name for bug in BUGS])
def test_the_campaign_finds_the_planted_bug(bug: PlantedBug) -> None:
    # spec DIV-1, FC-6, FC-7, AR-6, DIV-6 (each patch names its own): see the module docstring.
    result = planted_hunts.result(bug, ROOT)  # started at collection, or run now
    record_stats("planted-bugs", **{f"seconds to find {bug.name}": round(result.seconds)})
    assert result.error is None, f"{bug.name}: {result.error}\n{result.log[-3_000:]}"
    assert result.detected_by is not None, (
        f"{bug.name} ({bug.title}) was not found in {result.seconds:.0f} s\n{result.log[-3_000:]}"
    )
