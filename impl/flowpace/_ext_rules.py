"""The extended law's decisions for the controller: pure functions of integers (spec EXT-1..9).

Written from spec/extension.md, apart from the model (`flowpace_reference.extended`), as
`flowpace._rules` is for the seed's law: the state machine compares the two. The controller
calls these with values it read under its state lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from flowpace_reference.types import Config, ForegroundAdmit, ForegroundBlock

_NANOS_PER_SECOND: Final = 1_000_000_000
_MILLI: Final = 1_000

ADMIT_NOW: Final = ForegroundAdmit(0)


@dataclass(frozen=True, slots=True)
class ExtTuning:
    """The extended law's constants for one controller (spec EXT-1, AR-3)."""

    backpressure: bool
    unit_bytes: int
    soft_mu: int
    setpoint_mu: int
    stop_mu: int
    cold_mu: int
    floor_bps: int
    warmup: int
    limit_ns: int
    below_bytes: int
    """The debt a blocked write waits to fall below: the least whose milli-units reach stop."""
    span: int
    """``stop_mu - setpoint_mu``, the slot's numerator factor (EXT-4)."""
    lead: int
    """``setpoint_mu - soft_mu``, the slot's denominator factor (EXT-4)."""


def ext_tuning_of(config: Config) -> ExtTuning | None:
    """Return the extended law's constants, or None when the law is off (spec EXT-1)."""
    if not config.ext_admission_timeline:
        return None
    unit = max(config.bp_flush_unit_bytes, 1)
    soft = config.bp_soft_debt_units * _MILLI
    setpoint = config.ext_setpoint_units * _MILLI
    stop = config.bp_stop_debt_units * _MILLI
    return ExtTuning(
        backpressure=config.enable_backpressure,
        unit_bytes=unit,
        soft_mu=soft,
        setpoint_mu=setpoint,
        stop_mu=stop,
        cold_mu=config.bp_cold_start_fail_safe_units * _MILLI,
        floor_bps=config.bp_floor_bps,
        warmup=config.bp_warmup_min_samples,
        limit_ns=max(config.ext_stop_wait_limit_ns, 1),
        below_bytes=-(-(stop * unit) // _MILLI),
        span=stop - setpoint,
        lead=setpoint - soft,
    )


def normalised_setpoint(soft: int, stop: int, setpoint: int) -> int:
    """Return the setpoint, units: the default for 0, clamped into ``(soft, stop)`` (EXT-1)."""
    if setpoint == 0:
        setpoint = soft + max(1, (stop - soft) // 8)
    return min(max(setpoint, soft + 1), stop - 1)


@dataclass(frozen=True, slots=True)
class ExtDecision:
    """A decision and the timeline after it (spec EXT-5); ``known_bps`` as updated."""

    decision: ForegroundAdmit | ForegroundBlock
    next_admit_ns: int | None
    known_bps: int


def decide(  # noqa: PLR0913 - the state fields the decision reads, as plain ints
    t: ExtTuning,
    write_bytes: int,
    now: int,
    *,
    debt: int,
    samples: int,
    io_bps: int,
    adaptive_floor: int,
    next_admit_ns: int | None,
    known_bps: int,
) -> ExtDecision:
    """Return the decision on a write and the law's state after it (spec EXT-3 to EXT-5)."""
    ready = samples >= t.warmup
    if ready:
        known_bps = io_bps  # EXT-5: the last steady-state estimate
    if not t.backpressure or write_bytes == 0 or debt == 0:
        return ExtDecision(ADMIT_NOW, next_admit_ns, known_bps)
    d = min(max(debt * _MILLI // t.unit_bytes, 1), 0xFFFF_FFFF_FFFF_FFFF)  # AR-2
    if d >= t.stop_mu:
        block = ForegroundBlock(t.below_bytes, now + t.limit_ns)
        return ExtDecision(block, next_admit_ns, known_bps)
    free = t.cold_mu - 1 if not ready and known_bps == 0 else t.soft_mu  # EXT-3
    if d <= free:
        return ExtDecision(ADMIT_NOW, None, known_bps)
    base = max(io_bps, 1) if ready else max(t.floor_bps, adaptive_floor, known_bps, 1)
    start = now if next_admit_ns is None or next_admit_ns < now else next_admit_ns
    # EXT-4: w / rate(d), rounded up to a whole nanosecond.
    numerator = write_bytes * _NANOS_PER_SECOND * (d - t.soft_mu) * t.span
    slot = -(-numerator // (base * t.lead * (t.stop_mu - d)))
    return ExtDecision(ForegroundAdmit(start - now), start + slot, known_bps)


def recheck(t: ExtTuning, debt: int, now: int) -> ForegroundAdmit | ForegroundBlock:
    """Return, for a write whose wait ended, admit or block at stop (spec EXT-6)."""
    if t.backpressure and debt >= t.below_bytes:
        return ForegroundBlock(t.below_bytes, now + t.limit_ns)
    return ADMIT_NOW
