"""The extended law, an opt-in foreground law beyond the seed's (spec EXT-1 to EXT-9).

Writers share one admission timeline: a write of ``w`` bytes takes the next free slot on it,
``w / rate`` long, so the writers together are admitted at ``rate`` whatever their number. The
rate is a smooth function of the debt: infinite at soft (no jump from "no delay" to "full
delay"), the disk estimate at a setpoint, zero at stop; at or above stop a write blocks until
the debt falls below stop, or until a limit the user sets.

Pure, like the rest of the model: every function takes the normalised configuration, the
law's own state, the controller's `ControllerState` and the time as inputs and returns a
decision and the law's next state. The debt, the disk estimate and the cold-start bookkeeping
are the seed's (ST-1, AR-4, AR-7): this module only decides foreground writes (EXT-5 to EXT-7).
The implementation's twin is ``flowpace._ext_rules``; the simulator's ``extended`` law calls
this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from flowpace_reference.contracts import satisfies_guarantees  # noqa: F401  # read by the contracts
from flowpace_reference.measures import threshold_milli_units
from flowpace_reference.types import (
    Config,
    ControllerState,
    Emission,
    ForegroundAdmit,
    ForegroundBlock,
    Metric,
    MetricKind,
)
from flowpace_reference.u64 import U32_MAX, U64_MAX  # noqa: F401  # U32_MAX: read by the contracts

NANOS_PER_SECOND: Final = 1_000_000_000
NANOS_PER_MICRO: Final = 1_000

ADMIT_NOW: Final = ForegroundAdmit(0)
"""Write at once."""

Decision = ForegroundAdmit | ForegroundBlock
"""What the law tells a write (spec EXT-5)."""


# --- EXT-1: options and their normalisation ---------------------------------------------------


def normalised_setpoint(soft: int, stop: int, setpoint: int) -> int:
    """
    Return the setpoint in units: the default for 0, then clamped into ``(soft, stop)`` (EXT-1).

    pre: (1 <= soft) & (soft + 2 <= stop) & (stop <= U32_MAX)
    pre: (0 <= setpoint) & (setpoint <= U32_MAX)
    post: (soft < __return__) & (__return__ < stop)
    post: (setpoint == 0) | (__return__ == min(max(setpoint, soft + 1), stop - 1))
    """
    # crosshair: on specs_complete=True
    chosen = soft + max(1, (stop - soft) // 8) if setpoint == 0 else setpoint
    return min(max(chosen, soft + 1), stop - 1)


def normalised_stop_wait_limit(limit_ns: int) -> int:
    """
    Return the stop wait limit, nanoseconds: at least 1 (spec EXT-1).

    pre: (0 <= limit_ns) & (limit_ns <= U64_MAX)
    post: (__return__ >= 1) & ((__return__ == limit_ns) | (limit_ns == 0))
    """
    # crosshair: on specs_complete=True
    return max(limit_ns, 1)


@dataclass(frozen=True, slots=True)
class ExtendedConfig:
    """The extended law's view of a normalised configuration, in milli-units and ns."""

    enabled: bool
    """Whether the law decides foreground writes (``ext_admission_timeline``)."""
    backpressure: bool
    unit_bytes: int
    soft_mu: int
    setpoint_mu: int
    """Debt at which the admission rate equals the base rate; ``soft < setpoint < stop``."""
    stop_mu: int
    cold_mu: int
    floor_bps: int
    warmup: int
    stop_limit_ns: int
    """Longest time a write blocks at stop (the user's bound), at least 1."""


def extended_config(config: Config) -> ExtendedConfig:
    """
    Return the law's configuration for a normalised ``config`` (spec EXT-1, AR-3).

    pre: satisfies_guarantees(config)
    pre: config.bp_soft_debt_units < config.ext_setpoint_units < config.bp_stop_debt_units
    post: __return__.soft_mu < __return__.setpoint_mu < __return__.stop_mu
    post: __return__.stop_limit_ns >= 1 and __return__.cold_mu >= __return__.soft_mu
    """
    return ExtendedConfig(
        enabled=config.ext_admission_timeline,
        backpressure=config.enable_backpressure,
        unit_bytes=config.bp_flush_unit_bytes,
        soft_mu=threshold_milli_units(config.bp_soft_debt_units),
        setpoint_mu=threshold_milli_units(config.ext_setpoint_units),
        stop_mu=threshold_milli_units(config.bp_stop_debt_units),
        cold_mu=threshold_milli_units(config.bp_cold_start_fail_safe_units),
        floor_bps=config.bp_floor_bps,
        warmup=config.bp_warmup_min_samples,
        stop_limit_ns=max(config.ext_stop_wait_limit_ns, 1),
    )


# --- EXT-2 to EXT-4: state, base rate, slot ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtendedState:
    """What the law keeps besides the controller's state (spec EXT-2)."""

    next_admit_ns: int | None = None
    """The shared admission timeline: when the next slot starts (None: free now)."""
    known_bps: int = 0
    """The last steady-state disk estimate; survives an idle reset (0: never warm)."""


@dataclass(frozen=True, slots=True)
class ExtendedStep:
    """A decision of the law and the law's state after it."""

    decision: Decision
    state: ExtendedState


def is_ready(cfg: ExtendedConfig, state: ControllerState) -> bool:
    """
    Return whether the controller left cold start (spec AR-4).

    post: __return__ == (state.io_sample_count >= cfg.warmup)
    """
    return state.io_sample_count >= cfg.warmup


def base_rate_bps(cfg: ExtendedConfig, ext: ExtendedState, state: ControllerState) -> int:
    """
    Return the disk rate the law scales, bytes/s, at least 1 (spec EXT-3).

    In steady state the controller's I/O average (AR-4); in cold start the largest of the
    floors (AR-7) and the last steady-state estimate the law remembers, so a burst after an
    idle reset is paced as one after a short idle.

    post: __return__ >= 1
    """
    if is_ready(cfg, state):
        return max(state.io_bps_ewma, 1)
    return max(cfg.floor_bps, state.adaptive_floor_bps, ext.known_bps, 1)


def free_below_mu(cfg: ExtendedConfig, ext: ExtendedState, state: ControllerState) -> int:
    """
    Return the debt, milli-units, at or below which writes are free (spec EXT-3).

    post: __return__ in (cfg.cold_mu - 1, cfg.soft_mu)
    """
    cold = not is_ready(cfg, state) and ext.known_bps == 0
    return cfg.cold_mu - 1 if cold else cfg.soft_mu


def slot_at(  # noqa: PLR0913, PLR0917 - the formula's six quantities, as integers for the solver
    write_bytes: int, debt_mu: int, base_bps: int, soft_mu: int, setpoint_mu: int, stop_mu: int
) -> int:
    """
    Return how long a write holds the timeline, ns: ``w / rate(d)`` rounded up (spec EXT-4).

    At ``d = S`` (reached in a true cold start with the fail-safe at soft) the slot is 0.

    ``rate(d) = base * (P - S) * (X - d) / ((d - S) * (X - P))``. The two postconditions say
    the slot is at least the exact quotient and less than it plus 1 ns (EXT-8 b).

    pre: (0 <= write_bytes) & (1 <= base_bps)
    pre: (soft_mu < setpoint_mu) & (setpoint_mu < stop_mu)
    pre: (soft_mu <= debt_mu) & (debt_mu < stop_mu)
    post: __return__ * base_bps * (setpoint_mu - soft_mu) * (stop_mu - debt_mu) >= write_bytes * NANOS_PER_SECOND * (debt_mu - soft_mu) * (stop_mu - setpoint_mu)
    post: (__return__ - 1) * base_bps * (setpoint_mu - soft_mu) * (stop_mu - debt_mu) < write_bytes * NANOS_PER_SECOND * (debt_mu - soft_mu) * (stop_mu - setpoint_mu) or __return__ == 0
    """  # noqa: E501 - a contract is one line
    numerator = write_bytes * NANOS_PER_SECOND * (debt_mu - soft_mu) * (stop_mu - setpoint_mu)
    denominator = base_bps * (setpoint_mu - soft_mu) * (stop_mu - debt_mu)
    return -(-numerator // denominator)


def slot_ns(cfg: ExtendedConfig, write_bytes: int, debt_mu: int, base_bps: int) -> int:
    """
    Return the slot of a write of ``write_bytes`` at ``debt_mu`` and ``base_bps`` (EXT-4).

    pre: cfg.soft_mu < cfg.setpoint_mu < cfg.stop_mu
    pre: cfg.soft_mu <= debt_mu < cfg.stop_mu
    pre: write_bytes >= 0 and base_bps >= 1
    post: __return__ >= 0
    """
    return slot_at(write_bytes, debt_mu, base_bps, cfg.soft_mu, cfg.setpoint_mu, cfg.stop_mu)


# --- EXT-5 to EXT-7: decision, re-check, blocking at stop -------------------------------------


def stop_below_bytes(cfg: ExtendedConfig) -> int:
    """
    Return the debt a blocked write waits to fall below: the least reaching stop (EXT-5, AR-2).

    pre: cfg.unit_bytes >= 1
    post: __return__ * 1000 >= cfg.stop_mu * cfg.unit_bytes
    post: (__return__ - 1) * 1000 < cfg.stop_mu * cfg.unit_bytes
    """
    return -(-(cfg.stop_mu * cfg.unit_bytes) // 1000)


def stop_block(cfg: ExtendedConfig, now_ns: int) -> ForegroundBlock:
    """
    Return the block at stop: until the debt is below stop, or for the user's limit (EXT-5).

    pre: cfg.unit_bytes >= 1 and cfg.stop_limit_ns >= 1
    post: __return__.deadline_ns == now_ns + cfg.stop_limit_ns
    """
    return ForegroundBlock(stop_below_bytes(cfg), now_ns + cfg.stop_limit_ns)


def decide(
    cfg: ExtendedConfig,
    ext: ExtendedState,
    state: ControllerState,
    write_bytes: int,
    now_ns: int,
) -> ExtendedStep:
    """
    Return the decision on a write of ``write_bytes`` at ``now_ns``, and the law's next state.

    Spec EXT-5: remember the steady-state estimate, then the first rule that holds decides:
    backpressure off, an empty write or no debt: admit now; at or above stop: block; at or
    below the free threshold: admit now and clear the timeline; otherwise take the next slot.

    pre: cfg.soft_mu < cfg.setpoint_mu < cfg.stop_mu and cfg.unit_bytes >= 1
    pre: cfg.stop_limit_ns >= 1 and 0 <= state.debt_bytes <= U64_MAX
    pre: 1 <= cfg.soft_mu <= cfg.cold_mu
    pre: write_bytes >= 0 and now_ns >= 0
    post: isinstance(__return__.decision, ForegroundBlock) == (cfg.backpressure and write_bytes > 0 and debt_mu(cfg, state) >= cfg.stop_mu)
    post: not isinstance(__return__.decision, ForegroundAdmit) or __return__.decision.wait_ns >= 0
    """  # noqa: E501 - a contract is one line
    known = state.io_bps_ewma if is_ready(cfg, state) else ext.known_bps
    if known != ext.known_bps:
        ext = replace(ext, known_bps=known)
    debt = debt_mu(cfg, state)
    if not cfg.backpressure or write_bytes == 0 or debt == 0:
        return ExtendedStep(ADMIT_NOW, ext)
    if debt >= cfg.stop_mu:
        return ExtendedStep(stop_block(cfg, now_ns), ext)
    if debt <= free_below_mu(cfg, ext, state):
        if ext.next_admit_ns is not None:
            ext = replace(ext, next_admit_ns=None)
        return ExtendedStep(ADMIT_NOW, ext)
    start = now_ns if ext.next_admit_ns is None else max(now_ns, ext.next_admit_ns)
    slot = slot_ns(cfg, write_bytes, debt, base_rate_bps(cfg, ext, state))
    decision = ADMIT_NOW if start == now_ns else ForegroundAdmit(start - now_ns)
    return ExtendedStep(decision, replace(ext, next_admit_ns=start + slot))


def recheck(cfg: ExtendedConfig, state: ControllerState, now_ns: int) -> Decision:
    """
    Return, for a write whose wait has ended, whether it writes now or blocks (spec EXT-6).

    pre: cfg.unit_bytes >= 1 and cfg.stop_limit_ns >= 1
    pre: 0 <= state.debt_bytes <= U64_MAX
    post: isinstance(__return__, ForegroundBlock) == (cfg.backpressure and debt_mu(cfg, state) >= cfg.stop_mu)
    """  # noqa: E501 - a contract is one line
    if cfg.backpressure and debt_mu(cfg, state) >= cfg.stop_mu:
        return stop_block(cfg, now_ns)
    return ADMIT_NOW


def wakes(block: ForegroundBlock, state: ControllerState) -> bool:
    """
    Return whether a write blocked by ``block`` may ask again in ``state`` (spec EXT-7).

    post: __return__ == (state.debt_bytes < block.below_bytes)
    """
    return state.debt_bytes < block.below_bytes


def timed_out(block: ForegroundBlock, now_ns: int) -> bool:
    """
    Return whether a write blocked by ``block`` proceeds at ``now_ns``: its limit passed (EXT-7).

    post: __return__ == (now_ns >= block.deadline_ns)
    """
    return now_ns >= block.deadline_ns


def debt_mu(cfg: ExtendedConfig, state: ControllerState) -> int:
    """
    Return the state's debt in milli-units, at least 1 for any debt (spec AR-2).

    pre: cfg.unit_bytes >= 1 and 0 <= state.debt_bytes <= U64_MAX
    post: (__return__ == 0) == (state.debt_bytes == 0)
    """
    if state.debt_bytes == 0:
        return 0
    return min(max(state.debt_bytes * 1000 // cfg.unit_bytes, 1), U64_MAX)


def delay_emissions(waited_ns: int) -> tuple[Emission, ...]:
    """
    Return the metrics a write emits for a wait of ``waited_ns`` (spec EXT-9, FC-8).

    pre: waited_ns >= 0
    post: (len(__return__) == 0) == (waited_ns == 0)
    """
    if waited_ns == 0:
        return ()
    return (
        Emission(MetricKind.COUNTER, Metric.FG_DELAY, 1),
        Emission(MetricKind.HISTOGRAM, Metric.FG_DELAY_MICROS, waited_ns // NANOS_PER_MICRO),
    )


# --- EXT-8: lemmas (checked by CrossHair; see flowpace.symbolic) ------------------------------


def slot_monotone_in_debt(  # noqa: PLR0913, PLR0917 - the lemma's quantities
    write_bytes: int, debt_mu: int, more_debt_mu: int, base_bps: int, soft_mu: int, stop_mu: int
) -> bool:
    """
    Return whether a larger debt never gives a shorter slot (spec EXT-8 b, nonlinear).

    The setpoint is fixed at the default's shape, halfway, to keep the solver's formula small.

    pre: (0 <= write_bytes) & (1 <= base_bps) & (soft_mu + 2 <= stop_mu)
    pre: (soft_mu < debt_mu) & (debt_mu <= more_debt_mu) & (more_debt_mu < stop_mu)
    post: __return__
    """
    setpoint = soft_mu + (stop_mu - soft_mu) // 2
    less = slot_at(write_bytes, debt_mu, base_bps, soft_mu, setpoint, stop_mu)
    more = slot_at(write_bytes, more_debt_mu, base_bps, soft_mu, setpoint, stop_mu)
    return less <= more


def slot_antitone_in_rate(  # noqa: PLR0913, PLR0917 - the lemma's quantities
    write_bytes: int, debt_mu: int, base_bps: int, more_bps: int, soft_mu: int, stop_mu: int
) -> bool:
    """
    Return whether a faster disk never gives a longer slot (spec EXT-8 b, nonlinear).

    pre: (0 <= write_bytes) & (1 <= base_bps) & (base_bps <= more_bps) & (soft_mu + 2 <= stop_mu)
    pre: (soft_mu < debt_mu) & (debt_mu < stop_mu)
    post: __return__
    """
    setpoint = soft_mu + (stop_mu - soft_mu) // 2
    slower = slot_at(write_bytes, debt_mu, base_bps, soft_mu, setpoint, stop_mu)
    faster = slot_at(write_bytes, debt_mu, more_bps, soft_mu, setpoint, stop_mu)
    return faster <= slower
