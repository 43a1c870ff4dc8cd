"""Traceability between the specification's requirement IDs and the code and tests.

The spec defines each requirement by a heading ``### ID Title`` (spec/README.md, "Requirement
IDs"). These tests keep the three layers honest:

- every defined ID is cited by the reference model (or, for an implementation-only
  requirement, by the implementation);
- every defined ID is cited by a test other than this file;
- every ID cited anywhere in reference/, impl/ or tests/ is defined (no dangling citation);
- no ID is defined twice, and each family is numbered 1, 2, ... without gaps.

A citation is the ID as a word in a ``.py`` or ``.md`` file; a range such as "FC-1 to FC-12"
cites its two ends only, so each requirement needs a citation of its own somewhere.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
"""The project directory."""

FAMILIES = ("CFG", "ST", "AR", "FC", "ERR", "INV", "DIV", "HARD", "OBS", "VER", "LEM", "EXT")
"""The requirement families the spec defines (spec/README.md, "Requirement IDs")."""

ID_PATTERN = re.compile(rf"\b(?:{'|'.join(FAMILIES)})-\d+\b")
"""A requirement ID as the spec writes it."""

HEADING_PATTERN = re.compile(rf"^#{{2,6}}\s+((?:{'|'.join(FAMILIES)})-\d+)\b", re.MULTILINE)
"""A heading that defines a requirement: the ID comes first."""

IMPLEMENTATION_ONLY = frozenset({"DIV-6", "DIV-7", "DIV-8"})
"""
IDs the pure model cannot implement, so the implementation cites them instead.

DIV-6 binds the threaded implementation only (divergences.md: "The reference model is
sequential and is not affected"); the model's side of it, the commit-time deadline, is FC-10.
DIV-7 (what an interrupted or cancelled call leaves behind) and DIV-8 (observer isolation)
bind only the implementation's blocking, async and emitting forms, which the model has not.
"""

IMPLEMENTATION_ONLY_FAMILIES = frozenset({"HARD", "OBS", "VER"})
"""
Families that bind the implementation or its tooling only, so impl/ cites them, not the model.

HARD: what the threaded controller does with hostile callers, copies, forks and failing
observers; OBS: the exporters and the recorder; VER: the verification campaign's verdicts.
"""

THIS_FILE = Path(__file__).resolve()


def text_files(*directories: str, suffixes: tuple[str, ...] = (".py", ".md")) -> list[Path]:
    """Return the text files under ``directories`` of the project, caches excluded."""
    return sorted(
        path
        for directory in directories
        for path in (ROOT / directory).rglob("*")
        if path.suffix in suffixes and path.is_file() and "__pycache__" not in path.parts
    )


def cited_ids(paths: Iterable[Path]) -> dict[str, set[Path]]:
    """Return each ID cited in ``paths`` and the files that cite it."""
    cited: dict[str, set[Path]] = {}
    for path in paths:
        for requirement in ID_PATTERN.findall(path.read_text(encoding="utf-8")):
            cited.setdefault(requirement, set()).add(path)
    return cited


def definitions() -> list[tuple[str, Path]]:
    """Return every requirement heading in spec/ as (ID, file), duplicates included."""
    return [
        (requirement, path)
        for path in text_files("spec", suffixes=(".md",))
        for requirement in HEADING_PATTERN.findall(path.read_text(encoding="utf-8"))
    ]


DEFINED = sorted({requirement for requirement, _ in definitions()})


def id_key(requirement: str) -> tuple[str, int]:
    """Return a sort key that orders IDs by family, then by number."""
    family, number = requirement.rsplit("-", 1)
    return family, int(number)


def test_spec_defines_requirements() -> None:
    """The spec defines requirements in every family, and in no other."""
    families = {id_key(requirement)[0] for requirement in DEFINED}
    assert families == set(FAMILIES)


def test_no_requirement_is_defined_twice() -> None:
    """Each ID is defined by exactly one heading (spec README, "Requirement IDs")."""
    counts = Counter(requirement for requirement, _ in definitions())
    twice = sorted(requirement for requirement, count in counts.items() if count > 1)
    assert not twice, f"defined more than once: {', '.join(twice)}"


def test_each_family_is_numbered_without_gaps() -> None:
    """IDs of a family run 1, 2, ..., n: a gap is a requirement lost or renumbered."""
    numbers: dict[str, list[int]] = {}
    for requirement in DEFINED:
        family, number = id_key(requirement)
        numbers.setdefault(family, []).append(number)
    gaps = {
        family: sorted(set(range(1, max(found) + 1)) - set(found))
        for family, found in numbers.items()
    }
    missing = {family: numbers for family, numbers in gaps.items() if numbers}
    assert not missing, f"numbers missing from families: {missing}"


def test_every_requirement_is_cited_by_the_model() -> None:
    """Every ID is cited under reference/; implementation-only IDs under impl/ instead."""
    by_model = cited_ids(text_files("reference"))
    by_implementation = cited_ids(text_files("impl"))
    uncited = [
        requirement
        for requirement in DEFINED
        if requirement not in by_model
        and not (
            (
                requirement in IMPLEMENTATION_ONLY
                or id_key(requirement)[0] in IMPLEMENTATION_ONLY_FAMILIES
            )
            and requirement in by_implementation
        )
    ]
    assert not uncited, f"not cited under reference/: {', '.join(sorted(uncited, key=id_key))}"


def test_implementation_only_ids_are_defined() -> None:
    """The allowlist of implementation-only IDs names only defined requirements."""
    assert IMPLEMENTATION_ONLY.issubset(DEFINED)


def test_every_requirement_is_cited_by_a_test() -> None:
    """Every ID is cited by at least one file under tests/ other than this one."""
    by_tests = cited_ids(path for path in text_files("tests") if path != THIS_FILE)
    uncited = sorted(set(DEFINED) - set(by_tests), key=id_key)
    assert not uncited, f"not cited under tests/: {', '.join(uncited)}"


@pytest.mark.parametrize("directory", ["reference", "impl", "tests"])
def test_no_citation_dangles(directory: str) -> None:
    """Every ID cited in the code or tests is defined in spec/."""
    cited = cited_ids(text_files(directory))
    dangling = {
        requirement: sorted(str(path.relative_to(ROOT)) for path in paths)
        for requirement, paths in cited.items()
        if requirement not in DEFINED
    }
    assert not dangling, f"cited but not defined in spec/: {dangling}"
