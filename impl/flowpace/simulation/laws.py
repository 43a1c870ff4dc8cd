"""Foreground laws the simulator compares with the seed's: pure functions over integers.

The extended law is the model's (`flowpace_reference.extended`, spec EXT-1 to EXT-9). The
peer law lives here, as a frozen configuration, a frozen state and functions from (state,
controller state, arguments) to a decision and the next state. It is not part of the
controller: it reads the `ControllerState` a `FlowController` (or the model) keeps, so the
debt, the disk estimate and the cold-start bookkeeping stay the seed's (spec ST-1, AR-4, AR-7).

**A RocksDB-style token bucket** (``--law token-bucket``): one shared byte budget refilled every
millisecond at a delayed write rate that is multiplied by 0.6, 0.8 or 1.25 as the debt trend
goes, capped at the disk estimate; at or above stop writers block until the debt is below it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final

from flowpace_reference.types import Config

NANOS_PER_SECOND: Final = 1_000_000_000
NANOS_PER_MICRO: Final = 1_000
MILLI: Final = 1_000
"""Milli-units in a flush unit (spec AR-2)."""


def debt_mu(debt_bytes: int, unit_bytes: int) -> int:
    """Return the debt in milli-units, at least 1 for any non-zero debt (spec AR-2)."""
    return 0 if debt_bytes == 0 else max(debt_bytes * MILLI // unit_bytes, 1)


def ceil_div(a: int, b: int) -> int:
    """Return ``a / b`` rounded up, for ``a >= 0`` and ``b >= 1``."""
    return -(-a // b)


class Verdict(enum.Enum):
    """What a write is told to do."""

    ADMIT = "admit"
    """Write after ``wait_ns`` (0: at once)."""
    BLOCK = "block"
    """Wait until the debt is below ``below_bytes`` (then ask again) or until ``deadline_ns``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """A law's answer to a write: admit after a wait, or block until the debt falls."""

    verdict: Verdict
    wait_ns: int = 0
    """For ADMIT: how long to wait before writing."""
    below_bytes: int = 0
    """For BLOCK: the write may ask again once the debt is below this many bytes."""
    deadline_ns: int | None = None
    """For BLOCK: the write gives up waiting at this time (None: no bound)."""


ADMIT_NOW: Final = Decision(Verdict.ADMIT)


# --- a RocksDB-style token bucket ------------------------------------------------------------

REFILL_NS: Final = 1_000_000
"""RocksDB's refill period and shortest delay, 1 ms (``kMicrosPerRefill``)."""
MIN_RATE_BPS: Final = 16 << 10
"""RocksDB's lowest delayed write rate, 16 KiB/s."""


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """The token bucket's configuration, from the controller's thresholds."""

    backpressure: bool
    unit_bytes: int
    soft_mu: int
    stop_mu: int
    near_stop_mu: int
    """Debt above which the rate is cut to 60 % (RocksDB: soft + 3/4 of the way to hard)."""


def bucket_config(config: Config) -> BucketConfig:
    """Return the token bucket's configuration for a normalised controller ``config``."""
    soft, stop = config.bp_soft_debt_units * MILLI, config.bp_stop_debt_units * MILLI
    return BucketConfig(
        backpressure=config.enable_backpressure,
        unit_bytes=config.bp_flush_unit_bytes,
        soft_mu=soft,
        stop_mu=stop,
        near_stop_mu=soft + (stop - soft) * 3 // 4,
    )


@dataclass(frozen=True, slots=True)
class BucketState:
    """The shared bucket: whether writes are delayed, at what rate, and the byte credit."""

    delayed: bool = False
    rate_bps: int = 0
    credit_bytes: int = 0
    next_refill_ns: int | None = None
    last_debt_bytes: int = 0
    busy_until_ns: int = 0
    """When the last delayed write's sleep ends: writes that come earlier queue behind it
    (in RocksDB they join the write group its leader holds while it sleeps)."""


def bucket_recalculate(
    cfg: BucketConfig, bucket: BucketState, debt_bytes: int, disk_bps: int
) -> BucketState:
    """
    Return the bucket after the debt changed (RocksDB's ``SetupDelay`` on a new superversion).

    Above soft the rate starts at the disk estimate, then is multiplied by 0.6 near stop, 0.8
    when the debt did not fall, 1.25 when it fell, capped at the disk estimate, never below
    16 KiB/s; at or below soft the delay ends and the rate earns RocksDB's 1.4 reward.
    """
    cap = max(disk_bps, MIN_RATE_BPS)
    debt = debt_mu(debt_bytes, cfg.unit_bytes)
    if debt <= cfg.soft_mu:
        rate = min(bucket.rate_bps * 14 // 10, cap) if bucket.delayed else bucket.rate_bps
        return replace(
            bucket, delayed=False, rate_bps=rate, last_debt_bytes=debt_bytes, busy_until_ns=0
        )
    if not bucket.delayed:
        rate = cap
    elif debt > cfg.near_stop_mu:
        rate = bucket.rate_bps * 6 // 10
    elif debt_bytes >= bucket.last_debt_bytes:
        rate = bucket.rate_bps * 8 // 10
    else:
        rate = min(bucket.rate_bps * 125 // 100, cap)
    return replace(
        bucket, delayed=True, rate_bps=max(rate, MIN_RATE_BPS), last_debt_bytes=debt_bytes
    )


def bucket_stop(cfg: BucketConfig, debt_bytes: int) -> Decision | None:
    """Return the block of a stopped write (debt at or above stop, no bound), else None."""
    if not cfg.backpressure or debt_mu(debt_bytes, cfg.unit_bytes) < cfg.stop_mu:
        return None
    return Decision(Verdict.BLOCK, below_bytes=ceil_div(cfg.stop_mu * cfg.unit_bytes, MILLI))


def bucket_admit(
    cfg: BucketConfig, bucket: BucketState, debt_bytes: int, write_bytes: int, now_ns: int
) -> tuple[Decision, BucketState]:
    """
    Return the decision on a write and the bucket after it (RocksDB's ``GetDelay``).

    At or above stop: block until the debt is below stop, with no bound. Not delayed: admit,
    after the sleep of the last delayed write if it is not over (the write group's queue).
    Otherwise take the write from the credit; refill at most once a millisecond; a shortfall
    pushes the next refill back by the time the rate needs to cover it, and the write waits
    until then, at least 1 ms.
    """
    if not cfg.backpressure or write_bytes == 0:
        return ADMIT_NOW, bucket
    stop = bucket_stop(cfg, debt_bytes)
    if stop is not None:
        return stop, bucket
    if not bucket.delayed:
        if now_ns < bucket.busy_until_ns:
            return Decision(Verdict.ADMIT, wait_ns=bucket.busy_until_ns - now_ns), bucket
        return ADMIT_NOW, bucket
    credit = bucket.credit_bytes
    if credit >= write_bytes:
        return ADMIT_NOW, replace(bucket, credit_bytes=credit - write_bytes)
    rate = bucket.rate_bps
    next_refill = now_ns if bucket.next_refill_ns is None else bucket.next_refill_ns
    if next_refill <= now_ns:
        elapsed = now_ns - next_refill + REFILL_NS
        credit += elapsed * rate // NANOS_PER_SECOND
        next_refill = now_ns + REFILL_NS
        if credit >= write_bytes:
            return ADMIT_NOW, replace(
                bucket, credit_bytes=credit - write_bytes, next_refill_ns=next_refill
            )
    shortfall = write_bytes - credit
    next_refill += ceil_div(shortfall * NANOS_PER_SECOND, rate)
    wait = max(next_refill - now_ns, REFILL_NS)
    busy = max(bucket.busy_until_ns, now_ns + wait)
    return Decision(Verdict.ADMIT, wait_ns=wait), replace(
        bucket, credit_bytes=0, next_refill_ns=next_refill, busy_until_ns=busy
    )
