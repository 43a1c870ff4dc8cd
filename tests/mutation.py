"""Run mutmut on the reference model, in a copy laid out as mutmut expects, and summarise.

Run: ``uv run --with mutmut==3.8.1 python tests/mutation.py [--keep DIR] [--jobs N]``.

mutmut 3 names mutants after modules found under ``./``, ``src/`` or ``source/``, so the copy
moves ``reference/flowpace_reference`` to ``src/``; nothing else changes. The tests it runs are
the model's own (properties, seed scenarios, replay of the vectors, divergences, edges, error
messages). CrossHair exercises the assert-mode harnesses and contract predicates, not these
tests, so their mutants show as "no tests". Takes about 6 minutes on 2 cores.
"""

# ruff: noqa: T201 - a report prints its results

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODEL_TESTS = (
    "tests/test_model_properties.py",
    "tests/test_model_edges.py",
    "tests/test_error_messages.py",
    "tests/test_seed_scenarios.py",
    "tests/test_replay.py",
    "tests/test_divergences.py",
)
"""The tests mutmut runs against each mutant (those that cover the mutated function)."""

CONFIG = f"""
[tool.mutmut]
paths_to_mutate = ["src/flowpace_reference/"]
tests_dir = {list(MODEL_TESTS)!r}
also_copy = ["impl/", "tests/", "spec/"]
"""


def prepare(copy: Path) -> None:
    """Copy the project into ``copy`` with the model under ``src/`` and mutmut configured."""
    for name in ("impl", "tests", "spec"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "reference" / "flowpace_reference",
        copy / "src" / "flowpace_reference",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject = pyproject.replace(
        'pythonpath = ["reference", "impl", "tests"]', 'pythonpath = ["src", "impl", "tests"]'
    )
    (copy / "pyproject.toml").write_text(pyproject + CONFIG, encoding="utf-8")


def outcomes(copy: Path) -> collections.Counter[str]:
    """Return how many mutants ended each way, from ``mutmut results --all true``."""
    done = subprocess.run(  # this interpreter's mutmut
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line.rsplit(": ", 1) for line in done.stdout.splitlines() if ": " in line]
    return collections.Counter(outcome.strip() for _, outcome in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mutation run; print the survivors and a summary; return mutmut's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="flowpace-mutation-") as scratch:
        copy = args.keep or Path(scratch)
        prepare(copy)
        run = subprocess.run(  # noqa: S603  # this interpreter's mutmut
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs)],
            cwd=copy,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
            return run.returncode
        counts = outcomes(copy)
        survivors = subprocess.run(  # this interpreter's mutmut
            [sys.executable, "-m", "mutmut", "results"],
            cwd=copy,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    print(survivors.rstrip())
    killed, survived = counts["killed"], counts["survived"]
    print(f"mutants: {sum(counts.values())}; " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"score over the mutants tests reach: {killed / max(killed + survived, 1):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
