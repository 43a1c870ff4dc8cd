"""The named scenarios: one plant each, with the window its metrics are taken over.

The plant of every scenario is the one the control-quality targets were set on: a disk of
100 MiB/s, buffers that seal at 8 MiB (the flush unit), soft/hard/stop at 8/24/48 units, an
arena of 64 buffers, one flusher, flush pacing and backpressure on, 4 KiB closed-loop writers
unless the scenario says otherwise. "Demand" is what the writers would write with no delay:
a closed-loop writer copies at its own speed, so N writers at ``200/N`` MiB/s each demand
twice the disk in total.

Simulated durations are chosen so that every law reaches its steady state before the window
opens (the seed's debt needs about 4 s to climb to stop at N = 64) while a full run of every
scenario stays short.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from flowpace.options import FlowOptions
from flowpace.simulation.laws import NANOS_PER_SECOND
from flowpace.simulation.plant import KIB, MIB, MS, SECOND, Disk, PlantConfig, Writers

DISK_BPS: Final = 100 * MIB
UNIT_BYTES: Final = 8 * MIB
OPTIONS: Final = FlowOptions(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=UNIT_BYTES,
    bp_soft_debt_units=8,
    bp_hard_debt_units=24,
    bp_stop_debt_units=48,
)
"""The controller's options in every scenario."""

STEADY: Final = "steady overload"
STOP: Final = "real stop"
STEP: Final = "disk step"
BURST: Final = "burst below stop"
COLD: Final = "cold start"
IDLE: Final = "burst after idle"
BELOW: Final = "below capacity"
NOISY: Final = "noisy disk"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named plant, its metrics window and the targets that apply to it."""

    name: str
    description: str
    plant: PlantConfig
    window: tuple[int, int]
    """``[start, end)`` of the steady metrics, nanoseconds."""
    family: str
    """Which targets apply (one of the family names of this module)."""
    step_at_ns: int | None = None
    """When the disk steps (settle time and overshoot are measured from here)."""
    ideal_delay_ns: int | None = None
    """The mean delay a perfectly fair law would give each write in steady state."""
    twin: str | None = None
    """For a burst after a long idle: the scenario with a short idle it must behave like."""


def _plant(
    groups: tuple[Writers, ...],
    duration_ns: int,
    disk: Disk | None = None,
    stop_limit_us: int = 1_000_000,
) -> PlantConfig:
    """Return the standard plant with ``groups`` of writers, run for ``duration_ns``."""
    return PlantConfig(
        groups=groups,
        disk=Disk(steps=((0, DISK_BPS),)) if disk is None else disk,
        duration_ns=duration_ns,
        options=OPTIONS,
        seal_bytes=UNIT_BYTES,
        stop_limit_us=stop_limit_us,
    )


def ideal_delay_ns(writers: int, write_bytes: int, copy_bps: int, capacity_bps: int) -> int:
    """
    Return the steady delay per write of a fair law for closed-loop writers over capacity.

    Each of the N writers gets ``capacity / N``: a write's cycle is ``N * w / capacity``, of
    which ``w / copy_bps`` is the writer's own copying; the rest is delay.
    """
    cycle = writers * write_bytes * NANOS_PER_SECOND // capacity_bps
    return max(cycle - write_bytes * NANOS_PER_SECOND // copy_bps, 0)


def _overload(name: str, n: int, copy_bps: int, size: int, description: str) -> Scenario:
    """Return a steady overload of ``n`` closed-loop writers of ``size`` bytes."""
    groups = (Writers(count=n, sizes=(size,), copy_bps=copy_bps),)
    return Scenario(
        name=name,
        description=description,
        plant=_plant(groups, 8 * SECOND),
        window=(4 * SECOND, 8 * SECOND),
        family=STEADY,
        ideal_delay_ns=ideal_delay_ns(n, size, copy_bps, DISK_BPS),
    )


def _all() -> tuple[Scenario, ...]:
    """Return every scenario, in report order."""
    total = 2 * DISK_BPS
    out = [
        _overload(
            f"overload-n{n}",
            n,
            total // n,
            4 * KIB,
            f"{n} writers, 4 KiB, total demand twice the disk",
        )
        for n in (1, 4, 16, 64, 256)
    ]
    out += [
        _overload(
            f"overload-each-n{n}",
            n,
            total,
            4 * KIB,
            f"{n} writers, 4 KiB, each demanding twice the disk",
        )
        for n in (4, 16, 64, 256)
    ]
    out += [
        _overload(
            f"large-writes-{label}",
            16,
            total // 16,
            size,
            f"16 writers, {shown} writes, total demand twice the disk",
        )
        for label, shown, size in (("64k", "64 KiB", 64 * KIB), ("1m", "1 MiB", MIB))
    ]
    sixteen = (Writers(count=16, sizes=(16 * KIB,), copy_bps=total // 16),)
    for name, before, after in (
        ("disk-step-down", DISK_BPS, DISK_BPS // 4),
        ("disk-step-up", DISK_BPS // 4, DISK_BPS),
    ):
        out.append(
            Scenario(
                name=name,
                description=f"16 writers of 16 KiB at 200 MiB/s; disk {before // MIB} -> "
                f"{after // MIB} MiB/s at 4 s",
                plant=_plant(sixteen, 12 * SECOND, Disk(steps=((0, before), (4 * SECOND, after)))),
                window=(4 * SECOND, 12 * SECOND),
                family=STEP,
                step_at_ns=4 * SECOND,
            )
        )
    for name, stall, limit in (("disk-stall", 2, 5), ("disk-stall-long", 4, 1)):
        out.append(
            Scenario(
                name=name,
                description=f"16 writers, total demand twice the disk; at 3 s the disk "
                f"stalls for {stall} s and another bucket enqueues 36 units; stop limit {limit} s",
                plant=replace(
                    _plant(
                        (Writers(count=16, copy_bps=total // 16),),
                        (5 + stall) * SECOND,
                        Disk(
                            steps=((0, DISK_BPS), (3 * SECOND, 0), ((3 + stall) * SECOND, DISK_BPS))
                        ),
                        stop_limit_us=limit * 1_000_000,
                    ),
                    external=((3 * SECOND, 4, 9 * UNIT_BYTES),),
                ),
                window=(0, (5 + stall) * SECOND),
                family=STOP,
            )
        )
    # Bursts: 16 open-loop writers, 48 MiB/s in total, with 500 ms at 320 MiB/s every 2 s.
    burst_profile = tuple(
        point
        for k in range(4)
        for point in (
            (k * 2 * SECOND, 3 * MIB),
            (k * 2 * SECOND + 1 * SECOND, 20 * MIB),
            (k * 2 * SECOND + 1 * SECOND + 500 * MS, 3 * MIB),
        )
    )
    out.append(
        Scenario(
            name="bursty",
            description="16 open-loop writers, 48 MiB/s, bursts of 320 MiB/s for 500 ms "
            "every 2 s (each fits below stop)",
            plant=_plant(
                (Writers(count=16, copy_bps=1 << 30, arrivals=burst_profile),), 8 * SECOND
            ),
            window=(0, 8 * SECOND),
            family=BURST,
        )
    )
    out.append(
        Scenario(
            name="cold-start",
            description="a new controller; 16 writers, total demand twice the disk, from 0",
            plant=_plant((Writers(count=16, copy_bps=total // 16),), 2 * SECOND),
            window=(0, 2 * SECOND),
            family=COLD,
        )
    )
    for name, gap, twin in (("idle-burst", 8, "short-idle-burst"), ("short-idle-burst", 2, None)):
        windows = ((0, 2 * SECOND), ((2 + gap) * SECOND, (4 + gap) * SECOND))
        out.append(
            Scenario(
                name=name,
                description=f"2 s of overload, {gap} s without writes (the idle reset is 5 s), "
                "then 2 s of overload",
                plant=_plant(
                    (Writers(count=16, copy_bps=total // 16, windows=windows),),
                    (4 + gap) * SECOND,
                ),
                window=windows[1],
                family=IDLE,
                twin=twin,
            )
        )
    out.append(
        Scenario(
            name="below-capacity",
            description="16 writers, total demand half the disk",
            plant=_plant((Writers(count=16, copy_bps=DISK_BPS // 32),), 4 * SECOND),
            window=(1 * SECOND, 4 * SECOND),
            family=BELOW,
        )
    )
    out.append(
        Scenario(
            name="noisy-disk",
            description="16 writers, total demand twice the disk; I/O times x0.5 to x2, "
            "1 % of I/Os 200 ms longer",
            plant=_plant(
                (Writers(count=16, copy_bps=total // 16),),
                8 * SECOND,
                Disk(
                    steps=((0, DISK_BPS),),
                    noise_permille=(500, 2000),
                    spike_permille=10,
                    spike_ns=200 * MS,
                ),
            ),
            window=(4 * SECOND, 8 * SECOND),
            family=NOISY,
        )
    )
    return tuple(out)


SCENARIOS: Final = {scenario.name: scenario for scenario in _all()}
"""Every scenario, by name, in report order."""
