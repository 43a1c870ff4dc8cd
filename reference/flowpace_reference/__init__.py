"""flowpace_reference: the pure, executable specification of the flowpace flow controller.

Immutable values in, immutable values out; time is an explicit integer input. Modules:

- `flowpace_reference.types`: options, configuration, controller and task state, decisions.
- `flowpace_reference.u64`: the seed's unsigned 64-bit arithmetic.
- `flowpace_reference.config`: checking and normalising options (spec CFG-1 to CFG-4).
- `flowpace_reference.measures`: derived quantities (spec AR-2 to AR-8).
- `flowpace_reference.transitions`: one function per operation (spec FC-1 to FC-12).
"""

from flowpace_reference.config import normalise as normalise
from flowpace_reference.types import Config as Config
from flowpace_reference.types import ControllerState as ControllerState
from flowpace_reference.types import DebtOverflowError as DebtOverflowError
from flowpace_reference.types import Emission as Emission
from flowpace_reference.types import FlushDecision as FlushDecision
from flowpace_reference.types import FlushPlan as FlushPlan
from flowpace_reference.types import ForegroundDecision as ForegroundDecision
from flowpace_reference.types import ForegroundRegime as ForegroundRegime
from flowpace_reference.types import Metric as Metric
from flowpace_reference.types import MetricKind as MetricKind
from flowpace_reference.types import Options as Options
from flowpace_reference.types import Outcome as Outcome
from flowpace_reference.types import TaskState as TaskState
from flowpace_reference.types import TaskStateError as TaskStateError
from flowpace_reference.types import TaskStep as TaskStep

__all__ = [
    "Config",
    "ControllerState",
    "DebtOverflowError",
    "Emission",
    "FlushDecision",
    "FlushPlan",
    "ForegroundDecision",
    "ForegroundRegime",
    "Metric",
    "MetricKind",
    "Options",
    "Outcome",
    "TaskState",
    "TaskStateError",
    "TaskStep",
    "normalise",
]
