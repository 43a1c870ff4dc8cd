"""Properties of the reference model, each citing the requirement it checks (spec CFG to INV).

Expected values are computed here from the spec's text (restated as small independent
functions prefixed ``spec_``), never by calling the function under test. Where a property has
been shown to catch a planted bug, the mutation is named in a comment ("Fails when ..."): each
was applied to a copy of the model and the property failed under the dev profile (unless the
comment says otherwise), then the copy was discarded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from flowpace_reference import measures
from flowpace_reference import transitions as model
from flowpace_reference.config import config_as_dict, normalise, options_from_mapping
from flowpace_reference.types import (
    Config,
    ControllerState,
    DebtOverflowError,
    FlushDecision,
    ForegroundRegime,
    Metric,
    Options,
    Outcome,
    TaskState,
    TaskStateError,
)
from flowpace_reference.u64 import U32_MAX, U64_MAX, duration_micros, rate_per_second
from strategies import (
    DEFAULT_NOW_NS,
    byte_counts,
    configs,
    elapsed_durations,
    outcomes,
    rates,
    raw_options,
    states,
    tasks,
    threshold_debts,
    times,
    u64s,
)

NOW = DEFAULT_NOW_NS
"""The time operations run at unless a property draws one."""

FLAG_NAMES = ("enable_backpressure", "enable_flush_pacing")
U32_NAMES = (
    "bp_soft_debt_units",
    "bp_hard_debt_units",
    "bp_stop_debt_units",
    "bp_cold_start_fail_safe_units",
    "bp_pacing_soft_debt_units",
    "bp_min_ratio_pct",
    "bp_warmup_min_samples",
    "bp_publish_guard_min_ratio_pct",
)
U64_NAMES = ("bp_flush_unit_bytes", "bp_floor_bps", "bp_idle_reset_ms", "bp_max_delay_us")
"""The option names by type, as the table of spec CFG-1 lists them."""

UPSTREAM_DEFAULTS: dict[str, bool | int] = {
    "enable_backpressure": False,
    "enable_flush_pacing": False,
    "bp_soft_debt_units": 8,
    "bp_hard_debt_units": 24,
    "bp_stop_debt_units": 48,
    "bp_cold_start_fail_safe_units": 8,
    "bp_pacing_soft_debt_units": 2,
    "bp_flush_unit_bytes": 67_108_864,
    "bp_min_ratio_pct": 5,
    "bp_floor_bps": 16_777_216,
    "bp_warmup_min_samples": 4,
    "bp_publish_guard_min_ratio_pct": 50,
    "bp_idle_reset_ms": 5_000,
    "bp_max_delay_us": 10_000,
}
"""The defaults of spec CFG-1 (upstream ``Options::new``)."""


# --- the spec, restated independently --------------------------------------------------------


def spec_validate(options: Options) -> dict[str, bool | int]:
    """Return the options after upstream's ``validate``, rule by rule in its order (CFG-2)."""
    o = {name: getattr(options, name) for name in UPSTREAM_DEFAULTS}
    o["bp_min_ratio_pct"] = min(max(o["bp_min_ratio_pct"], 1), 100)
    o["bp_publish_guard_min_ratio_pct"] = min(max(o["bp_publish_guard_min_ratio_pct"], 1), 100)
    if o["bp_soft_debt_units"] == 0:
        o["bp_soft_debt_units"] = 1
    if o["bp_hard_debt_units"] <= o["bp_soft_debt_units"]:
        o["bp_hard_debt_units"] = o["bp_soft_debt_units"] + 1
    if o["bp_stop_debt_units"] <= o["bp_hard_debt_units"]:
        o["bp_stop_debt_units"] = o["bp_hard_debt_units"] + 1
    soft = o["bp_soft_debt_units"]
    o["bp_cold_start_fail_safe_units"] = max(o["bp_cold_start_fail_safe_units"], soft)
    if o["bp_pacing_soft_debt_units"] == 0:
        o["bp_pacing_soft_debt_units"] = 1
    o["bp_pacing_soft_debt_units"] = min(o["bp_pacing_soft_debt_units"], soft)
    for name, replacement in (
        ("bp_flush_unit_bytes", 64 << 20),
        ("bp_floor_bps", 8 << 20),
        ("bp_warmup_min_samples", 4),
        ("bp_idle_reset_ms", 5_000),
        ("bp_max_delay_us", 10_000),
    ):
        if o[name] == 0:
            o[name] = replacement
    return o


def spec_debt_mu(config: Config, debt: int) -> int:
    """Return the debt in milli-units (spec AR-2)."""
    return 0 if debt == 0 else min(max(debt * 1_000 // config.bp_flush_unit_bytes, 1), U64_MAX)


def spec_rate(nbytes: int, micros: int) -> int:
    """Return ``nbytes`` over ``micros`` µs in bytes per second, clamped (spec AR-1)."""
    return min(nbytes * 1_000_000 // micros, U64_MAX)


def spec_cold_start(config: Config, state: ControllerState) -> bool:
    """Return whether the controller is in cold start (spec AR-4)."""
    return state.io_sample_count < config.bp_warmup_min_samples


def least_debt_reaching(config: Config, threshold_mu: int) -> int:
    """Return the least debt, in bytes, whose milli-units reach ``threshold_mu`` (AR-2)."""
    return max(-(-(threshold_mu * config.bp_flush_unit_bytes) // 1_000), 1)


def spec_idle_expired(config: Config, state: ControllerState, now_ns: int) -> bool:
    """Return whether an enqueue at ``now_ns`` resets the throughput history (spec FC-1)."""
    return (
        state.idle_since is not None
        and now_ns - state.idle_since >= config.bp_idle_reset_ms * 1_000_000
    )


# --- CFG: options and normalisation ----------------------------------------------------------


@given(raw_options())
def test_cfg2_normalise_applies_upstream_rules_in_order(options: Options) -> None:
    """Spec CFG-2: normalise is upstream's validate, flags copied unchanged."""
    assert config_as_dict(normalise(options)) == spec_validate(options)


@given(raw_options())
def test_cfg4_normalised_config_guarantees(options: Options) -> None:
    """Spec CFG-4: every normalised configuration satisfies the guarantees."""
    c = normalise(options)
    assert 1 <= c.bp_soft_debt_units < c.bp_hard_debt_units < c.bp_stop_debt_units <= U32_MAX
    assert c.bp_cold_start_fail_safe_units >= c.bp_soft_debt_units
    assert 1 <= c.bp_pacing_soft_debt_units <= c.bp_soft_debt_units
    assert c.bp_flush_unit_bytes >= 1
    assert c.bp_floor_bps >= 1
    assert c.bp_warmup_min_samples >= 1
    assert c.bp_idle_reset_ms >= 1
    assert c.bp_max_delay_us >= 1
    assert 1 <= c.bp_min_ratio_pct <= 100
    assert 1 <= c.bp_publish_guard_min_ratio_pct <= 100
    assert all(0 <= getattr(c, name) <= U32_MAX for name in U32_NAMES)
    assert all(0 <= getattr(c, name) <= U64_MAX for name in U64_NAMES)


@given(raw_options())
def test_cfg2_normalise_is_idempotent(options: Options) -> None:
    """Spec CFG-2, CFG-4: a normalised configuration normalises to itself."""
    config = normalise(options)
    assert normalise(options_from_mapping(config_as_dict(config))) == config


@given(st.dictionaries(st.sampled_from(sorted(UPSTREAM_DEFAULTS)), st.integers(1, 7)))
def test_cfg1_missing_options_take_upstream_defaults(given_values: dict[str, int]) -> None:
    """Spec CFG-1: options_from_mapping keeps what is named and defaults the rest."""
    values: dict[str, bool | int] = {
        name: (value % 2 == 1 if name in FLAG_NAMES else value)
        for name, value in given_values.items()
    }
    options = options_from_mapping(values)
    for name, default in UPSTREAM_DEFAULTS.items():
        assert getattr(options, name) == values.get(name, default)


NUMBER_NAMES = st.sampled_from((*U32_NAMES, *U64_NAMES))


@given(NUMBER_NAMES, st.booleans())
def test_cfg3_bool_as_number_is_a_type_error(name: str, value: bool) -> None:
    """Spec CFG-3: a bool is not a number option, although Python's bool is an int."""
    with pytest.raises(TypeError, match=name):
        normalise(options_from_mapping({name: value}))


@given(
    NUMBER_NAMES,
    st.one_of(st.text(max_size=4), st.floats(allow_nan=False), st.none(), st.just(b"8")),
)
def test_cfg3_non_int_number_is_a_type_error(name: str, value: object) -> None:
    """Spec CFG-3: a number option that is a str, float, None or bytes raises TypeError."""
    with pytest.raises(TypeError, match=name):
        normalise(options_from_mapping({name: value}))


@given(st.sampled_from(FLAG_NAMES), st.one_of(st.integers(0, 1), st.text(max_size=4), st.none()))
def test_cfg3_non_bool_flag_is_a_type_error(name: str, value: object) -> None:
    """Spec CFG-3: a flag must be a bool; 0, 1, "yes" or None raise TypeError."""
    with pytest.raises(TypeError, match=name):
        normalise(options_from_mapping({name: value}))


@given(st.from_regex(r"\A[a-z_]{1,20}\Z").filter(lambda name: name not in UPSTREAM_DEFAULTS))
def test_cfg3_unknown_option_is_a_type_error(name: str) -> None:
    """Spec CFG-3: a name that is not one of the 14 options raises TypeError naming it."""
    with pytest.raises(TypeError, match=name):
        options_from_mapping({name: 1})


@given(NUMBER_NAMES, st.integers(max_value=-1))
def test_cfg3_negative_number_is_a_value_error(name: str, value: int) -> None:
    """Spec CFG-3: a negative number option raises ValueError naming the option."""
    with pytest.raises(ValueError, match=name):
        normalise(options_from_mapping({name: value}))


@given(st.data())
def test_cfg3_number_beyond_its_type_is_a_value_error(data: st.DataObject) -> None:
    """Spec CFG-3: a u32 option above U32_MAX or a u64 option above U64_MAX raises."""
    name = data.draw(NUMBER_NAMES)
    limit = U32_MAX if name in U32_NAMES else U64_MAX
    value = data.draw(st.one_of(st.just(limit + 1), st.integers(limit + 1, 2 * limit + 2)))
    with pytest.raises(ValueError, match=name):
        normalise(options_from_mapping({name: value}))


@given(NUMBER_NAMES)
def test_cfg3_each_type_limit_is_accepted_where_it_cannot_overflow(name: str) -> None:
    """Spec CFG-3: the largest value of a type is accepted, save the two overflowing ones."""
    limit = U32_MAX if name in U32_NAMES else U64_MAX
    assume(name not in {"bp_soft_debt_units", "bp_hard_debt_units"})  # DIV-5 rejects these
    options = options_from_mapping({name: limit})
    assert config_as_dict(normalise(options)) == spec_validate(options)


# --- ST: construction and the task's initial state -------------------------------------------


@given(configs(), times())
def test_st1_new_controller_is_empty_and_idle(config: Config, t0: int) -> None:
    """Spec ST-1: a new controller has no debt, no history, the floor, and is idle from t0."""
    state = model.new_controller(config, t0)
    assert state == ControllerState(
        debt_bytes=0,
        io_bps_ewma=0,
        e2e_bps_ewma=0,
        io_sample_count=0,
        adaptive_floor_bps=config.bp_floor_bps,
        teardown_bypass_scopes=0,
        arena_starving_scopes=0,
        idle_since=t0,
        next_flush_at=None,
    )


# --- AR: arithmetic and derived quantities ---------------------------------------------------


@given(u64s(), st.integers(1, U64_MAX), st.integers(0, 2**80))
def test_ar1_clamps_never_wrap(nbytes: int, micros: int, duration_ns: int) -> None:
    """Spec AR-1: rates and durations clamp at U64_MAX instead of wrapping."""
    assert rate_per_second(nbytes, micros) == spec_rate(nbytes, micros)
    assert duration_micros(duration_ns) == min(duration_ns // 1_000, U64_MAX)


@given(st.data())
def test_ar2_debt_mu_is_zero_exactly_for_no_debt(data: st.DataObject) -> None:
    """Spec AR-2: debt in milli-units is 0 iff the debt is 0, and follows the formula."""
    # Fails when debt_milli_units drops its max(..., 1): a debt below a thousandth of a flush
    # unit then counts as none.
    config = data.draw(configs())
    debt = data.draw(byte_counts(config.bp_flush_unit_bytes))
    debt_mu = measures.debt_milli_units(config, debt)
    assert (debt_mu == 0) == (debt == 0)
    assert debt_mu == spec_debt_mu(config, debt)


@given(st.data())
def test_ar2_debt_mu_is_monotone(data: st.DataObject) -> None:
    """Spec AR-2: more debt is never fewer milli-units."""
    config = data.draw(configs())
    low, high = sorted(data.draw(st.lists(byte_counts(config.bp_flush_unit_bytes), min_size=2)))[:2]
    assert measures.debt_milli_units(config, low) <= measures.debt_milli_units(config, high)


@given(st.integers(0, U32_MAX))
def test_ar3_thresholds_of_u32_units_never_saturate(units: int) -> None:
    """Spec AR-3: a threshold of u32 units is exactly units * 1 000 milli-units."""
    assert measures.threshold_milli_units(units) == units * 1_000


@given(st.data())
def test_ar4_disk_throughput_is_zero_exactly_in_cold_start(data: st.DataObject) -> None:
    """Spec AR-4: disk_bps is 0 in cold start and max(io_bps_ewma, 1) in steady state."""
    config = data.draw(configs())
    state = data.draw(states(config))
    expected = 0 if spec_cold_start(config, state) else max(state.io_bps_ewma, 1)
    assert measures.disk_bps(config, state) == expected


@given(st.data())
def test_ar5_publish_guard_is_between_its_minimum_and_100(data: st.DataObject) -> None:
    """Spec AR-5: the guard ratio lies in [guard_min, 100] and is 100 unless e2e lags I/O."""
    config = data.draw(configs())
    state = data.draw(states(config))
    guard = measures.publish_guard_ratio_pct(config, state)
    assert config.bp_publish_guard_min_ratio_pct <= guard <= 100
    io, e2e = state.io_bps_ewma, state.e2e_bps_ewma
    if io == 0 or e2e == 0 or e2e >= io:
        assert guard == 100
    else:
        assert guard == max(e2e * 100 // io, config.bp_publish_guard_min_ratio_pct)


@given(rates(), rates())
def test_ar6_inv8_ewma_lies_between_old_and_sample(old: int, sample: int) -> None:
    """Spec AR-6, INV-8: a zero sample changes nothing, a first is taken whole, else between."""
    # Fails when ewma_update adds 1 after dividing (old == sample then moves above both).
    updated = measures.ewma_update(old, sample)
    if sample == 0:
        assert updated == old
    elif old == 0:
        assert updated == sample
    else:
        assert min(old, sample) <= updated <= max(old, sample)
        assert updated == (old * 80 + sample * 20) // 100


@given(st.data())
def test_ar7_inv9_raised_floor_is_monotone(data: st.DataObject) -> None:
    """Spec AR-7, INV-9: a sample never lowers the adaptive floor, nor takes it below floor."""
    config = data.draw(configs())
    floor = data.draw(st.integers(config.bp_floor_bps, U64_MAX))
    low, high = sorted((data.draw(rates()), data.draw(rates())))
    raised = measures.raised_floor(config, floor, low)
    assert raised == max(floor, low // 8, config.bp_floor_bps)
    assert raised >= floor >= config.bp_floor_bps
    assert measures.raised_floor(config, floor, high) >= raised


@given(tasks())
def test_ar8_charge_is_actual_once_reported_else_estimate(task: TaskState) -> None:
    """Spec AR-8, DIV-1: the charge is keyed on io_reported, not on a non-zero actual size."""
    expected = task.actual_bytes if task.io_reported else task.est_bytes
    assert measures.outstanding_charge(task) == expected


# --- FC: the operations, one step at a time --------------------------------------------------


@given(st.data())
def test_fc1_st2_enqueue_adds_estimate_and_resets_after_idle(data: st.DataObject) -> None:
    """Spec FC-1, ST-2, FC-12: enqueue adds the estimate, clears idle, resets if it expired."""
    config = data.draw(configs())
    state = data.draw(states(config, debt_bytes=st.integers(0, U64_MAX // 2)))
    est = data.draw(st.integers(0, U64_MAX // 2))
    now = data.draw(st.sampled_from((NOW, NOW + config.bp_idle_reset_ms * 1_000_000)))
    step = model.enqueue(config, state, est, now)

    assert step.task == TaskState(enqueue_at=now, est_bytes=est)
    assert step.state.debt_bytes == state.debt_bytes + est
    assert step.state.idle_since is None
    unchanged = ("teardown_bypass_scopes", "arena_starving_scopes", "next_flush_at")
    assert all(getattr(step.state, name) == getattr(state, name) for name in unchanged)
    history = ("io_bps_ewma", "e2e_bps_ewma", "io_sample_count", "adaptive_floor_bps")
    if spec_idle_expired(config, state, now):
        assert [getattr(step.state, name) for name in history] == [0, 0, 0, config.bp_floor_bps]
    else:
        assert all(getattr(step.state, name) == getattr(state, name) for name in history)


@given(st.data())
def test_fc2_io_built_moves_the_charge_and_samples(data: st.DataObject) -> None:
    """Spec FC-2, DIV-4: the debt moves from estimate to actual; a sample needs bytes and µs."""
    config = data.draw(configs())
    task = data.draw(tasks(io_reported=False))
    state = data.draw(states(config, debt_bytes=st.integers(task.est_bytes, U64_MAX)))
    nbytes = data.draw(byte_counts())
    elapsed = data.draw(elapsed_durations())
    assume(state.debt_bytes - task.est_bytes + nbytes <= U64_MAX)
    step = model.io_built(config, state, task, nbytes, elapsed)

    assert step.state.debt_bytes == state.debt_bytes - task.est_bytes + nbytes
    micros = min(elapsed // 1_000, U64_MAX)
    assert step.task == dataclasses.replace(
        task, actual_bytes=nbytes, io_micros=micros, outcome=Outcome.FLUSHED, io_reported=True
    )
    if nbytes != 0 and micros != 0:
        assert step.state.io_sample_count == min(state.io_sample_count + 1, U64_MAX)
        sample = spec_rate(nbytes, micros)
        assert step.state.io_bps_ewma == measures.ewma_update(state.io_bps_ewma, sample)
    else:
        assert step.state.io_sample_count == state.io_sample_count
        assert step.state.io_bps_ewma == state.io_bps_ewma
    assert (step.state.idle_since, step.state.next_flush_at) == (
        state.idle_since,
        state.next_flush_at,
    )


@given(st.data())
def test_fc3_fc4_task_marks_change_only_the_task(data: st.DataObject) -> None:
    """Spec FC-3, FC-4: any outcome may be recorded; bypass is idempotent; the charge stays."""
    task = data.draw(tasks())
    outcome = data.draw(outcomes())
    marked = model.mark_outcome(task, outcome)
    assert marked == dataclasses.replace(task, outcome=outcome)
    bypassed = model.force_bypass(model.force_bypass(task))
    assert bypassed == dataclasses.replace(task, force_bypass=True)
    assert measures.outstanding_charge(marked) == measures.outstanding_charge(task)


@given(st.data())
def test_fc5_mark_done_settles_the_charge(data: st.DataObject) -> None:
    """Spec FC-5, FC-12: done settles the charge, marks idle at 0, samples a flushed task."""
    config = data.draw(configs())
    task = data.draw(tasks())
    charge = task.actual_bytes if task.io_reported else task.est_bytes
    state = data.draw(states(config, debt_bytes=st.integers(charge, U64_MAX)))
    now = data.draw(st.integers(task.enqueue_at, task.enqueue_at + 10**10))
    step = model.mark_done(config, state, task, now)

    assert step.state.debt_bytes == state.debt_bytes - charge
    assert step.task == dataclasses.replace(task, done=True)
    if state.debt_bytes == charge:
        expected_idle = now if state.idle_since is None else state.idle_since
        assert (step.state.idle_since, step.state.next_flush_at) == (expected_idle, None)
    else:
        assert (step.state.idle_since, step.state.next_flush_at) == (
            state.idle_since,
            state.next_flush_at,
        )
    e2e_micros = min((now - task.enqueue_at) // 1_000, U64_MAX)
    if task.outcome is Outcome.FLUSHED and charge != 0 and e2e_micros != 0:
        sample = spec_rate(charge, e2e_micros)
        assert step.state.e2e_bps_ewma == measures.ewma_update(state.e2e_bps_ewma, sample)
    else:
        assert step.state.e2e_bps_ewma == state.e2e_bps_ewma
    assert step.state.io_sample_count == state.io_sample_count


@given(st.data())
def test_fc8_foreground_write_emits_exactly_when_it_delays(data: st.DataObject) -> None:
    """Spec FC-8: a delay is reported as FlowFgDelay 1 then FlowFgDelayMicros; none, nothing."""
    config = data.draw(configs())
    state = data.draw(states(config))
    write = data.draw(byte_counts())
    decision = model.before_foreground_write(config, state, write)
    metrics = [(emission.metric, emission.value) for emission in decision.emissions]
    if decision.delay_us == 0:
        assert metrics == []
    else:
        assert metrics == [(Metric.FG_DELAY, 1), (Metric.FG_DELAY_MICROS, decision.delay_us)]


def spec_flush_decision(config: Config, state: ControllerState, task: TaskState) -> FlushDecision:
    """Return the flush decision by the table of spec FC-9."""
    if not config.enable_flush_pacing:
        return FlushDecision.PACING_DISABLED
    if task.force_bypass or state.teardown_bypass_scopes != 0:
        return FlushDecision.BYPASS_TEARDOWN
    if state.arena_starving_scopes != 0:
        return FlushDecision.BYPASS_ARENA_STARVATION
    if state.debt_bytes == 0:
        return FlushDecision.NO_DEBT
    if spec_cold_start(config, state):
        return FlushDecision.COLD_START
    if spec_debt_mu(config, state.debt_bytes) > config.bp_pacing_soft_debt_units * 1_000:
        return FlushDecision.BYPASS_HIGH_DEBT
    return FlushDecision.PACED


@st.composite
def flush_cases(draw: st.DrawFn) -> tuple[Config, ControllerState, TaskState, int]:
    """Return a configuration, state, task and time for a flush, half of them pacing cases."""
    paced = draw(st.booleans())
    config = draw(configs(enable_flush_pacing=True if paced else None))
    state = draw(states(config))
    task = draw(tasks())
    if paced:
        # Meet every condition of FC-9 rule 8 so that the pacing arithmetic is exercised, with
        # the deadline anywhere from past to several maximum delays ahead (FC-10's cap).
        pacing_bytes = least_debt_reaching(config, config.bp_pacing_soft_debt_units * 1_000 + 1)
        max_delay_ns = config.bp_max_delay_us * 1_000
        ahead = st.sampled_from((-1, 0, 1, max_delay_ns - 1, max_delay_ns, max_delay_ns + 1))
        deadline = st.one_of(
            st.none(),
            ahead.map(lambda offset: NOW + offset),
            st.integers(NOW - max_delay_ns, NOW + 3 * max_delay_ns),
        )
        state = dataclasses.replace(
            state,
            debt_bytes=draw(st.integers(1, min(pacing_bytes - 1, U64_MAX))),
            teardown_bypass_scopes=0,
            arena_starving_scopes=0,
            io_sample_count=max(state.io_sample_count, config.bp_warmup_min_samples),
            next_flush_at=draw(deadline),
        )
        task = dataclasses.replace(task, force_bypass=False)
    return config, state, task, NOW


@given(flush_cases())
def test_fc9_flush_decision_follows_the_rule_order(
    case: tuple[Config, ControllerState, TaskState, int],
) -> None:
    """Spec FC-9: the first applicable rule decides; a bypass emits its counter only."""
    config, state, task, now = case
    plan = model.plan_flush(config, state, task, now)
    assert plan.decision is spec_flush_decision(config, state, task)
    bypass_metrics = {
        FlushDecision.BYPASS_TEARDOWN: Metric.FLUSH_PACING_BYPASS_TEARDOWN,
        FlushDecision.BYPASS_ARENA_STARVATION: Metric.FLUSH_PACING_BYPASS_ARENA_STARVATION,
        FlushDecision.BYPASS_HIGH_DEBT: Metric.FLUSH_PACING_BYPASS_HIGH_DEBT,
    }
    if plan.decision is not FlushDecision.PACED:
        expected = [(bypass_metrics[plan.decision], 1)] if plan.decision in bypass_metrics else []
        assert [(e.metric, e.value) for e in plan.emissions] == expected
        assert (plan.sleep_ns, plan.interval_us) == (0, 0)
        assert model.commit_flush(state, plan, now) == state


@given(flush_cases())
def test_fc10_inv6_pacing_sleep_and_interval_are_bounded(
    case: tuple[Config, ControllerState, TaskState, int],
) -> None:
    """Spec FC-10, INV-6: sleep in [0, max_delay_us * 1 000] ns, interval in [1, max] µs."""
    # Fails when plan_flush drops the cap of the sleep at the maximum delay (a deadline more
    # than one maximum ahead is drawn by `states`).
    config, state, task, now = case
    plan = model.plan_flush(config, state, task, now)
    max_delay_us = config.bp_max_delay_us
    assert 0 <= plan.sleep_ns <= max_delay_us * 1_000
    if plan.decision is not FlushDecision.PACED:
        return
    assert 1 <= plan.interval_us <= max_delay_us
    disk_bps = max(state.io_bps_ewma, 1)
    assert plan.interval_us == max(
        min(spec_rate(max(task.est_bytes, 1), disk_bps), max_delay_us), 1
    )
    deadline = state.next_flush_at
    ahead = 0 if deadline is None else max(deadline - now, 0)
    assert plan.sleep_ns == min(ahead, max_delay_us * 1_000)
    committed = model.commit_flush(state, plan, now + plan.sleep_ns)
    base = now + plan.sleep_ns if deadline is None else max(deadline, now + plan.sleep_ns)
    assert committed.next_flush_at == base + plan.interval_us * 1_000
    if plan.sleep_ns:
        assert [(e.metric, e.value) for e in plan.emissions] == [
            (Metric.FLUSH_PACING_SLEEP, 1),
            (Metric.FLUSH_PACING_SLEEP_MICROS, plan.sleep_ns // 1_000),
        ]


# --- INV-2 to INV-5: the foreground delay ----------------------------------------------------


@st.composite
def foreground_cases(
    draw: st.DrawFn, *, enabled: bool | None = None
) -> tuple[Config, ControllerState, int]:
    """Return a configuration, a state and a write size for a foreground write."""
    config = draw(configs(enable_backpressure=enabled))
    state = draw(states(config))
    warmup = config.bp_warmup_min_samples
    phase = draw(st.sampled_from(("as drawn", "steady state", "cold start")))
    if phase == "steady state":
        state = dataclasses.replace(state, io_sample_count=max(state.io_sample_count, warmup))
    elif phase == "cold start":
        state = dataclasses.replace(state, io_sample_count=min(state.io_sample_count, warmup - 1))
    write = draw(byte_counts())
    return config, state, write


@given(foreground_cases(enabled=True))
def test_inv2_delay_is_between_zero_and_the_maximum(
    case: tuple[Config, ControllerState, int],
) -> None:
    """Spec INV-2, FC-7: 0 <= delay_us <= max_delay_us, whatever the state."""
    # Fails when throttled_delay_us drops its final min(delay, max_delay_us).
    config, state, write = case
    decision = model.before_foreground_write(config, state, write)
    note(f"regime {decision.regime}")
    assert 0 <= decision.delay_us <= config.bp_max_delay_us


def below_threshold(config: Config, state: ControllerState) -> bool:
    """Return whether the debt is below its regime's threshold (spec INV-3)."""
    debt_mu = spec_debt_mu(config, state.debt_bytes)
    if spec_cold_start(config, state):
        return debt_mu < config.bp_cold_start_fail_safe_units * 1_000
    return debt_mu <= config.bp_soft_debt_units * 1_000


@given(st.data())
def test_inv3_no_delay_without_backpressure(data: st.DataObject) -> None:
    """Spec INV-3, FC-6 rules 1 to 5: disabled, empty write, no debt, or below threshold."""
    # Fails when foreground_regime compares steady-state debt with `<` soft instead of `<=`
    # (a debt exactly at soft is drawn on a flush-unit multiple): under the ci profile, and in
    # most dev runs.
    enabled = data.draw(st.sampled_from((True, True, True, False)), label="enabled")
    config, state, write = data.draw(foreground_cases(enabled=enabled))
    if data.draw(st.booleans()):
        # Put the debt on, or a byte either side of, the regime's threshold (a debt of `units`
        # flush units is exactly the threshold in milli-units), where the rules flip.
        cold = spec_cold_start(config, state)
        units = config.bp_cold_start_fail_safe_units if cold else config.bp_soft_debt_units
        at = least_debt_reaching(config, units * 1_000)
        debt = data.draw(st.sampled_from((at - 1, at, at, at + 1)), label="debt")
        state = dataclasses.replace(state, debt_bytes=min(max(debt, 0), U64_MAX))
    decision = model.before_foreground_write(config, state, write)
    if (
        not config.enable_backpressure
        or write == 0
        or state.debt_bytes == 0
        or below_threshold(config, state)
    ):
        assert decision.delay_us == 0
        assert decision.emissions == ()
        assert decision.regime in {
            ForegroundRegime.DISABLED,
            ForegroundRegime.EMPTY_WRITE,
            ForegroundRegime.NO_DEBT,
            ForegroundRegime.COLD_BELOW_FAIL_SAFE,
            ForegroundRegime.STEADY_BELOW_SOFT,
        }
    else:
        assert decision.regime in {
            ForegroundRegime.STOP,
            ForegroundRegime.COLD_THROTTLED,
            ForegroundRegime.HARD_ZONE,
            ForegroundRegime.SOFT_ZONE,
        }


@given(st.data())
def test_inv4_delay_is_the_maximum_at_or_above_stop(data: st.DataObject) -> None:
    """Spec INV-4, FC-8: enabled, non-empty, debt_mu >= stop (and >= fail-safe when cold)."""
    config, state, write = data.draw(foreground_cases(enabled=True))
    assume(write > 0)
    units = config.bp_stop_debt_units
    if spec_cold_start(config, state):
        units = max(units, config.bp_cold_start_fail_safe_units)
    least = least_debt_reaching(config, units * 1_000)
    assume(least <= U64_MAX)
    debt = data.draw(st.one_of(st.just(least), st.integers(least, U64_MAX)))
    state = dataclasses.replace(state, debt_bytes=debt)
    decision = model.before_foreground_write(config, state, write)
    assert decision.regime is ForegroundRegime.STOP
    assert decision.delay_us == config.bp_max_delay_us


@given(st.data())
def test_inv5_delay_is_non_decreasing_in_debt(data: st.DataObject) -> None:
    """Spec INV-5: with all else fixed, more debt never means a shorter delay."""
    # Fails when throttled_delay_us doubles the delay below hard instead of at or above it
    # (the delay then halves as the debt crosses hard): always under the ci profile's 200
    # derandomized examples, in about one dev run out of five.
    config, state, write = data.draw(foreground_cases(enabled=True))
    # Small writes keep the delay below the maximum, where a fault in the formula shows.
    write = data.draw(st.one_of(st.just(write), st.integers(1, 1 << 16)), label="write")
    unit = config.bp_flush_unit_bytes
    if data.draw(st.booleans(), label="straddle"):
        # Half the pairs straddle a threshold, where the regime and the formula change.
        # Hard is drawn twice as often: the delay doubles there, the subtlest step.
        units = data.draw(
            st.sampled_from(
                (
                    config.bp_soft_debt_units,
                    config.bp_hard_debt_units,
                    config.bp_hard_debt_units,
                    config.bp_stop_debt_units,
                    config.bp_cold_start_fail_safe_units,
                )
            ),
            label="threshold",
        )
        # A moderate disk rate keeps steady-state delays between 0 and the maximum.
        rate = data.draw(st.one_of(st.just(state.io_bps_ewma), st.integers(1, 1 << 30)))
        state = dataclasses.replace(state, io_bps_ewma=rate)
        low = min(max(units * unit - data.draw(st.integers(0, 2), label="below"), 0), U64_MAX)
        high = min(units * unit + data.draw(st.integers(0, 2), label="above"), U64_MAX)
    else:
        debts = st.one_of(threshold_debts(config), byte_counts(unit))
        low, high = sorted((data.draw(debts, label="debt"), data.draw(debts, label="debt")))
    low_delay = model.before_foreground_write(
        config, dataclasses.replace(state, debt_bytes=low), write
    ).delay_us
    high_delay = model.before_foreground_write(
        config, dataclasses.replace(state, debt_bytes=high), write
    ).delay_us
    assert low_delay <= high_delay


# --- INV-7: scope counts ---------------------------------------------------------------------

SCOPE_OPERATIONS: dict[str, tuple[Callable[[ControllerState], ControllerState], str, int]] = {
    "enter_teardown": (model.enter_teardown, "teardown_bypass_scopes", +1),
    "leave_teardown": (model.leave_teardown, "teardown_bypass_scopes", -1),
    "enter_starving": (model.enter_starving, "arena_starving_scopes", +1),
    "leave_starving": (model.leave_starving, "arena_starving_scopes", -1),
}
"""Each scope operation, the count it moves and which way (spec FC-11)."""


@given(
    st.integers(0, 3) | st.just(U64_MAX),
    st.integers(0, 3) | st.just(U64_MAX),
    st.lists(st.sampled_from(sorted(SCOPE_OPERATIONS)), max_size=30),
)
def test_inv7_scopes_are_never_negative(teardown: int, starving: int, ops: list[str]) -> None:
    """Spec INV-7, FC-11, ERR-2: scopes count opens and closes in [0, U64_MAX]."""
    # Fails when leave_teardown subtracts without saturating (a leave with none open).
    state = dataclasses.replace(
        model.new_controller(normalise(Options()), 0),
        teardown_bypass_scopes=teardown,
        arena_starving_scopes=starving,
    )
    counts = {"teardown_bypass_scopes": teardown, "arena_starving_scopes": starving}
    for name in ops:
        operation, field, direction = SCOPE_OPERATIONS[name]
        if direction > 0 and counts[field] == U64_MAX:
            with pytest.raises(DebtOverflowError):
                operation(state)
            continue
        state = operation(state)
        counts[field] = max(counts[field] + direction, 0)
        assert 0 <= getattr(state, field) <= U64_MAX
        assert (state.teardown_bypass_scopes, state.arena_starving_scopes) == (
            counts["teardown_bypass_scopes"],
            counts["arena_starving_scopes"],
        )


# --- ERR: invalid operations -----------------------------------------------------------------

NOT_INTS = st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=3), st.none())
OUT_OF_U64 = st.one_of(st.integers(max_value=-1), st.integers(min_value=U64_MAX + 1))


@given(st.data())
def test_err3_bad_arguments_raise_naming_the_argument(data: st.DataObject) -> None:
    """Spec ERR-3: a non-int (or bool) raises TypeError; an int out of u64 raises ValueError."""
    config = data.draw(configs())
    state = data.draw(states(config))
    task = data.draw(tasks())
    operations: dict[str, Callable[[object], object]] = {
        "est_bytes": lambda value: model.enqueue(config, state, value, NOW),  # type: ignore[arg-type]  # deliberately ill-typed
        "nbytes": lambda value: model.io_built(config, state, task, value, 0),  # type: ignore[arg-type]  # deliberately ill-typed
        "write_bytes": lambda value: model.before_foreground_write(config, state, value),  # type: ignore[arg-type]  # deliberately ill-typed
    }
    name = data.draw(st.sampled_from(sorted(operations)))
    with pytest.raises(TypeError):
        operations[name](data.draw(NOT_INTS))
    with pytest.raises(ValueError, match=name):
        operations[name](data.draw(OUT_OF_U64))


@given(st.one_of(NOT_INTS, st.integers(max_value=-1), st.just(2**64 * 10**9)))
def test_err3_bad_elapsed_is_rejected(elapsed: object) -> None:
    """Spec ERR-3: elapsed_ns must be an int in [0, ELAPSED_NS_LIMIT)."""
    config = normalise(Options())
    step = model.enqueue(config, model.new_controller(config, 0), 10, 0)
    with pytest.raises((TypeError, ValueError)):
        model.io_built(config, step.state, step.task, 10, elapsed)  # type: ignore[arg-type]  # deliberately ill-typed


@given(st.sampled_from(("Flushed", 1, None)))
def test_err3_outcome_must_be_an_outcome(outcome: object) -> None:
    """Spec ERR-3: mark_outcome takes a member of Outcome, not its name or value."""
    with pytest.raises(TypeError):
        model.mark_outcome(TaskState(enqueue_at=0, est_bytes=1), outcome)  # type: ignore[arg-type]  # deliberately ill-typed


def test_err_checks_come_in_order() -> None:
    """Spec ERR-1 to ERR-3: argument errors before lifecycle errors before overflow."""
    config = normalise(Options())
    state = dataclasses.replace(model.new_controller(config, 0), debt_bytes=U64_MAX - 1)
    done = TaskState(enqueue_at=0, est_bytes=0, done=True)
    with pytest.raises(ValueError, match="nbytes"):
        model.io_built(config, state, done, -1, 0)
    with pytest.raises(TaskStateError):
        model.io_built(config, state, done, 10, 0)  # would also overflow the debt


# --- INV-1, INV-7, INV-8, INV-9 over random runs ---------------------------------------------


def actual_sizes(est: int) -> st.SearchStrategy[int]:
    """Return what a task estimated at ``est`` bytes may write: 0, the estimate, or near it."""
    return st.one_of(
        st.sampled_from((0, est)),
        st.integers(max(est - 2, 0), min(est + 2, U64_MAX)),
        byte_counts(),
    )


@given(st.data())
def test_inv1_debt_is_conserved_over_interleaved_lifecycles(data: st.DataObject) -> None:
    """Spec INV-1, AR-8, FC-1, FC-2, FC-5: tasks advance in any interleaving; debt = charges."""
    # Fails when outstanding_charge is the seed's `actual_bytes if actual_bytes != 0 else
    # est_bytes`: a task that wrote 0 bytes is then settled twice, taking another's debt.
    config = data.draw(configs())
    count = data.draw(st.integers(1, 4), label="tasks")
    estimates = data.draw(
        st.lists(st.integers(0, 1 << 40) | byte_counts(), min_size=count, max_size=count).filter(
            lambda sizes: sum(sizes) <= U64_MAX
        ),
        label="estimates",
    )
    # Each task's lifecycle: enqueue, perhaps an outcome, perhaps io_built, then done.
    plans = [
        ["enqueue"]
        + (["mark_outcome"] if data.draw(st.booleans()) else [])
        + (["io_built"] if data.draw(st.booleans()) else [])
        + ["mark_done"]
        for _ in range(count)
    ]
    state, now = model.new_controller(config, 0), 0
    live: dict[int, TaskState] = {}
    charges: dict[int, int] = {}
    while any(plans):
        who = data.draw(st.sampled_from([i for i, plan in enumerate(plans) if plan]), label="who")
        operation = plans[who].pop(0)
        now += data.draw(st.sampled_from((0, 1_000, 1_000_000)), label="advance")
        if operation == "enqueue":
            if sum(charges.values()) + estimates[who] > U64_MAX:
                # Another task's actual size left no room for this estimate (ERR-2).
                with pytest.raises(DebtOverflowError):
                    model.enqueue(config, state, estimates[who], now)
                plans[who].clear()
                continue
            step = model.enqueue(config, state, estimates[who], now)
            state, live[who], charges[who] = step.state, step.task, estimates[who]
        elif operation == "mark_outcome":
            live[who] = model.mark_outcome(live[who], data.draw(outcomes(), label="outcome"))
        elif operation == "io_built":
            nbytes = data.draw(actual_sizes(estimates[who]), label="nbytes")
            if sum(charges.values()) - charges[who] + nbytes > U64_MAX:
                with pytest.raises(DebtOverflowError):  # ERR-2
                    model.io_built(config, state, live[who], nbytes, 1_000_000)
                continue
            step = model.io_built(config, state, live[who], nbytes, 1_000_000)
            state, live[who], charges[who] = step.state, step.task, nbytes
        else:
            state = model.mark_done(config, state, live.pop(who), now).state
            del charges[who]
        assert state.debt_bytes == sum(charges.values()), operation


class ModelRun(RuleBasedStateMachine):
    """Random protocol-respecting runs of the model, checked against an independent ledger.

    The ledger holds each live task's charge as the spec defines it (AR-8): its estimate until
    its I/O is reported, then what it wrote. Misuse of finished tasks and overflowing debts are
    tried too: they must raise and change nothing (ERR-1, ERR-2).
    """

    def __init__(self) -> None:
        """Start with no controller; `start` builds one."""
        super().__init__()
        self.config = normalise(Options())
        self.now = 0
        self.state = model.new_controller(self.config, 0)
        self.live: list[TaskState] = []
        self.charges: list[int] = []
        self.finished: list[TaskState] = []
        self.scopes = {"teardown_bypass_scopes": 0, "arena_starving_scopes": 0}
        self.floor_seen = self.state.adaptive_floor_bps
        self.samples: dict[str, list[int]] = {"io_bps_ewma": [], "e2e_bps_ewma": []}

    @initialize(config=configs(), t0=st.integers(0, 10**12))
    def start(self, config: Config, t0: int) -> None:
        """Build the controller under test."""
        self.config, self.now = config, t0
        self.state = model.new_controller(config, t0)
        self.floor_seen = self.state.adaptive_floor_bps

    def unit_byte_counts(self) -> st.SearchStrategy[int]:
        """Return byte counts scaled to this run's flush unit, mostly a few units at most."""
        unit = self.config.bp_flush_unit_bytes
        return st.one_of(
            st.integers(0, min(4 * unit, U64_MAX)), byte_counts(self.config.bp_flush_unit_bytes)
        )

    @rule(
        step_ns=st.one_of(
            st.integers(0, 10_000_000), st.sampled_from((1_000, 1_000_000, 5 * 10**9))
        )
    )
    def advance(self, step_ns: int) -> None:
        """Let time pass."""
        self.now += step_ns

    @rule(data=st.data())
    def enqueue(self, data: st.DataObject) -> None:
        """Enqueue a task, or see an overflowing one rejected (ERR-2)."""
        est = data.draw(self.unit_byte_counts(), label="est")
        before = self.state
        if sum(self.charges) + est > U64_MAX:
            with pytest.raises(DebtOverflowError):
                model.enqueue(self.config, before, est, self.now)
            return
        reset = spec_idle_expired(self.config, before, self.now)
        step = model.enqueue(self.config, before, est, self.now)
        self.state = step.state
        self.live.append(step.task)
        self.charges.append(est)
        if reset:
            self.floor_seen = self.config.bp_floor_bps
            self.samples = {"io_bps_ewma": [], "e2e_bps_ewma": []}

    @precondition(lambda self: any(not task.io_reported for task in self.live))
    @rule(data=st.data())
    def io_built(self, data: st.DataObject) -> None:
        """Report a live task's I/O, or see an overflowing excess rejected (ERR-2)."""
        unreported = [i for i, task in enumerate(self.live) if not task.io_reported]
        index = data.draw(st.sampled_from(unreported), label="task")
        task = self.live[index]
        nbytes = data.draw(
            st.one_of(actual_sizes(task.est_bytes), self.unit_byte_counts()), label="nbytes"
        )
        elapsed = data.draw(elapsed_durations(), label="elapsed_ns")
        if sum(self.charges) - self.charges[index] + nbytes > U64_MAX:
            with pytest.raises(DebtOverflowError):
                model.io_built(self.config, self.state, task, nbytes, elapsed)
            return
        step = model.io_built(self.config, self.state, task, nbytes, elapsed)
        self.state, self.live[index], self.charges[index] = step.state, step.task, nbytes
        micros = min(elapsed // 1_000, U64_MAX)
        if nbytes and micros:
            self.samples["io_bps_ewma"].append(spec_rate(nbytes, micros))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def mark_outcome(self, data: st.DataObject) -> None:
        """Record an outcome on a live task."""
        index = data.draw(st.integers(0, len(self.live) - 1), label="task")
        self.live[index] = model.mark_outcome(self.live[index], data.draw(outcomes()))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def force_bypass(self, data: st.DataObject) -> None:
        """Mark a live task to bypass pacing."""
        index = data.draw(st.integers(0, len(self.live) - 1), label="task")
        self.live[index] = model.force_bypass(self.live[index])

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def mark_done(self, data: st.DataObject) -> None:
        """Finish a live task."""
        index = data.draw(st.integers(0, len(self.live) - 1), label="task")
        task, charge = self.live.pop(index), self.charges.pop(index)
        step = model.mark_done(self.config, self.state, task, self.now)
        self.state = step.state
        self.finished.append(step.task)
        micros = min((self.now - task.enqueue_at) // 1_000, U64_MAX)
        if task.outcome is Outcome.FLUSHED and charge and micros:
            self.samples["e2e_bps_ewma"].append(spec_rate(charge, micros))

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def flush(self, data: st.DataObject) -> None:
        """Plan a live task's flush, sleep on the virtual clock, commit (FC-9, FC-10)."""
        index = data.draw(st.integers(0, len(self.live) - 1), label="task")
        plan = model.plan_flush(self.config, self.state, self.live[index], self.now)
        assert 0 <= plan.sleep_ns <= self.config.bp_max_delay_us * 1_000  # INV-6
        self.now += plan.sleep_ns
        self.state = model.commit_flush(self.state, plan, self.now)

    @rule(write=byte_counts())
    def foreground_write(self, write: int) -> None:
        """Decide a foreground write: bounded, and no state changes (FC-8, INV-2)."""
        decision = model.before_foreground_write(self.config, self.state, write)
        assert 0 <= decision.delay_us <= self.config.bp_max_delay_us
        self.now += decision.delay_us * 1_000

    @rule(name=st.sampled_from(sorted(SCOPE_OPERATIONS)))
    def scope(self, name: str) -> None:
        """Open or close a scope (FC-11)."""
        operation, field, direction = SCOPE_OPERATIONS[name]
        self.state = operation(self.state)
        self.scopes[field] = max(self.scopes[field] + direction, 0)

    @precondition(lambda self: self.finished)
    @rule(data=st.data())
    def misuse_finished_task(self, data: st.DataObject) -> None:
        """Any operation on a finished task raises and changes nothing (ERR-1, DIV-2)."""
        task = data.draw(st.sampled_from(self.finished), label="finished")
        operation = data.draw(st.sampled_from(sorted(MISUSES)), label="operation")
        before = self.state
        with pytest.raises(TaskStateError):
            MISUSES[operation](self.config, before, task, self.now)
        assert self.state == before

    @invariant()
    def debt_is_the_sum_of_live_charges(self) -> None:
        """Spec INV-1: the debt is exactly the sum of the live tasks' charges."""
        assert self.state.debt_bytes == sum(self.charges)

    @invariant()
    def scopes_match_their_counts(self) -> None:
        """Spec INV-7: scope counts are the opens minus the closes, never below 0."""
        assert self.state.teardown_bypass_scopes == self.scopes["teardown_bypass_scopes"]
        assert self.state.arena_starving_scopes == self.scopes["arena_starving_scopes"]

    @invariant()
    def moving_averages_lie_within_their_samples(self) -> None:
        """Spec INV-8: an average is 0 before any sample, else within its samples' range."""
        for field, samples in self.samples.items():
            value = getattr(self.state, field)
            if samples:
                assert min(samples) <= value <= max(samples)
            else:
                assert value == 0

    @invariant()
    def adaptive_floor_only_rises_between_resets(self) -> None:
        """Spec INV-9: the adaptive floor is at least the floor and never falls but by reset."""
        # Fails when raised_floor returns the candidate without keeping the higher floor.
        assert self.state.adaptive_floor_bps >= self.config.bp_floor_bps
        assert self.state.adaptive_floor_bps >= self.floor_seen
        self.floor_seen = self.state.adaptive_floor_bps


MISUSES: dict[str, Callable[[Config, ControllerState, TaskState, int], object]] = {
    "io_built": lambda config, state, task, _now: model.io_built(config, state, task, 1, 1_000),
    "mark_outcome": lambda _config, _state, task, _now: model.mark_outcome(task, Outcome.SKIP),
    "force_bypass": lambda _config, _state, task, _now: model.force_bypass(task),
    "mark_done": model.mark_done,
    "before_flush": model.plan_flush,
}
"""The operations on a task (spec ERR-1)."""


TestModelRun = pytest.mark.no_crosshair(
    reason="state machines are for the concrete backends; crosshair checks the properties"
)(ModelRun.TestCase)
