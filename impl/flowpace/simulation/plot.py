"""PNG plots of a simulation (the optional ``flowpace[plot]`` extra: matplotlib).

Three figures: the debt over time in a few scenarios, one line a law; the distribution of the
waited delay in one steady overload, one curve a law; the steady debt against the number of
writers, one line a law and sweep.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

import matplotlib as mpl

mpl.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt

from flowpace.simulation.metrics import step_segments
from flowpace.simulation.scenarios import SCENARIOS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from flowpace.simulation import Results

DEBT_SCENARIOS: Final = (
    "overload-n64",
    "disk-step-down",
    "disk-step-up",
    "bursty",
    "disk-stall",
    "idle-burst",
)
DELAY_SCENARIO: Final = "overload-n64"
SWEEPS: Final = (("overload-n", "same total demand"), ("overload-each-n", "same demand each"))


def write_plots(results: Results, directory: Path) -> list[Path]:
    """Write the figures the results allow into ``directory``; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [
        _debt_over_time(results, name, directory)
        for name in DEBT_SCENARIOS
        if any(name in traces for traces in results.traces.values())
    ]
    if any(DELAY_SCENARIO in traces for traces in results.traces.values()):
        written.append(_delay_distribution(results, directory))
    if any(n.startswith("overload-") for m in results.metrics.values() for n in m):
        written.append(_debt_against_n(results, directory))
    return written


def _debt_over_time(results: Results, name: str, directory: Path) -> Path:
    unit = SCENARIOS[name].plant.seal_bytes
    stop = SCENARIOS[name].plant.options.normalised().bp_stop_debt_units
    fig, ax = plt.subplots(figsize=(9, 4))
    for law, traces in results.traces.items():
        if name not in traces:
            continue
        trace = traces[name]
        xs: list[float] = []
        ys: list[float] = []
        for lo, hi, level in step_segments(trace.debt_t, trace.debt_bytes, 0, trace.end_ns):
            xs += [lo / 1e9, hi / 1e9]
            ys += [level / unit, level / unit]
        ax.plot(xs, ys, label=law, linewidth=1)
    ax.axhline(stop, color="grey", linestyle="--", linewidth=0.8, label="stop")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("debt (flush units)")
    ax.set_title(f"{name}: {SCENARIOS[name].description}", fontsize=9)
    ax.legend()
    return _save(fig, directory / f"debt-{_slug(name)}.png")


def _delay_distribution(results: Results, directory: Path) -> Path:
    start, end = SCENARIOS[DELAY_SCENARIO].window
    fig, ax = plt.subplots(figsize=(7, 4))
    for law, traces in results.traces.items():
        if DELAY_SCENARIO not in traces:
            continue
        trace = traces[DELAY_SCENARIO]
        waited = sorted(
            w / 1e6 for t, w in zip(trace.adm_t, trace.adm_waited, strict=True) if start <= t < end
        )
        if waited:
            ax.plot(waited, [(i + 1) / len(waited) for i in range(len(waited))], label=law)
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("waited delay per write (ms)")
    ax.set_ylabel("fraction of writes")
    ax.set_title(f"{DELAY_SCENARIO}: delay distribution", fontsize=9)
    ax.legend()
    return _save(fig, directory / "delay-distribution.png")


def _debt_against_n(results: Results, directory: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for law, metrics in results.metrics.items():
        for prefix, label in SWEEPS:
            points = sorted(
                (int(name[len(prefix) :]), m.debt_mean)
                for name, m in metrics.items()
                if re.fullmatch(re.escape(prefix) + r"\d+", name)
            )
            if prefix != "overload-n" and "overload-n1" in metrics:
                points.insert(0, (1, metrics["overload-n1"].debt_mean))  # one writer: both
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=f"{law}, {label}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("writers (N)")
    ax.set_ylabel("steady debt (flush units)")
    ax.set_title("steady debt against the number of writers", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, directory / "debt-against-n.png")


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower())
