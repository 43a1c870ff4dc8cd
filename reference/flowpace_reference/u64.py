"""Unsigned 64-bit arithmetic as the seed performs it (spec AR-1).

The seed computes in ``u64`` and widens products to ``u128`` before dividing; results that
could exceed ``u64::MAX`` are clamped, never wrapped. Python integers are unbounded, so every
clamp is written out here, once, and nowhere else.
"""

from __future__ import annotations

from typing import Final

U32_MAX: Final = 2**32 - 1
"""The largest ``u32``: the upper bound of the seed's unit and percentage options."""

U64_MAX: Final = 2**64 - 1
"""The largest ``u64``: the upper bound of every byte count, rate and counter."""

NANOS_PER_MICRO: Final = 1_000
NANOS_PER_MILLI: Final = 1_000_000
MICROS_PER_SECOND: Final = 1_000_000


def clamp_u64(value: int) -> int:
    """
    Return ``value`` clamped to ``u64::MAX`` (Rust's ``.min(u64::MAX as u128) as u64``).

    pre: value >= 0
    post: 0 <= __return__ <= U64_MAX
    post: __return__ == value or __return__ == U64_MAX
    post: (__return__ == value) & (value <= U64_MAX) | (__return__ == U64_MAX) & (value > U64_MAX)
    """
    # crosshair: on specs_complete=True
    return min(value, U64_MAX)


def saturating_mul(left: int, right: int) -> int:
    """
    Return ``left * right``, saturated at ``u64::MAX``.

    pre: 0 <= left <= U64_MAX
    pre: 0 <= right <= U64_MAX
    post: __return__ == min(left * right, U64_MAX)
    """
    # crosshair: on specs_complete=True
    return clamp_u64(left * right)


def saturating_sub(left: int, right: int) -> int:
    """
    Return ``left - right``, saturated at zero.

    pre: 0 <= left <= U64_MAX
    pre: 0 <= right <= U64_MAX
    post: 0 <= __return__ <= left
    post: (__return__ == left - right) & (left >= right) | (__return__ == 0) & (left < right)
    """
    # crosshair: on specs_complete=True
    return max(left - right, 0)


def duration_micros(duration_ns: int) -> int:
    """
    Return a duration's whole microseconds, clamped to ``u64::MAX`` (``as_micros().min(..)``).

    pre: duration_ns >= 0
    post: 0 <= __return__ <= U64_MAX
    post: __return__ == min(duration_ns // 1000, U64_MAX)
    """
    # crosshair: on specs_complete=True
    return clamp_u64(duration_ns // NANOS_PER_MICRO)


def rate_per_second(amount: int, micros: int) -> int:
    """
    Return ``amount`` per second over ``micros`` microseconds, clamped to ``u64::MAX``.

    The seed computes ``amount * 1_000_000 / micros`` in ``u128`` and truncates.

    pre: 0 <= amount <= U64_MAX
    pre: 1 <= micros <= U64_MAX
    post: (0 <= __return__) & (__return__ <= U64_MAX)
    """
    # crosshair: on specs_complete=True
    # (Callers' proofs take this contract for the rate; its monotonicity is LEM-4.)
    return clamp_u64(amount * MICROS_PER_SECOND // micros)
