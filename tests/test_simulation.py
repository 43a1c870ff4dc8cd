"""The control-quality simulator: determinism, the seed law through the real controller
against the model, the metrics on hand-computed inputs, the laws' arithmetic, and the
``flowpace simulate`` command (exit status of ``--check``, the JSON document).

Every run here is a few simulated seconds at most: the whole file takes a few CPU seconds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from flowpace.cli import main as cli_main
from flowpace.simulation import laws, scenarios
from flowpace.simulation.metrics import (
    coefficient_of_variation,
    jain_index,
    measure,
    overlap,
    percentile,
    settle_after_step,
    step_segments,
    time_mean,
    utilisation,
)
from flowpace.simulation.plant import KIB, MIB, SECOND, Disk, Plant, Trace, Writers, run
from flowpace.simulation.report import SCHEMA
from flowpace.simulation.targets import check
from flowpace_reference import extended
from flowpace_reference.config import normalise
from flowpace_reference.types import ControllerState, ForegroundAdmit, ForegroundBlock, Options

UNIT = scenarios.UNIT_BYTES


def short(
    name: str,
    duration_ns: int,
    *,
    disk: Disk | None = None,
    external: tuple[tuple[int, int, int], ...] | None = None,
) -> scenarios.Scenario:
    """Return scenario ``name`` cut to ``duration_ns``, its window the run's second half."""
    base = scenarios.SCENARIOS[name]
    plant = dataclasses.replace(
        base.plant,
        duration_ns=duration_ns,
        disk=base.plant.disk if disk is None else disk,
        external=base.plant.external if external is None else external,
    )
    return dataclasses.replace(base, plant=plant, window=(duration_ns // 2, duration_ns))


def same(a: Trace, b: Trace) -> bool:
    """Return whether two traces record the same run."""
    return dataclasses.asdict(a) == dataclasses.asdict(b)


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_same_trace_and_metrics() -> None:
    scenario = short("noisy-disk", SECOND // 2)
    first, second = run(scenario.plant, "extended", 7), run(scenario.plant, "extended", 7)
    assert same(first, second)
    assert measure(first, scenario) == measure(second, scenario)
    other = run(scenario.plant, "extended", 8)  # the noise is drawn: another seed differs
    assert [io[1] - io[0] for io in other.io] != [io[1] - io[0] for io in first.io]


# --- the seed law through the real controller is the model's ---------------------------------


@pytest.mark.parametrize("name", ["overload-n4", "disk-stall"])
def test_seed_on_the_controller_decides_as_the_model(name: str) -> None:
    # spec FC-6 to FC-10: the controller's non-blocking forms return the model's delays and
    # pacing sleeps, so the whole run (every wait, every debt change, every I/O) is the same.
    scenario = short(name, 3 * SECOND // 2, external=((SECOND // 2, 6, 9 * UNIT),))
    controller = run(scenario.plant, "seed", 3)
    model = run(scenario.plant, "seed-model", 3)
    assert same(controller, model)
    assert any(controller.adm_computed)  # the runs were throttled: the delays were compared
    assert max(controller.debt_bytes) >= 48 * UNIT  # ... up to stop (FC-8)


def test_extended_on_the_controller_decides_as_the_model() -> None:
    # spec EXT-5 to EXT-7: the controller's nowait forms (decide_foreground_write,
    # recheck_foreground_write) give the model's decisions, blocks at stop included.
    stall = Disk(
        steps=((0, scenarios.DISK_BPS), (SECOND, 0), (3 * SECOND // 2, scenarios.DISK_BPS))
    )
    scenario = short("overload-n16", 2 * SECOND, disk=stall, external=((SECOND, 6, 9 * UNIT),))
    plant = dataclasses.replace(scenario.plant, stop_limit_us=200_000)  # blocks end in the run
    controller = run(plant, "extended", 3)
    model = run(plant, "extended-model", 3)
    assert same(controller, model)
    assert any(controller.adm_computed)  # the runs waited for their slots
    assert controller.blocks  # ... and blocked at stop (EXT-7)


def test_the_plant_keeps_the_controllers_debt() -> None:
    # spec INV-1: the plant's own account of the debt (what the stop metrics use) is the
    # controller's, and every byte admitted is flushed, owed, or in the active buffer.
    scenario = short("overload-n16", SECOND)
    plant = Plant(scenario.plant, "seed", 1)
    trace = plant.run()
    assert plant.debt == plant.law.state().debt_bytes == trace.debt_bytes[-1]
    flushed = sum(nbytes for _, end, nbytes in trace.io if end < trace.end_ns)
    assert sum(trace.adm_bytes) == flushed + plant.debt + plant.fill
    assert 0 <= plant.fill < scenario.plant.seal_bytes


# --- metrics on hand-computed inputs --------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert percentile(values, 500) == 50
    assert percentile(values, 990) == 100
    assert percentile(values, 100) == 10
    assert percentile(list(reversed(values)), 910) == 100
    assert percentile([], 500) == 0


def test_jain_index() -> None:
    assert jain_index([5, 5, 5, 5]) == 1.0
    assert jain_index([1, 0]) == 0.5
    assert jain_index([1, 2, 3]) == pytest.approx(36 / 42)


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([4, 4]) == 0.0
    assert coefficient_of_variation([0, 4]) == pytest.approx(1.0)


def test_time_weighted_debt() -> None:
    segments = step_segments([0, 100, 300], [2, 6, 0], 50, 400)
    assert segments == [(50, 100, 2), (100, 300, 6), (300, 400, 0)]
    assert time_mean(segments) == pytest.approx((50 * 2 + 200 * 6) / 350)
    assert overlap([(0, 10), (20, 30)], 5, 25) == 10


def test_utilisation_spreads_each_io_over_its_duration() -> None:
    disk = Disk(steps=((0, 1_000), (SECOND, 0)))
    io = [(0, SECOND // 2, 400), (SECOND // 2, SECOND, 100)]
    # [0, 1 s): 500 written of 1 000; [0.25 s, 0.75 s): 200 + 50 of 500
    assert utilisation(io, disk, 0, SECOND) == pytest.approx(0.5)
    assert utilisation(io, disk, SECOND // 4, 3 * SECOND // 4) == pytest.approx(0.5)
    assert disk.capacity_bytes(0, 2 * SECOND) == 1_000  # the stall writes nothing


def test_settle_and_overshoot_after_a_step() -> None:
    # debt 10 units, step at 1 s, peaks at 25, back within 2 units of 12 at 3.5 s, ends at 12
    unit = 10
    segments = [
        (0, SECOND, 100),
        (SECOND, 2 * SECOND, 250),
        (2 * SECOND, 7 * SECOND // 2, 160),
        (7 * SECOND // 2, 8 * SECOND, 120),
    ]
    final, overshoot, settle = settle_after_step(segments, SECOND, 8 * SECOND, unit)
    assert final == 12.0
    assert overshoot == 13.0
    assert settle == 2.5


def test_disk_transfer_across_a_step_and_a_stall() -> None:
    disk = Disk(steps=((0, 1_000), (SECOND, 0), (2 * SECOND, 500)))
    assert disk.transfer_ns(0, 500) == SECOND // 2
    # 1 000 bytes in the first second, nothing in the stall, 250 more at 500 B/s: 2.5 s
    assert disk.transfer_ns(0, 1_250) == 5 * SECOND // 2


def test_ideal_delay() -> None:
    # 64 writers of 4 KiB at 200/64 MiB/s each over 100 MiB/s: cycle 2.5 ms, copy 1.25 ms
    assert scenarios.ideal_delay_ns(64, 4 * KIB, 200 * MIB // 64, 100 * MIB) == 1_250_000
    assert scenarios.ideal_delay_ns(2, 4 * KIB, 200 * MIB, 100 * MIB) == 58_594


# --- the laws' arithmetic -------------------------------------------------------------------

CONFIG = normalise(
    Options(enable_backpressure=True, bp_flush_unit_bytes=UNIT, bp_warmup_min_samples=4)
)
WARM = ControllerState(
    debt_bytes=13 * UNIT,
    io_bps_ewma=100 * MIB,
    e2e_bps_ewma=0,
    io_sample_count=4,
    adaptive_floor_bps=16 * MIB,
    teardown_bypass_scopes=0,
    arena_starving_scopes=0,
    idle_since=None,
    next_flush_at=None,
)


def test_extended_rate_is_the_disk_at_the_setpoint_and_falls_with_debt() -> None:
    # spec EXT-1, EXT-4, EXT-8 b: the model's law, on hand-computed values.
    cfg = extended.extended_config(CONFIG)
    assert (cfg.soft_mu, cfg.setpoint_mu, cfg.stop_mu) == (8_000, 13_000, 48_000)
    # at the setpoint the rate is the disk's: 4 KiB at 100 MiB/s is 39 062.5 ns, rounded up
    assert extended.slot_ns(cfg, 4 * KIB, 13_000, 100 * MIB) == 39_063
    # at 28 units: (13 - 8) * (48 - 28) / ((28 - 8) * (48 - 13)) = 1/7 of the disk
    assert extended.slot_ns(cfg, 4 * KIB, 28_000, 100 * MIB) == 273_438  # 7 * 39 062.5
    slots = [extended.slot_ns(cfg, 4 * KIB, debt, 100 * MIB) for debt in range(8_001, 48_000, 997)]
    assert slots == sorted(slots)  # debt-monotone
    assert slots[0] < 100  # smooth at soft: a few ns, not a jump to the full delay


def test_extended_timeline_is_shared_and_blocks_at_stop() -> None:
    # spec EXT-5, EXT-6: a shared timeline, cleared below soft; a block at stop.
    cfg = extended.extended_config(dataclasses.replace(CONFIG, ext_stop_wait_limit_ns=2_000_000))
    ext = extended.ExtendedState()
    first = extended.decide(cfg, ext, WARM, 4 * KIB, 1_000)
    second = extended.decide(cfg, first.state, WARM, 4 * KIB, 1_000)
    assert isinstance(first.decision, ForegroundAdmit)
    assert isinstance(second.decision, ForegroundAdmit)
    assert first.decision.wait_ns == 0
    assert second.decision.wait_ns == 39_063  # behind the first write's slot
    assert second.state.next_admit_ns == 1_000 + 2 * 39_063
    below = dataclasses.replace(WARM, debt_bytes=8 * UNIT)
    free = extended.decide(cfg, second.state, below, 4 * KIB, 2_000)
    assert free.decision == ForegroundAdmit(0)
    assert free.state.next_admit_ns is None  # no backlog kept below soft
    stopped = dataclasses.replace(WARM, debt_bytes=48 * UNIT)
    block = extended.decide(cfg, ext, stopped, 4 * KIB, 5_000).decision
    assert block == ForegroundBlock(below_bytes=48 * UNIT, deadline_ns=5_000 + 2_000_000)
    assert isinstance(extended.recheck(cfg, stopped, 9), ForegroundBlock)


def test_extended_remembers_the_disk_across_an_idle_reset() -> None:
    # spec EXT-2, EXT-3: the steady-state estimate survives an idle reset.
    cfg = extended.extended_config(CONFIG)
    warm = extended.decide(cfg, extended.ExtendedState(), WARM, 4 * KIB, 0).state
    assert warm.known_bps == 100 * MIB
    reset = dataclasses.replace(WARM, io_bps_ewma=0, io_sample_count=0)
    assert extended.base_rate_bps(cfg, warm, reset) == 100 * MIB
    assert extended.base_rate_bps(cfg, extended.ExtendedState(), reset) == 16 * MIB  # the floor


def test_token_bucket_charges_the_shared_budget() -> None:
    cfg = laws.bucket_config(CONFIG)
    bucket = laws.bucket_recalculate(cfg, laws.BucketState(), 9 * UNIT, 100 * MIB)
    assert bucket.delayed
    assert bucket.rate_bps == 100 * MIB
    # 1 ms of refill at 100 MiB/s is 104 857 bytes: the first write takes it from there
    decision, bucket = laws.bucket_admit(cfg, bucket, 9 * UNIT, 4 * KIB, 0)
    assert decision == laws.ADMIT_NOW
    assert bucket.credit_bytes == 104_857 - 4 * KIB
    decision, bucket = laws.bucket_admit(cfg, bucket, 9 * UNIT, 200 * KIB, 0)
    assert decision.wait_ns == 1_000_000 + -(-(200 * KIB - 100_761) * 10**9 // (100 * MIB))
    slower = laws.bucket_recalculate(cfg, bucket, 10 * UNIT, 100 * MIB)
    assert slower.rate_bps == 100 * MIB * 8 // 10  # the debt grew: x0.8


# --- targets and the command line -----------------------------------------------------------


def test_a_seed_run_misses_the_real_stop_and_the_extended_law_meets_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stall = short(
        "disk-stall",
        3 * SECOND // 2,
        disk=Disk(steps=((0, 100 * MIB), (SECOND // 2, 0), (SECOND, 100 * MIB))),
        external=((SECOND // 2, 6, 9 * UNIT),),
    )
    monkeypatch.setitem(scenarios.SCENARIOS, "disk-stall", stall)
    argv = ["simulate", "--scenario", "disk-stall", "--check"]
    assert cli_main([*argv, "--law", "seed"]) == 1
    out = capsys.readouterr().out
    assert "MISS disk-stall" in out
    assert "writes admitted at stop" in out
    assert cli_main([*argv, "--law", "extended"]) == 0
    assert "MISS" not in capsys.readouterr().out


def test_targets_report_each_miss() -> None:
    scenario = short("below-capacity", SECOND)
    metrics = measure(run(scenario.plant, "seed", 1), scenario)
    assert [v.holds for v in check({"below-capacity": metrics})] == [True]
    delayed = dataclasses.replace(metrics, delayed_fraction=0.5)
    (verdict,) = check({"below-capacity": delayed})
    assert not verdict.holds
    assert verdict.value == 0.5


def test_json_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(scenarios.SCENARIOS, "cold-start", short("cold-start", SECOND // 2))
    out = tmp_path / "sim.json"
    status = cli_main(
        ["simulate", "--law", "extended", "--scenario", "cold-start", "--json", str(out)]
    )
    assert status == 0
    assert "law extended" in capsys.readouterr().out
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["schema"] == SCHEMA
    assert doc["seed"] == 1
    assert set(doc["scenarios"]) == {"cold-start"}
    law = doc["laws"]["extended"]
    metrics = law["metrics"]["cold-start"]
    assert {"debt_mean", "delay_p99_ms", "utilisation", "fairness"} <= set(metrics)
    assert all(isinstance(metrics[k], (int, float)) for k in ("debt_mean", "delay_p99_ms"))
    assert {t["target"] for t in law["targets"]} == {"p99 waited delay (ms)", "utilisation"}
    assert law["all_targets_hold"] is all(t["holds"] for t in law["targets"])


def test_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["simulate", "--scenario", "no-such-thing"]) == 2
    assert "no-such-thing" in capsys.readouterr().err


def test_writers_block_on_an_exhausted_arena() -> None:
    # A tiny arena, a slow disk and no backpressure: the arena runs out, writers wait for a
    # buffer, and the engine holds the arena-starvation scope meanwhile (spec FC-11).
    base = scenarios.SCENARIOS["overload-n4"].plant
    plant = dataclasses.replace(
        base,
        duration_ns=SECOND,
        arena_buffers=3,
        groups=(Writers(count=4, sizes=(64 * KIB,), copy_bps=100 * MIB),),
        disk=Disk(steps=((0, 20 * MIB),)),
    )
    trace = run(plant, "seed", 1)
    assert trace.exhausted
    assert trace.arena_waits
    assert max(trace.debt_bytes) <= 3 * (UNIT + 64 * KIB)  # never more sealed than buffers
