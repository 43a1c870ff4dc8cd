"""Boundaries of the model that random examples rarely hit exactly (spec FC-6, FC-7, AR-5).

A mutation run of the model (README, "Mutation testing") left these boundaries unpinned: moving
the hard threshold's comparison by one, treating a one-byte debt as none, or raising the
throughput floor of FC-7 from 1 to 2 bytes per second changed no other test's outcome.
"""

from __future__ import annotations

import dataclasses

import pytest

from flowpace_reference import transitions as model
from flowpace_reference.config import normalise
from flowpace_reference.types import Config, ControllerState, ForegroundRegime, Options

UNIT = 1_000
"""Bytes per flush unit here: a debt of ``n * UNIT`` bytes is exactly ``n`` units."""


def warm_config(**overrides: int) -> Config:
    """Return a configuration with backpressure on, warm after one sample, and room to delay."""
    values = {
        "bp_flush_unit_bytes": UNIT,
        "bp_soft_debt_units": 2,
        "bp_hard_debt_units": 4,
        "bp_stop_debt_units": 8,
        "bp_warmup_min_samples": 1,
        "bp_max_delay_us": 100_000_000,
        **overrides,
    }
    return normalise(Options(enable_backpressure=True, **values))  # type: ignore[arg-type]  # keywords of Options by name


def warm_state(config: Config, *, debt_bytes: int, io_bps: int) -> ControllerState:
    """Return a warm controller (one sample of ``io_bps``) owing ``debt_bytes``."""
    start = model.new_controller(config, 0)
    return dataclasses.replace(
        start, debt_bytes=debt_bytes, io_bps_ewma=io_bps, io_sample_count=1, idle_since=None
    )


def test_fc6_fc7_a_debt_of_exactly_hard_is_in_the_hard_zone_and_doubles_the_delay() -> None:
    # spec FC-6 rule 9 and FC-7: "at or above hard". The same write at the same debt, with the
    # hard threshold one unit higher, is in the soft zone: the ratio depends on soft and the
    # debt only, so the hard zone's delay is exactly twice the soft zone's.
    at_hard = warm_config(bp_hard_debt_units=4)
    below_hard = warm_config(bp_hard_debt_units=5)
    debt = 4 * UNIT
    write = 10_000
    hard = model.before_foreground_write(
        at_hard, warm_state(at_hard, debt_bytes=debt, io_bps=1_000_000), write
    )
    soft = model.before_foreground_write(
        below_hard, warm_state(below_hard, debt_bytes=debt, io_bps=1_000_000), write
    )
    assert (hard.regime, soft.regime) == (ForegroundRegime.HARD_ZONE, ForegroundRegime.SOFT_ZONE)
    assert soft.delay_us > 0
    assert hard.delay_us == 2 * soft.delay_us


@pytest.mark.parametrize("warm", [True, False])
def test_fc6_a_one_byte_debt_is_a_debt(warm: bool) -> None:
    # spec FC-6 rule 3 applies to a debt of 0 only; one byte is below every threshold instead.
    config = warm_config()
    state = warm_state(config, debt_bytes=1, io_bps=1_000_000)
    if not warm:
        state = dataclasses.replace(state, io_sample_count=0, io_bps_ewma=0)
    regime = model.foreground_regime(config, state, 100)
    expected = ForegroundRegime.STEADY_BELOW_SOFT if warm else ForegroundRegime.COLD_BELOW_FAIL_SAFE
    assert regime is expected


def test_fc7_ar5_the_target_throughput_never_drops_below_one_byte_per_second() -> None:
    # spec FC-7: `max(..., 1)` after the ratio and again after the publish guard (AR-5). On a
    # disk measured at 1 B/s, in the soft zone, the ratio and the guard would take the target
    # to 0; floored at 1 B/s, a 1-byte write waits exactly one second.
    config = warm_config()
    state = warm_state(config, debt_bytes=3 * UNIT, io_bps=1)
    decision = model.before_foreground_write(config, state, 1)
    assert decision.regime is ForegroundRegime.SOFT_ZONE
    assert decision.delay_us == 1_000_000
