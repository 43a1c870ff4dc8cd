"""``flowpace verify`` from an installed package, run from inside another project.

The project is built as users get it (``uv build``: the sdist, then the wheel from the sdist)
and installed without dependencies into fresh virtual environments outside the repository: one
that also sees this environment's packages (pytest, Hypothesis, CrossHair: what the ``verify``
extra installs) through a ``.pth`` file, and one with nothing but flowpace. Every command runs
from a decoy: a directory laid out like a clone of flowpace (pyproject naming ``flowpace``,
``impl/``, ``reference/``, ``tests/``) whose vectors are not traces and whose tests cannot be
imported, so a campaign that took it for flowpace would fail.

The whole installed campaign takes minutes; these tests run the cheap parts of it (the
conformance check through the installed command, two of the shipped pytest checks' tests, every
planted bug applied to the installed code) and leave the rest to ``flowpace verify`` by hand.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowpace.verify import EXTRA_MISSING, HYPOTHESIS_CHECKS, PLANTED_BUGS, VECTORS

ROOT = Path(__file__).resolve().parents[1]

CAMPAIGN = "flowpace/_campaign"
"""Where the wheel ships the campaign (pyproject's force-include)."""


def uv() -> str:
    """Return the uv executable: the one running this suite (``$UV``), else the one on PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.fail("building and installing the wheel needs uv (https://docs.astral.sh/uv/)")
    return found


def run(
    command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` to its end and return what it did."""
    return subprocess.run(  # noqa: S603  # uv, or an interpreter and command we installed
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def succeeded(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Return ``done`` if it exited 0; fail the test with its output otherwise."""
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, done.args))} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the wheel ``uv build`` makes from the sdist of this tree."""
    out = tmp_path_factory.mktemp("dist")
    build = [uv(), "build", "--quiet", "--out-dir", str(out), str(ROOT)]
    # Offline first: the build backend comes from uv's cache, filled by `uv sync`.
    if run([*build[:2], "--offline", *build[2:]]).returncode != 0:
        succeeded(run(build))
    (built,) = out.glob("*.whl")
    return built


@dataclass(frozen=True)
class Installed:
    """A virtual environment with the wheel installed."""

    bin: Path
    """Its scripts: ``python``, ``flowpace``."""
    site: Path
    """Its site-packages."""


def install(wheel: Path, where: Path, *, tools: bool) -> Installed:
    """Return a fresh environment at ``where`` with ``wheel``, and this one's packages if
    ``tools``."""
    succeeded(run([uv(), "venv", "--offline", "--quiet", "--python", sys.executable, str(where)]))
    bin_dir = where / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    install = [uv(), "pip", "install", "--offline", "--quiet", "--no-deps"]
    succeeded(run([*install, "--python", str(python), str(wheel)]))
    probe = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(succeeded(run([str(python), "-c", probe])).stdout.strip())
    if tools:
        # A path line, not this environment's own .pth files: its editable flowpace stays out.
        import sysconfig  # noqa: PLC0415  # only here, to read this environment's paths

        paths = dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]))
        (site / "verify_extra.pth").write_text("\n".join(paths) + "\n", encoding="utf-8")
    return Installed(bin_dir, site)


@pytest.fixture(scope="module")
def with_extra(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Return an environment with flowpace and the verify extra's packages."""
    return install(wheel, tmp_path_factory.mktemp("with-extra") / "venv", tools=True)


@pytest.fixture(scope="module")
def bare(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Return an environment with flowpace alone."""
    return install(wheel, tmp_path_factory.mktemp("bare") / "venv", tools=False)


@pytest.fixture(scope="module")
def decoy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return another project that looks like a clone of flowpace, and breaks any check."""
    root = tmp_path_factory.mktemp("decoy")
    for tree in ("impl/flowpace", "reference/flowpace_reference", "tests/vectors"):
        (root / tree).mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "flowpace"\n\n[tool.pytest]\naddopts = ["--no-such-option"]\n',
        encoding="utf-8",
    )
    (root / VECTORS).write_text("not a trace\n", encoding="utf-8")
    (root / "tests" / "conftest.py").write_text("raise SystemExit('the decoy')\n", "utf-8")
    return root


def environment(tmp: Path) -> dict[str, str]:
    """Return the environment of a command run from the installed package."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")  # a shipped campaign keeps its examples there
    return env


def test_the_wheel_ships_the_campaign_what_it_imports_and_the_spec(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {Path(name).relative_to(CAMPAIGN) for name in names if name.startswith(CAMPAIGN)}
    assert Path("pyproject.toml") in shipped
    assert VECTORS in shipped
    patches = {path.relative_to(ROOT) for path in (ROOT / PLANTED_BUGS).glob("*.patch")}
    assert patches
    assert patches <= shipped
    modules = {Path(test) for check in HYPOTHESIS_CHECKS for test in check.tests}
    assert modules <= shipped
    # Every module of tests/ that a shipped module imports is shipped too.
    for module in [path for path in shipped if path.suffix == ".py"]:
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            imported = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in imported:
                local = Path("tests") / f"{name.split('.')[0]}.py"
                if (ROOT / local).is_file():
                    assert local in shipped, f"{module} imports {local}, which is not shipped"
    specs = {f"flowpace/spec/{path.name}" for path in (ROOT / "spec").glob("*.md")}
    assert specs
    assert specs <= names
    assert not [name for name in names if "__pycache__" in name or ".hypothesis" in name]


# spec VER-5
def test_the_installed_command_runs_the_shipped_campaign_from_another_project(
    with_extra: Installed, decoy: Path, tmp_path: Path
) -> None:
    done = run(
        [str(with_extra.bin / "flowpace"), "verify", "--only", "conformance", "--profile", "dev"],
        cwd=decoy,
        env=environment(tmp_path),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    campaign = with_extra.site / CAMPAIGN
    assert f"campaign shipped in the installed package: {campaign}\n" in done.stdout
    assert re.search(r"^conformance +pass .*160 traces x 2 targets", done.stdout, re.MULTILINE)
    assert done.stdout.rstrip().splitlines()[-1].startswith("PASSED in ")


SHIPPED_CHECKS = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    import flowpace
    from flowpace.verify import *
    from flowpace.verify import _imported_from

    source = find_campaign()
    logs = Path(tempfile.mkdtemp())
    campaign = Campaign(root=source.root, profile="dev", workers=1, shards=1, only=(),
                        logs=logs, timeout=600, shipped=source.shipped)
    # Two cheap tests of the shipped check modules, run as the campaign runs its checks.
    cheap = Check("cheap", "shipped tests", (
        "tests/test_linearizability.py::test_a_lost_debt_update_is_not_linearizable",
        "tests/test_interleavings.py::test_line_points_are_the_lines_of_the_controller_core_only",
    ))
    outcome = run_pytest_check(campaign, cheap)
    applied = {}
    for bug in load_planted_bugs(source.root):
        copy = Path(tempfile.mkdtemp())
        for place, tree in code_trees(source.root).items():
            shutil.copytree(tree, copy / place, ignore=shutil.ignore_patterns("_campaign"))
        try:
            apply_bug(bug, copy)
            applied[bug.name] = "applied"
        except PatchError as error:
            applied[bug.name] = str(error)
    hunt_copy = Path(tempfile.mkdtemp())
    copy_project(source.root, hunt_copy)
    env = check_environment(hunt_copy, "ci", stats=None)
    print(json.dumps({
        "root": str(source.root), "shipped": source.shipped, "flowpace": flowpace.__file__,
        "verdict": outcome.verdict, "log": (logs / "cheap-0.log").read_text(),
        "applied": applied, "shadowed": _imported_from(hunt_copy, env),
    }))
    """
)


def test_the_shipped_checks_and_planted_bugs_run_on_the_installed_code(
    with_extra: Installed, decoy: Path, tmp_path: Path
) -> None:
    done = succeeded(
        run(
            [str(with_extra.bin / "python"), "-c", SHIPPED_CHECKS],
            cwd=decoy,
            env=environment(tmp_path),
        )
    )
    report = json.loads(done.stdout)
    assert report["shipped"]
    assert report["root"] == str(with_extra.site / CAMPAIGN)
    assert report["flowpace"] == str(with_extra.site / "flowpace" / "__init__.py")
    assert report["verdict"] == "passed", report["log"]
    assert "2 passed" in report["log"]
    expected = {path.stem: "applied" for path in (ROOT / PLANTED_BUGS).glob("*.patch")}
    assert report["applied"] == expected
    # A hunt's copy imports its own, patched code, not the installed package.
    assert report["shadowed"] is None


# spec VER-6
def test_without_the_extra_one_line_says_what_to_install(
    bare: Installed, decoy: Path, tmp_path: Path
) -> None:
    env = environment(tmp_path)
    done = run([str(bare.bin / "flowpace"), "verify"], cwd=decoy, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr == f"{EXTRA_MISSING} (missing: pytest, hypothesis, crosshair)\n"
    symbolic = run([str(bare.bin / "python"), "-m", "flowpace.symbolic"], cwd=decoy, env=env)
    assert symbolic.returncode == 3, symbolic.stdout + symbolic.stderr
    assert 'CrossHair is not installed: pip install "flowpace[verify]"' in symbolic.stdout
