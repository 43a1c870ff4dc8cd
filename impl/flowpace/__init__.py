"""flowpace: a formally specified write flow controller.

Debt-based foreground backpressure and flush pacing, with the behaviour of the mace-kv 0.0.28
flow controller. The pure model it is checked against is `flowpace_reference`.

A storage engine charges each flush to the controller when it enqueues it, reports the bytes
its I/O wrote, and settles it when done; foreground writers ask the controller before writing
and are delayed while the debt is high; the flusher asks before each flush and is paced at the
measured disk rate. Every method is safe to call from any thread.

>>> from flowpace import FlowController, FlowOptions, FlowOutcome
>>> from flowpace.testing import ManualClock, RecordingObserver
>>> clock, observer = ManualClock(), RecordingObserver()  # deterministic; default: system clock
>>> opts = FlowOptions(enable_backpressure=True, bp_flush_unit_bytes=1_000,
...                    bp_soft_debt_units=1, bp_warmup_min_samples=1)
>>> ctl = FlowController(opts, clock=clock, observer=observer)
>>> task = ctl.on_enqueue_est(1_000)        # a flush of about 1 000 bytes is queued
>>> clock.advance_ns(1_000_000)             # ... and takes a millisecond
>>> ctl.on_io_built(task, 1_000, 1_000_000)  # it wrote 1 000 bytes in 1 ms: 1 MB/s
>>> ctl.on_mark_done(task)
>>> ctl.snapshot().debt_bytes, ctl.snapshot().io_bps_ewma
(0, 1000000)
>>> backlog = [ctl.on_enqueue_est(1_000) for _ in range(2)]  # 2 units of debt, above soft
>>> ctl.before_foreground_write(500)        # 500 bytes at 1 MB/s, halved share: slept 1 ms
1000000
>>> [call.metric.value for call in observer.calls]
['FlowFgDelay', 'FlowFgDelayMicros']
>>> backlog[0].mark_outcome(FlowOutcome.EMPTY)
>>> for queued in backlog:
...     ctl.on_mark_done(queued)
>>> ctl.before_foreground_write(500)        # no debt: no delay
0
>>> with ctl.teardown_bypass():             # scopes also have enter_/leave_ methods
...     ctl.snapshot().teardown_bypass_scopes
1

Callers that must not block (asyncio, trio, their own schedulers) use the non-blocking
variants, which decide, record and return the wait in nanoseconds and leave the waiting to the
caller, or the async variants ``before_foreground_write_async`` and ``before_flush_async``,
which await an injectable ``async_sleep`` (default: `asyncio.sleep`):

>>> backlog = [ctl.on_enqueue_est(1_000) for _ in range(2)]
>>> ctl.before_foreground_write_nowait(500)  # the same decision as above, not slept
1000000
>>> clock.sleeps                             # only the blocking call above slept
(1000000,)

Errors: TypeError and ValueError for bad arguments, `TaskStateError` for a task used against
its lifecycle, `DebtOverflowError` past ``u64::MAX``; an operation that raises changes nothing.

Requirement IDs in the docstrings and comments (``FC-6``, ``DIV-3``, ...) are those of the
specification, which ships in the package as ``flowpace/spec/`` (``flow-control.md``,
``divergences.md``; ``importlib.resources.files("flowpace") / "spec"``), and in a clone at
``spec/``.
"""

from flowpace.clock import Clock, Nanoseconds, SystemClock
from flowpace.controller import FlowController, FlowTask
from flowpace.observer import FanOutObserver, InMemoryObserver, NoopObserver, Observer
from flowpace.options import FlowOptions
from flowpace_reference.types import (
    ControllerState,
    DebtOverflowError,
    ForegroundAdmit,
    ForegroundBlock,
    Metric,
    Outcome,
    TaskState,
    TaskStateError,
)
from flowpace_reference.types import Outcome as FlowOutcome

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "ControllerState",
    "DebtOverflowError",
    "FanOutObserver",
    "FlowController",
    "FlowOptions",
    "FlowOutcome",
    "FlowTask",
    "ForegroundAdmit",
    "ForegroundBlock",
    "InMemoryObserver",
    "Metric",
    "Nanoseconds",
    "NoopObserver",
    "Observer",
    "Outcome",
    "SystemClock",
    "TaskState",
    "TaskStateError",
]
