"""Linearizability with the extended law on: real threads against the model (spec EXT-5, DIV-6).

The runs of `tests/test_linearizability.py` (task lifecycles, scopes, snapshots, each thread on
its own drawn clock), with the extended law on and every foreground write made in its nowait
forms: ``decide_foreground_write`` (which takes a slot on the shared timeline, a
read-modify-write of the law's state) and ``recheck_foreground_write``. The specification is
the model's: the seed's lifecycle (`flowpace_reference.transitions`) and the law
(`flowpace_reference.extended`), the law's state kept beside the controller's in each search
state, each decision at the time it was entitled to apply (DIV-6). A timeline updated outside
the state lock would hand two concurrent writers the same slot: no order explains that.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Hashable
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowpace import FlowController
from flowpace.verify import campaign_settings
from flowpace_reference import extended
from flowpace_reference import transitions as model
from flowpace_reference.config import normalise
from flowpace_reference.types import Emission, ForegroundAdmit, ForegroundBlock
from linearizability import (
    Call,
    ConcurrentRun,
    ControllerSpec,
    HistoryRecorder,
    ModelState,
    ThreadObserver,
    applied,
    check,
    concurrent_runs,
    error_result,
    implementation_options,
    run_scripts_in_threads,
    yield_thread,
)

MAIN_THREAD: Final = -1
JOIN_TIMEOUT_S: Final = 60.0
"""A safety net against a hang, never reached by a correct run."""

EXT_CALLS: Final = ("ext_decide", "ext_recheck")
"""The extended law's nowait calls (spec EXT-7)."""

SearchState = tuple[ModelState, extended.ExtendedState]


class ExtendedSpec(ControllerSpec):
    """The model with the extended law: the law's state rides beside the controller's."""

    def initial(self) -> SearchState:  # type: ignore[override]  # the law's state beside it
        """Return the start state and an empty timeline (spec EXT-2)."""
        return super().initial(), extended.ExtendedState()

    def phases(self, call: Call) -> int:
        """Return 1 for the law's calls (one reading, one critical section); else as before."""
        return 1 if call.name in EXT_CALLS else super().phases(call)

    def apply(  # type: ignore[override]  # the search state carries the law's state
        self, state: SearchState, call: Call, phase: int, carry: Hashable
    ) -> tuple[SearchState, Hashable] | None:
        """Return the state after one phase of ``call``, or None if its result rules it out."""
        controller, law = state
        if call.name not in EXT_CALLS:
            stepped = super().apply(controller, call, phase, carry)
            return None if stepped is None else ((stepped[0], law), stepped[1])
        timed = applied(controller, self.readings(call)[-1])  # spec DIV-6: raised to latest
        cfg = extended.extended_config(self.config)
        if call.name == "ext_recheck":
            result: Hashable = (extended.recheck(cfg, timed.controller, timed.latest_ns), 0, ())
            return ((timed, law), None) if result == call.result else None
        (write_bytes,) = call.args
        assert isinstance(write_bytes, int)
        try:
            step = extended.decide(cfg, law, timed.controller, write_bytes, timed.latest_ns)
        except (TypeError, ValueError) as error:
            result = error_result(error)
            return ((timed, law), None) if result == call.result else None
        emitted: tuple[Emission, ...] = ()
        if isinstance(step.decision, ForegroundAdmit):
            emitted = extended.delay_emissions(step.decision.wait_ns)
        result = (step.decision, 0, emitted)
        return ((timed, step.state), None) if result == call.result else None


class ExtendedRecorder(HistoryRecorder):
    """Records the law's nowait calls too (spec EXT-7)."""

    @staticmethod
    def _result(name: str, value: object, slept: int, emitted: tuple[Emission, ...]) -> Hashable:
        """Return a call's result: for the law's calls, the decision, sleeps and emissions."""
        if name in EXT_CALLS:
            assert isinstance(value, (ForegroundAdmit, ForegroundBlock))
            return (value, slept, emitted)
        return HistoryRecorder._result(name, value, slept, emitted)

    def _perform(self, name: str, args: tuple[Hashable, ...]) -> object:
        """Make the call on the controller; the law's calls through its nowait forms."""
        if name == "ext_decide":
            (write_bytes,) = args
            assert isinstance(write_bytes, int)
            return self.controller.decide_foreground_write(write_bytes)
        if name == "ext_recheck":
            return self.controller.recheck_foreground_write()
        return super()._perform(name, args)


@st.composite
def extended_runs(draw: st.DrawFn) -> ConcurrentRun:
    """Return a concurrent run with the law on and its writes in the law's nowait forms."""
    run = draw(concurrent_runs(threads=3, actions=3, skewed=True))
    options = dataclasses.replace(
        run.options,
        ext_admission_timeline=True,
        ext_setpoint_units=draw(st.integers(0, 5)),
        ext_stop_wait_limit_ns=draw(st.sampled_from((1, 10**6))),
    )
    scripts = tuple(
        [
            (("ext_decide", args) if draw(st.integers(0, 3)) else ("ext_recheck", ()))
            if name in {"fg_write", "fg_write_nowait"}
            else (name, args)
            for name, args in script
        ]
        for script in run.scripts
    )
    # Two writes at once on every thread: concurrent decisions compete for the timeline.
    scripts = tuple([*script, ("ext_decide", (100,)), ("ext_decide", (100,))] for script in scripts)
    return dataclasses.replace(run, options=options, scripts=scripts)


@pytest.mark.no_crosshair("real threads")
@settings(campaign_settings(), max_examples=max(campaign_settings().max_examples // 2, 20))
@given(run=extended_runs())
def test_extended_law_histories_are_linearizable(run: ConcurrentRun) -> None:
    # spec EXT-5, EXT-6, DIV-6: see the module docstring.
    clock = run.clock()
    observer = ThreadObserver()
    controller = FlowController(implementation_options(run.options), clock=clock, observer=observer)
    clock.now_ns, clock.point = run.now_ns, yield_thread
    recorder = ExtendedRecorder(controller, clock, observer, time.perf_counter_ns)
    recorder.run(MAIN_THREAD, run.prelude)
    run_scripts_in_threads(recorder, run.scripts, JOIN_TIMEOUT_S)
    recorder.call(MAIN_THREAD, "snapshot", ())
    history = sorted(recorder.history, key=lambda call: call.invoked)
    config = normalise(run.options)
    start = model.new_controller(config, run.built_at_ns)
    spec = ExtendedSpec(config, start, run.task_count, run.now_ns, latest_ns=run.built_at_ns)
    verdict = check(history, spec)
    assert verdict.linearizable, verdict.explain(history)
