"""The simulator's outputs: the table printed, the JSON document, the list of missed targets."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from flowpace.simulation.metrics import Metrics
from flowpace.simulation.targets import Verdict

SCHEMA: Final = "flowpace-simulate/1"
"""The ``schema`` field of the JSON document; bumped when a field changes meaning."""

COLUMNS: Final = (
    ("debt", "debt_mean", "{:.1f}"),
    ("max", "debt_max", "{:.1f}"),
    ("spread", "debt_spread", "{:.1f}"),
    ("osc", "oscillation", "{:.2f}"),
    ("util", "utilisation", "{:.3f}"),
    ("p50ms", "delay_p50_ms", "{:.3f}"),
    ("p99ms", "delay_p99_ms", "{:.3f}"),
    ("maxms", "delay_max_ms", "{:.1f}"),
    ("c.p99", "computed_p99_ms", "{:.3f}"),
    ("ideal", "ideal_delay_ms", "{:.3f}"),
    ("delayed", "delayed_fraction", "{:.3f}"),
    ("fair", "fairness", "{:.3f}"),
    ("exh.s", "arena_exhausted_s", "{:.2f}"),
    ("@stop", "admitted_at_stop", "{}"),
    ("blocks", "blocks", "{}"),
    ("settle", "settle_s", "{:.2f}"),
    ("oversh", "overshoot_units", "{:.1f}"),
)
"""The table's columns: heading, metric, format."""


def cell(value: object, fmt: str) -> str:
    """Return one cell: ``-`` for a metric that does not apply."""
    return "-" if value is None else fmt.format(value)


def table(law: str, results: Mapping[str, Metrics]) -> str:
    """Return the table of one law's metrics, one scenario a row."""
    width = max((len(name) for name in results), default=8)
    head = f"{'law ' + law:<{width}} " + " ".join(f"{h:>7}" for h, _, _ in COLUMNS)
    rows = [head]
    for name, metrics in results.items():
        values = metrics.as_dict()
        rows.append(
            f"{name:<{width}} "
            + " ".join(f"{cell(values[key], fmt):>7}" for _, key, fmt in COLUMNS)
        )
    return "\n".join(rows)


def legend() -> str:
    """Return what the table's columns mean."""
    return (
        "debt/max/spread: steady debt in flush units (time mean, highest, highest - lowest) "
        "in the window; osc: variation of the admitted rate per 100 ms; util: disk "
        "utilisation; p50ms/p99ms/maxms: delay as waited, c.p99 as computed, ideal: a fair "
        "law's mean delay; delayed: fraction of writes delayed; fair: Jain's index; exh.s: "
        "seconds the arena was exhausted; @stop: writes admitted at or above stop; blocks: "
        "writes blocked at stop; settle (s) and oversh (units) after a disk step."
    )


def verdict_lines(law: str, verdicts: Sequence[Verdict], *, misses_only: bool) -> list[str]:
    """Return the report of the targets for ``law``."""
    shown = [v for v in verdicts if not v.holds] if misses_only else list(verdicts)
    missed = sum(1 for v in verdicts if not v.holds)
    lines = [f"targets for {law}: {len(verdicts) - missed} of {len(verdicts)} hold"]
    lines += [f"  {v.line()}" for v in shown]
    return lines


def document(
    seed: int,
    results: Mapping[str, Mapping[str, Metrics]],
    verdicts: Mapping[str, Sequence[Verdict]],
    descriptions: Mapping[str, str],
) -> dict[str, object]:
    """Return the JSON document of a run: every law's metrics and target verdicts."""
    return {
        "schema": SCHEMA,
        "seed": seed,
        "scenarios": dict(descriptions),
        "laws": {
            law: {
                "metrics": {name: m.as_dict() for name, m in by_scenario.items()},
                "targets": [
                    {
                        "target": v.target,
                        "scenario": v.scenario,
                        "value": v.value,
                        "limit": v.limit,
                        "holds": v.holds,
                    }
                    for v in verdicts.get(law, ())
                ],
                "all_targets_hold": all(v.holds for v in verdicts.get(law, ())),
            }
            for law, by_scenario in results.items()
        },
    }


def write_json(path: Path, doc: Mapping[str, object]) -> None:
    """Write ``doc`` to ``path`` as indented, key-sorted JSON."""
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
