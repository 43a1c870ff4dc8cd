"""Linearizability: the checker checked, then real threads checked against the model (DIV-6).

The first half pins the Wing-Gong-Lowe checker of `linearizability` on small objects whose
answers are known by hand, and on histories of the reference model itself, so that a checker
that accepts everything, or rejects what it should accept, fails here before it is trusted with
the controller; and on the specification's treatment of time: a reading older than the latest
time applied is raised to it, and a flush's readings must agree with what it decided. The second
half runs real threads, each on its own clock (drawn offsets and steps), and checks their
histories.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Hashable

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from flowpace import FlowController
from flowpace.verify import campaign_settings, record_stats
from flowpace_reference import transitions as model
from flowpace_reference.config import normalise
from flowpace_reference.types import Options, Outcome
from linearizability import (
    Call,
    ConcurrentRun,
    ControllerSpec,
    HistoryRecorder,
    HistoryTooLongError,
    ModelState,
    SearchBudgetError,
    ThreadObserver,
    check,
    check_run,
    concurrent_runs,
    implementation_options,
    run_scripts_in_threads,
    yield_thread,
)

# --- small objects whose linearizations are known by hand ------------------------------------


class Register:
    """A read/write register starting at 0: ``write(v)`` -> None, ``read()`` -> the value."""

    def initial(self) -> int:
        """Return the register before any write."""
        return 0

    def phases(self, call: Call) -> int:
        """Return 1: every call is atomic."""
        del call
        return 1

    def apply(self, state: int, call: Call, phase: int, carry: Hashable) -> tuple[int, None] | None:
        """Return the register after ``call``, or None if its observed result rules it out."""
        del phase, carry
        if call.name == "write":
            value = call.args[0]
            assert isinstance(value, int)
            return (value, None) if call.result is None else None
        return (state, None) if call.result == state else None


class SplitCounter:
    """
    A counter whose ``add`` reads in one phase and writes in a second, as a racy one does.

    ``add(n)`` -> None in two phases (read, then write what was read plus ``n``);
    ``get()`` -> the value.
    """

    def initial(self) -> int:
        """Return the counter before any add."""
        return 0

    def phases(self, call: Call) -> int:
        """Return 2 for an add, 1 for a get."""
        return 2 if call.name == "add" else 1

    def apply(self, state: int, call: Call, phase: int, carry: Hashable) -> tuple[int, int] | None:
        """Return the counter after one phase and what the write phase needs."""
        if call.name == "get":
            return (state, 0) if call.result == state else None
        amount = call.args[0]
        assert isinstance(amount, int)
        if phase == 0:
            return state, state
        assert isinstance(carry, int)
        return carry + amount, 0


def call(thread: int, span: tuple[int, int], name: str, *args: Hashable, result: Hashable) -> Call:
    """Return a call of ``thread`` over the time ``span``."""
    return Call(
        thread=thread, invoked=span[0], returned=span[1], name=name, args=args, result=result
    )


def test_overlapping_write_and_read_may_see_either_value() -> None:
    # spec DIV-6: a read concurrent with a write may take effect before or after it.
    for seen in (0, 1):
        history = [
            call(0, (0, 10), "write", 1, result=None),
            call(1, (5, 6), "read", result=seen),
        ]
        assert check(history, Register()).linearizable


def test_a_read_after_a_completed_write_must_see_it() -> None:
    # spec DIV-6: real-time order is kept: the write returned before the read was invoked.
    history = [
        call(0, (0, 1), "write", 1, result=None),
        call(1, (2, 3), "read", result=0),
    ]
    verdict = check(history, Register())
    assert not verdict.linearizable
    assert "NOT linearizable" in verdict.explain(history)


def test_two_reads_cannot_see_writes_in_opposite_orders() -> None:
    # spec DIV-6: one order must explain every thread's observations at once.
    history = [
        call(0, (0, 10), "write", 1, result=None),
        call(1, (0, 10), "write", 2, result=None),
        call(2, (11, 12), "read", result=1),
        call(2, (13, 14), "read", result=2),
    ]
    assert not check(history, Register()).linearizable
    history[3] = call(2, (13, 14), "read", result=1)
    assert check(history, Register()).linearizable


def test_the_witness_respects_real_time() -> None:
    # spec DIV-6: the order returned is a linearization: each call after all that returned
    # before it was invoked.
    history = [
        call(1, (4, 9), "read", result=2),
        call(0, (0, 3), "write", 1, result=None),
        call(0, (5, 6), "write", 2, result=None),
    ]
    verdict = check(history, Register())
    assert verdict.linearizable
    assert [history[index].name for index, _ in verdict.order] == ["write", "write", "read"]
    assert [history[index].args for index, _ in verdict.order][:2] == [(1,), (2,)]


def test_phases_allow_a_lost_update_only_between_concurrent_calls() -> None:
    # spec DIV-6, FC-10: a call with two phases may interleave with another between them.
    concurrent = [
        call(0, (0, 10), "add", 1, result=None),
        call(1, (0, 10), "add", 1, result=None),
        call(2, (11, 12), "get", result=1),
    ]
    assert check(concurrent, SplitCounter()).linearizable
    one_after_the_other = [
        call(0, (0, 4), "add", 1, result=None),
        call(1, (5, 10), "add", 1, result=None),
        call(2, (11, 12), "get", result=1),
    ]
    assert not check(one_after_the_other, SplitCounter()).linearizable


def test_memoisation_bounds_the_search_of_a_wide_failing_history() -> None:
    # spec DIV-6: refuting this history by trying orders needs 14! of them; memoised on (calls
    # taken, state) the search visits each subset of the writes at most once per state.
    writes = [call(i, (0, 10), "write", 7, result=None) for i in range(14)]
    history = [*writes, call(99, (20, 21), "read", result=8)]
    verdict = check(history, Register())
    assert not verdict.linearizable
    assert verdict.nodes <= 2**14 + 1


def test_bounds_are_enforced() -> None:
    # spec DIV-6: histories and the search are bounded, so a check always ends.
    history = [call(0, (2 * i, 2 * i + 1), "write", i, result=None) for i in range(10)]
    with pytest.raises(HistoryTooLongError):
        check(history, Register(), max_calls=9)
    wide = [call(i, (0, 10), "add", 1, result=None) for i in range(10)]
    with pytest.raises(SearchBudgetError):
        check([*wide, call(99, (20, 21), "get", result=99)], SplitCounter(), max_nodes=50)
    with pytest.raises(ValueError, match="returned before it was invoked"):
        check([call(0, (5, 4), "read", result=0)], Register())


# --- histories of the reference model ------------------------------------------------------

NOW_NS = 7 * 10**9
"""The constant time of the model histories below."""

MODEL_CONFIG = normalise(
    Options(
        enable_backpressure=True,
        enable_flush_pacing=True,
        bp_flush_unit_bytes=1_000,
        bp_soft_debt_units=2,
        bp_hard_debt_units=3,
        bp_stop_debt_units=5,
        bp_cold_start_fail_safe_units=2,
        bp_pacing_soft_debt_units=2,
        bp_warmup_min_samples=1,
        bp_floor_bps=100_000,
        bp_max_delay_us=50_000,
    )
)
"""A small configuration: a few thousand bytes of debt cross every threshold."""


@st.composite
def sequential_scripts(draw: st.DrawFn) -> list[tuple[str, tuple[Hashable, ...]]]:
    """Return a protocol-respecting script of model calls: tasks, writes, flushes, scopes."""
    script: list[tuple[str, tuple[Hashable, ...]]] = []
    live: list[int] = []
    reported: set[int] = set()
    tasks = 0
    for _ in range(draw(st.integers(1, 14))):
        choices = ["enqueue", "fg_write", "scope", "snapshot"]
        if live:
            choices += ["io_built", "mark_done", "mark_outcome", "force_bypass", "before_flush"]
        kind = draw(st.sampled_from(choices))
        if kind == "enqueue":
            script.append(("enqueue", (tasks, draw(st.integers(0, 3_000)))))
            live.append(tasks)
            tasks += 1
        elif kind == "fg_write":
            script.append(("fg_write", (draw(st.integers(0, 5_000)),)))
        elif kind == "scope":
            name = draw(st.sampled_from(["enter_teardown", "leave_teardown", "enter_starving"]))
            script.append((name, ()))
        elif kind == "snapshot":
            script.append(("snapshot", ()))
        else:
            task = draw(st.sampled_from(live))
            if kind == "io_built":
                nbytes = draw(st.integers(1, 3_000))
                script.append(("io_built", (task, nbytes, draw(st.integers(0, 5_000_000)))))
                reported.add(task)
            elif kind == "mark_done":
                script.append(("mark_done", (task,)))
                live.remove(task)
            elif kind == "mark_outcome":
                script.append(("mark_outcome", (task, draw(st.sampled_from(Outcome)))))
            else:
                script.append((kind, (task,)))
    return script


def sequential_history(
    script: list[tuple[str, tuple[Hashable, ...]]],
) -> tuple[ControllerSpec, list[Call]]:
    """Return the model's specification and the history of ``script`` run alone, call by call."""
    tasks = sum(1 for name, _ in script if name == "enqueue")
    spec = ControllerSpec(MODEL_CONFIG, model.new_controller(MODEL_CONFIG, 0), tasks, NOW_NS)
    state: ModelState = spec.initial()
    history = []
    for index, (name, args) in enumerate(script):
        state, result = spec.answer(state, name, args)
        history.append(call(0, (2 * index, 2 * index + 1), name, *args, result=result))
    return spec, history


@pytest.mark.no_crosshair("a search over histories, too deep to run symbolically")
@given(sequential_scripts(), st.data())
def test_a_sequential_model_history_is_linearizable_however_it_is_stretched(
    script: list[tuple[str, tuple[Hashable, ...]]], data: st.DataObject
) -> None:
    # spec DIV-6: the model's own answers, in the order it gave them, are a linearization; and
    # lengthening calls (so that they overlap) only adds orders, never removes that one.
    spec, history = sequential_history(script)
    assert check(history, spec).linearizable
    stretched = [
        dataclasses.replace(item, returned=item.returned + 2 * data.draw(st.integers(0, 4)))
        for item in history
    ]
    shuffled = data.draw(st.permutations(stretched))
    assert check(shuffled, spec).linearizable


@pytest.mark.no_crosshair("a search over histories, too deep to run symbolically")
@given(sequential_scripts(), st.data())
def test_a_wrong_answer_in_a_sequential_history_is_not_linearizable(
    script: list[tuple[str, tuple[Hashable, ...]]], data: st.DataObject
) -> None:
    # spec DIV-6: with no overlap there is one order only, and a result the model does not
    # give at that point cannot be explained.
    spec, history = sequential_history(script)
    index = data.draw(st.integers(0, len(history) - 1))
    wrong = history[index]
    history[index] = dataclasses.replace(wrong, result=("not", wrong.result))
    assert not check(history, spec).linearizable


def test_a_lost_debt_update_is_not_linearizable() -> None:
    # spec DIV-6, INV-1: two concurrent enqueues each add their estimate; a snapshot after both
    # that shows only one of them is no order of the model's operations.
    spec = ControllerSpec(MODEL_CONFIG, model.new_controller(MODEL_CONFIG, 0), 2, NOW_NS)
    enqueued = [
        call(0, (0, 10), "enqueue", 0, 100, result=None),
        call(1, (0, 10), "enqueue", 1, 200, result=None),
    ]
    after_both = spec.answer(
        spec.answer(spec.initial(), "enqueue", (0, 100))[0], "enqueue", (1, 200)
    )
    right = after_both[0].controller
    assert check([*enqueued, call(2, (11, 12), "snapshot", result=right)], spec).linearizable
    lost = dataclasses.replace(right, debt_bytes=200)
    assert not check([*enqueued, call(2, (11, 12), "snapshot", result=lost)], spec).linearizable


def timed(item: Call, *readings: int) -> Call:
    """Return ``item`` with the clock readings its thread took during the call."""
    return dataclasses.replace(item, readings=readings)


def test_a_reading_older_than_the_latest_time_applied_is_raised_to_it() -> None:
    # spec DIV-6, FC-5: thread 1's enqueue applied 9 ms; thread 0's settle, after it, read an
    # older 5 ms and must settle and go idle at 9 ms: max(reading, latest applied).
    spec = ControllerSpec(MODEL_CONFIG, model.new_controller(MODEL_CONFIG, 0), 1, NOW_NS)
    enqueued = model.enqueue(MODEL_CONFIG, spec.start, 100, 9_000_000)
    settled = model.mark_done(MODEL_CONFIG, enqueued.state, enqueued.task, 9_000_000).state
    calls = [
        timed(call(1, (0, 1), "enqueue", 0, 100, result=None), 9_000_000),
        timed(call(0, (2, 3), "mark_done", 0, result=None), 5_000_000),
    ]
    assert check([*calls, call(2, (4, 5), "snapshot", result=settled)], spec).linearizable
    raw = dataclasses.replace(settled, idle_since=5_000_000)
    assert not check([*calls, call(2, (4, 5), "snapshot", result=raw)], spec).linearizable
    # Had the settle read the later time itself, the raw reading would be no clamp at all.
    late = [calls[0], timed(calls[1], 9_000_000)]
    assert check([*late, call(2, (4, 5), "snapshot", result=settled)], spec).linearizable


def test_a_blocking_flush_reads_the_clock_as_its_decisions_say() -> None:
    # spec DIV-6, FC-9, FC-10: a flush reads the clock to decide, again under the pacing lock
    # only if it is to be paced, and once more only after a sleep; readings that contradict the
    # result it returned are no history of the controller.
    spec = ControllerSpec(MODEL_CONFIG, model.new_controller(MODEL_CONFIG, 0), 1, NOW_NS)
    state, _ = spec.answer(spec.initial(), "enqueue", (0, 500))
    warm, _ = spec.answer(state, "io_built", (0, 500, 1_000_000))
    prelude = [
        call(0, (0, 1), "enqueue", 0, 500, result=None),
        call(0, (2, 3), "io_built", 0, 500, 1_000_000, result=None),
    ]
    _, paced = spec.answer(warm, "before_flush", (0,))
    assert paced == (0, 0, ()), "the first paced flush sleeps 0"
    flush = call(0, (4, 5), "before_flush", 0, result=paced)
    assert check([*prelude, timed(flush, NOW_NS, NOW_NS)], spec).linearizable
    assert not check([*prelude, timed(flush, NOW_NS)], spec).linearizable
    assert not check([*prelude, timed(flush, NOW_NS, NOW_NS, NOW_NS)], spec).linearizable
    bypassed = [*prelude, call(0, (4, 5), "enter_teardown", result=None)]
    _, result = spec.answer(spec.answer(warm, "enter_teardown", ())[0], "before_flush", (0,))
    flush = call(0, (6, 7), "before_flush", 0, result=result)
    assert check([*bypassed, timed(flush, NOW_NS)], spec).linearizable
    assert not check([*bypassed, timed(flush, NOW_NS, NOW_NS)], spec).linearizable


# --- real threads on the implementation ------------------------------------------------------

THREADS = 4
"""Threads per history: enough to overlap, few enough to keep histories short (<= ~60 calls)."""

JOIN_TIMEOUT_S = 300.0
"""How long a history's threads may take; past it the test fails with every thread's stack.

Wall-clock time, so generous: a history takes milliseconds, and only a hung thread (a bug)
comes near this; a loaded machine must never fail a history by it."""

MAIN_THREAD = -1
"""The thread number of calls made on the main thread, before and after the threads run."""

LINEARIZABILITY_STATS: Counter[str] = Counter()
"""Histories and calls checked in this process."""


@pytest.mark.no_crosshair("real threads")
@campaign_settings()
@given(run=concurrent_runs(threads=THREADS, actions=4, skewed=True))
def test_real_thread_histories_are_linearizable(run: ConcurrentRun) -> None:
    # spec DIV-6, INV-1, INV-7: threads started together on one controller (real locks; each
    # thread's clock has its own drawn offset and steps, no thread's sleep moves it); every
    # result must be the model's at some order consistent with real time, each call at the
    # time it was entitled to apply (max of its reading and the latest applied before it), and
    # the debt must be exactly 0 once every task is done. Everything is drawn before the
    # threads start: Hypothesis's draws stay on this thread.
    clock = run.clock()
    observer = ThreadObserver()
    controller = FlowController(implementation_options(run.options), clock=clock, observer=observer)
    # Every clock read and sleep yields the interpreter to another thread (time.sleep(0)
    # releases the GIL): the calls then overlap inside the controller, not just at its edges.
    clock.now_ns, clock.point = run.now_ns, yield_thread
    recorder = HistoryRecorder(controller, clock, observer, time.perf_counter_ns)
    recorder.run(MAIN_THREAD, run.prelude)
    run_scripts_in_threads(recorder, run.scripts, JOIN_TIMEOUT_S)
    recorder.call(MAIN_THREAD, "snapshot", ())
    history = recorder.history
    LINEARIZABILITY_STATS["examples"] += 1
    LINEARIZABILITY_STATS["steps"] += len(history)
    overlapping = sum(
        1
        for a, b in itertools.pairwise(sorted(history, key=lambda c: c.invoked))
        if b.invoked < a.returned
    )
    LINEARIZABILITY_STATS["overlapping calls"] += overlapping
    event(f"overlapping calls: {min(overlapping // 5 * 5, 20)}+")
    check_run(run, history, controller.snapshot())


def teardown_module() -> None:
    """Report this module's campaign statistics to `flowpace verify`, if it asked for them."""
    if LINEARIZABILITY_STATS:
        record_stats("linearizability", **LINEARIZABILITY_STATS)
