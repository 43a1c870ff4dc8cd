"""The control-quality simulator: a deterministic plant around a flow-control law.

``flowpace simulate`` runs named scenarios (`flowpace.simulation.scenarios`) of a storage
engine (`flowpace.simulation.plant`: writers, an arena of buffers, flushers, a disk) on a
virtual clock, with the seed's law on the real `flowpace.FlowController` (``seed``), on the
reference model (``seed-model``), a RocksDB-style token bucket (``token-bucket``) or the
extended law's prototype (``extended``, `flowpace.simulation.laws`); it prints a table of
metrics (`flowpace.simulation.metrics`), checks the control-quality targets
(`flowpace.simulation.targets`) and can write JSON and PNG plots (the ``plot`` extra). The
same seed gives the same numbers. This package is tooling: the controller never imports it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flowpace.simulation.drivers import LAWS
from flowpace.simulation.metrics import Metrics, measure
from flowpace.simulation.plant import Trace, run
from flowpace.simulation.report import document, legend, table, verdict_lines, write_json
from flowpace.simulation.scenarios import SCENARIOS
from flowpace.simulation.targets import Verdict, check

__all__ = ["DEFAULT_LAWS", "LAWS", "SCENARIOS", "Results", "add_arguments", "main", "simulate"]

DEFAULT_LAWS = ("seed", "extended", "token-bucket")
"""The laws a run compares unless ``--law`` names others."""

USAGE_ERROR = 2


@dataclass(slots=True)
class Results:
    """Every law's metrics on every scenario, with the traces when they are kept."""

    seed: int
    metrics: dict[str, dict[str, Metrics]] = field(default_factory=dict)
    traces: dict[str, dict[str, Trace]] = field(default_factory=dict)

    def verdicts(self) -> dict[str, list[Verdict]]:
        """Return the target verdicts of every law."""
        return {law: check(by_scenario) for law, by_scenario in self.metrics.items()}


def simulate(
    laws: Sequence[str], scenarios: Sequence[str], seed: int, *, keep_traces: bool = False
) -> Results:
    """Return the metrics of every law in ``laws`` on every scenario in ``scenarios``."""
    results = Results(seed=seed)
    for law in laws:
        results.metrics[law] = {}
        results.traces[law] = {}
        for name in scenarios:
            trace = run(SCENARIOS[name].plant, law, seed)
            results.metrics[law][name] = measure(trace, SCENARIOS[name])
            if keep_traces:
                results.traces[law][name] = trace
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``flowpace simulate`` to ``parser``."""
    parser.add_argument(
        "--law",
        action="append",
        choices=sorted(LAWS),
        help="a law to run (repeatable; default: seed, extended and token-bucket)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        metavar="NAME",
        help="a scenario to run (repeatable; default: every scenario; --list names them)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the random seed (default: 1)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--plot", type=Path, metavar="DIR", help="write PNG plots (needs flowpace[plot])"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 iff every target holds for every law run; print the targets missed",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and laws")


def main(args: argparse.Namespace) -> int:
    """Run ``flowpace simulate``; return its exit status."""
    if args.list:
        _list()
        return 0
    laws = tuple(dict.fromkeys(args.law or DEFAULT_LAWS))
    names = tuple(dict.fromkeys(args.scenario or SCENARIOS))
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        sys.stderr.write(f"flowpace simulate: unknown scenario {', '.join(unknown)}\n")
        return USAGE_ERROR
    if args.plot is not None:
        try:
            from flowpace.simulation import plot  # noqa: PLC0415 - the optional plot extra
        except ImportError as error:
            sys.stderr.write(f"flowpace simulate: --plot needs flowpace[plot] ({error})\n")
            return USAGE_ERROR
    results = simulate(laws, names, args.seed, keep_traces=args.plot is not None)
    verdicts = results.verdicts()
    _report(results, verdicts, misses_only=args.check)
    if args.json is not None:
        descriptions = {name: SCENARIOS[name].description for name in names}
        write_json(args.json, document(args.seed, results.metrics, verdicts, descriptions))
    if args.plot is not None:
        for path in plot.write_plots(results, args.plot):
            _say(f"wrote {path}")
    if args.check:
        return 0 if all(v.holds for law in laws for v in verdicts[law]) else 1
    return 0


def _list() -> None:
    """Print the scenarios and the laws."""
    for name, scenario in SCENARIOS.items():
        _say(f"{name:<20} {scenario.description}")
    for name, spec in LAWS.items():
        _say(f"law {name:<16} {spec.summary}")


def _report(results: Results, verdicts: dict[str, list[Verdict]], *, misses_only: bool) -> None:
    """Print every law's table, the legend, and the targets (only the missed ones if asked)."""
    for law, metrics in results.metrics.items():
        _say(table(law, metrics))
        _say("")
    _say(legend())
    for law in results.metrics:
        _say("")
        _say("\n".join(verdict_lines(law, verdicts[law], misses_only=misses_only)))


def _say(text: str) -> None:
    """Write a line of the report to standard output."""
    sys.stdout.write(text + "\n")
