"""The control-quality targets, checked on the metrics of every scenario a law ran.

`check` returns one `Verdict` per (target, scenario) it applies to; a law meets the targets
iff every verdict holds. The targets are those of the project's control-quality issue:

- steady overload (N from 1 to 256, writes from 4 KiB to 1 MiB): the debt never reaches stop,
  the arena is never exhausted, the steady debt differs by at most 4 units across the
  scenarios, utilisation at least 0.95, p99 waited delay at most twice the ideal mean delay
  plus 1 ms, fairness at least 0.95;
- a real stop (disk stalls): no write is admitted at or above stop unless its wait reached the
  user's limit, and no block outlasts that limit;
- disk steps: no overshoot above the new steady debt plus 8 units, settled within 5 s;
- bursts below stop: p99 at most 50 ms; cold start: p99 at most 10 ms, utilisation at least
  0.9; a burst after a long idle: p99 within 1 ms (or 25 %) of the burst after a short idle,
  peak debt within 2 units, utilisation within 0.05;
- kept from the seed: no write delayed below capacity; under a noisy disk the debt never
  reaches stop and the arena is never exhausted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flowpace.simulation import scenarios as sc
from flowpace.simulation.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target on one scenario (or on a family of scenarios)."""

    target: str
    scenario: str
    value: float
    limit: float
    holds: bool

    def line(self) -> str:
        """Return the verdict as one line of the report."""
        mark = "ok  " if self.holds else "MISS"
        return f"{mark} {self.scenario:<20} {self.target}: {self.value:g} (limit {self.limit:g})"


def _at_most(target: str, scenario: str, value: float, limit: float) -> Verdict:
    return Verdict(target, scenario, value, limit, value <= limit)


def _at_least(target: str, scenario: str, value: float, limit: float) -> Verdict:
    return Verdict(target, scenario, value, limit, value >= limit)


def check(results: Mapping[str, Metrics]) -> list[Verdict]:
    """Return the verdict of every target that applies to the scenarios in ``results``."""
    out: list[Verdict] = []
    for name, metrics in results.items():
        out += _scenario_targets(name, metrics, results)
    steady = [m.debt_mean for name, m in results.items() if _family(name) == sc.STEADY]
    if len(steady) >= 2:
        spread = round(max(steady) - min(steady), 2)
        out.append(
            _at_most(
                "steady debt, highest minus lowest mean (units)", "steady overload (all)", spread, 4
            )
        )
    return out


def _family(name: str) -> str:
    return sc.SCENARIOS[name].family


def _scenario_targets(name: str, m: Metrics, results: Mapping[str, Metrics]) -> list[Verdict]:
    """Return the verdicts of the targets of one scenario's own family."""
    scenario = sc.SCENARIOS[name]
    family = scenario.family
    if family in {sc.STEADY, sc.NOISY}:
        safe = [
            _at_most("highest debt below stop (units)", name, m.debt_max_run, 47.999),
            _at_most("arena exhausted (s)", name, m.arena_exhausted_s, 0.0),
        ]
        if family == sc.NOISY:
            return safe
        ideal = m.ideal_delay_ms or 0.0
        return [
            *safe,
            _at_least("utilisation", name, m.utilisation, 0.95),
            _at_most("p99 waited delay (ms)", name, m.delay_p99_ms, 2 * ideal + 1),
            _at_least("fairness (Jain)", name, m.fairness, 0.95),
        ]
    if family == sc.STOP:
        limit_ms = scenario.plant.stop_limit_us / 1_000
        return [
            _at_most("writes admitted at stop", name, m.admitted_at_stop, 0),
            _at_most("longest block at stop (ms)", name, m.block_max_ms, limit_ms),
        ]
    if family == sc.STEP:
        return [
            _at_most("overshoot (units)", name, m.overshoot_units or 0.0, 8),
            _at_most("settle time (s)", name, m.settle_s or 0.0, 5),
        ]
    if family == sc.BURST:
        return [_at_most("p99 waited delay (ms)", name, m.delay_p99_ms, 50)]
    if family == sc.COLD:
        return [
            _at_most("p99 waited delay (ms)", name, m.delay_p99_ms, 10),
            _at_least("utilisation", name, m.utilisation, 0.9),
        ]
    if family == sc.IDLE and scenario.twin is not None and scenario.twin in results:
        return _like_twin(name, m, scenario.twin, results[scenario.twin])
    if family == sc.BELOW:
        return [_at_most("fraction of writes delayed", name, m.delayed_fraction, 0.0)]
    return []


def _like_twin(name: str, m: Metrics, twin_name: str, twin: Metrics) -> list[Verdict]:
    """Return whether a burst after a long idle behaves like the one after a short idle."""
    slack = round(max(1.0, twin.delay_p99_ms / 4), 3)
    return [
        _at_most(
            f"p99 waited minus {twin_name}'s (ms)",
            name,
            round(abs(m.delay_p99_ms - twin.delay_p99_ms), 3),
            slack,
        ),
        _at_most(
            f"peak debt minus {twin_name}'s (units)",
            name,
            round(abs(m.debt_max - twin.debt_max), 2),
            2,
        ),
        _at_most(
            f"utilisation minus {twin_name}'s",
            name,
            round(abs(m.utilisation - twin.utilisation), 3),
            0.05,
        ),
    ]
