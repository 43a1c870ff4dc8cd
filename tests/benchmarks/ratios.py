"""Measure the hot paths' cost ratios by instruction count (callgrind) and by time.

Run: ``uv run python tests/benchmarks/ratios.py [--python PATH] [--check]``.

The ratios (workloads of ``test_bench_controller.py``, so ``report.py`` measures the same):

1. ``before_foreground_write`` when no delay applies, per call, over a no-op method call.
2. A task's lifecycle (``on_enqueue_est``, ``on_io_built``, ``on_mark_done``) over a
   lock-protected counter doing the same three updates with ``with lock:``.
3. The aggregate throughput of 4 threads driving one controller over one thread's, beside the
   same ratio for a lock-free loop that shares nothing (``lock_free_run``): what the
   interpreter's own thread switching leaves on the machine measured, the ratio's ceiling.

Ratios 1 and 2 are counted in instructions executed, by valgrind's callgrind, so that they do
not depend on what else the machine runs: each workload runs in a process of its own, once with
``n`` batches and once with ``2n`` (after the same warm-up), and the difference of the two
totals is the cost of ``n`` batches: start-up, imports, warm-up and exit cancel out. Both
processes run the same snapshot of the sources, with their bytecode cached beforehand and hash
randomisation fixed, so that they start up alike (two runs of one process differ by about
30 000 instructions, well under 1 % of the default workloads). The same two ratios and ratio 3
are then timed (best of alternating rounds, as ``report.py`` does): those figures depend on the
machine and its load (the load average is printed) and are never checked.

Targets, from the project's issue 11: with the GIL, on CPython 3.11, ratio 1 at most 2.0,
ratio 2 at most 2.8, ratio 3 at least 0.9; on a free-threaded build, ratio 2 at most 4.0. Only
the instruction ratios for the interpreter measured are checked, with ``--check`` (exit 1 if
one is missed); without it the command only reports (exit 0). ``--python`` measures another
interpreter: it needs nothing installed (the children import a copy of the working tree's
``flowpace``, ``flowpace_reference`` and benchmark workloads, with ``-S``); ``--tree`` names
another tree laid out like the repository to take ``impl/flowpace`` and
``reference/flowpace_reference`` from, e.g. a prototype's copy or ``git archive HEAD``'s.
"""

# ruff: noqa: T201 - a report prints its results

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parents[1]

WARMUP_BATCHES: Final = 20
"""Batches run before the measured ones, in every process: the adaptive interpreter
specialises the loop's instructions during the first executions."""

THREADS: Final = 4

BATCHES: Final = 40
"""Default n with the GIL: two runs of one n differ by under 1 % of the measured work."""

BATCHES_FREE_THREADED: Final = 120
"""Default n on a free-threaded build. There, the lifecycle's cost varies from one stretch of 30
batches to the next by up to 6 % (the same in every run of the same n: deterministic, not noise
of the measurement; measured on 3.13.5t: 54.7k, 57.7k, 52.9k, 59.5k instructions per
lifecycle over batches 0-30, 30-60, 60-90, 90-120), so a longer stretch is measured."""


@dataclass(frozen=True)
class Workload:
    """One measured loop: the name ``--child`` knows it by and its operations per batch."""

    name: str
    ops_per_batch: int


FAST: Final = Workload("fast", 1_000)
NOOP: Final = Workload("noop", 1_000)
LIFECYCLE: Final = Workload("lifecycle", 100)
COUNTER: Final = Workload("counter", 100)
WORKLOADS: Final = {w.name: w for w in (FAST, NOOP, LIFECYCLE, COUNTER)}


@dataclass(frozen=True)
class Targets:
    """The ratios' targets for one kind of interpreter; None where the issue sets none."""

    label: str
    fast_at_most: float | None
    lifecycle_at_most: float | None
    threads_at_least: float | None


GIL_311: Final = Targets("CPython 3.11 with the GIL", 2.0, 2.8, 0.9)
FREE_THREADED: Final = Targets("free-threaded CPython", None, 4.0, None)


# --- the child: runs one workload in the interpreter measured ---------------------------------


def batch_of(name: str) -> Callable[[], None]:
    """Return one batch of the workload called ``name``."""
    from benchmarks.test_bench_controller import (  # noqa: PLC0415 - after the path is set
        OPTIONS,
        LockedCounter,
        NoOp,
        counter_updates,
        foreground_calls,
        lifecycles,
        quiet_controller,
    )
    from flowpace import FlowController  # noqa: PLC0415 - after the path is set

    makers: dict[str, Callable[[], Callable[[], None]]] = {
        FAST.name: lambda: foreground_calls(quiet_controller()),
        NOOP.name: lambda: foreground_calls(NoOp()),
        LIFECYCLE.name: lambda: lifecycles(FlowController(OPTIONS)),
        COUNTER.name: lambda: counter_updates(LockedCounter()),
    }
    return makers[name]()


def run_batches(name: str, batches: int) -> None:
    """Run the warm-up and then ``batches`` batches of workload ``name``."""
    batch = batch_of(name)
    for _ in range(WARMUP_BATCHES + batches):
        batch()


def timed_ratios(rounds: int, thread_rounds: int) -> dict[str, float]:
    """Return the three ratios timed in this process, and the per-operation times in ns."""
    from benchmarks.report import best_of_alternating  # noqa: PLC0415 - report.py's timing
    from benchmarks.test_bench_controller import (  # noqa: PLC0415 - path set
        lock_free_run,
        threaded_run,
    )

    fast, noop = best_of_alternating(batch_of(FAST.name), batch_of(NOOP.name), rounds)
    life, counter = best_of_alternating(batch_of(LIFECYCLE.name), batch_of(COUNTER.name), rounds)
    one_run, many_run = threaded_run(1), threaded_run(THREADS)
    control_one_run, control_many_run = lock_free_run(1), lock_free_run(THREADS)
    one = many = control_one = control_many = float("inf")
    for _ in range(thread_rounds):  # alternating, so both see the same machine
        one, many = min(one, one_run()), min(many, many_run())
        control_one = min(control_one, control_one_run())
        control_many = min(control_many, control_many_run())
    return {
        "fast_ns": fast / FAST.ops_per_batch * 1e9,
        "noop_ns": noop / NOOP.ops_per_batch * 1e9,
        "lifecycle_ns": life / LIFECYCLE.ops_per_batch * 1e9,
        "counter_ns": counter / COUNTER.ops_per_batch * 1e9,
        "fast": fast / noop,
        "lifecycle": life / counter,
        # Throughput ratio: THREADS times the work in `many` seconds against the work in `one`.
        "threads": THREADS * one / many,
        # The same for a lock-free loop: the interpreter's own scaling across threads.
        "threads_control": THREADS * control_one / control_many,
    }


def describe_interpreter() -> dict[str, object]:
    """Return what identifies this interpreter: version, build, whether the GIL is on."""
    gil_check = getattr(sys, "_is_gil_enabled", None)
    import sysconfig  # noqa: PLC0415 - only the child needs it

    return {
        "version": sys.version.replace(os.linesep, " "),
        "executable": sys.executable,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": True if gil_check is None else bool(gil_check()),
        "major_minor": list(sys.version_info[:2]),
    }


def child(argv: Sequence[str]) -> int:
    """Run as the measured process: ``--child describe|timing ROUNDS T|run NAME BATCHES``.

    It runs from a snapshot (`snapshot_sources`): its own directory, first on ``sys.path``,
    holds ``flowpace``, ``flowpace_reference`` and ``benchmarks``.
    """
    command = argv[0]
    if command == "describe":
        # Imports every module the workloads use, so that their bytecode is cached before the
        # measured runs; and the GIL must still be off once flowpace is imported.
        batch_of(LIFECYCLE.name)
        print(json.dumps(describe_interpreter()))
    elif command == "timing":
        print(json.dumps(timed_ratios(int(argv[1]), int(argv[2]))))
    else:
        run_batches(argv[1], int(argv[2]))
    return 0


# --- the parent: runs the children and reports ------------------------------------------------


def snapshot_sources(tree: Path, into: Path) -> Path:
    """Copy what the children import into ``into``; return the copy of this script there.

    Measured from a copy: the n and 2n runs must execute the same code even if the working
    tree is edited meanwhile, and their bytecode must come from the same cache (a source
    compiled in one run and read from its cache in the other would count its compilation).
    """
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(tree / "impl" / "flowpace", into / "flowpace", ignore=ignore)
    shutil.copytree(
        tree / "reference" / "flowpace_reference", into / "flowpace_reference", ignore=ignore
    )
    (into / "benchmarks").mkdir()
    for workload in ("test_bench_controller.py", "report.py"):  # the workloads, the timing
        shutil.copy2(HERE / workload, into / "benchmarks")
    return Path(shutil.copy2(Path(__file__).resolve(), into / "ratios.py"))


def child_command(python: str, script: Path, *args: str) -> list[str]:
    """Return the command line running the snapshot's copy of this script in ``python``."""
    # -S: no site-packages (nothing is needed from them), a shorter and steadier start-up.
    return [python, "-S", str(script), "--child", *args]


def child_environment() -> dict[str, str]:
    """Return the children's environment: fixed hashing, nothing of the parent's venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONHASHSEED"] = "0"
    return env


def run_child(command: list[str]) -> str:
    """Run ``command``; return its standard output, or exit with its error."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        command, capture_output=True, text=True, env=child_environment(), check=False
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def instructions(python: str, script: Path, workload: Workload, batches: int, out: Path) -> int:
    """Return the instructions a process running ``batches`` batches executes, by callgrind."""
    cg_file = out / f"{workload.name}-{batches}.callgrind"
    run_child(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={cg_file}",
            "--dump-instr=no",
            "--dump-line=no",
            *child_command(python, script, "run", workload.name, str(batches)),
        ]
    )
    return totals_of(cg_file.read_text(encoding="utf-8", errors="replace"))


def totals_of(callgrind_output: str) -> int:
    """Return the instruction total in a callgrind output file (its ``summary:`` line)."""
    for line in callgrind_output.splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError("no summary line in the callgrind output")


def instructions_per_op(
    python: str, script: Path, workload: Workload, batches: int, out: Path
) -> float:
    """Return the instructions one operation of ``workload`` costs: (2n run - n run) / ops."""
    once = instructions(python, script, workload, batches, out)
    twice = instructions(python, script, workload, 2 * batches, out)
    return (twice - once) / (batches * workload.ops_per_batch)


def targets_for(info: dict[str, object]) -> Targets | None:
    """Return the targets the issue sets for this interpreter, or None if it sets none."""
    if info["free_threaded"]:
        return FREE_THREADED
    if info["major_minor"] == [3, 11]:
        return GIL_311
    return None


def verdict(value: float, at_most: float | None = None, at_least: float | None = None) -> str:
    """Return 'met', 'MISSED' or '-' (no target) for ``value`` against its bound."""
    if at_most is None and at_least is None:
        return "-"
    met = (at_most is None or value <= at_most) and (at_least is None or value >= at_least)
    return "met" if met else "MISSED"


def bound(at_most: float | None = None, at_least: float | None = None) -> str:
    """Return a target as text: '<= 2.0', '>= 0.9' or '-'."""
    if at_most is not None:
        return f"<= {at_most}"
    if at_least is not None:
        return f">= {at_least}"
    return "-"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """Return the parsed command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter measured")
    parser.add_argument(
        "--tree", type=Path, default=REPO, help="the tree whose impl/ and reference/ are measured"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--batches",
        type=int,
        default=None,
        help=f"n: measured batches per run (default {BATCHES} with the GIL, "
        f"{BATCHES_FREE_THREADED} free-threaded)",
    )
    parser.add_argument("--rounds", type=int, default=100, help="timed rounds of each pair")
    parser.add_argument("--thread-rounds", type=int, default=5, help="timed thread rounds")
    parser.add_argument("--no-timing", action="store_true", help="instruction counts only")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Measured:
    """One interpreter's figures: instructions per operation, and the timed child's output."""

    info: dict[str, object]
    per_op: dict[str, float]
    timed: dict[str, float] | None
    load: tuple[float, float]
    """The 1-minute load average before and after the timed child."""

    @property
    def ir_fast(self) -> float:
        """Return the fast path's instructions over a no-op call's."""
        return self.per_op[FAST.name] / self.per_op[NOOP.name]

    @property
    def ir_lifecycle(self) -> float:
        """Return a lifecycle's instructions over three locked updates'."""
        return self.per_op[LIFECYCLE.name] / self.per_op[COUNTER.name]


def measure(args: argparse.Namespace) -> Measured:
    """Return the figures of ``args.python``, measured on a snapshot of the sources."""
    with tempfile.TemporaryDirectory(prefix="flowpace-ratios-") as tmp:
        script = snapshot_sources(args.tree.resolve(), Path(tmp))
        info = json.loads(run_child(child_command(args.python, script, "describe")))
        out = Path(tmp) / "callgrind"
        out.mkdir()
        batches = args.batches
        if batches is None:
            batches = BATCHES_FREE_THREADED if info["free_threaded"] else BATCHES
        per_op = {
            w.name: instructions_per_op(args.python, script, w, batches, out)
            for w in WORKLOADS.values()
        }
        load_before = os.getloadavg()[0]
        timed = None
        if not args.no_timing:
            rounds = (str(args.rounds), str(args.thread_rounds))
            timed = json.loads(run_child(child_command(args.python, script, "timing", *rounds)))
        return Measured(info, per_op, timed, (load_before, os.getloadavg()[0]))


def report(m: Measured, tree: Path) -> bool:
    """Print the table of ``m`` against its targets; return whether a checked one is missed."""
    t = targets_for(m.info) or Targets("none set for this interpreter", None, None, None)
    print(f"python: {m.info['version']} ({m.info['executable']})")
    print(f"free-threaded: {m.info['free_threaded']}, GIL enabled: {m.info['gil_enabled']}")
    print(f"flowpace from: {tree}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"targets: {t.label}")
    print()
    print("| ratio | instructions (Ir per op) | time (noisy) | target | verdict |")
    print("|---|---|---|---|---|")
    missed = False
    for name, ratio, top, base, key, at_most in (
        ("fast path / no-op call", m.ir_fast, FAST, NOOP, "fast", t.fast_at_most),
        (
            "lifecycle / 3 locked updates",
            m.ir_lifecycle,
            LIFECYCLE,
            COUNTER,
            "lifecycle",
            t.lifecycle_at_most,
        ),
    ):
        shown_time = "-" if m.timed is None else f"{m.timed[key]:.2f}"
        v = verdict(ratio, at_most)
        missed = missed or v == "MISSED"
        detail = f"{m.per_op[top.name]:.0f} / {m.per_op[base.name]:.0f}"
        print(f"| {name} | {ratio:.2f} ({detail}) | {shown_time} | {bound(at_most)} | {v} |")
    if m.timed is not None:
        ratio, at_least = m.timed["threads"], t.threads_at_least
        print(
            f"| {THREADS} threads / 1 thread, throughput | - | {ratio:.2f} "
            f"| {bound(at_least=at_least)} | {verdict(ratio, at_least=at_least)} (timed) |"
        )
        print(
            f"| {THREADS} threads / 1 thread, a lock-free loop (the interpreter's own) | - "
            f"| {m.timed['threads_control']:.2f} | - | control |"
        )
        print()
        print(
            f"timed per op: fast path {m.timed['fast_ns']:.1f} ns, no-op {m.timed['noop_ns']:.1f}"
            f" ns, lifecycle {m.timed['lifecycle_ns']:.0f} ns, 3 locked updates "
            f"{m.timed['counter_ns']:.0f} ns; load average {m.load[0]:.2f} before, "
            f"{m.load[1]:.2f} after, on {os.cpu_count()} cores (times need an idle machine)"
        )
    print("verdicts: instruction ratios are checked with --check; timed ones never are")
    return missed


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the ratios; return 1 if ``--check`` and a target is missed."""
    args = parse_arguments(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    missed = report(measure(args), args.tree.resolve())
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    sys.exit(main())
