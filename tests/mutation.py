"""Run mutmut on the reference model or the implementation, in a copy laid out as it expects.

Run: ``nice -n 15 uv run --with mutmut==3.8.1 python tests/mutation.py [--target model|impl]
[--keep DIR] [--jobs N] [--all] [--deselect NODEID] [MUTANT ...]``. Not part of the test run.

mutmut 3 names mutants after modules found under ``./``, ``src/`` or ``source/``, so the copy
moves the target package (``reference/flowpace_reference`` or ``impl/flowpace``) to ``src/``;
nothing else moves. Each target has its tests, and mutmut runs against each mutant only those
of them that call the mutated function (its "stats"), fastest first, so that a mutant dies on
its cheapest test.

- ``model`` (the default): every module of the model, against the model's own tests
  (properties, seed scenarios, replay of the vectors, divergences, edges, error messages).
  CrossHair exercises the assert-mode harnesses and contract predicates, not these tests, so
  their mutants show as "no tests". About 6 minutes on 2 cores.
- ``impl``: ``controller.py``, ``_rules.py`` and ``options.py`` of the implementation, against
  the state machine, the interleavings, the API tests, the conformance replay and the tests
  written for this run's survivors (`IMPL_TESTS`). Hypothesis runs under the ``mutation``
  profile registered in the copy's conftest (`MUTATION_PROFILE`): derandomised, no example
  database, no shrinking (a mutant is killed by its first failing example), 25 examples per
  test (the state machine keeps its own floor of 200 runs). In the copy (`MUTANT_HOOK`) each
  test of a mutant has a time limit, so that a mutant that loops for ever costs one test's
  time, and the mutants reviewed in `tests/mutation_impl.py` are not run again (``--all`` runs
  them). About 11 minutes on 2 shared cores.

mutmut's own wall-clock timeouts are made safe for a shared machine (`GuardedTimeouts`).
Naming mutants re-runs just those in the ``--keep`` directory of an earlier run, with the
tests copied afresh: the way to show that a new test kills a survivor.
"""

# ruff: noqa: T201 - a report prints its results

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mutation_impl
from mutation_impl import EQUIVALENT, Review

ROOT = Path(__file__).resolve().parent.parent

MODEL_TESTS = (
    "tests/test_model_properties.py",
    "tests/test_model_edges.py",
    "tests/test_error_messages.py",
    "tests/test_seed_scenarios.py",
    "tests/test_replay.py",
    "tests/test_divergences.py",
)
"""The model's tests, run against each of its mutants (those that call the mutated function)."""

IMPL_TESTS = (
    "tests/test_controller_api.py",
    "tests/test_controller_variants.py",
    "tests/test_error_messages.py",
    "tests/test_controller_conformance.py",
    "tests/test_impl_mutants.py",
    "tests/test_stateful.py",
    "tests/test_interleavings.py",
)
"""The implementation's tests, run against each of its mutants (as `MODEL_TESTS`)."""

PROFILE_ENV = "HYPOTHESIS_PROFILE"
"""The variable `tests/conftest.py` reads the profile's name from."""

MUTATION_PROFILE = """
# --- added by tests/mutation.py to the mutation run's copy: the `mutation` profile ---------
# Derandomised (the same examples for every mutant), no example database (one mutant's failing
# example must not be replayed against the next), no shrinking (the first failing example
# kills a mutant; its smallest form is of no use here) and few examples, for a bounded run.
from hypothesis import Phase as _MutationPhase  # noqa: E402

settings.register_profile(
    "mutation",
    settings.get_profile("ci"),  # derandomised, no database, no deadline, no too_slow check
    max_examples=25,
    phases=(_MutationPhase.explicit, _MutationPhase.generate),
    print_blob=False,
)

"""
"""Registered in the copy's ``tests/conftest.py`` before it loads a profile."""

MUTANT_HOOK = '''

# --- added by tests/mutation.py to the mutation run's copy: reviewed mutants, time limits ---
# A mutant listed in REVIEWED_FILE, whose function is still the one reviewed (same hash in
# mutmut's meta file), is not run: its process exits with status 34, mutmut's "skipped".
# A mutant can make a test loop for ever (the non-blocking flush's retry loop, say). mutmut
# gives up on a mutant after a multiple of the time of all its tests; this limit ends such a
# mutant after one test's time instead: 10 s plus 5 times what mutmut measured for the test on
# the unmutated code. The process then exits with status 36, mutmut's "timeout". The limit is
# CPU time (ITIMER_PROF): a loop spends it, while a test that hands turns between threads waits
# far longer in wall time on an idle machine than on a busy one.
_REVIEWED_FILE = "tests/mutation-reviewed.json"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """Skip a reviewed mutant; run a test of any other under a time limit."""
    import json  # noqa: PLC0415 - only the mutation run's copy has this hook
    import signal  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" not in mutant:
        return (yield)
    reviewed = Path(_REVIEWED_FILE)
    if reviewed.exists():
        module, _, function = mutant.rpartition("__mutmut_")[0].rpartition(".")
        meta = Path("src", *module.split(".")).with_suffix(".py.meta")
        hashes = json.loads(meta.read_text(encoding="utf-8"))["hash_by_function_name"]
        if json.loads(reviewed.read_text(encoding="utf-8")).get(mutant) == hashes.get(function):
            os._exit(34)
    durations = json.loads(Path("mutmut-stats.json").read_text(encoding="utf-8"))
    limit = 10.0 + 5.0 * durations["duration_by_test"].get(item.nodeid, 0.0)
    previous = signal.signal(signal.SIGPROF, lambda *_: os._exit(36))
    signal.setitimer(signal.ITIMER_PROF, limit)
    try:
        return (yield)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
'''
"""Appended to the copy's ``tests/conftest.py`` for a profiled target."""

REVIEWED_FILE = "mutation-reviewed.json"
"""The copy's list, in ``tests/``, of reviewed mutants not to run: name -> function hash."""

PROFILE_ANCHOR = "settings.load_profile(chosen_profile())"
"""The line of ``tests/conftest.py`` before which `MUTATION_PROFILE` goes."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a mutation run mutates, and how the copy is laid out and tested."""

    name: str
    """The ``--target`` value."""
    package: str
    """The package's directory in the project; the copy moves it to ``src/``."""
    others: tuple[str, ...]
    """The project's directories copied as they are."""
    pythonpath: str
    """pytest's ``pythonpath`` in the copy."""
    mutated: tuple[str, ...]
    """The files of ``src/`` mutated (fnmatch patterns); every other file is copied as is."""
    tests: tuple[str, ...]
    """The tests run against the mutants."""
    profile: str | None
    """The Hypothesis profile the run uses, registered in the copy; None: the usual choice."""
    deselected: tuple[str, ...] = ()
    """Tests of ``tests`` left out: they call no code of the target and cannot run here."""
    timeout: tuple[float, float] | None = None
    """mutmut's ``timeout_multiplier`` and ``timeout_constant``; None: mutmut's (15, 1)."""
    reviews: Callable[[], dict[str, tuple[Review, str]]] | None = None
    """The reviewed mutants, with their review and their function's hash when reviewed."""


TARGETS = {
    "model": Target(
        name="model",
        package="reference/flowpace_reference",
        others=("impl", "tests", "spec"),
        pythonpath='pythonpath = ["src", "impl", "tests"]',
        mutated=("src/flowpace_reference/*",),
        tests=MODEL_TESTS,
        profile=None,
    ),
    "impl": Target(
        name="impl",
        package="impl/flowpace",
        # impl/ is not copied: the only flowpace the tests can import is the mutated one.
        others=("reference", "tests", "spec"),
        pythonpath='pythonpath = ["reference", "src", "tests"]',
        mutated=(
            "src/flowpace/controller.py",
            "src/flowpace/_rules.py",
            "src/flowpace/options.py",
        ),
        tests=IMPL_TESTS,
        profile="mutation",
        # A check of the test scheduler that needs Hypothesis's shrinking, which the mutation
        # profile turns off; it drives no code of flowpace.
        deselected=(
            "tests/test_interleavings.py::test_hypothesis_finds_and_shrinks_a_lost_update",
        ),
        # mutmut stops a mutant after (its tests' time + constant) * multiplier seconds of wall
        # time; the copy's own limit per test (MUTANT_HOOK) stops a mutant that loops for ever
        # long before, so this is only a backstop, wide enough for a machine five times as
        # loaded as when mutmut timed the tests (mutmut's own 15 would be 20 min per mutant).
        timeout=(5.0, 10.0),
        reviews=mutation_impl.reviewed,
    ),
}
"""The targets of ``--target``."""


def mutmut_config(target: Target, deselected: Sequence[str] = ()) -> str:
    """Return the ``[tool.mutmut]`` table for ``target``, leaving out ``deselected`` tests too."""
    package = Path(target.package).name
    left_out = [*target.deselected, *deselected]
    selection = [*target.tests, *(f"--deselect={test}" for test in left_out)]
    return f"""
[tool.mutmut]
source_paths = ["src/{package}/"]
only_mutate = {list(target.mutated)!r}
pytest_add_cli_args_test_selection = {selection!r}
also_copy = {[f"{name}/" for name in target.others]!r}
""" + (
        ""
        if target.timeout is None
        else f"timeout_multiplier = {target.timeout[0]}\ntimeout_constant = {target.timeout[1]}\n"
    )


def copy_tests(target: Target, copy: Path, *, skip_reviewed: bool) -> None:
    """Copy ``tests/`` into ``copy``; for a profiled target, add its profile and hooks."""
    destination = copy / "tests"
    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(ROOT / "tests", destination, ignore=shutil.ignore_patterns("__pycache__"))
    if target.profile is None:
        return
    conftest = destination / "conftest.py"
    text = conftest.read_text(encoding="utf-8")
    if text.count(PROFILE_ANCHOR) != 1:
        raise SystemExit(f"tests/conftest.py no longer has one line {PROFILE_ANCHOR!r}")
    text = text.replace(PROFILE_ANCHOR, MUTATION_PROFILE + PROFILE_ANCHOR)
    conftest.write_text(text + MUTANT_HOOK, encoding="utf-8")
    # Written even when empty: mutmut copies tests/ over the one of an earlier run.
    reviews = {} if target.reviews is None or not skip_reviewed else target.reviews()
    hashes = {name: digest for name, (_, digest) in reviews.items()}
    (destination / REVIEWED_FILE).write_text(json.dumps(hashes), encoding="utf-8")


def prepare(
    target: Target, copy: Path, deselected: Sequence[str] = (), *, skip_reviewed: bool = True
) -> None:
    """Copy the project into ``copy`` with the target under ``src/`` and mutmut configured."""
    for name in target.others:
        if name == "tests":
            copy_tests(target, copy, skip_reviewed=skip_reviewed)
            continue
        destination = copy / name
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(ROOT / name, destination, ignore=shutil.ignore_patterns("__pycache__"))
    package = copy / "src" / Path(target.package).name
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(ROOT / target.package, package, ignore=shutil.ignore_patterns("__pycache__"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    original = 'pythonpath = ["reference", "impl", "tests"]'
    if original not in pyproject:
        raise SystemExit(f"pyproject.toml no longer has {original!r}")
    pyproject = pyproject.replace(original, target.pythonpath)
    config = mutmut_config(target, deselected)
    (copy / "pyproject.toml").write_text(pyproject + config, encoding="utf-8")


GUARDED = "--guarded-mutmut"
"""The first argument with which this script runs mutmut's command line as `guarded_mutmut`."""


class GuardedTimeouts:
    """
    mutmut's wall-clock timeouts, each sent only to the mutant process it was set for.

    mutmut 3.8.1 sends SIGXCPU to a mutant's process id when the mutant's time is up, and does
    not cancel the signal when the mutant ends first. On a busy machine the id may by then
    belong to a later mutant or to anyone's process. Here a timeout fires only if the id is
    still this process's running child and no later timeout was set for that id.
    """

    def __init__(self) -> None:
        """Start with no timeout set."""
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}

    def register(self, pid: int, timeout_s: float) -> None:
        """Send SIGXCPU to ``pid`` in ``timeout_s`` seconds if it is still the mutant run."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._deadlines[pid] = deadline
        timer = threading.Timer(timeout_s, self._expire, args=(pid, deadline))
        timer.daemon = True
        timer.start()

    def _expire(self, pid: int, deadline: float) -> None:
        """Signal ``pid`` if the timeout set at ``deadline`` is its latest and it still runs."""
        with self._lock:
            if self._deadlines.get(pid) != deadline:
                return  # a later mutant got this id; its own timeout stands
            del self._deadlines[pid]
        if running_child(pid):
            os.kill(pid, signal.SIGXCPU)


def running_child(pid: int) -> bool:
    """Return whether ``pid`` is a child of this process that has not ended."""
    try:
        ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False  # not our child, or already reaped
    return ended is None


def guarded_mutmut(arguments: Sequence[str]) -> None:
    """Run mutmut's command line in this process, with `GuardedTimeouts`; exit as it does."""
    isolation = importlib.import_module("mutmut.workers.isolation")
    vars(isolation)["register_timeout"] = GuardedTimeouts().register  # its callers look it up here
    command = importlib.import_module("mutmut.__main__").cli
    command.main(args=list(arguments), prog_name="mutmut")


def mutmut(copy: Path, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run this interpreter's mutmut in ``copy`` (guarded) and return what it printed."""
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments and mutant names
        [sys.executable, __file__, GUARDED, *arguments],
        cwd=copy,
        capture_output=True,
        text=True,
        check=check,
    )


def outcomes(copy: Path) -> dict[str, str]:
    """Return each mutant's outcome, from ``mutmut results --all true``."""
    done = mutmut(copy, "results", "--all", "true")
    lines = [line.strip().rsplit(": ", 1) for line in done.stdout.splitlines() if ": " in line]
    return {name: outcome.strip() for name, outcome in lines}


def verdicts(results: dict[str, str], target: Target) -> dict[str, str]:
    """Return each mutant's outcome, a reviewed one's named by its review's verdict."""
    reviews = {} if target.reviews is None else target.reviews()
    named = dict(results)
    for name, outcome in results.items():
        if name in reviews and outcome in {"skipped", "survived"}:
            verdict = reviews[name][0].verdict
            named[name] = verdict if outcome == "skipped" else f"survived ({verdict})"
    return named


def summary(outcomes_by_name: dict[str, str]) -> str:
    """Return the counts of each outcome and the scores over the mutants tests reach."""
    counts = collections.Counter(outcomes_by_name.values())
    detected = counts["killed"] + counts["timeout"] + counts["segfault"]
    unreached = counts["no tests"] + counts["not checked"]
    reached = len(outcomes_by_name) - unreached
    equivalent = counts[EQUIVALENT] + counts[f"survived ({EQUIVALENT})"]
    parts = ", ".join(f"{outcome} {count}" for outcome, count in sorted(counts.items()))
    return (
        f"mutants: {len(outcomes_by_name)}; {parts}\n"
        f"killed (timeouts included) over the {reached} mutants tests reach: "
        f"{detected / max(reached, 1):.1%}; over the {reached - equivalent} of them that are "
        f"not equivalent: {detected / max(reached - equivalent, 1):.1%}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mutation run; print the survivors and a summary; return mutmut's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="model")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once")
    parser.add_argument(
        "--deselect",
        action="append",
        default=[],
        metavar="NODEID",
        help="leave out a test that fails on the unmutated tree (mutmut refuses to start)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="run the reviewed mutants too (tests/mutation_impl.py), as after a big change",
    )
    parser.add_argument("mutants", nargs="*", help="re-run only these (needs --keep)")
    args = parser.parse_args(argv)
    target = TARGETS[args.target]
    if args.mutants and args.keep is None:
        parser.error("naming mutants re-runs them in the --keep directory of an earlier run")
    if target.profile is not None:
        os.environ[PROFILE_ENV] = target.profile  # inherited by mutmut and each mutant's pytest
    with tempfile.TemporaryDirectory(prefix=f"flowpace-mutation-{target.name}-") as scratch:
        copy = args.keep.resolve() if args.keep else Path(scratch)
        copy.mkdir(parents=True, exist_ok=True)
        prepare(target, copy, args.deselect, skip_reviewed=not args.all)
        started = time.monotonic()
        run = mutmut(copy, "run", "--max-children", str(args.jobs), *args.mutants, check=False)
        seconds = time.monotonic() - started
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
            return run.returncode
        results = verdicts(outcomes(copy), target)
    chosen = {name: results.get(name, "not run") for name in args.mutants} or results
    for name, outcome in sorted(chosen.items()):
        if outcome not in {"killed", EQUIVALENT} or args.mutants:
            print(f"{name}: {outcome}")
    print(summary(chosen))
    print(f"mutmut run took {seconds:.0f} s")
    for test in args.deselect:
        print(f"left out (fails unmutated): {test}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == [GUARDED]:
        guarded_mutmut(sys.argv[2:])
    sys.exit(main())
