"""Checking and normalising the options (spec CFG-1 to CFG-4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final, NoReturn

from flowpace_reference import extended
from flowpace_reference.contracts import (  # noqa: F401  # read by the contracts
    options_in_range,
    satisfies_guarantees,
)
from flowpace_reference.types import Config, Options
from flowpace_reference.u64 import U32_MAX, U64_MAX

FLAG_OPTIONS: Final = ("enable_backpressure", "enable_flush_pacing")
"""Options that are booleans."""

U32_OPTIONS: Final = (
    "bp_soft_debt_units",
    "bp_hard_debt_units",
    "bp_stop_debt_units",
    "bp_cold_start_fail_safe_units",
    "bp_pacing_soft_debt_units",
    "bp_min_ratio_pct",
    "bp_warmup_min_samples",
    "bp_publish_guard_min_ratio_pct",
)
"""Options the seed holds in a ``u32``."""

U64_OPTIONS: Final = (
    "bp_flush_unit_bytes",
    "bp_floor_bps",
    "bp_idle_reset_ms",
    "bp_max_delay_us",
)
"""Options the seed holds in a ``u64``."""

OPTION_NAMES: Final = tuple(f.name for f in dataclasses.fields(Options) if f.name[:4] != "ext_")
"""The 14 option names in upstream order (the seed's; EXT-1's three are not among them)."""

EXT_OPTION_NAMES: Final = tuple(f.name for f in dataclasses.fields(Options) if f.name[:4] == "ext_")
SEED_NUMBER_OPTIONS: Final = tuple((name, U32_MAX, "u32") for name in U32_OPTIONS) + tuple(
    (name, U64_MAX, "u64") for name in U64_OPTIONS
)
"""The seed's numeric options, their limits and widths, in the order they are checked (CFG-3)."""
EXT_NUMBER_OPTIONS: Final = (
    ("ext_setpoint_units", U32_MAX, "u32"),
    ("ext_stop_wait_limit_ns", U64_MAX, "u64"),
)
"""The extended law's numeric options (spec EXT-1), their limits and widths."""
"""The extended law's options (spec EXT-1)."""

DATA_FILE_SIZE: Final = 64 << 20
"""Upstream's default data file size, the flush unit that replaces a zero (CFG-2)."""

ZERO_FLOOR_BPS: Final = 8 << 20
"""The floor that replaces a zero floor: 8 MiB/s, not the 16 MiB/s default (CFG-2)."""


def options_from_mapping(values: Mapping[str, object]) -> Options:
    """
    Return the options named in ``values``, defaults for the rest (spec CFG-1, CFG-3).

    Raises TypeError for a name that is not an option. The values themselves are checked by
    `normalise`.

    post: all(getattr(__return__, name) == values[name] for name in values)
    raises: TypeError
    """
    unknown = sorted(set(values) - set(OPTION_NAMES) - set(EXT_OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(unknown)}")
    return Options(**values)  # type: ignore[arg-type]  # normalise() checks every value's type


def check_options(options: Options) -> None:
    """
    Raise TypeError or ValueError, naming the option, if ``options`` cannot be normalised.

    Spec CFG-3 and DIV-5: flags must be ``bool``; numbers must be ``int`` (not ``bool``),
    non-negative and within their ``u32`` or ``u64`` field; soft and hard must not normalise
    to ``u32::MAX``, where upstream's ``soft + 1`` or ``hard + 1`` overflows.

    post: options_in_range(options)
    raises: TypeError, ValueError
    """
    # crosshair: on specs_complete=True
    # (`normalise` takes this contract. Every error is raised by `reject`, whose contract this
    # proof takes as given: see there.)
    _check_fields(options, FLAG_OPTIONS, SEED_NUMBER_OPTIONS)
    soft = normalised_soft(options.bp_soft_debt_units)
    if soft == U32_MAX:
        reject(ValueError, "bp_soft_debt_units", f"be below {U32_MAX}", options.bp_soft_debt_units)
    hard = options.bp_hard_debt_units
    if normalised_hard(soft, hard) == U32_MAX:
        reject(ValueError, "bp_hard_debt_units", f"normalise below {U32_MAX}", hard, soft)
    # spec EXT-1: the extended law's options, by CFG-3's rules, after the seed's.
    _check_fields(options, ("ext_admission_timeline",), EXT_NUMBER_OPTIONS)


def _check_fields(
    options: Options, flags: tuple[str, ...], numbers: tuple[tuple[str, int, str], ...]
) -> None:
    """
    Raise, through `reject`, for the first of ``flags`` not a ``bool`` or ``numbers`` out of range.

    Spec CFG-3: each number is an ``int``, not a ``bool``, in ``[0, limit]`` (its width).
    """
    for name in flags:
        value = getattr(options, name)
        if not isinstance(value, bool):
            reject(TypeError, name, "be a bool", value)
    for name, limit, width in numbers:
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int):
            reject(TypeError, name, "be an int", value)
        if not 0 <= value <= limit:
            reject(ValueError, name, f"be in [0, {limit}] ({width})", value)


def reject(
    error: type[TypeError] | type[ValueError],  # noqa: PYI055  # CrossHair makes no type[A | B]
    name: str,
    requirement: str,
    value: object,
    soft: int | None = None,
) -> NoReturn:
    """
    Raise ``error`` for option ``name``: ``option NAME must REQUIREMENT, got VALUE`` (CFG-3).

    The value is shown as its ``repr``, followed by ``(soft SOFT)`` when the soft threshold
    decided the error.

    pre: error in (TypeError, ValueError)
    pre: name in OPTION_NAMES or name in EXT_OPTION_NAMES
    post: False
    raises: TypeError, ValueError
    """
    # crosshair: on specs_complete=True
    # spec LEM-10: taken as given by its callers' proofs (`flowpace.symbolic.TAKEN_AS_GIVEN`):
    # CrossHair spells out the message of every exception it sees raised, and a message holding a
    # symbolic value's digits has no end of paths, so no proof that raises one ever ends.
    # "Never returns" (post: False) drops the raising paths from a caller's proof, and the
    # caller never formats a value either; what is left unproven is this function, whose every
    # message tests/test_error_messages.py checks.
    context = "" if soft is None else f" (soft {soft!r})"
    raise error(f"option {name} must {requirement}, got {value!r}{context}")


def normalised_soft(soft: int) -> int:
    """
    Return the soft threshold after upstream's ``if soft == 0 { soft = 1 }`` (spec CFG-2).

    pre: 0 <= soft <= U32_MAX
    post: (__return__ == soft) & (soft >= 1) | (__return__ == 1) & (soft == 0)
    """
    # crosshair: on specs_complete=True
    return 1 if soft == 0 else soft


def normalised_hard(soft: int, hard: int) -> int:
    """
    Return the hard threshold after upstream's ``if hard <= soft { hard = soft + 1 }``.

    pre: 1 <= soft < U32_MAX
    pre: 0 <= hard <= U32_MAX
    post: (__return__ == hard) & (hard > soft) | (__return__ == soft + 1) & (hard <= soft)
    """
    # crosshair: on specs_complete=True
    return soft + 1 if hard <= soft else hard


def normalised_pct(pct: int) -> int:
    """
    Return a percentage option after upstream's ``min(max(x, 1), 100)`` (CFG-2 steps 1, 2).

    pre: 0 <= pct <= U32_MAX
    post: (1 <= __return__) & (__return__ <= 100) & ((__return__ == pct) | (pct < 1) | (pct > 100))
    """
    # crosshair: on specs_complete=True
    return min(max(pct, 1), 100)


def normalised_stop(hard: int, stop: int) -> int:
    """
    Return the stop threshold after upstream's ``if stop <= hard { stop = hard + 1 }`` (step 5).

    pre: 1 <= hard < U32_MAX
    pre: 0 <= stop <= U32_MAX
    post: (hard < __return__) & (__return__ <= U32_MAX) & ((__return__ == stop) | (stop <= hard))
    """
    # crosshair: on specs_complete=True
    return hard + 1 if stop <= hard else stop


def normalised_cold(soft: int, cold: int) -> int:
    """
    Return the cold-start fail-safe after upstream's ``if cold < soft { cold = soft }`` (step 6).

    pre: 1 <= soft <= U32_MAX
    pre: 0 <= cold <= U32_MAX
    post: (soft <= __return__) & (__return__ <= U32_MAX) & ((__return__ == cold) | (cold < soft))
    """
    # crosshair: on specs_complete=True
    return max(cold, soft)


def normalised_pacing(soft: int, pacing: int) -> int:
    """
    Return the pacing threshold: ``1`` for ``0``, then at most ``soft`` (step 7).

    pre: 1 <= soft <= U32_MAX
    pre: 0 <= pacing <= U32_MAX
    post: (1 <= __return__) & (__return__ <= soft)
    post: (__return__ == pacing) | (pacing == 0) & (__return__ == 1) | (pacing > soft)
    """
    # crosshair: on specs_complete=True
    return min(pacing or 1, soft)


def nonzero_or(value: int, default: int) -> int:
    """
    Return ``value``, or ``default`` in place of a zero (CFG-2 steps 8 to 12).

    pre: 0 <= value <= U64_MAX
    pre: 1 <= default <= U64_MAX
    post: (__return__ == value) & (value != 0) | (__return__ == default) & (value == 0)
    """
    # crosshair: on specs_complete=True
    return value or default


def normalise(options: Options) -> Config:
    """
    Return the configuration upstream's ``Options::validate`` makes of ``options`` (spec CFG-2).

    The rules run in upstream order; each later rule sees the earlier ones' results. Each
    option has its own rule, a function with its own contract (LEM-9), so the guarantees of
    CFG-4 are the conjunction of theirs. Raises as `check_options` does (spec CFG-3).

    post: 1 <= __return__.bp_soft_debt_units < __return__.bp_hard_debt_units
    post: __return__.bp_hard_debt_units < __return__.bp_stop_debt_units <= U32_MAX
    post: __return__.bp_cold_start_fail_safe_units >= __return__.bp_soft_debt_units
    post: 1 <= __return__.bp_pacing_soft_debt_units <= __return__.bp_soft_debt_units
    post: 1 <= __return__.bp_min_ratio_pct <= 100
    post: 1 <= __return__.bp_publish_guard_min_ratio_pct <= 100
    post: __return__.bp_flush_unit_bytes >= 1 and __return__.bp_floor_bps >= 1
    post: __return__.bp_warmup_min_samples >= 1 and __return__.bp_idle_reset_ms >= 1
    post: __return__.bp_max_delay_us >= 1
    post: satisfies_guarantees(__return__)
    raises: TypeError, ValueError
    """
    check_options(options)
    soft = normalised_soft(options.bp_soft_debt_units)
    hard = normalised_hard(soft, options.bp_hard_debt_units)
    stop = normalised_stop(hard, options.bp_stop_debt_units)
    return Config(
        enable_backpressure=options.enable_backpressure,
        enable_flush_pacing=options.enable_flush_pacing,
        bp_soft_debt_units=soft,
        bp_hard_debt_units=hard,
        bp_stop_debt_units=stop,
        bp_cold_start_fail_safe_units=normalised_cold(soft, options.bp_cold_start_fail_safe_units),
        bp_pacing_soft_debt_units=normalised_pacing(soft, options.bp_pacing_soft_debt_units),
        bp_flush_unit_bytes=nonzero_or(options.bp_flush_unit_bytes, DATA_FILE_SIZE),
        bp_min_ratio_pct=normalised_pct(options.bp_min_ratio_pct),
        bp_floor_bps=nonzero_or(options.bp_floor_bps, ZERO_FLOOR_BPS),
        bp_warmup_min_samples=nonzero_or(options.bp_warmup_min_samples, 4),
        bp_publish_guard_min_ratio_pct=normalised_pct(options.bp_publish_guard_min_ratio_pct),
        bp_idle_reset_ms=nonzero_or(options.bp_idle_reset_ms, 5_000),
        bp_max_delay_us=nonzero_or(options.bp_max_delay_us, 10_000),
        # spec EXT-1: the extended law's options, normalised after the seed's.
        ext_admission_timeline=options.ext_admission_timeline,
        ext_setpoint_units=extended.normalised_setpoint(soft, stop, options.ext_setpoint_units),
        ext_stop_wait_limit_ns=extended.normalised_stop_wait_limit(options.ext_stop_wait_limit_ns),
    )


def config_as_dict(config: Config) -> dict[str, bool | int]:
    """
    Return ``config`` as a mapping from option name to value, in upstream order.

    post: tuple(__return__) == OPTION_NAMES
    """
    return {name: getattr(config, name) for name in OPTION_NAMES}
