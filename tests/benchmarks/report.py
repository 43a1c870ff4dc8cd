"""Print the implementation's performance ratios, each measured beside its baseline in one run.

Run: ``uv run python tests/benchmarks/report.py [--rounds N]``.

The three ratios and their targets:

1. ``before_foreground_write`` when no delay applies, per call, over a no-op method call
   (at most 2.5, aim 2); the argument is still fully checked on that path.
2. A task's lifecycle (enqueue, I/O built, done) over a lock-protected counter doing the same
   three updates (at most 3).
3. The aggregate throughput of 4 threads driving one controller over one thread's (at least 0.7).

Each pair is timed alternately, round after round, and each side keeps its best round: on a
shared machine the best round is the one least disturbed by other work, and alternating exposes
both sides to the same disturbances. The workloads are those of ``test_bench_controller.py``.
"""

# ruff: noqa: T201 - a report prints its results

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, as pytest's path

from benchmarks.test_bench_controller import (
    BATCH,
    OPTIONS,
    THREAD_OPS,
    THREADS,
    AcquiringCounter,
    LockedCounter,
    NoOp,
    counter_updates,
    foreground_calls,
    lifecycles,
    quiet_controller,
    threaded_run,
)
from flowpace import FlowController


def seconds(run: Callable[[], object]) -> float:
    """Return how long one call of ``run`` took, in seconds."""
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def best_of_alternating(
    first: Callable[[], object], second: Callable[[], object], rounds: int
) -> tuple[float, float]:
    """Return the best time of each of two runs, timed alternately for ``rounds`` rounds."""
    best_first = best_second = float("inf")
    for _ in range(rounds):
        best_first = min(best_first, seconds(first))
        best_second = min(best_second, seconds(second))
    return best_first, best_second


def verdict(ratio: float, *, at_most: float | None = None, at_least: float | None = None) -> str:
    """Return whether ``ratio`` meets its target."""
    met = (at_most is None or ratio <= at_most) and (at_least is None or ratio >= at_least)
    return "met" if met else "MISSED"


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print the three ratios; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="rounds of the 1-thread pairs")
    parser.add_argument("--thread-rounds", type=int, default=7, help="rounds of the thread pair")
    args = parser.parse_args(argv)

    print(f"python: {sys.version.replace(os.linesep, ' ')}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")

    fast, noop = best_of_alternating(
        foreground_calls(quiet_controller()), foreground_calls(NoOp()), args.rounds
    )
    calls = BATCH * 10
    ratio = fast / noop
    print(
        f"(1) fg fast path {fast / calls * 1e9:.1f} ns/call, no-op method "
        f"{noop / calls * 1e9:.1f} ns/call: ratio {ratio:.2f} "
        f"(target <= 2.5, aim 2): {verdict(ratio, at_most=2.5)}"
    )

    life, counter = best_of_alternating(
        lifecycles(FlowController(OPTIONS)), counter_updates(LockedCounter()), args.rounds
    )
    ratio = life / counter
    print(
        f"(2) lifecycle {life / BATCH * 1e9:.0f} ns, locked counter x3 "
        f"{counter / BATCH * 1e9:.0f} ns: ratio {ratio:.2f} "
        f"(target <= 3): {verdict(ratio, at_most=3)}"
    )

    life, strict = best_of_alternating(
        lifecycles(FlowController(OPTIONS)), counter_updates(AcquiringCounter()), args.rounds
    )
    print(
        f"    (same, against a counter using acquire/release, not with: "
        f"{strict / BATCH * 1e9:.0f} ns, ratio {life / strict:.2f}; informative)"
    )

    one_run, many_run = threaded_run(1), threaded_run(THREADS)
    one = many = float("inf")
    for _ in range(args.thread_rounds):
        one, many = min(one, one_run()), min(many, many_run())
    one_rate, many_rate = THREAD_OPS / one, THREADS * THREAD_OPS / many
    ratio = many_rate / one_rate
    print(
        f"(3) {THREADS} threads {many_rate:,.0f} lifecycles/s, 1 thread {one_rate:,.0f} "
        f"lifecycles/s: ratio {ratio:.2f} (target >= 0.7): {verdict(ratio, at_least=0.7)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
