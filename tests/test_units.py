"""One unit for every duration: integer nanoseconds in every form (spec HARD-13).

The expected values are worked out by hand from the spec's arithmetic (FC-7, FC-10), in
microseconds as the model computes them, then multiplied by 1 000.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

import pytest

from flowpace import FlowController, FlowOptions, FlowTask, Nanoseconds
from flowpace.recording import TraceRecorder
from flowpace.testing import ManualClock

OPTIONS = FlowOptions(
    enable_backpressure=True,
    enable_flush_pacing=True,
    bp_flush_unit_bytes=1_000,
    bp_soft_debt_units=1,
    bp_pacing_soft_debt_units=1,
    bp_warmup_min_samples=1,
)

FOREGROUND_FORMS: dict[str, Callable[[FlowController, int], int]] = {
    "blocking": lambda ctl, nbytes: ctl.before_foreground_write(nbytes),
    "nowait": lambda ctl, nbytes: ctl.before_foreground_write_nowait(nbytes),
    "async": lambda ctl, nbytes: asyncio.run(ctl.before_foreground_write_async(nbytes)),
}

FLUSH_FORMS: dict[str, Callable[[FlowController, FlowTask], int]] = {
    "blocking": lambda ctl, task: ctl.before_flush(task),
    "nowait": lambda ctl, task: ctl.before_flush_nowait(task),
    "async": lambda ctl, task: asyncio.run(ctl.before_flush_async(task)),
}


def warm_controller() -> tuple[FlowController, ManualClock]:
    """Return a controller with one I/O sample of 1 MB/s (1 000 bytes in 1 ms), debt 0."""
    clock = ManualClock()
    ctl = FlowController(OPTIONS, clock=clock)
    task = ctl.on_enqueue_est(1_000)
    clock.advance_ns(1_000_000)
    ctl.on_io_built(task, 1_000, 1_000_000)
    ctl.on_mark_done(task)
    return ctl, clock


@pytest.mark.parametrize("form", sorted(FOREGROUND_FORMS))
def test_hard13_every_foreground_form_returns_nanoseconds(form: str) -> None:
    # spec HARD-13, FC-7: 2 units against a soft threshold of 1, with a 1 MB/s disk, a 500-byte
    # write is delayed 500 * 1_000_000 // 1_000_000 us at the halved share: 1 000 us, 10**6 ns.
    ctl, _ = warm_controller()
    ctl.on_enqueue_est(2_000)
    waited = FOREGROUND_FORMS[form](ctl, 500)
    assert (waited, type(waited)) == (1_000_000, int)


@pytest.mark.parametrize("form", sorted(FLUSH_FORMS))
def test_hard13_every_flush_form_returns_the_sleep_in_exact_nanoseconds(form: str) -> None:
    # spec HARD-13, FC-10: the first flush of 100 bytes at 1 MB/s sets the deadline 100 us
    # ahead; 98 500 ns later the second waits the remaining 1 500 ns, returned exactly, not
    # rounded to whole microseconds as the pacing metric is.
    ctl, clock = warm_controller()
    first, second = ctl.on_enqueue_est(100), ctl.on_enqueue_est(100)
    assert ctl.before_flush(first) == 0
    clock.advance_ns(98_500)
    waited = FLUSH_FORMS[form](ctl, second)
    assert (waited, type(waited)) == (1_500, int)


@pytest.mark.parametrize(
    "method",
    [
        FlowController.before_foreground_write,
        FlowController.before_foreground_write_nowait,
        FlowController.before_foreground_write_async,
        FlowController.before_flush,
        FlowController.before_flush_nowait,
        FlowController.before_flush_async,
        TraceRecorder.before_foreground_write,
        TraceRecorder.before_foreground_write_nowait,
        TraceRecorder.before_foreground_write_async,
        TraceRecorder.before_flush,
        TraceRecorder.before_flush_nowait,
        TraceRecorder.before_flush_async,
    ],
    ids=lambda method: method.__qualname__,
)
def test_hard13_the_return_annotations_name_the_unit(method: Callable[..., object]) -> None:
    # spec HARD-13: the unit is stated in the types, for readers and for help().
    assert inspect.signature(method).return_annotation == "Nanoseconds"
    assert Nanoseconds is int
