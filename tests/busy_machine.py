"""Run a command several times on a deliberately busy machine and report how each run ended.

The project's promise is that its two README commands pass on a shared, loaded machine within a
stated time. This script makes the load itself (CPU-bound processes beside the command, two by
default, as on a 2-core machine where two other jobs run) and runs the command ``--runs`` times
in a row, printing per run the wall-clock time, the exit status and the command's last summary
line, then ends the load processes. It is a measurement, not a test: nothing here asserts a
time; the exit status is 0 iff every run exited 0.

    uv run python tests/busy_machine.py --runs 3 -- uv run flowpace verify
    uv run python tests/busy_machine.py --runs 3 -- uv run pytest
    uv run python tests/busy_machine.py --hogs 0 -- uv run pytest      # the idle figure
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

HOG = "while True: pass"
"""The load: one process spinning on one core."""

SUMMARY = re.compile(r"(\d+ passed|PASSED|FAILED|INCOMPLETE|\d+ failed)")
"""What a summary line of pytest or of ``flowpace verify`` contains."""


@dataclass(frozen=True, slots=True)
class Run:
    """One run of the command: how long it took, how it ended, what it said last."""

    number: int
    seconds: float
    status: int
    summary: str
    load_average: float
    """The one-minute load average when the run ended."""


@contextmanager
def cpu_hogs(count: int) -> Iterator[list[int]]:
    """Keep ``count`` CPU-bound processes running for the duration; yield their PIDs."""
    processes = [
        subprocess.Popen([sys.executable, "-c", HOG])  # noqa: S603  # this interpreter
        for _ in range(count)
    ]
    try:
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait()


def last_summary(output: str) -> str:
    """Return the last line of ``output`` that reads like a test or campaign summary."""
    for line in reversed(output.splitlines()):
        if SUMMARY.search(line):
            return line.strip("= ").strip()
    return "(no summary line)"


def run_once(number: int, command: Sequence[str], logs: Path) -> Run:
    """Run ``command`` once, its output to a log file; return how it went."""
    log = logs / f"run-{number}.log"
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        status = subprocess.run(  # noqa: S603  # the command the user gave
            list(command), stdout=out, stderr=subprocess.STDOUT, check=False
        ).returncode
    seconds = time.monotonic() - started
    return Run(
        number=number,
        seconds=round(seconds, 1),
        status=status,
        summary=last_summary(log.read_text(encoding="utf-8", errors="replace")),
        load_average=round(os.getloadavg()[0], 1),
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of this script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs in a row (default 3)")
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the runs as JSON")
    parser.add_argument("command", nargs="+", help="the command to run, after --")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command as the arguments say; return 0 iff every run exited 0."""
    args = build_parser().parse_args(argv)
    if args.runs < 1 or args.hogs < 0:
        sys.stderr.write("--runs must be at least 1 and --hogs at least 0\n")
        return 2
    logs = Path(tempfile.mkdtemp(prefix="flowpace-busy-"))
    runs: list[Run] = []
    with cpu_hogs(args.hogs) as pids:
        print(f"{args.hogs} CPU-bound process(es) running: PIDs {pids}; logs in {logs}")
        for number in range(1, args.runs + 1):
            run = run_once(number, args.command, logs)
            runs.append(run)
            print(
                f"run {run.number}: exit {run.status} in {run.seconds:.0f} s "
                f"(load {run.load_average}): {run.summary}",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(run) for run in runs], indent=2), "utf-8")
    return 0 if all(run.status == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
