"""Control-quality metrics of a run: pure functions of a `Trace` and its scenario.

Debt is reported in flush units, delays in milliseconds, times in seconds. Every statistic over
time is weighted by time (the debt is a step function); every statistic over writes counts
the writes admitted inside the scenario's window. Percentiles are nearest-rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Final

from flowpace.simulation.laws import NANOS_PER_SECOND
from flowpace.simulation.plant import MS, Disk, Trace
from flowpace.simulation.scenarios import Scenario

OSCILLATION_BIN_NS: Final = 100 * MS
"""Width of the bins the admitted rate is counted in for the oscillation metric."""
SETTLE_BAND_UNITS: Final = 2
"""A step has settled once the debt stays within this many units (or 10 %) of its new mean."""
FINAL_SPAN_NS: Final = 2 * NANOS_PER_SECOND
"""The new steady debt after a step is its mean over the run's last 2 s."""


def percentile(values: Sequence[int], permille: int) -> int:
    """
    Return the nearest-rank percentile (``permille`` of 1000) of ``values``; 0 if empty.

    >>> percentile([5, 1, 4, 2, 3], 500), percentile([5, 1, 4, 2, 3], 990), percentile([], 990)
    (3, 5, 0)
    """
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(-(-permille * len(ordered) // 1000), 1)
    return ordered[rank - 1]


def jain_index(values: Sequence[int]) -> float:
    """
    Return Jain's fairness index ``(sum x)^2 / (n * sum x^2)``: 1 when all are equal.

    >>> jain_index([3, 3, 3]), jain_index([1, 0, 0, 0]), jain_index([])
    (1.0, 0.25, 1.0)
    """
    squares = sum(x * x for x in values)
    if not values or squares == 0:
        return 1.0
    return sum(values) ** 2 / (len(values) * squares)


def coefficient_of_variation(values: Sequence[int]) -> float:
    """
    Return the standard deviation of ``values`` over their mean (0 if the mean is 0).

    >>> coefficient_of_variation([2, 2, 2]), round(coefficient_of_variation([1, 3]), 3)
    (0.0, 0.5)
    """
    if not values or sum(values) == 0:
        return 0.0
    mean = sum(values) / len(values)
    variance = sum((x - mean) ** 2 for x in values) / len(values)
    return float(variance**0.5 / mean)


def step_segments(
    times: Sequence[int], levels: Sequence[int], start: int, end: int
) -> list[tuple[int, int, int]]:
    """
    Return the step function ``levels`` from ``times`` cut to ``[start, end)``.

    Each segment is ``(from, to, level)``; the level before the first time is 0.

    >>> step_segments([0, 10, 20], [1, 5, 2], 5, 25)
    [(5, 10, 1), (10, 20, 5), (20, 25, 2)]
    """
    out: list[tuple[int, int, int]] = []
    level = 0
    previous = start
    for t, value in zip(times, levels, strict=True):
        if t > start:
            lo, hi = previous, min(t, end)
            if hi > lo:
                out.append((lo, hi, level))
            previous = max(t, start)
        level = value
        if t >= end:
            return out
    if end > previous:
        out.append((previous, end, level))
    return out


def time_mean(segments: Sequence[tuple[int, int, int]]) -> float:
    """
    Return the time-weighted mean of a step function's segments (0 if none).

    >>> time_mean([(0, 10, 1), (10, 30, 4)])
    3.0
    """
    span = sum(hi - lo for lo, hi, _ in segments)
    if span == 0:
        return 0.0
    return sum((hi - lo) * level for lo, hi, level in segments) / span


def overlap(intervals: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """
    Return how much of ``[start, end)`` the intervals cover (they must not overlap).

    >>> overlap([(0, 5), (8, 20)], 2, 10)
    5
    """
    return sum(max(min(hi, end) - max(lo, start), 0) for lo, hi in intervals)


def utilisation(io: Sequence[tuple[int, int, int]], disk: Disk, start: int, end: int) -> float:
    """
    Return the bytes the disk wrote in ``[start, end)`` over what it could have written.

    An I/O's bytes are spread evenly over its duration. 1.0 if the disk could write nothing.

    >>> round(utilisation([(0, 10**9, 50)], Disk(steps=((0, 100),)), 0, 10**9), 3)
    0.5
    """
    capacity = disk.capacity_bytes(start, end)
    if capacity == 0:
        return 1.0
    written = sum(
        nbytes * max(min(hi, end) - max(lo, start), 0) // (hi - lo)
        for lo, hi, nbytes in io
        if hi > lo
    )
    return written / capacity


def settle_after_step(
    segments: Sequence[tuple[int, int, int]], step_at: int, end: int, unit: int
) -> tuple[float, float, float]:
    """
    Return (new steady debt, overshoot above it, settle time) after a step at ``step_at``.

    The new steady debt is the mean over the last `FINAL_SPAN_NS`; the overshoot is the
    highest debt after the step minus it, in units; the settle time, seconds, is how long
    after the step the debt last came back within the band (2 units or 10 %, the larger).

    >>> u = 10
    >>> settle_after_step([(0, 100, 50), (100, 3 * 10**9, 100)], 0, 3 * 10**9, u)
    (10.0, 0.0, 0.0)
    """
    final = time_mean([s for s in segments if s[1] > end - FINAL_SPAN_NS]) / unit
    after = [s for s in segments if s[1] > step_at]
    peak = max((level for _, _, level in after), default=0) / unit
    band = max(SETTLE_BAND_UNITS, final / 10)
    back = step_at
    for lo, hi, level in after:
        if abs(level / unit - final) > band:
            back = hi
        del lo
    return final, max(peak - final, 0.0), (back - step_at) / NANOS_PER_SECOND


@dataclass(frozen=True, slots=True)
class Metrics:
    """The metrics of one run (one law, one scenario)."""

    debt_mean: float
    """Steady debt, time-weighted mean over the window, units."""
    debt_max: float
    debt_min: float
    debt_spread: float
    """Highest minus lowest debt in the window, units."""
    debt_max_run: float
    """Highest debt over the whole run, units."""
    reached_stop: bool
    oscillation: float
    """Coefficient of variation of the bytes admitted per 100 ms bin in the window."""
    utilisation: float
    delay_p50_ms: float
    """Waited delay (first ask to admission) of the writes admitted in the window."""
    delay_p99_ms: float
    delay_max_ms: float
    computed_p50_ms: float
    """The delay the law computed (its waits summed), same writes."""
    computed_p99_ms: float
    computed_max_ms: float
    delayed_fraction: float
    fairness: float
    """Jain's index of the bytes each writer had admitted in the window."""
    writes: int
    arena_exhausted_s: float
    """Time the arena had no free buffer, over the whole run."""
    arena_wait_max_ms: float
    admitted_at_stop: int
    """Writes admitted with the debt at or above stop that were not let through by a limit."""
    blocks: int
    blocks_woken: int
    """Blocks at stop ended by the debt falling below stop (the rest by their limit)."""
    block_max_ms: float
    ideal_delay_ms: float | None
    settle_s: float | None
    overshoot_units: float | None
    steady_after_step: float | None

    def as_dict(self) -> dict[str, object]:
        """Return the metrics by name (for JSON)."""
        return asdict(self)


def measure(trace: Trace, scenario: Scenario) -> Metrics:
    """Return the metrics of ``trace``, a run of ``scenario``."""
    plant = scenario.plant
    unit = plant.seal_bytes
    stop_bytes = plant.options.normalised().bp_stop_debt_units * unit
    start, end = scenario.window
    end = min(end, trace.end_ns)
    segments = step_segments(trace.debt_t, trace.debt_bytes, start, end)
    levels = [level for _, _, level in segments] or [0]
    inside = [i for i, t in enumerate(trace.adm_t) if start <= t < end]
    waited = [trace.adm_waited[i] for i in inside]
    computed = [trace.adm_computed[i] for i in inside]
    per_writer = [0] * trace.writers
    for i in inside:
        per_writer[trace.adm_writer[i]] += trace.adm_bytes[i]
    active = [b for b in per_writer if b] if scenario.plant.groups[0].open_loop else per_writer
    bins = [0] * max((end - start) // OSCILLATION_BIN_NS, 1)
    for i in inside:
        k = min((trace.adm_t[i] - start) // OSCILLATION_BIN_NS, len(bins) - 1)
        bins[k] += trace.adm_bytes[i]
    at_stop = sum(
        1
        for debt, timed_out in zip(trace.adm_debt, trace.adm_timed_out, strict=True)
        if debt >= stop_bytes and not timed_out
    )
    settle: tuple[float, float, float] | None = None
    if scenario.step_at_ns is not None:
        whole = step_segments(trace.debt_t, trace.debt_bytes, 0, trace.end_ns)
        settle = settle_after_step(whole, scenario.step_at_ns, trace.end_ns, unit)
    return Metrics(
        debt_mean=round(time_mean(segments) / unit, 2),
        debt_max=round(max(levels) / unit, 2),
        debt_min=round(min(levels) / unit, 2),
        debt_spread=round((max(levels) - min(levels)) / unit, 2),
        debt_max_run=round(max(trace.debt_bytes) / unit, 2),
        reached_stop=max(trace.debt_bytes) >= stop_bytes,
        oscillation=round(coefficient_of_variation(bins), 3),
        utilisation=round(utilisation(trace.io, plant.disk, start, end), 3),
        delay_p50_ms=_ms(percentile(waited, 500)),
        delay_p99_ms=_ms(percentile(waited, 990)),
        delay_max_ms=_ms(max(waited, default=0)),
        computed_p50_ms=_ms(percentile(computed, 500)),
        computed_p99_ms=_ms(percentile(computed, 990)),
        computed_max_ms=_ms(max(computed, default=0)),
        delayed_fraction=round(sum(1 for w in waited if w) / max(len(waited), 1), 3),
        fairness=round(jain_index(active), 3),
        writes=len(inside),
        arena_exhausted_s=round(overlap(trace.exhausted, 0, trace.end_ns) / NANOS_PER_SECOND, 3),
        arena_wait_max_ms=_ms(max(trace.arena_waits, default=0)),
        admitted_at_stop=at_stop,
        blocks=len(trace.blocks),
        blocks_woken=sum(1 for _, _, woken in trace.blocks if woken),
        block_max_ms=_ms(max((hi - lo for lo, hi, _ in trace.blocks), default=0)),
        ideal_delay_ms=None if scenario.ideal_delay_ns is None else _ms(scenario.ideal_delay_ns),
        settle_s=None if settle is None else round(settle[2], 3),
        overshoot_units=None if settle is None else round(settle[1], 2),
        steady_after_step=None if settle is None else round(settle[0], 2),
    )


def _ms(ns: int) -> float:
    """Return nanoseconds as milliseconds, to the microsecond."""
    return round(ns / 1_000_000, 3)
