"""The ``flowpace`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from flowpace import __version__, simulation, verify
from flowpace.replay import TARGETS, Mismatch, VectorFileError, load_vectors, replay


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``flowpace`` command line."""
    parser = argparse.ArgumentParser(prog="flowpace", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"flowpace {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of:"
    )
    replay_parser = commands.add_parser(
        "replay",
        help="replay conformance traces and compare every answer",
        description="Replay traces (one JSON object a line) on a virtual clock and compare "
        "every field of every expected line.",
        epilog="Exit status: 0 every trace passed; 1 some trace differs (each is printed "
        "with its first differing line and the fields that differ); 2 bad input (a file "
        "missing, unreadable, not JSON, or not traces: one line names the file and line).",
    )
    replay_parser.add_argument(
        "--target",
        choices=[*sorted(TARGETS), BOTH],
        default="reference",
        help="what to replay the traces against: the reference model, the threaded "
        "implementation, or both (a trace passes when it passes on every target; "
        "default: reference)",
    )
    replay_parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="a file of traces (format: tests/vectors/FORMAT.md in a clone, "
        "flowpace/_campaign/tests/vectors/FORMAT.md in the installed package)",
    )
    verify_parser = commands.add_parser(
        "verify",
        help="run the whole verification campaign and summarise it",
        description="Check the implementation against the model: conformance traces, the "
        "sequential state machine, drawn thread schedules, real-thread linearizability, the "
        "planted-bug self-test and the symbolic checks. Run from a clone, it runs the "
        "clone's campaign; installed, the campaign shipped in the package, wherever it is "
        'run from. It needs the verify extra: pip install "flowpace[verify]".',
        epilog="Each check ends passed, failed (something was found: a counterexample, a "
        "falsifying example, a planted bug missed) or incomplete (a time limit ran out, a "
        "process died, a dependency is missing). Exit status: 0 every check passed; 1 some "
        "check failed; 2 usage error; 3 nothing failed but some check is incomplete, or "
        "the verify extra is missing (one line says so and nothing runs).",
    )
    verify.add_arguments(verify_parser)
    simulate_parser = commands.add_parser(
        "simulate",
        help="run the control-quality simulator and check its targets",
        description="Run named scenarios of a storage engine (writers, an arena of buffers, "
        "flushers, a disk) on a virtual clock around a flow-control law, and print their "
        "metrics. The same seed gives the same numbers.",
        epilog="Exit status: 0 done (with --check: every target holds for every law run); 1 "
        "with --check, some target missed (each is printed); 2 usage error.",
    )
    simulation.add_arguments(simulate_parser)
    return parser


def describe(name: str, target: str, mismatch: Mismatch) -> str:
    """Return the report of one failing trace: its first differing line, expected and got."""
    return "\n".join(
        (
            f"FAIL {name} [{target}] line {mismatch.index}: {', '.join(mismatch.fields)} differ",
            f"  expected: {json.dumps(mismatch.expected, sort_keys=True)}",
            f"  got:      {json.dumps(mismatch.got, sort_keys=True)}",
        )
    )


DESCRIPTION = (
    "flowpace: a write flow controller, checked against its reference model. "
    "'flowpace COMMAND --help' describes each command."
)
"""What ``flowpace --help`` says first."""

USAGE_ERROR = 2
"""The exit status for input that cannot be run: a bad option, an unreadable trace file."""

BOTH = "both"
"""The ``--target`` value that replays every trace on every target."""


def targets_named(name: str) -> list[str]:
    """Return the targets a ``--target`` value names."""
    return sorted(TARGETS) if name == BOTH else [name]


def run_replay(files: Sequence[Path], targets: Sequence[str]) -> int:
    """
    Replay every trace in ``files`` on each target; return the process exit status.

    A trace passes when every target answers it as expected; each target that does not is
    reported with its first differing line.
    """
    try:
        # Read every file first: bad input is reported before any trace runs.
        vectors = list(load_vectors(files))
    except VectorFileError as error:
        sys.stderr.write(f"flowpace replay: {error}\n")
        return USAGE_ERROR
    passed = failed = 0
    for vector in vectors:
        ok = True
        for target in targets:
            mismatch = replay(vector, TARGETS[target])
            if mismatch is not None:
                ok = False
                print(describe(vector.name, target, mismatch))
        if ok:
            passed += 1
        else:
            failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowpace`` command line; return its exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "replay":
        return run_replay(args.files, targets_named(args.target))
    if args.command == "verify":
        return verify.main(args)
    if args.command == "simulate":
        return simulation.main(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
