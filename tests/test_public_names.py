"""Public names read well: what a user sees in help(), reprs and tracebacks is flowpace's."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import pydoc
import re
import threading
import traceback
from collections.abc import Callable

import pytest

import flowpace
from flowpace import FlowController, FlowOptions, FlowOutcome, TaskStateError
from flowpace.testing import ManualClock


def _rendered_default(value: object) -> str:
    """Return how the docstring writes a default: sizes in MiB, other values as Python."""
    if value == 64 << 20:
        return "64 MiB"
    if value == 16 << 20:
        return "16 MiB/s"
    return repr(value)


@pytest.mark.parametrize("field", dataclasses.fields(FlowOptions), ids=lambda f: f.name)
def test_help_describes_every_option_with_its_default(field: dataclasses.Field[object]) -> None:
    text = pydoc.render_doc(FlowOptions, renderer=pydoc.TextDoc())
    match = re.search(rf"``{field.name}`` \(default ([^)]*)\)\n\s+(\S.*)", text)
    assert match is not None, f"help(FlowOptions) does not describe {field.name}"
    assert match.group(1) == _rendered_default(field.default)
    assert len(match.group(2)) > 20  # a sentence, not a placeholder


def test_errors_are_named_as_flowpace_exports_them() -> None:
    ctl = FlowController(clock=ManualClock())
    task = ctl.on_enqueue_est(1)
    ctl.on_mark_done(task)
    with pytest.raises(TaskStateError) as caught:
        ctl.on_mark_done(task)
    line = traceback.format_exception_only(caught.value)[-1]
    assert line.startswith("flowpace.TaskStateError: on_mark_done:")
    for name in ("TaskStateError", "DebtOverflowError", "Outcome"):
        exported = getattr(flowpace, name)
        assert exported.__module__ == "flowpace"
        assert name in flowpace.__all__


def test_outcomes_survive_pickling_under_their_public_module() -> None:
    for outcome in FlowOutcome:
        assert pickle.loads(pickle.dumps(outcome)) is outcome  # noqa: S301 - our own bytes
    assert flowpace.Outcome is FlowOutcome


def test_no_public_signature_has_a_private_parameter() -> None:
    from flowpace import prometheus, recording, testing  # noqa: PLC0415 - the modules checked

    public: list[Callable[..., object]] = [
        FlowController,
        FlowOptions,
        ManualClock,
        testing.RecordingObserver,
        testing.controller_from_state,
        recording.TraceRecorder,
        recording.recording,
        prometheus.PrometheusObserver,
    ]
    for item in public:
        names = list(inspect.signature(item).parameters)
        private = [name for name in names if name.startswith("_")]
        assert not private, f"{item.__qualname__} takes private parameters {private}"


def test_the_lock_hook_is_a_context_not_a_parameter() -> None:
    from flowpace.testing import lock_factory  # noqa: PLC0415 - the hook under test

    made: list[str] = []

    def recording_factory(name: str) -> threading.Lock:
        made.append(name)
        return threading.Lock()

    clock = ManualClock()
    with lock_factory(recording_factory):
        FlowController(clock=clock)
    FlowController(clock=clock)  # outside the block: the default locks again
    assert made == ["pacing", "state"]
