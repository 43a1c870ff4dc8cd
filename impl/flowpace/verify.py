"""The verification campaign behind ``flowpace verify``: every check, one command, one verdict.

The campaign checks the implementation users import against the reference model, and then
checks itself:

1. **conformance**: the seed's traces (``tests/vectors``) replayed on the model and on the
   implementation, every answer compared (spec FC-1..12);
2. **sequential**: a Hypothesis state machine drives the implementation and the model side by
   side through every operation, comparing everything after every step, and fails unless every
   regime was reached (``tests/test_stateful.py``);
3. **interleavings**: threads of the implementation run one at a time at schedule points
   chosen by Hypothesis, and each history must be linearizable (``tests/test_interleavings.py``);
4. **linearizability**: real threads, their histories checked against the model by a
   Wing-Gong-Lowe checker (``tests/test_linearizability.py``);
5. **planted bugs**: each patch of ``tests/planted_bugs`` plants a known bug in a copy of the
   implementation, and checks 2 to 4 (under ``ci`` on CI, ``dev`` otherwise, without
   shrinking) must find it; the time each took is reported;
6. **symbolic**: the CrossHair checks of ``flowpace.symbolic``.

Checks 2 to 4 are pytest runs in subprocesses, under the Hypothesis profile the campaign was
given (``dev``, ``ci``, ``nightly``). They report what they ran (examples, steps, regimes) by
appending JSON lines to the file `STATS_ENV` names. ``--workers`` runs checks side by side;
``--shards`` runs each Hypothesis check in several processes with different seeds, and
`DATABASE_ENV` (``--database``) points every process, on this machine or others, at one
example database, so that a campaign spread over machines shares what it finds.

Where the campaign lives (`find_campaign`): run from a clone, the clone's own ``tests``; run
from an installed package, the copy shipped in it, ``flowpace/_campaign`` (the campaign's test
modules, ``tests/vectors``, ``tests/planted_bugs`` and the pytest configuration, laid out as in
a clone), with the installed ``flowpace`` and ``flowpace_reference`` as the code under test.
Never the project of the current directory. The checks need the ``verify`` extra (pytest,
Hypothesis, CrossHair): without it the command says so in one line and runs nothing.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    # Hypothesis is a development dependency: the runner works without it until a check runs,
    # so only the helpers the tests call import it, when called.
    from hypothesis import settings
    from hypothesis.database import ExampleDatabase

STATS_ENV: Final = "FLOWPACE_VERIFY_STATS"
"""The file (JSON lines) the campaign's tests append their statistics to, when set."""

DATABASE_ENV: Final = "FLOWPACE_EXAMPLE_DB"
"""A shared Hypothesis example database: a directory, or ``redis://host:port/db``."""

PLANTED_ENV: Final = "FLOWPACE_PLANTED_BUG"
"""Set, to a planted bug's name, in the processes that check a copy with that bug planted."""

PROFILE_ENV: Final = "HYPOTHESIS_PROFILE"
"""The environment variable ``tests/conftest.py`` reads the Hypothesis profile from."""

PROFILES: Final = ("dev", "ci", "nightly")
"""The profiles a campaign runs under (``tests/conftest.py`` registers them)."""

DETECTION_MARKERS: Final = ("Falsifying example", "Failing test case")
"""What Hypothesis prints for a failing example: a planted bug counts as found only then."""

PASSED: Final = "passed"
FAILED: Final = "failed"
INCOMPLETE: Final = "incomplete"
VERDICTS: Final = (PASSED, FAILED, INCOMPLETE)
"""How a check, and the campaign, can end: passed; failed (something was found: a
counterexample, a falsifying example, a planted bug missed); or incomplete (a time limit ran
out, a process died, a dependency is missing: nothing was learnt either way)."""

# spec VER-1, VER-2: three verdicts, and the exit status of each.
EXIT_STATUS: Final = {PASSED: 0, FAILED: 1, INCOMPLETE: 3}
"""The exit status of ``flowpace verify`` for each verdict; 2 is a usage error (argparse)."""


# spec VER-2: a failure wins over incomplete, incomplete over passed.
def combined(verdicts: Iterable[str]) -> str:
    """Return the verdict of several: failed if any failed, else incomplete if any, else passed."""
    seen = set(verdicts)
    if FAILED in seen:
        return FAILED
    return INCOMPLETE if INCOMPLETE in seen else PASSED


# --- what the tests call ---------------------------------------------------------------------


def record_stats(check: str, **fields: object) -> None:
    """Append one line of statistics about ``check`` to the file `STATS_ENV` names, if any."""
    path = os.environ.get(STATS_ENV)
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"check": check, **fields}, sort_keys=True) + "\n")


def example_database() -> ExampleDatabase | None:
    """Return the shared example database `DATABASE_ENV` names, or None to keep the profile's."""
    from hypothesis.database import DirectoryBasedExampleDatabase  # noqa: PLC0415  # see top

    where = os.environ.get(DATABASE_ENV)
    if not where:
        return None
    if where.startswith("redis://"):
        # Optional: only a campaign that shares a Redis database needs the redis package.
        from hypothesis.extra.redis import RedisExampleDatabase  # noqa: PLC0415
        from redis import Redis  # type: ignore[import-not-found]  # noqa: PLC0415

        return RedisExampleDatabase(Redis.from_url(where))
    return DirectoryBasedExampleDatabase(where)


def planted_bug() -> str | None:
    """Return the planted bug this process hunts (`PLANTED_ENV`), or None in a normal run."""
    return os.environ.get(PLANTED_ENV) or None


def campaign_settings() -> settings:
    """
    Return the current profile's settings for a campaign check.

    With the shared example database if `DATABASE_ENV` names one. When hunting a planted bug,
    without the example database (each copy starts afresh) and without shrinking: only
    whether and how fast a bug is found matters, not its smallest example.
    """
    from hypothesis import Phase, settings  # noqa: PLC0415  # see the imports at the top

    if planted_bug() is not None:
        return settings(database=None, phases=(Phase.explicit, Phase.generate))
    database = example_database()
    if database is None:
        return settings()
    return settings(database=database)


# --- the checks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """One check of the campaign that runs as a pytest process."""

    name: str
    """Its short name, as the summary and ``--only`` spell it."""
    title: str
    """What it checks, in a few words."""
    tests: tuple[str, ...]
    """The pytest node ids it runs, relative to the project root."""


SEQUENTIAL: Final = Check(
    "sequential",
    "implementation vs model, step by step",
    ("tests/test_stateful.py", "tests/test_extended.py"),  # the second: spec EXT-1..9
)
INTERLEAVINGS: Final = Check(
    "interleavings",
    "drawn thread schedules, linearizable",
    # First the extended law's blocked writers (spec EXT-7): a second or two when they pass,
    # and a hunt for a writer never woken fails there, before the long schedules run.
    ("tests/test_extended_threads.py", "tests/test_interleavings.py"),
)
LINEARIZABILITY: Final = Check(
    "linearizability",
    "real threads, WGL against the model",
    ("tests/test_linearizability.py", "tests/test_extended_linearizability.py"),  # 2nd: EXT-5
)
HYPOTHESIS_CHECKS: Final = (SEQUENTIAL, INTERLEAVINGS, LINEARIZABILITY)
"""The checks that hunt planted bugs, in the order a hunt tries them."""

VECTORS: Final = Path("tests/vectors/seed-vectors.jsonl")
PLANTED_BUGS: Final = Path("tests/planted_bugs")

CHECK_NAMES: Final = (
    "conformance",
    *(check.name for check in HYPOTHESIS_CHECKS),
    "planted-bugs",
    "symbolic",
)
"""Every check of the campaign, in the order the summary lists them."""


PACKAGE_DIR: Final = Path(__file__).resolve().parent
"""The directory of the ``flowpace`` package this module belongs to."""

SHIPPED_CAMPAIGN: Final = "_campaign"
"""The directory of the package that holds the campaign a wheel ships (pyproject's
``[tool.hatch.build.targets.wheel.force-include]`` puts it there)."""

SHIPPED_ROOT_ITEMS: Final = ("pyproject.toml", "tests", str(VECTORS), str(PLANTED_BUGS))
"""What a campaign's root must hold: pytest's configuration, the tests, vectors, planted bugs."""


class CampaignNotFoundError(LookupError):
    """This flowpace is neither part of a clone of the project nor ships its campaign."""


@dataclass(frozen=True, slots=True)
class CampaignSource:
    """Where the campaign's tests live, and which code they test."""

    root: Path
    """The directory holding ``tests/`` and the pytest configuration (``pyproject.toml``)."""
    shipped: bool
    """Whether it is the copy shipped in an installed package (else a clone): the installed
    ``flowpace`` and ``flowpace_reference`` are then the code under test."""


def is_flowpace_clone(root: Path) -> bool:
    """
    Return whether ``root`` is a clone of flowpace.

    Its pyproject names the project ``flowpace``, and it holds the implementation, the
    reference model and the tests.
    """
    try:
        with (root / "pyproject.toml").open("rb") as config:
            name = tomllib.load(config).get("project", {}).get("name")
    except (OSError, tomllib.TOMLDecodeError):
        return False
    trees = ("impl/flowpace", "reference/flowpace_reference", "tests")
    return name == "flowpace" and all((root / tree).is_dir() for tree in trees)


def is_campaign(root: Path) -> bool:
    """Return whether ``root`` holds a whole campaign (`SHIPPED_ROOT_ITEMS`)."""
    return all((root / item).exists() for item in SHIPPED_ROOT_ITEMS)


# spec VER-5: the campaign is found from flowpace's own location, never the cwd.
def find_campaign(package: Path = PACKAGE_DIR) -> CampaignSource:
    """
    Return the campaign of the ``flowpace`` package at ``package``.

    The clone it is part of (``package`` is its ``impl/flowpace``) if that tree is flowpace's
    own, else the campaign shipped in the package. Where the command runs from plays no part:
    another project's ``tests`` are never taken for flowpace's. Raise CampaignNotFoundError if
    there is neither.
    """
    clone = package.parent.parent
    if package == clone / "impl" / "flowpace" and is_flowpace_clone(clone):
        return CampaignSource(clone, shipped=False)
    shipped = package / SHIPPED_CAMPAIGN
    if is_campaign(shipped):
        return CampaignSource(shipped, shipped=True)
    raise CampaignNotFoundError(
        f"no campaign found: {package} is not part of a clone of flowpace and ships no "
        f"campaign ({SHIPPED_CAMPAIGN}/); reinstall flowpace from its wheel"
    )


def check_environment(
    root: Path, profile: str, *, stats: Path | None, **extra: str
) -> dict[str, str]:
    """Return the environment of a check's process: the profile, the source trees, the stats."""
    env = dict(os.environ)
    # A shipped campaign has only tests/: the code under test is then the installed packages.
    trees = [root / tree for tree in ("impl", "reference", "tests")]
    paths = [str(tree) for tree in trees if tree.is_dir()]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env[PROFILE_ENV] = profile
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Only the plugin the checks use (`pytest_command`): whatever else the environment has
    # installed (another project's plugins, a reseeding one) stays out of the campaign.
    env[NO_PLUGIN_AUTOLOAD] = "1"
    env.pop(STATS_ENV, None)
    env.pop(PLANTED_ENV, None)
    if stats is not None:
        env[STATS_ENV] = str(stats)
    env.update(extra)
    return env


NO_PLUGIN_AUTOLOAD: Final = "PYTEST_DISABLE_PLUGIN_AUTOLOAD"
HYPOTHESIS_PLUGIN: Final = "_hypothesis_pytestplugin"
"""Hypothesis's pytest plugin, loaded by name since the checks' processes load none by
themselves (`NO_PLUGIN_AUTOLOAD`)."""

STORAGE_ENV: Final = "HYPOTHESIS_STORAGE_DIRECTORY"
"""Where Hypothesis keeps its example database (default: ``.hypothesis`` in the working
directory, which for a shipped campaign is inside the installed package)."""


def shipped_storage() -> dict[str, str]:
    """
    Return the environment that keeps a shipped campaign's Hypothesis examples out of the package.

    In the user's cache (``$XDG_CACHE_HOME/flowpace/hypothesis``), unless `STORAGE_ENV` is set.
    """
    if os.environ.get(STORAGE_ENV):
        return {}
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return {STORAGE_ENV: str(cache / "flowpace" / "hypothesis")}


def pytest_command(
    tests: Iterable[str], *, seed: int | None = None, root: Path | None = None
) -> list[str]:
    """
    Return the command that runs ``tests`` with pytest in this interpreter.

    It loads Hypothesis's plugin by name: run it in `check_environment`'s environment, where
    pytest loads no other plugin by itself (loaded twice, it would refuse to start). With
    ``root``, pytest takes its configuration from ``root/pyproject.toml`` and nowhere
    else: a shipped campaign inside another project's virtual environment must not pick up
    that project's configuration.
    """
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command.extend(["-p", HYPOTHESIS_PLUGIN])
    if root is not None:
        command.extend(["-c", str(root / "pyproject.toml"), f"--rootdir={root}"])
    command.extend(tests)
    if seed is not None:
        command.append(f"--hypothesis-seed={seed}")
    return command


# --- planted bugs ----------------------------------------------------------------------------


class PatchError(ValueError):
    """A planted-bug patch is malformed, or no longer applies to the implementation."""


@dataclass(frozen=True, slots=True)
class Hunk:
    """One change of a patch: replace ``old`` by ``new`` in the file at ``path``."""

    path: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class PlantedBug:
    """A known bug, as a patch on the implementation, that the campaign must detect."""

    name: str
    """The patch's file name without ``.patch``."""
    title: str
    """What the bug is (the patch's ``Planted bug:`` line)."""
    spec: str
    """The requirements it breaks (the patch's ``Spec:`` line)."""
    hunks: tuple[Hunk, ...]
    found_by: str = ""
    """The check expected to find it (the patch's ``Found-by:`` line): a hunt runs it first."""
    found_in: tuple[str, ...] = ()
    """Tests of that check expected to find it (``Found-in:``): a hunt runs them first (VER-4)."""


def parse_patch(name: str, text: str) -> PlantedBug:
    """
    Return the planted bug a unified diff describes; raise PatchError if it is malformed.

    Free text before the first ``---`` line describes the bug: its ``Planted bug:``, ``Spec:``
    and ``Found-by:`` lines are kept (``Found-by`` names a check of `HYPOTHESIS_CHECKS`). Line
    numbers in ``@@`` headers are ignored: each hunk is applied where its old text (context and
    removed lines) occurs, which must be exactly once.
    """
    header, _, diff = text.partition("\n--- ")
    meta = {}
    for line in header.splitlines():
        key, _, value = line.partition(":")
        if value:
            meta[key.strip().lower()] = value.strip()
    hunks = [
        hunk
        for section in ("--- " + diff).split("\n--- ")[0 if diff else 1 :]
        for hunk in _file_hunks(section)
    ]
    if not hunks:
        raise PatchError(f"planted bug {name}: no hunk found")
    found_by = meta.get("found-by", "")
    known = [check.name for check in HYPOTHESIS_CHECKS]
    if found_by and found_by not in known:
        raise PatchError(
            f"planted bug {name}: Found-by names {found_by!r}, not one of {', '.join(known)}"
        )
    found_in = tuple(meta.get("found-in", "").split())
    files = next((check.tests for check in HYPOTHESIS_CHECKS if check.name == found_by), ())
    stray = [test for test in found_in if test.split("::")[0] not in files]
    if stray:
        raise PatchError(
            f"planted bug {name}: Found-in names {', '.join(stray)}, not tests of the "
            f"{found_by or 'unnamed'} check"
        )
    return PlantedBug(
        name=name,
        title=meta.get("planted bug", name),
        spec=meta.get("spec", ""),
        hunks=tuple(hunks),
        found_by=found_by,
        found_in=found_in,
    )


def _file_hunks(section: str) -> Iterator[Hunk]:
    """Return the hunks of one file's part of a unified diff (from its ``---`` line on)."""
    first, _, body = section.partition("\n")
    path = _strip_prefix(first.removeprefix("--- ").split("\t")[0].strip())
    for chunk in re.split(r"^@@[^\n]*\n", body, flags=re.MULTILINE)[1:]:
        old, new = [], []
        for line in chunk.splitlines(keepends=True):
            kind, content = line[:1], line[1:]
            if kind in {" ", "-"}:
                old.append(content)
            if kind in {" ", "+"}:
                new.append(content)
        yield Hunk(path, "".join(old), "".join(new))


def _strip_prefix(path: str) -> str:
    """Return a diff's file path without its ``a/`` or ``b/`` prefix."""
    return path[2:] if path.startswith(("a/", "b/")) else path


def load_planted_bugs(root: Path) -> list[PlantedBug]:
    """Return every planted bug of ``root/tests/planted_bugs``, by name."""
    directory = root / PLANTED_BUGS
    return [
        parse_patch(path.stem, path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.patch"))
    ]


def apply_bug(bug: PlantedBug, root: Path) -> None:
    """Plant ``bug`` in the tree at ``root``; raise PatchError if a hunk does not apply."""
    for hunk in bug.hunks:
        target = root / hunk.path
        text = target.read_text(encoding="utf-8")
        found = text.count(hunk.old)
        if found != 1:
            raise PatchError(
                f"planted bug {bug.name}: the text it changes in {hunk.path} occurs {found} "
                "times, not once: the implementation changed; update the patch"
            )
        target.write_text(text.replace(hunk.old, hunk.new), encoding="utf-8")


SHIPPED_DATA: Final = frozenset({SHIPPED_CAMPAIGN, "spec"})
"""What an installed ``flowpace`` holds besides its code (the campaign and the spec)."""


def code_trees(root: Path) -> dict[str, Path]:
    """
    Return the code a copy of the campaign at ``root`` tests, by its place in the copy.

    A clone's own ``impl`` and ``reference``. For a shipped campaign, the installed packages
    it was shipped with: the planted bugs' patches name their files as in a clone
    (``impl/flowpace/...``, ``reference/flowpace_reference/...``), so the copy lays them out
    the same way.
    """
    if (root / "impl").is_dir():
        return {"impl": root / "impl", "reference": root / "reference"}
    reference = importlib.util.find_spec("flowpace_reference")
    locations = reference.submodule_search_locations if reference else None
    if not locations:
        raise PatchError("flowpace_reference is not installed beside flowpace")
    return {
        "impl/flowpace": root.parent,
        "reference/flowpace_reference": Path(next(iter(locations))),
    }


def copy_project(root: Path, destination: Path) -> None:
    """Copy the code, tests and configuration of the campaign at ``root`` into ``destination``."""
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc", "benchmarks")
    for name in ("tests", "pyproject.toml"):
        source = root / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    for place, source in code_trees(root).items():

        def without_data(directory: str, names: list[str], top: Path = source) -> set[str]:
            # The installed package's campaign and spec are data, not code under test.
            shipped = SHIPPED_DATA if Path(directory) == top else set()
            return ignore(directory, names) | (set(names) & shipped)

        shutil.copytree(source, destination / place, ignore=without_data)


@dataclass(frozen=True, slots=True)
class Hunt:
    """How the campaign fared against one planted bug."""

    bug: PlantedBug
    detected_by: str | None
    """The check that found it, or None."""
    seconds: float
    """Wall time from the start of the hunt to the detection (or to giving up)."""
    error: str | None = None
    """Why the hunt could not run (patch does not apply, copy broken), if it could not."""
    log: str = ""
    """The output of the last check run."""
    incomplete: bool = False
    """Whether the hunt was cut short by its time limit: then nothing was learnt."""

    @property
    def verdict(self) -> str:
        """Return `PASSED` if the bug was found, `INCOMPLETE` if cut short, else `FAILED`."""
        if self.detected_by is not None:
            return PASSED
        return INCOMPLETE if self.incomplete else FAILED


def hunt_order(bug: PlantedBug, checks: Sequence[Check] = HYPOTHESIS_CHECKS) -> list[Check]:
    """Return ``checks`` in the order a hunt for ``bug`` runs them: its ``Found-by`` first."""
    return sorted(checks, key=lambda check: check.name != bug.found_by)


def hunt_steps(
    bug: PlantedBug, checks: Sequence[Check] = HYPOTHESIS_CHECKS
) -> list[tuple[Check, tuple[str, ...]]]:
    """
    Return the pytest runs of a hunt for ``bug``, in order: each check, and the tests it runs.

    Spec VER-4: the ``Found-in`` tests of its ``Found-by`` check first, then that whole check
    (whose tests include them), then the other checks.
    """
    steps = [(check, check.tests) for check in hunt_order(bug, checks)]
    if bug.found_in and steps and steps[0][0].name == bug.found_by:
        steps.insert(0, (steps[0][0], bug.found_in))
    return steps


# spec VER-4: hunts are derandomised, whatever the campaign's profile.
HUNT_PROFILE: Final = "ci"
"""The profile every hunt runs under: derandomized, so a hunt finds its bug on every run."""


def hunt(
    bug: PlantedBug,
    root: Path,
    profile: str = HUNT_PROFILE,
    *,
    checks: Sequence[Check] = HYPOTHESIS_CHECKS,
    timeout: float = 900.0,
) -> Hunt:
    """
    Plant ``bug`` in a copy of the campaign at ``root`` and run ``checks`` on it until one fails.

    The copy holds the campaign's tests and the code they test (`code_trees`: a clone's, or the
    installed packages for a shipped campaign).

    The tests its patch names as ``Found-in`` run first, then the check it names as
    ``Found-by``, then the others (`hunt_steps`, spec VER-4). A check *detects* the bug when it
    fails with a falsifying example; a failure without one (an import error, a broken patch)
    is reported as an error, never as a detection. A check that runs past ``timeout``
    wall-clock seconds (a safety net) leaves the hunt incomplete. The hash seed is fixed, so
    that under a derandomized profile a hunt is the same search on every run.
    """
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"flowpace-{bug.name}-") as tmp:
        copy = Path(tmp)
        try:
            copy_project(root, copy)
            apply_bug(bug, copy)
        except (OSError, PatchError) as error:
            return Hunt(bug, None, time.monotonic() - started, error=str(error))
        env = check_environment(
            copy, profile, stats=None, **{PLANTED_ENV: bug.name, "PYTHONHASHSEED": "0"}
        )
        where = _imported_from(copy, env)
        if where is not None:
            return Hunt(bug, None, time.monotonic() - started, error=where)
        log = ""
        for check, tests in hunt_steps(bug, checks):
            try:
                done = subprocess.run(  # noqa: S603  # our own interpreter and test files
                    [*pytest_command(tests, root=copy), "-x"],
                    cwd=copy,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return Hunt(
                    bug,
                    None,
                    time.monotonic() - started,
                    error=f"{check.name} ran past the {timeout:.0f} s safety net",
                    incomplete=True,
                )
            log = done.stdout + done.stderr
            if done.returncode == 0:
                continue
            if done.returncode == 1 and any(marker in log for marker in DETECTION_MARKERS):
                return Hunt(bug, check.name, time.monotonic() - started, log=log)
            return Hunt(
                bug,
                None,
                time.monotonic() - started,
                error=f"{check.name} failed without a falsifying example "
                f"(pytest exit status {done.returncode}): {_failure_reason(log)}",
                log=log,
            )
        return Hunt(bug, None, time.monotonic() - started, log=log)


def _imported_from(copy: Path, env: dict[str, str]) -> str | None:
    """Return why the copy's code would not be the code tested, or None if it would be."""
    probe = "import flowpace, flowpace_reference; print(flowpace.__file__)"
    done = subprocess.run(  # noqa: S603  # our own interpreter
        [sys.executable, "-c", probe],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"the patched copy does not import: {done.stderr.strip()[-400:]}"
    if not Path(done.stdout.strip()).resolve().is_relative_to(copy.resolve()):
        return f"the copy is shadowed by {done.stdout.strip()}"
    return None


# --- running the campaign --------------------------------------------------------------------


@dataclass
class Outcome:
    """What one check of the campaign found."""

    name: str
    title: str
    verdict: str = PASSED
    """`PASSED`, `FAILED` or `INCOMPLETE`."""
    seconds: float = 0.0
    examples: int = 0
    steps: int = 0
    regimes: str = ""
    notes: list[str] = field(default_factory=list)
    recipe: list[str] = field(default_factory=list)
    """How to replay a failure: commands and the failing example's lines."""

    @property
    def passed(self) -> bool:
        """Return whether the check passed."""
        return self.verdict == PASSED

    def conclude(self, verdict: str) -> None:
        """Combine ``verdict`` into this check's verdict (a failure wins over incomplete)."""
        self.verdict = combined((self.verdict, verdict))


@dataclass
class Campaign:
    """The options of one run of ``flowpace verify``."""

    root: Path
    profile: str
    workers: int
    shards: int
    only: tuple[str, ...]
    logs: Path
    timeout: float
    out: TextIO = sys.stdout
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards the output and the progress display's bookkeeping."""
    shipped: bool = False
    """Whether ``root`` is the campaign shipped in the installed package (else a clone)."""

    def say(self, line: str) -> None:
        """Print one progress line (from any worker thread)."""
        with self.lock:
            print(line, file=self.out, flush=True)

    def environment(self, stats: Path | None) -> dict[str, str]:
        """Return the environment of one of this campaign's check processes."""
        extra = shipped_storage() if self.shipped else {}
        return check_environment(self.root, self.profile, stats=stats, **extra)

    def command(self, tail: str) -> str:
        """
        Return how to run ``tail`` (``pytest ...``, ``python ...``, ``flowpace ...``) by hand.

        From a clone, under ``uv run`` there; from an installed package, with its interpreter
        in the shipped campaign's directory, as the campaign ran it.
        """
        if not self.shipped:
            return f"{PROFILE_ENV}={self.profile} uv run {tail}"
        program, _, arguments = tail.partition(" ")
        if program == "flowpace":
            return f"{shlex.quote(str(Path(sys.executable).parent / 'flowpace'))} {arguments}"
        settings = {PROFILE_ENV: self.profile}
        if program == "pytest":
            # As the check ran: its example database, and no plugin but Hypothesis's.
            settings.update({**shipped_storage(), NO_PLUGIN_AUTOLOAD: "1"})
            plugins = f"-p no:cacheprovider -p {HYPOTHESIS_PLUGIN}"
            arguments = f"-m pytest {plugins} -c pyproject.toml {arguments}"
        env = " ".join(f"{name}={shlex.quote(value)}" for name, value in settings.items())
        python = shlex.quote(sys.executable)
        return f"cd {shlex.quote(str(self.root))} && {env} {python} {arguments}"


def run_conformance(campaign: Campaign) -> Outcome:
    """Replay the seed's traces on every target (spec FC-1..12); fail on any difference."""
    from flowpace.replay import TARGETS, load_vectors, replay  # noqa: PLC0415  # lazy: CLI

    outcome = Outcome("conformance", "seed traces on model and implementation")
    started = time.monotonic()
    vectors = list(load_vectors([campaign.root / VECTORS]))
    failures = [
        (vector.name, target)
        for vector in vectors
        for target in sorted(TARGETS)
        if replay(vector, TARGETS[target]) is not None
    ]
    outcome.seconds = time.monotonic() - started
    outcome.examples = len(vectors) * len(TARGETS)
    outcome.steps = sum(len(vector.trace) for vector in vectors) * len(TARGETS)
    outcome.notes.append(f"{len(vectors)} traces x {len(TARGETS)} targets")
    if failures or not vectors:
        outcome.conclude(FAILED)
        shown = ", ".join(f"{name} [{target}]" for name, target in failures[:5])
        outcome.notes.append(f"{len(failures)} traces differ: {shown}")
        vectors_path = campaign.root / VECTORS if campaign.shipped else VECTORS
        outcome.recipe.append(campaign.command(f"flowpace replay --target both {vectors_path}"))
    return outcome


def run_process(command: list[str], campaign: Campaign, env: dict[str, str]) -> tuple[int, str]:
    """Return the exit status and output of one check process (124 if it timed out)."""
    try:
        done = subprocess.run(  # noqa: S603  # our own interpreter, module and test files
            command,
            cwd=campaign.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=campaign.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        return TIMED_OUT, f"ran past the {expired.timeout:.0f} s safety net (--timeout)"
    return done.returncode, done.stdout + done.stderr


TIMED_OUT: Final = 124
"""The status `run_process` gives a process it stopped at the safety net (as timeout(1) does)."""


# spec VER-1, VER-3: only a test that failed is a failure; a safety net is incomplete.
def pytest_verdict(status: int, log: str) -> tuple[str, str]:
    """
    Return the verdict of one pytest process of a check, and why.

    pytest exits 1 when a test failed: the check found something. Every other non-zero
    status means the tests did not all run (interrupted, internal or usage error, no test
    collected, killed, stopped at the safety net, pytest missing): the check is incomplete.
    """
    if status == 0:
        return PASSED, ""
    if "No module named pytest" in log:
        return INCOMPLETE, f"pytest is not installed: {INSTALL_EXTRA}"
    if status == 1:
        return FAILED, _failure_reason(log)
    if status == TIMED_OUT:
        return INCOMPLETE, log.strip().splitlines()[-1]
    return INCOMPLETE, f"pytest exit status {status}: {_last_line(log)}"


def run_pytest_check(campaign: Campaign, check: Check) -> Outcome:
    """Run one Hypothesis check, in ``shards`` processes, and gather what they report."""
    outcome = Outcome(check.name, check.title)
    started = time.monotonic()
    derandomized = campaign.profile == "ci"
    shards = 1 if derandomized else campaign.shards
    if derandomized and campaign.shards > 1:
        outcome.notes.append("ci is derandomized: one shard")
    seeds: list[int | None] = [None] if shards == 1 else list(range(shards))
    stats = [campaign.logs / f"{check.name}-{index}.stats.jsonl" for index in range(len(seeds))]

    def one_shard(index: int) -> tuple[int, str]:
        command = pytest_command(check.tests, seed=seeds[index], root=campaign.root)
        env = campaign.environment(stats[index])
        return run_process(command, campaign, env)

    with ThreadPoolExecutor(max_workers=shards) as pool:
        results = list(pool.map(one_shard, range(len(seeds))))
    outcome.seconds = time.monotonic() - started
    for index, (status, log) in enumerate(results):
        log_path = campaign.logs / f"{check.name}-{index}.log"
        log_path.write_text(log, encoding="utf-8")
        verdict, reason = pytest_verdict(status, log)
        outcome.conclude(verdict)
        if verdict != PASSED:
            outcome.notes.append(reason if verdict == FAILED else f"incomplete: {reason}")
            recipe = _replay_recipe(campaign, check, seeds[index], log, log_path)
            outcome.recipe.extend(recipe)
    _gather_stats(outcome, stats)
    return outcome


def _gather_stats(outcome: Outcome, paths: Iterable[Path]) -> None:
    """Add up the statistics the tests reported in ``paths`` into ``outcome``."""
    regimes: Counter[str] = Counter()
    extras: Counter[str] = Counter()
    for path in paths:
        for record in _read_stats(path):
            for key, value in record.items():
                if key == "regimes" and isinstance(value, dict):
                    regimes.update({name: int(count) for name, count in value.items()})
                elif key in {"examples", "steps"} and isinstance(value, int):
                    setattr(outcome, key, getattr(outcome, key) + value)
                elif isinstance(value, int):
                    extras[key] += value
    outcome.notes.extend(f"{count} {key}" for key, count in sorted(extras.items()))
    if regimes:
        reached = sum(1 for count in regimes.values() if count)
        outcome.regimes = f"{reached}/{len(regimes)}"
        missing = sorted(name for name, count in regimes.items() if not count)
        if missing:
            outcome.notes.append(f"never reached: {', '.join(missing)}")
        else:
            rarest, count = min(regimes.items(), key=lambda item: (item[1], item[0]))
            outcome.notes.append(f"every regime reached, the rarest ({rarest}) {count} times")


def _read_stats(path: Path) -> Iterator[dict[str, object]]:
    """Return the statistics records a check's tests appended to ``path``."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)


def _last_line(log: str) -> str:
    """Return the pytest summary line of ``log``, or its last line."""
    lines = [line for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"\b(passed|failed|error)", line):
            return line.strip("= ")
    return lines[-1] if lines else "no output"


def _replay_recipe(
    campaign: Campaign, check: Check, seed: int | None, log: str, log_path: Path
) -> list[str]:
    """Return how to replay a failing check: its command, the failing example, the log."""
    seeded = "" if seed is None else f" --hypothesis-seed={seed}"
    tests = " ".join(check.tests)
    recipe = [campaign.command(f"pytest {tests}{seeded}")]
    blobs = {_unprefixed(line) for line in log.splitlines() if "@reproduce_failure" in line}
    recipe.extend(sorted(blobs))
    example = _falsifying_example(log)
    if example:
        recipe.append("falsifying example (first lines):")
        recipe.extend(f"    {line}" for line in example[:12])
    recipe.append(f"full output: {log_path}")
    return recipe


def _falsifying_example(log: str) -> list[str]:
    """Return the lines of the first falsifying example Hypothesis printed in ``log``."""
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if any(marker in line for marker in DETECTION_MARKERS):
            return [_unprefixed(text) for text in lines[index : index + 40] if text.strip()]
    return []


def _unprefixed(line: str) -> str:
    """Return a line of pytest's failure report without its ``E`` margin."""
    return re.sub(r"^E {2,}", "", line.rstrip()).strip()


def _failure_reason(log: str) -> str:
    """Return the first line of the exception a failing check raised, or its summary line."""
    for line in log.splitlines():
        if re.match(r"^E {2,}[\w.]*(Error|Exception|Failed)\b", line):
            return _unprefixed(line)[:160]
    return _last_line(log)


HUNT_COST_ORDER: Final = ("interleavings", "linearizability", "sequential")
"""The checks a planted bug is found by, from the slowest hunt to the quickest, as measured."""


def hunt_schedule(bugs: Sequence[PlantedBug]) -> list[PlantedBug]:
    """
    Return ``bugs`` in the order to hunt them: the slow hunts first, then by name.

    Hunts run ``workers`` at a time; starting the long ones (found by the interleavings, about
    a minute each on a busy machine) first lets the short ones fill the workers at the end,
    instead of a long hunt started last running alone (longest processing time first).
    """

    def cost_rank(bug: PlantedBug) -> int:
        found_by = bug.found_by if bug.found_by in HUNT_COST_ORDER else "sequential"
        return HUNT_COST_ORDER.index(found_by)

    return sorted(bugs, key=lambda bug: (cost_rank(bug), bug.name))


def run_planted_bugs(campaign: Campaign) -> Outcome:
    """Hunt every planted bug in its own copy; fail unless every one is detected."""
    outcome = Outcome("planted-bugs", "the campaign finds known bugs")
    started = time.monotonic()
    try:
        bugs = load_planted_bugs(campaign.root)
    except PatchError as error:
        outcome.conclude(FAILED)
        outcome.notes.append(str(error))
        return outcome

    def one(bug: PlantedBug) -> Hunt:
        result = hunt(bug, campaign.root, timeout=campaign.timeout)
        verdict = {
            PASSED: f"found by {result.detected_by}",
            FAILED: "NOT FOUND",
            INCOMPLETE: "INCOMPLETE",
        }[result.verdict]
        campaign.say(f"    planted bug {bug.name}: {verdict} in {result.seconds:.1f} s")
        return result

    with ThreadPoolExecutor(max_workers=max(campaign.workers, 1)) as pool:
        hunts = sorted(pool.map(one, hunt_schedule(bugs)), key=lambda result: result.bug.name)
    outcome.seconds = time.monotonic() - started
    outcome.examples = len(bugs)
    detected = [result for result in hunts if result.detected_by]
    outcome.regimes = f"{len(detected)}/{len(bugs)} found"
    for result in hunts:
        if result.detected_by:
            outcome.notes.append(f"{result.bug.name}: {result.detected_by}, {result.seconds:.1f} s")
            continue
        outcome.conclude(result.verdict)
        why = result.error or "no check failed"
        said = "INCOMPLETE" if result.incomplete else "NOT FOUND"
        outcome.notes.append(f"{result.bug.name}: {said} ({why})")
        log_path = campaign.logs / f"planted-{result.bug.name}.log"
        log_path.write_text(result.log, encoding="utf-8")
        # tests/test_planted_bugs.py hunts one bug by name; it is not shipped in the package.
        rerun = (
            "flowpace verify --only planted-bugs"
            if campaign.shipped
            else f"pytest tests/test_planted_bugs.py -k {result.bug.name}"
        )
        outcome.recipe.append(f"{campaign.command(rerun)}   (last output: {log_path})")
    if not bugs:
        outcome.conclude(FAILED)
        outcome.notes.append(f"no patch in {PLANTED_BUGS}")
    return outcome


def run_symbolic(campaign: Campaign) -> Outcome:
    """Run the CrossHair checks of ``flowpace.symbolic`` on the model."""
    outcome = Outcome("symbolic", "CrossHair contracts of the model")
    started = time.monotonic()
    command = [sys.executable, "-m", "flowpace.symbolic", "--jobs", str(campaign.workers)]
    status, log = run_process(command, campaign, campaign.environment(None))
    outcome.seconds = time.monotonic() - started
    log_path = campaign.logs / "symbolic.log"
    log_path.write_text(log, encoding="utf-8")
    verdict = next(
        (line for line in log.splitlines() if line.startswith("symbolic checks")), _last_line(log)
    )
    outcome.notes.append(verdict.removeprefix("symbolic checks "))
    conditions = re.search(r"(\d+) conditions", verdict)
    outcome.examples = int(conditions.group(1)) if conditions else 0
    by_status = {code: name for name, code in EXIT_STATUS.items()}
    if not verdict.startswith("symbolic checks"):
        # No verdict line: the runner itself crashed or was stopped; nothing was concluded.
        outcome.conclude(INCOMPLETE)
    else:
        outcome.conclude(by_status.get(status, INCOMPLETE))
    if status != 0:
        outcome.recipe.extend(
            [
                campaign.command("python -m flowpace.symbolic --verbose"),
                f"full output: {log_path}",
            ]
        )
    return outcome


RUNNERS: Final[dict[str, Callable[[Campaign], Outcome]]] = {
    "conformance": run_conformance,
    **{check.name: functools.partial(run_pytest_check, check=check) for check in HYPOTHESIS_CHECKS},
    "planted-bugs": run_planted_bugs,
    "symbolic": run_symbolic,
}
"""How each check of the campaign runs."""


def run_campaign(campaign: Campaign) -> list[Outcome]:
    """Run every selected check, ``workers`` at a time; return their outcomes in order."""
    names = [name for name in CHECK_NAMES if not campaign.only or name in campaign.only]
    campaign.say(
        f"flowpace verify: profile {campaign.profile}, {campaign.workers} worker(s), "
        f"{campaign.shards} shard(s); logs in {campaign.logs}"
    )
    kind = "shipped in the installed package" if campaign.shipped else "of the clone"
    campaign.say(f"campaign {kind}: {campaign.root}")
    started = time.monotonic()
    running: dict[str, float] = {}
    done = threading.Event()

    def one(name: str) -> Outcome:
        campaign.say(f"  started  {name}")
        with campaign.lock:
            running[name] = time.monotonic()
        outcome = RUNNERS[name](campaign)
        with campaign.lock:
            del running[name]
        verdict = outcome.verdict if outcome.passed else outcome.verdict.upper()
        campaign.say(
            f"  {verdict:8} {name} in {outcome.seconds:.1f} s "
            f"({time.monotonic() - started:.0f} s into the campaign)"
        )
        return outcome

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            with campaign.lock:
                now = time.monotonic()
                busy = ", ".join(f"{name} {now - since:.0f} s" for name, since in running.items())
            if busy:
                campaign.say(f"  ... running: {busy}")

    threading.Thread(target=heartbeat, name="flowpace verify heartbeat", daemon=True).start()
    # Longest first, so that the short checks fill the workers while the long ones run.
    ordered = sorted(names, key=EXPECTED_ORDER.index)
    try:
        with ThreadPoolExecutor(max_workers=max(campaign.workers, 1)) as pool:
            outcomes = list(pool.map(one, ordered))
    finally:
        done.set()
    outcomes.sort(key=lambda outcome: CHECK_NAMES.index(outcome.name))
    return outcomes


HEARTBEAT_SECONDS: Final = 30.0
"""How often the progress display lists the checks still running."""

EXPECTED_ORDER: Final = (
    "planted-bugs",
    "interleavings",
    "symbolic",
    "sequential",
    "linearizability",
    "conformance",
)
"""The checks from the longest to the shortest, as they usually run (on a busy 2-core machine:
planted-bugs about 320 s, interleavings 155 s, symbolic 140 s, sequential 70 s, the others
under 10 s). The longest starts first, so that it is not the campaign's tail."""


def summary(outcomes: Sequence[Outcome], seconds: float) -> str:
    """Return the summary table of a campaign and the replay recipe of each failure."""
    header = ("check", "result", "time", "examples", "steps", "regimes", "notes")
    rows = [
        (
            outcome.name,
            {PASSED: "pass", FAILED: "FAIL", INCOMPLETE: "INCOMPLETE"}[outcome.verdict],
            f"{outcome.seconds:.1f} s",
            str(outcome.examples or "-"),
            str(outcome.steps or "-"),
            outcome.regimes or "-",
            "; ".join(outcome.notes),
        )
        for outcome in outcomes
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]

    def line(row: Sequence[str]) -> str:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        return "  ".join([*cells, row[-1]]).rstrip()

    lines = [line(header), line(["-" * width for width in widths] + ["-----"])]
    lines.extend(line(row) for row in rows)
    verdict = combined(outcome.verdict for outcome in outcomes)
    named = [outcome.name for outcome in outcomes if outcome.verdict == verdict]
    if verdict == PASSED:
        lines.append(f"\nPASSED in {seconds:.0f} s")
    else:
        lines.append(f"\n{verdict.upper()} ({', '.join(named)}) in {seconds:.0f} s")
    unfinished = [o.name for o in outcomes if o.verdict == INCOMPLETE]
    if verdict == FAILED and unfinished:
        lines.append(f"(also incomplete: {', '.join(unfinished)})")
    if verdict == INCOMPLETE:
        lines.append(
            "incomplete: a time limit ran out, a process died or a dependency is missing; "
            "no check failed, and none of these passed either"
        )
    for outcome in outcomes:
        if outcome.recipe and not outcome.passed:
            title = "replay" if outcome.verdict == FAILED else "rerun"
            lines.append(f"\n{title} {outcome.name}:")
            lines.extend(f"  {step}" for step in outcome.recipe)
    return "\n".join(lines)


# --- the command line ------------------------------------------------------------------------


def default_profile() -> str:
    """Return the profile to use unless told: ``HYPOTHESIS_PROFILE``, else ci on CI, else dev."""
    named = os.environ.get(PROFILE_ENV)
    if named:
        return named
    return "ci" if os.environ.get("CI") else "dev"


def positive_int(text: str) -> int:
    """Return ``text`` as an integer of at least 1, or raise argparse's error naming it."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """Return ``text`` as a positive number of seconds, or raise argparse's error naming it."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``flowpace verify`` to ``parser``."""
    parser.add_argument(
        "--profile",
        default=None,
        choices=PROFILES,
        help="Hypothesis profile: dev (fast), ci (derandomized, the default when CI is set) "
        f"or nightly (long); default: ${PROFILE_ENV}, else ci on CI, else dev",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=min(os.cpu_count() or 1, 2),
        metavar="N",
        help="checks (and planted-bug hunts) run side by side (default: 2, or 1 on one core)",
    )
    parser.add_argument(
        "--shards",
        type=positive_int,
        default=1,
        metavar="K",
        help="processes per Hypothesis check, each with its own seed (not under ci)",
    )
    parser.add_argument(
        "--database",
        default=None,
        metavar="DIR_OR_URL",
        help="a shared Hypothesis example database: a directory, or redis://host:port/db "
        f"(sets ${DATABASE_ENV})",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=CHECK_NAMES,
        default=[],
        metavar="CHECK",
        help=f"run only this check (repeatable): {', '.join(CHECK_NAMES)}",
    )
    parser.add_argument(
        "--symbolic",
        action="store_true",
        help="run only the symbolic checks (the same as --only symbolic)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_seconds,
        default=1_800.0,
        metavar="SECONDS",
        help="safety net: wall-clock seconds one check process may take before it is stopped "
        "and the check counted incomplete (default 1800; no default run comes near it)",
    )


USAGE_ERROR: Final = 2
"""The exit status of a command line that cannot be run as given (argparse's)."""

TOOLS: Final = {
    **{check.name: ("pytest", "hypothesis") for check in HYPOTHESIS_CHECKS},
    "planted-bugs": ("pytest", "hypothesis"),
    "symbolic": ("crosshair",),
}
"""The modules each check needs beyond flowpace (the ``verify`` extra); conformance needs none."""

INSTALL_EXTRA: Final = 'pip install "flowpace[verify]"'
"""How to install what the checks need (pytest, Hypothesis, CrossHair)."""

EXTRA_MISSING: Final = f"flowpace verify needs the verify extra: {INSTALL_EXTRA}"
"""What the command says, in one line, when a check it was asked to run lacks its tools."""


# spec VER-6: a missing tool is one line and exit 3, before anything runs.
def missing_tools(checks: Iterable[str]) -> list[str]:
    """Return the modules the ``checks`` need that cannot be imported here, in a stable order."""
    needed = dict.fromkeys(tool for check in checks for tool in TOOLS.get(check, ()))
    return [tool for tool in needed if importlib.util.find_spec(tool) is None]


def selected(args: argparse.Namespace) -> tuple[str, ...]:
    """Return the checks the parsed ``args`` select (every check unless told)."""
    return ("symbolic",) if args.symbolic else tuple(args.only)


def main(args: argparse.Namespace) -> int:
    """Run the campaign the parsed ``args`` describe; return the verdict's `EXIT_STATUS`."""
    profile = args.profile or default_profile()
    if profile not in PROFILES:
        # Checked before anything runs: every check would otherwise fail on it, later.
        sys.stderr.write(
            f"flowpace verify: unknown profile {profile!r} (from ${PROFILE_ENV}); "
            f"choose one of {', '.join(PROFILES)}\n"
        )
        return USAGE_ERROR
    try:
        source = find_campaign()
    except CampaignNotFoundError as error:
        sys.stderr.write(f"flowpace verify: {error}\n")
        return EXIT_STATUS[INCOMPLETE]
    only = selected(args)
    missing = missing_tools(only or CHECK_NAMES)
    if missing:
        # Nothing could be learnt: incomplete, said at once rather than by every check later.
        hint = "; in a clone, uv sync installs them" if not source.shipped else ""
        sys.stderr.write(f"{EXTRA_MISSING} (missing: {', '.join(missing)}{hint})\n")
        return EXIT_STATUS[INCOMPLETE]
    if args.database:
        os.environ[DATABASE_ENV] = args.database
    # Logs outlive a failing run, so that its replay recipe can point at them.
    logs = Path(tempfile.mkdtemp(prefix="flowpace-verify-"))
    campaign = Campaign(
        root=source.root,
        profile=profile,
        workers=max(args.workers, 1),
        shards=max(args.shards, 1),
        only=only,
        logs=logs,
        timeout=args.timeout,
        shipped=source.shipped,
    )
    started = time.monotonic()
    outcomes = run_campaign(campaign)
    print(summary(outcomes, time.monotonic() - started), file=campaign.out)
    verdict = combined(outcome.verdict for outcome in outcomes)
    if verdict == PASSED:
        shutil.rmtree(logs, ignore_errors=True)
    return EXIT_STATUS[verdict]
