"""The lemmas the proofs of INV-2 to INV-6 and CFG-4 are composed of (spec "Proof structure").

Each lemma is a function that returns whether its statement holds for its arguments: a plain
Python statement about the model's own functions, with a PEP 316 contract (``post:
__return__``) under the domain the statement is made on (``pre:``). CrossHair checks these
contracts like any other (`flowpace.symbolic`). The statements that divide by a symbolic value
(LEM-1 to LEM-4, marked *nonlinear*) are beyond what CrossHair confirms over all paths; each is
also proven directly with Z3 over unbounded integers by ``flowpace._z3_lemmas``, whose encoding
of each model function is checked against the function itself on sampled inputs. Their domains
are written ``assumes:``, not ``pre:``: the functions they are about are, for CrossHair, exactly
their contracts (``specs_complete``), so CrossHair could not check them; Z3 does.

Composing them: the foreground delay is `delay_at` at the state's debt in milli-units. For a
debt ``a <= b``, LEM-1 gives ``debt_mu(a) <= debt_mu(b)``. In a throttled regime the delay is
``capped_delay(rate(write, target(ratio(debt_mu))), debt_mu)``: the ratio does not grow with
the debt (LEM-2), the target does not grow with the ratio (LEM-3, applied to each share the
target takes), the rate does not shrink as the target falls (LEM-4), and the capped delay does
not shrink as either of its inputs grows (LEM-5); so the throttled delay is non-decreasing in
the debt. LEM-6 then takes the regimes in order: a zero-delay regime gives 0, a throttled one
a delay in ``[0, max]`` that does not decrease, stop the maximum, and a larger debt never goes
back to an earlier regime. That is INV-5.
"""

from __future__ import annotations

from flowpace_reference.contracts import satisfies_guarantees  # noqa: F401  # read by the contracts
from flowpace_reference.measures import debt_milli_units
from flowpace_reference.transitions import (
    capped_delay,
    delay_at,
    share_of,
    throttle_ratio_pct,
)
from flowpace_reference.types import Config
from flowpace_reference.u64 import U64_MAX, rate_per_second  # noqa: F401  # U64_MAX: read by the contracts


def debt_mu_monotone(config: Config, debt: int, more_debt: int) -> bool:
    """
    Return whether the larger debt is at least as many milli-units (LEM-1, nonlinear).

    pre: config.bp_flush_unit_bytes >= 1
    pre: 0 <= debt <= more_debt <= U64_MAX
    post: __return__
    """
    return debt_milli_units(config, debt) <= debt_milli_units(config, more_debt)


def ratio_antitone(base_mu: int, debt_mu: int, more_mu: int, min_ratio_pct: int) -> bool:
    """
    Return whether the larger debt keeps no larger a share of the throughput (LEM-2, nonlinear).

    assumes: 0 <= base_mu <= U64_MAX
    assumes: 1 <= debt_mu <= more_mu <= U64_MAX
    assumes: 1 <= min_ratio_pct <= 100
    """
    return throttle_ratio_pct(base_mu, more_mu, min_ratio_pct) <= throttle_ratio_pct(
        base_mu, debt_mu, min_ratio_pct
    )


def share_monotone(bps: int, more_bps: int, pct: int, more_pct: int) -> bool:
    """
    Return whether a larger throughput or percentage gives no smaller a share (LEM-3, nonlinear).

    assumes: 0 <= bps <= more_bps <= U64_MAX
    assumes: 0 <= pct <= more_pct <= 100
    """
    return share_of(bps, pct) <= share_of(more_bps, more_pct)


def share_bounded(bps: int, pct: int) -> bool:
    """
    Return whether a share lies in ``[1, max(bps, 1)]``, `share_of`'s contract (LEM-3, nonlinear).

    assumes: 0 <= bps <= U64_MAX and 0 <= pct <= 100
    """
    return 1 <= share_of(bps, pct) <= max(bps, 1)


def rate_antitone(amount: int, micros: int, more_micros: int) -> bool:
    """
    Return whether the same amount over a longer time is no higher a rate (LEM-4, nonlinear).

    assumes: 0 <= amount <= U64_MAX
    assumes: 1 <= micros <= more_micros <= U64_MAX
    """
    return rate_per_second(amount, more_micros) <= rate_per_second(amount, micros)


def capped_delay_monotone(
    config: Config, raw_us: int, more_raw_us: int, debt_mu: int, more_mu: int
) -> bool:
    """
    Return whether a longer raw delay at a larger debt is capped no shorter (LEM-5).

    pre: satisfies_guarantees(config)
    pre: 0 <= raw_us <= more_raw_us <= U64_MAX
    pre: 0 <= debt_mu <= more_mu <= U64_MAX
    post: __return__
    """
    return capped_delay(config, raw_us, debt_mu) <= capped_delay(config, more_raw_us, more_mu)


def regime_delay_monotone(  # noqa: PLR0913, PLR0917  # the two debts and their delays
    config: Config,
    ready: bool,
    base_bps: int,
    write_bytes: int,
    debt_mu: int,
    more_mu: int,
    throttled_us: int,
    more_throttled_us: int,
) -> bool:
    """
    Return whether a larger debt's regime gives no shorter a delay (LEM-6).

    ``ready`` and ``base_bps`` are the state's, fixed (INV-5 fixes every field but the debt).
    ``throttled_us`` and ``more_throttled_us`` stand for FC-7's delays at the two debts: in
    ``[0, max]`` and in order, as LEM-7 (LEM-2 to LEM-5 composed) makes them.

    pre: satisfies_guarantees(config)
    pre: 0 <= write_bytes <= U64_MAX and 1 <= base_bps <= U64_MAX
    pre: 0 <= debt_mu <= more_mu <= U64_MAX
    pre: 0 <= throttled_us <= more_throttled_us <= config.bp_max_delay_us
    post: __return__
    """
    low = delay_at(config, ready, base_bps, write_bytes, debt_mu, throttled_us)
    high = delay_at(config, ready, base_bps, write_bytes, more_mu, more_throttled_us)
    return low <= high
