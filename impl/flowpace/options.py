"""The controller's options, checked when built and normalised as upstream does (spec CFG-1..4).

`FlowOptions` holds the 14 seed options and the extended law's three (spec EXT-1) as the user
writes them, with upstream's defaults. Building one checks every value (spec CFG-3): a flag must be
a `bool`, a number an `int` that is not a `bool`, within its ``u32`` or ``u64`` field; the soft and
hard thresholds must not normalise to ``u32::MAX`` (upstream's ``soft + 1`` or ``hard + 1`` would
overflow, DIV-5). `normalised` returns the configuration the controller runs with, by the rules of
upstream's ``Options::validate`` (spec CFG-2).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from flowpace._ext_rules import normalised_setpoint
from flowpace._rules import exact_int, shown
from flowpace_reference.types import Config
from flowpace_reference.u64 import U32_MAX, U64_MAX

_FLAGS: Final = frozenset({"enable_backpressure", "enable_flush_pacing", "ext_admission_timeline"})
"""The options that are booleans."""

_U64_FIELDS: Final = frozenset(
    {
        "bp_flush_unit_bytes",
        "bp_floor_bps",
        "bp_idle_reset_ms",
        "bp_max_delay_us",
        "ext_stop_wait_limit_ns",
    }
)
"""The numeric options upstream holds in a ``u64``; every other number is a ``u32``."""

_DATA_FILE_SIZE: Final = 64 << 20
"""Upstream's data file size: the flush unit that replaces a zero (spec CFG-2)."""

_ZERO_FLOOR_BPS: Final = 8 << 20
"""The floor that replaces a zero floor: 8 MiB/s, half the default (spec CFG-2)."""

_DEFAULT_WARMUP: Final = 4
_DEFAULT_IDLE_RESET_MS: Final = 5_000
_DEFAULT_MAX_DELAY_US: Final = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowOptions:
    """
    The flow controller's options, before normalisation (spec CFG-1); upstream's defaults.

    Keyword-only. Construction raises TypeError for an unknown option or a value of the wrong
    type, and ValueError, naming the option, for a value out of its range (spec CFG-3).

    Options, with their defaults:

    ``enable_backpressure`` (default False)
        Delay foreground writes when the debt grows.
    ``enable_flush_pacing`` (default False)
        Space background flushes at the measured disk rate.
    ``bp_soft_debt_units`` (default 8)
        Debt, in flush units, above which steady-state foreground writes are delayed (u32).
    ``bp_hard_debt_units`` (default 24)
        Debt, in flush units, at or above which the foreground delay doubles (u32).
    ``bp_stop_debt_units`` (default 48)
        Debt, in flush units, at or above which the foreground delay is the maximum (u32).
    ``bp_cold_start_fail_safe_units`` (default 8)
        Debt, in flush units, at or above which cold-start writes are delayed (u32).
    ``bp_pacing_soft_debt_units`` (default 2)
        Debt, in flush units, above which flush pacing is bypassed (u32).
    ``bp_flush_unit_bytes`` (default 64 MiB)
        Bytes in one flush unit; 0 means upstream's data file size, 64 MiB (u64).
    ``bp_min_ratio_pct`` (default 5)
        Lowest share of the base throughput a delayed write is paced at, percent (u32).
    ``bp_floor_bps`` (default 16 MiB/s)
        Fail-safe throughput, bytes per second, before I/O samples are ready (u64).
    ``bp_warmup_min_samples`` (default 4)
        I/O samples needed before steady-state backpressure and pacing apply (u32).
    ``bp_publish_guard_min_ratio_pct`` (default 50)
        Lowest end-to-end/I/O throughput share the publish guard applies, percent (u32).
    ``bp_idle_reset_ms`` (default 5000)
        Milliseconds of zero debt after which throughput history is forgotten (u64).
    ``bp_max_delay_us`` (default 10000)
        Longest single foreground delay or pacing sleep, microseconds (u64).
    ``ext_admission_timeline`` (default False)
        Decide foreground writes by the extended law (spec/extension.md) instead of the seed's.
    ``ext_setpoint_units`` (default 0)
        Debt, in flush units, at which the extended law admits writes at the disk rate; 0 for
        soft + (stop - soft) / 8, at least 1 (u32).
    ``ext_stop_wait_limit_ns`` (default 1000000000)
        Longest time a write waits at stop under the extended law, nanoseconds (u64).

    >>> FlowOptions(enable_backpressure=True, bp_soft_debt_units=0).normalised().bp_soft_debt_units
    1
    """

    enable_backpressure: bool = False
    enable_flush_pacing: bool = False
    bp_soft_debt_units: int = 8
    bp_hard_debt_units: int = 24
    bp_stop_debt_units: int = 48
    bp_cold_start_fail_safe_units: int = 8
    bp_pacing_soft_debt_units: int = 2
    bp_flush_unit_bytes: int = _DATA_FILE_SIZE
    bp_min_ratio_pct: int = 5
    bp_floor_bps: int = 16 << 20
    bp_warmup_min_samples: int = _DEFAULT_WARMUP
    bp_publish_guard_min_ratio_pct: int = 50
    bp_idle_reset_ms: int = _DEFAULT_IDLE_RESET_MS
    bp_max_delay_us: int = _DEFAULT_MAX_DELAY_US
    ext_admission_timeline: bool = False  # spec EXT-1: the extended law, off by default
    ext_setpoint_units: int = 0
    ext_stop_wait_limit_ns: int = 1_000_000_000

    def __post_init__(self) -> None:
        """Check every option (spec CFG-3); raise TypeError or ValueError naming a bad one."""
        for field in fields(self):
            # spec HARD-2: each number is converted to a plain int once; that value is checked
            # and kept, so an int subclass cannot show one value to the check and another later.
            value = _checked_option(field.name, getattr(self, field.name))
            object.__setattr__(self, field.name, value)  # frozen: the documented way to set
        soft = _normalised_soft(self.bp_soft_debt_units)
        if soft == U32_MAX:
            # spec CFG-3, DIV-5: upstream's `hard = soft + 1` would overflow a u32.
            raise ValueError(
                f"option bp_soft_debt_units must be below {U32_MAX}, got {self.bp_soft_debt_units}"
            )
        if _normalised_hard(soft, self.bp_hard_debt_units) == U32_MAX:
            # spec CFG-3, DIV-5: upstream's `stop = hard + 1` would overflow a u32.
            raise ValueError(
                f"option bp_hard_debt_units must normalise below {U32_MAX}, "
                f"got {self.bp_hard_debt_units} (normalised soft {soft})"
            )

    def normalised(self) -> Config:
        """Return the configuration upstream's ``Options::validate`` makes of these options."""
        # spec CFG-2: upstream's rules in upstream's order; later rules see earlier results.
        soft = _normalised_soft(self.bp_soft_debt_units)
        hard = _normalised_hard(soft, self.bp_hard_debt_units)
        stop = self.bp_stop_debt_units if self.bp_stop_debt_units > hard else hard + 1
        pacing = self.bp_pacing_soft_debt_units if self.bp_pacing_soft_debt_units != 0 else 1
        return Config(
            enable_backpressure=self.enable_backpressure,
            enable_flush_pacing=self.enable_flush_pacing,
            bp_soft_debt_units=soft,
            bp_hard_debt_units=hard,
            bp_stop_debt_units=stop,
            bp_cold_start_fail_safe_units=max(self.bp_cold_start_fail_safe_units, soft),
            bp_pacing_soft_debt_units=min(pacing, soft),
            bp_flush_unit_bytes=self.bp_flush_unit_bytes or _DATA_FILE_SIZE,
            bp_min_ratio_pct=_percent(self.bp_min_ratio_pct),
            bp_floor_bps=self.bp_floor_bps or _ZERO_FLOOR_BPS,
            bp_warmup_min_samples=self.bp_warmup_min_samples or _DEFAULT_WARMUP,
            bp_publish_guard_min_ratio_pct=_percent(self.bp_publish_guard_min_ratio_pct),
            bp_idle_reset_ms=self.bp_idle_reset_ms or _DEFAULT_IDLE_RESET_MS,
            bp_max_delay_us=self.bp_max_delay_us or _DEFAULT_MAX_DELAY_US,
            # spec EXT-1: the extended law's options, after the seed's rules.
            ext_admission_timeline=self.ext_admission_timeline,
            ext_setpoint_units=normalised_setpoint(soft, stop, self.ext_setpoint_units),
            ext_stop_wait_limit_ns=max(self.ext_stop_wait_limit_ns, 1),
        )


def _checked_option(name: str, value: object) -> object:
    """
    Return ``value`` as ``name`` holds it (a bool, or a plain int in range); else raise.

    TypeError or ValueError, naming the option (spec CFG-3, HARD-2).
    """
    if name in _FLAGS:
        if not isinstance(value, bool):  # bool cannot be subclassed: True and False only
            raise TypeError(f"option {name} must be a bool, got {shown(value)}")
        return value
    number = exact_int(value, f"option {name}")
    limit, width = (U64_MAX, "u64") if name in _U64_FIELDS else (U32_MAX, "u32")
    if not 0 <= number <= limit:
        raise ValueError(f"option {name} must be in [0, {limit}] ({width}), got {shown(number)}")
    return number


def _normalised_soft(soft: int) -> int:
    """Return the soft threshold after upstream's ``if soft == 0 { soft = 1 }``."""
    return soft if soft != 0 else 1


def _normalised_hard(soft: int, hard: int) -> int:
    """Return the hard threshold after upstream's ``if hard <= soft { hard = soft + 1 }``."""
    return hard if hard > soft else soft + 1


def _percent(value: int) -> int:
    """Return a percentage clamped to [1, 100], as upstream's ``clamp(1, 100)``."""
    return min(max(value, 1), 100)
