"""The values the flow controller reasons about (spec CFG-1, ST-1, ST-2).

Every type here is an immutable value. The reference model's operations take them and return
new ones; the threaded implementation shares these types (its snapshots are `ControllerState`
values) but none of the model's logic.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TaskStateError(RuntimeError):
    """A task was used against its lifecycle: finished, reported twice, or foreign (spec ERR-1)."""


class DebtOverflowError(OverflowError):
    """An operation would raise a counter above ``u64::MAX`` (spec ERR-2)."""


class Outcome(enum.Enum):
    """How a flush task ended, as the engine reports it (seed ``FlowOutcome``)."""

    UNKNOWN = "Unknown"
    FLUSHED = "Flushed"
    SKIP = "Skip"
    EMPTY = "Empty"
    META_ONLY = "MetaOnly"


# The model and the implementation share these classes, and users meet them through `flowpace`
# (which exports them): tracebacks and reprs name them there, where they are imported from.
TaskStateError.__module__ = DebtOverflowError.__module__ = Outcome.__module__ = "flowpace"


class Metric(enum.Enum):
    """The seven observer metrics the controller emits, by their upstream names."""

    FG_DELAY = "FlowFgDelay"
    FG_DELAY_MICROS = "FlowFgDelayMicros"
    FLUSH_PACING_SLEEP = "FlowFlushPacingSleep"
    FLUSH_PACING_SLEEP_MICROS = "FlowFlushPacingSleepMicros"
    FLUSH_PACING_BYPASS_HIGH_DEBT = "FlowFlushPacingBypassHighDebt"
    FLUSH_PACING_BYPASS_TEARDOWN = "FlowFlushPacingBypassTeardown"
    FLUSH_PACING_BYPASS_ARENA_STARVATION = "FlowFlushPacingBypassArenaStarvation"


class MetricKind(enum.Enum):
    """Whether an emission adds to a counter or records a histogram sample."""

    COUNTER = "counter"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Emission:
    """One observer call: a counter increment or a histogram sample."""

    kind: MetricKind
    """Counter or histogram."""
    metric: Metric
    """Which metric."""
    value: int
    """The counter's delta or the histogram's sample."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """
    The 14 options as a user writes them, before normalisation (spec CFG-1).

    Defaults are upstream's ``Options::new``. Values are not checked here; `normalise`
    checks and normalises them.
    """

    enable_backpressure: bool = False
    """Delay foreground writes when debt grows."""
    enable_flush_pacing: bool = False
    """Pace background flushes at the measured disk rate."""
    bp_soft_debt_units: int = 8
    """Debt, in flush units, above which steady-state foreground writes are delayed."""
    bp_hard_debt_units: int = 24
    """Debt, in flush units, at or above which the foreground delay doubles."""
    bp_stop_debt_units: int = 48
    """Debt, in flush units, at or above which the foreground delay is the maximum."""
    bp_cold_start_fail_safe_units: int = 8
    """Debt, in flush units, at or above which cold-start writes are delayed."""
    bp_pacing_soft_debt_units: int = 2
    """Debt, in flush units, above which flush pacing is bypassed."""
    bp_flush_unit_bytes: int = 64 << 20
    """Bytes in one flush unit (upstream: one data file)."""
    bp_min_ratio_pct: int = 5
    """Lowest share of the base throughput a delayed write is paced at, in percent."""
    bp_floor_bps: int = 16 << 20
    """Fail-safe throughput, bytes per second, used before I/O samples are ready."""
    bp_warmup_min_samples: int = 4
    """I/O samples needed before steady-state backpressure and pacing apply."""
    bp_publish_guard_min_ratio_pct: int = 50
    """Lowest end-to-end/I/O throughput ratio the publish guard applies, in percent."""
    bp_idle_reset_ms: int = 5_000
    """Milliseconds of zero debt after which throughput history is forgotten."""
    bp_max_delay_us: int = 10_000
    """Longest single foreground delay or pacing sleep, in microseconds."""
    # spec EXT-1: the extended law's options, off by default (not among the seed's fourteen).
    ext_admission_timeline: bool = False
    """Decide foreground writes by the extended law (spec/extension.md) instead of FC-6..8."""
    ext_setpoint_units: int = 0
    """Debt, in flush units, at which the extended law admits at the disk rate; 0: default."""
    ext_stop_wait_limit_ns: int = 1_000_000_000
    """Longest time a write waits at stop under the extended law, nanoseconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """
    The normalised configuration the controller runs with (spec CFG-2, CFG-4).

    Field names and meanings are those of `Options`; the values satisfy CFG-4.
    """

    enable_backpressure: bool
    enable_flush_pacing: bool
    bp_soft_debt_units: int
    bp_hard_debt_units: int
    bp_stop_debt_units: int
    bp_cold_start_fail_safe_units: int
    bp_pacing_soft_debt_units: int
    bp_flush_unit_bytes: int
    bp_min_ratio_pct: int
    bp_floor_bps: int
    bp_warmup_min_samples: int
    bp_publish_guard_min_ratio_pct: int
    bp_idle_reset_ms: int
    bp_max_delay_us: int
    ext_admission_timeline: bool = False  # spec EXT-1: normalised by EXT-1's rules
    ext_setpoint_units: int = 0
    ext_stop_wait_limit_ns: int = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerState:
    """The controller's state between operations (spec ST-1); times are nanoseconds."""

    debt_bytes: int
    """Bytes of flush work enqueued and not yet settled."""
    io_bps_ewma: int
    """Moving average of I/O throughput (disk write time only), bytes per second; 0 if none."""
    e2e_bps_ewma: int
    """Moving average of enqueue-to-done throughput, bytes per second; 0 if none."""
    io_sample_count: int
    """I/O samples taken since construction or the last idle reset."""
    adaptive_floor_bps: int
    """Cold-start throughput raised by observed samples; back to the floor on idle reset."""
    teardown_bypass_scopes: int
    """Open teardown scopes; while non-zero every flush bypasses pacing."""
    arena_starving_scopes: int
    """Open arena-starvation scopes; while non-zero every flush bypasses pacing."""
    idle_since: int | None
    """When the debt last reached zero with no enqueue since, or None."""
    next_flush_at: int | None
    """The earliest time the next paced flush may start, or None."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    """One flush task as the controller knows it (spec ST-2); times are nanoseconds."""

    enqueue_at: int
    """When the task was enqueued."""
    est_bytes: int
    """The size estimated at enqueue."""
    actual_bytes: int = 0
    """The size the I/O actually wrote, once reported."""
    io_micros: int = 0
    """The reported I/O duration, whole microseconds, clamped to u64."""
    outcome: Outcome = Outcome.UNKNOWN
    """How the task ended, as marked so far."""
    force_bypass: bool = False
    """Whether this task bypasses flush pacing (teardown flushes)."""
    io_reported: bool = False
    """Whether `io_built` was reported for this task."""
    done: bool = False
    """Whether `mark_done` settled this task; a finished task takes no further operation."""


class FlushDecision(enum.Enum):
    """Why `before_flush` paces a task or lets it through at once (spec FC-9)."""

    PACING_DISABLED = "pacing disabled"
    BYPASS_TEARDOWN = "teardown bypass"
    BYPASS_ARENA_STARVATION = "arena starvation bypass"
    NO_DEBT = "no debt"
    COLD_START = "cold start"
    BYPASS_HIGH_DEBT = "high debt bypass"
    NO_THROUGHPUT = "no throughput estimate"
    PACED = "paced"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlushPlan:
    """What `before_flush` decided before any sleep (spec FC-9, FC-10)."""

    decision: FlushDecision
    """Paced, or the reason it is not."""
    interval_us: int = 0
    """How far a paced flush pushes the next deadline, in microseconds; 0 unless paced."""
    sleep_ns: int = 0
    """How long to sleep before flushing, in nanoseconds; 0 unless paced behind a deadline."""
    emissions: tuple[Emission, ...] = ()
    """The observer calls the operation makes (the sleep's after it has slept)."""


class ForegroundRegime(enum.Enum):
    """Which rule decides a foreground write's delay (spec FC-6, FC-7, FC-8)."""

    DISABLED = "backpressure disabled"
    EMPTY_WRITE = "empty write"
    NO_DEBT = "no debt"
    COLD_BELOW_FAIL_SAFE = "cold start below fail-safe"
    STEADY_BELOW_SOFT = "steady state at or below soft"
    NO_THROUGHPUT = "no throughput estimate"
    COLD_THROTTLED = "cold start throttled"
    SOFT_ZONE = "soft zone"
    HARD_ZONE = "hard zone"
    STOP = "stop"


@dataclass(frozen=True, slots=True, kw_only=True)
class ForegroundDecision:
    """The delay a foreground write takes and what it reports (spec FC-6 to FC-8)."""

    regime: ForegroundRegime
    """The rule that decided."""
    delay_us: int
    """Microseconds to sleep before writing; 0 for none."""
    emissions: tuple[Emission, ...] = ()
    """The observer calls made after the sleep."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStep:
    """The controller and task after an operation on a task."""

    state: ControllerState
    """The controller after the operation."""
    task: TaskState
    """The task after the operation."""


@dataclass(frozen=True, slots=True)
class ForegroundAdmit:
    """The extended law admits a write after ``wait_ns`` nanoseconds (spec EXT-5, EXT-6)."""

    wait_ns: int = 0
    """How long to wait before writing (0: at once), then re-check (EXT-6)."""


@dataclass(frozen=True, slots=True)
class ForegroundBlock:
    """The extended law blocks a write at stop (spec EXT-5 rule 2, EXT-7)."""

    below_bytes: int
    """Wait until the debt is below this many bytes, then ask again."""
    deadline_ns: int
    """Or until this time (the user's limit), then write."""
