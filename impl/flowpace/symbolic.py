"""Symbolic checks of the reference model with CrossHair, with a CPU-time timeout per condition.

The reference model states the specification's properties as PEP 316 contracts in its
docstrings (``pre:``, ``post:``, ``raises:``), and `flowpace_reference.symbolic` adds harness
functions, written as plain ``assert`` statements, that check the properties a solver cannot
decide in general on a few concrete configurations (spec CFG-4, INV-1 to INV-9). This module
runs CrossHair on every condition of both and says, for each one, what CrossHair established:

- ``proven``: every execution path was explored and the condition held on each (CrossHair's
  "Confirmed over all paths"); for a contract, this assumes the contracts of the model
  functions it calls, which are checked in their turn;
- ``held``: no counterexample was found on the paths explored before the per-condition timeout;
  ``paths`` says on how many paths the condition was evaluated and held;
- ``vacuous``: no explored path reached the condition (its precondition was never met, or the
  solver could not decide any path); nothing was checked, so the run fails. A condition found
  vacuous is checked once more with `VACUOUS_RETRY_FACTOR` times its timeout before it counts
  as vacuous: whether the search gets past a long precondition in one CPU second depends on
  the order it happens to explore paths in, and a short timeout must not make the run flaky;
- ``counterexample``: CrossHair found inputs that break the condition; the run fails;
- ``error``: the condition could not be checked (a syntax error in a contract, a failed
  import, a crash of CrossHair); the run fails;
- ``not run``: the condition was never checked: the safety net (a wall-clock cap that no
  default run reaches) stopped the run first, or the worker checking it died. Nothing was
  learnt either way, so the run is *incomplete*.

Each condition gets a fixed timeout in CPU seconds (CrossHair counts the CPU time of the
process that checks it), chosen by the profile (`CONDITION_TIMEOUTS`) or given: a loaded
machine stretches a run's wall-clock time, never how far each condition is searched. A run's
verdict is `PASSED` (every condition proven or held), `FAILED` (a counterexample, a vacuous
condition or an error) or `INCOMPLETE` (nothing failed, but some condition was not run, or
CrossHair is not installed); `EXIT_STATUS` maps each to the command's exit status.

Entry point: `run_symbolic_checks` (what ``flowpace verify`` runs, through ``python -m
flowpace.symbolic``). The checks run in worker processes, ``jobs`` at a time, each worker
taking the next condition as soon as it is free. CrossHair is a development dependency: it is
imported only by the workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import json
import math
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final, Self

PROVEN: Final = "proven"
HELD: Final = "held"
VACUOUS: Final = "vacuous"
COUNTEREXAMPLE: Final = "counterexample"
ERROR: Final = "error"
NOT_RUN: Final = "not run"
PASSING_OUTCOMES: Final = frozenset({PROVEN, HELD})
"""The outcomes that let a run pass."""
FAILING_OUTCOMES: Final = frozenset({VACUOUS, COUNTEREXAMPLE, ERROR})
"""The outcomes that fail a run; ``not run`` leaves it incomplete."""

PEP316: Final = "PEP316"
ASSERTS: Final = "asserts"
Z3: Final = "z3"
"""The kind of a lemma proven with Z3 directly (`flowpace._z3_lemmas`), not by CrossHair."""

LEMMA_MODULE: Final = "flowpace_reference.lemmas"
"""The model module whose lemmas Z3 proves as well (spec "Proof structure")."""


@dataclass(frozen=True, slots=True)
class Target:
    """A module to check by name, and the kind of conditions CrossHair reads in it."""

    module: str
    """The module's import name (CrossHair is always pointed at modules by name)."""
    kind: str
    """``PEP316`` for docstring contracts, ``asserts`` for assert-style harnesses."""
    weight: float = 1.0
    """How many times the per-condition timeout each of its conditions gets."""


MODEL_TARGETS: Final = (
    Target("flowpace_reference.u64", PEP316),
    Target("flowpace_reference.config", PEP316),
    Target("flowpace_reference.measures", PEP316),
    Target("flowpace_reference.transitions", PEP316),
    Target("flowpace_reference.lemmas", PEP316),
    # A harness fixes the configuration, so the solver decides far more of its paths: a
    # second spent there goes deeper than one spent on a contract with a symbolic one.
    Target("flowpace_reference.symbolic", ASSERTS, weight=6.0),
    Target("flowpace_reference.extended", PEP316),  # spec EXT-1, EXT-4, EXT-8 b
)
"""Every module of the model that carries conditions, and how to read them."""

FUNCTION_WEIGHTS: Final = {
    # About 100 paths, one for each way an option is refused, each ending at `reject` (spec
    # CFG-3, LEM-9): about 1 CPU s to exhaust. A proof stops once exhausted, so the weight
    # costs nothing then.
    "flowpace_reference.config.check_options": 6.0,
    # Held, never proven (see `TAKEN_AS_GIVEN`): searched for a path that returns. Its first
    # paths try types and names, so half a second may explore a single one.
    "flowpace_reference.config.reject": 3.0,
    # CFG-4's top (LEM-9): the extended law's two rules (spec EXT-1) bring each of its ten
    # conditions to about 1.6 CPU s; held at 1, proven at 4, and stopped once exhausted.
    "flowpace_reference.config.normalise": 4.0,
}
"""Functions whose conditions get this many times their target's timeout, in every profile."""

PROFILE_WEIGHTS: Final = {
    # INV-2 to INV-5 (spec "Proof structure"): the members of their chains that one CPU second
    # leaves held, each weighted to about 1.5 times the CPU seconds its proof took on its own
    # (in brackets), so that INV-2 to INV-5 are proven under ci too. `dev` keeps its budget: the
    # default campaign's symbolic check is its tail on a busy machine.
    "ci": {
        "flowpace_reference.transitions.delay_at": 6.0,  # [3.4 to 4.1 each of four]
        "flowpace_reference.transitions.throttled_delay_at": 8.0,  # [5.1]
        "flowpace_reference.transitions.target_throughput": 3.0,  # [1.8]
        "flowpace_reference.transitions.base_throughput": 3.0,  # [1.3]
        "flowpace_reference.lemmas.capped_delay_monotone": 4.0,  # [2.6]
        "flowpace_reference.lemmas.regime_delay_monotone": 20.0,  # [12.8]
    },
    "nightly": {
        "flowpace_reference.lemmas.regime_delay_monotone": 2.0,  # [12.8], beyond 10 CPU s
    },
}
"""Functions whose conditions get this many times more in one profile (spec VER-3: each
condition's CPU seconds are fixed by the profile)."""

TIMEOUT_ENV: Final = "FLOWPACE_SYMBOLIC_TIMEOUT"
"""Overrides the per-condition timeout, in CPU seconds, of ``python -m flowpace.symbolic``."""

PROFILE_ENV: Final = "HYPOTHESIS_PROFILE"
"""The campaign's profile: it selects the per-condition timeout."""

# spec VER-3: per-condition limits in CPU seconds, fixed by profile.
CONDITION_TIMEOUTS: Final = {"dev": 0.5, "ci": 1.0, "nightly": 10.0}
"""CPU seconds per condition of weight 1, by profile.

``dev`` searches half as long as ``ci`` so that the default campaign stays short on a busy
2-core machine (about 100 CPU seconds); ``ci`` is the suite's; ``nightly`` digs.
"""

MAX_SECONDS: Final = {"dev": 1_800.0, "ci": 1_800.0, "nightly": 14_400.0}
"""The safety net, in wall-clock seconds, by profile: a run still going then is stopped and
whatever it had not checked is ``not run``. A default run on a loaded machine takes a few
minutes: only a hung solver reaches this."""

DEFAULT_JOBS: Final = 2
"""Worker processes: the machine CI runs on has 2 cores."""

MAX_CONDITION_TIMEOUT: Final = 120.0
"""No condition is searched longer than this many CPU seconds, whatever its weight."""

VACUOUS_RETRY_FACTOR: Final = 5.0
"""A vacuous condition's second check gets this multiple of its first timeout."""

PASSED: Final = "passed"
FAILED: Final = "failed"
INCOMPLETE: Final = "incomplete"
EXIT_STATUS: Final = {PASSED: 0, FAILED: 1, INCOMPLETE: 3}
"""The exit status of ``python -m flowpace.symbolic`` for each verdict (2 is a usage error)."""

CROSSHAIR_MISSING: Final = (
    'CrossHair is not installed: pip install "flowpace[verify]" (in a clone, uv sync installs it)'
)


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """What CrossHair established about one condition."""

    target: str
    """The function the condition belongs to, by qualified name."""
    line: int
    """The condition's line in the function's source file."""
    condition: str
    """The condition's source text (``asserts`` for an assert-style harness)."""
    outcome: str
    """One of ``proven``, ``held``, ``vacuous``, ``counterexample``, ``error``, ``not run``."""
    paths: int = 0
    """Paths on which the condition was evaluated and held."""
    iterations: int = 0
    """Paths CrossHair explored, whatever their end."""
    message: str = ""
    """The counterexample or the error, as CrossHair words it."""
    seconds: float = 0.0
    """Wall-clock seconds spent on this condition."""
    timeout: float = 0.0
    """The CPU seconds CrossHair could spend on this condition."""

    @property
    def passed(self) -> bool:
        """Return whether this outcome lets the run pass."""
        return self.outcome in PASSING_OUTCOMES


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The conditions of one function, as one check."""

    target: str
    """The function, by qualified name (``module.function``)."""
    kind: str
    """``PEP316`` or ``asserts``."""
    conditions: tuple[ConditionResult, ...]
    """Every condition of the function, in source order."""
    errors: tuple[str, ...] = ()
    """Errors that concern the whole target rather than one condition."""

    @property
    def counterexamples(self) -> tuple[ConditionResult, ...]:
        """Return the conditions CrossHair broke."""
        return tuple(c for c in self.conditions if c.outcome == COUNTEREXAMPLE)

    @property
    def seconds(self) -> float:
        """Return the wall-clock seconds spent on this check's conditions."""
        return sum(c.seconds for c in self.conditions)

    @property
    def passed(self) -> bool:
        """Return whether every condition passed and nothing went wrong."""
        return not self.errors and all(c.passed for c in self.conditions)


@dataclass(frozen=True, slots=True)
class SymbolicReport:
    """The result of one run of the symbolic checks."""

    checks: tuple[CheckResult, ...]
    """One check per function with conditions, and one per target that failed to load."""
    per_condition_timeout: float
    """CPU seconds each condition of weight 1 could take (others take their weight's share)."""
    max_seconds: float
    """The run's safety net, in wall-clock seconds."""
    seconds: float
    """Wall-clock seconds the run took."""
    jobs: int
    """Worker processes used."""

    @property
    def conditions(self) -> tuple[ConditionResult, ...]:
        """Return every condition of every check."""
        return tuple(c for check in self.checks for c in check.conditions)

    missing: str = ""
    """Why nothing could be checked (CrossHair is not installed), if that is so."""

    @property
    def verdict(self) -> str:
        """
        Return `PASSED`, `FAILED` or `INCOMPLETE`.

        A failure found wins over conditions left unchecked; a run that checked nothing at all
        (no target, or CrossHair missing) is incomplete unless a target failed to load.
        """
        if any(not check.passed and _found_failure(check) for check in self.checks):
            return FAILED
        if self.missing or not self.checks or self.count(NOT_RUN):
            return INCOMPLETE
        return PASSED

    @property
    def passed(self) -> bool:
        """Return whether every check passed."""
        return self.verdict == PASSED

    def count(self, outcome: str) -> int:
        """Return how many conditions ended with ``outcome``."""
        return sum(1 for c in self.conditions if c.outcome == outcome)

    def summary(self) -> str:
        """Return the one-line verdict: counts by outcome, time and timeout."""
        counts = ", ".join(
            f"{self.count(outcome)} {outcome}"
            for outcome in (PROVEN, HELD, VACUOUS, COUNTEREXAMPLE, ERROR, NOT_RUN)
            if self.count(outcome) or outcome in PASSING_OUTCOMES
        )
        errors = sum(len(check.errors) for check in self.checks)
        verdict = self.verdict if self.verdict == PASSED else self.verdict.upper()
        if self.missing:
            return f"symbolic checks {verdict}: {self.missing}"
        return (
            f"symbolic checks {verdict}: {len(self.conditions)} conditions of "
            f"{len(self.checks)} functions: {counts}"
            + (f", {errors} target error(s)" if errors else "")
            + f"; {self.seconds:.0f} s, {self.per_condition_timeout:g} CPU s per condition, "
            f"{self.jobs} job(s)"
        )

    def to_json(self) -> str:
        """Return the report as JSON, with the status of every proof chain."""
        data = dataclasses.asdict(self)
        data["chains"] = [
            {
                "claim": result.chain.claim,
                "what": result.chain.what,
                "verdict": result.verdict,
                "members": dict(result.members),
            }
            for result in (chain_results(self) if self.checks and not self.missing else ())
        ]
        return json.dumps(data, indent=2, sort_keys=True)


# --- proof chains ----------------------------------------------------------------------------
#
# A condition CrossHair proves assumes the contracts of the functions it calls (a function
# marked ``crosshair: specs_complete`` *is* its contract for its callers). So a claim of the
# spec is proven only when every contract it rests on is: the functions that state it, and,
# transitively, every model function they call, in their bodies or in their contracts.

CHAIN_MODULES: Final = (
    "flowpace_reference.u64",
    "flowpace_reference.config",
    "flowpace_reference.measures",
    "flowpace_reference.transitions",
    "flowpace_reference.contracts",
    LEMMA_MODULE,
)
"""The model's modules a chain may pass through (the harnesses are checked on their own)."""

CALL: Final = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\(")
"""A call in a contract's text."""

CONTRACT_LINE: Final = re.compile(r"^\s*(pre|post|raises):", re.MULTILINE)
"""A line of a PEP 316 contract."""


@dataclass(frozen=True, slots=True)
class Chain:
    """A claim of the spec and the functions whose contracts state it."""

    claim: str
    """The requirement ID."""
    what: str
    """The claim in a few words."""
    tops: tuple[str, ...]
    """The functions (lemmas included) that state it, by qualified name."""


FOREGROUND: Final = ("delay_at", "throttled_delay_at")
"""The foreground delay's two steps: the regime's delay, and FC-7's arithmetic it uses."""


def _q(module: str, *names: str) -> tuple[str, ...]:
    """Return ``names`` qualified by ``flowpace_reference.module``."""
    return tuple(f"flowpace_reference.{module}.{name}" for name in names)


CHAINS: Final = (
    Chain(
        "INV-1",
        "exact debt change per operation",
        _q("transitions", "enqueue", "io_built", "mark_done"),
    ),
    Chain("INV-2", "0 <= delay_us <= max_delay_us", _q("transitions", *FOREGROUND)),
    Chain("INV-3", "no delay below the regime's threshold", _q("transitions", *FOREGROUND)),
    Chain("INV-4", "the maximum delay at stop", _q("transitions", *FOREGROUND)),
    Chain(
        "INV-5",
        "delay non-decreasing in the debt",
        (
            *_q(
                "lemmas",
                "debt_mu_monotone",
                "ratio_antitone",
                "share_monotone",
                "rate_antitone",
                "capped_delay_monotone",
                "regime_delay_monotone",
            ),
            *_q("transitions", *FOREGROUND, "target_throughput"),
        ),
    ),
    Chain(
        "INV-6",
        "pacing sleep and interval bounds",
        _q("transitions", "pacing_sleep_ns", "interval_for"),
    ),
    Chain(
        "INV-7",
        "scopes never negative nor above u64::MAX",
        _q("transitions", "enter_teardown", "leave_teardown", "enter_starving", "leave_starving"),
    ),
    Chain(
        "INV-8",
        "EWMA between the old value and the sample",
        (*_q("measures", "ewma_update"), *_q("transitions", "with_io_sample", "with_e2e_sample")),
    ),
    Chain(
        "INV-9",
        "adaptive floor never below the floor, never decreasing",
        (*_q("measures", "raised_floor"), *_q("transitions", "floor_after", "forget_throughput")),
    ),
    Chain("CFG-4", "the normalised configuration's guarantees", _q("config", "normalise")),
)
"""Each invariant of the spec, and CFG-4, with the contracts that state it (spec "Proof
structure"). INV-2 to INV-4 are stated on the debt in milli-units, as the spec states them, by
`delay_at`, given FC-7's delay within its bounds (`throttled_delay_at`); `foreground_delay_us`
is `delay_at` at the state's debt (AR-2). INV-5 is the composition of the lemmas the docstring
of `flowpace_reference.lemmas` describes."""


GIVEN: Final = "given"
"""The status of a chain member whose contract the proofs take as given (`TAKEN_AS_GIVEN`)."""

TAKEN_AS_GIVEN: Final = {
    "flowpace_reference.config.reject": (
        "it raises the option error it formats; CrossHair spells out a raised message's digits, "
        "which has no end of paths; tests/test_error_messages.py checks every message"
    ),
}
"""Chain members whose contract a claim's proof takes as given (spec LEM-10), unless proven,
each with the reason. A counterexample to one still fails the claim; a ``held`` one is
``given``, and the chain line names it."""


@dataclass(frozen=True, slots=True)
class ChainResult:
    """Whether every contract a claim rests on is proven."""

    chain: Chain
    """The claim."""
    members: tuple[tuple[str, str], ...]
    """Every function in the chain with a contract or a lemma, and its status: ``proven``,
    ``given`` (held, and in `TAKEN_AS_GIVEN`), ``held``, ``failed`` or ``not checked``."""

    @property
    def verdict(self) -> str:
        """Return ``proven`` if every member is proven or given, else the worst member status."""
        statuses = {status for _, status in self.members}
        for status in ("failed", "not checked", HELD):
            if status in statuses:
                return status
        return PROVEN


@functools.cache
def _model_functions() -> dict[str, tuple[str, str]]:
    """
    Return each top-level function of `CHAIN_MODULES`: qualified name -> (source, docstring).

    Read once a process: the model does not change under a run. Callers must not modify it.
    """
    import ast  # noqa: PLC0415  # only reports need it

    functions: dict[str, tuple[str, str]] = {}
    for module in CHAIN_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        source = Path(spec.origin).read_text(encoding="utf-8")
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef):
                text = ast.get_source_segment(source, node) or ""
                functions[f"{module}.{node.name}"] = (text, ast.get_docstring(node) or "")
    return functions


def call_graph() -> dict[str, set[str]]:
    """Return the model functions each model function calls, in its body or its contract."""
    functions = _model_functions()
    by_name: dict[str, str] = {}
    for qualified in functions:
        by_name.setdefault(qualified.rpartition(".")[2], qualified)
    graph: dict[str, set[str]] = {}
    for qualified, (text, _) in functions.items():
        called = {by_name[name] for name in CALL.findall(text) if name in by_name}
        graph[qualified] = called - {qualified}
    return graph


def has_contract(docstring: str) -> bool:
    """Return whether a docstring states a PEP 316 contract."""
    return bool(CONTRACT_LINE.search(docstring))


def chain_members(chain: Chain, graph: dict[str, set[str]]) -> list[str]:
    """Return the chain's functions and every model function they call, transitively."""
    seen: list[str] = []
    pending = list(chain.tops)
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen.append(name)
        pending.extend(sorted(graph.get(name, set())))
    return seen


def chain_results(report: SymbolicReport) -> tuple[ChainResult, ...]:
    """Return, for each of `CHAINS`, the status of every contract it rests on in ``report``."""
    functions = _model_functions()
    graph = call_graph()
    checks: dict[str, list[CheckResult]] = {}
    for check in report.checks:
        checks.setdefault(check.target, []).append(check)
    results = []
    for chain in CHAINS:
        members: list[tuple[str, str]] = []
        for name in chain_members(chain, graph):
            found = checks.get(name, [])
            is_lemma = name.startswith(LEMMA_MODULE + ".")
            if not found:
                if name in functions and (has_contract(functions[name][1]) or is_lemma):
                    members.append((name, "not checked"))
                continue
            status = _member_status(found, any_proof=is_lemma)
            members.append((name, GIVEN if status == HELD and name in TAKEN_AS_GIVEN else status))
        results.append(ChainResult(chain, tuple(members)))
    return tuple(results)


def _member_status(checks: Sequence[CheckResult], *, any_proof: bool) -> str:
    """Return a function's status from its checks: a lemma needs one proof, others all."""
    if any(_found_failure(check) for check in checks):
        return "failed"
    proven = [all(c.outcome == PROVEN for c in check.conditions) for check in checks]
    if any(proven) if any_proof else all(proven):
        return PROVEN
    if any(c.outcome == NOT_RUN for check in checks for c in check.conditions):
        return "not checked"
    return HELD


def format_chains(report: SymbolicReport, *, verbose: bool = False) -> list[str]:
    """Return the lines saying, for each claim, whether the whole chain it rests on is proven."""
    lines = ["proof chains (a claim is proven when every contract it rests on is):"]
    for result in chain_results(report):
        unproven = [
            f"{name} ({status})" for name, status in result.members if status in (HELD, "failed")
        ]
        unchecked = sum(1 for _, status in result.members if status == "not checked")
        given = [name for name, status in result.members if status == GIVEN]
        parts = [f"{len(result.members)} contracts and lemmas"]
        if not unproven and not unchecked:
            parts.append("all proven" if not given else f"all proven but {len(given)}")
        if given:
            parts.append(f"taken as given: {', '.join(given)}")
        if unproven:
            parts.append(f"not proven: {', '.join(unproven)}")
        if unchecked:
            parts.append(f"{unchecked} not checked in this run")
        detail = "; ".join(parts)
        lines.append(f"  {result.chain.claim} {result.verdict}: {result.chain.what} ({detail})")
        if verbose:
            lines.extend(f"      {status:>11}  {name}" for name, status in result.members)
    return lines


def format_report(report: SymbolicReport, *, verbose: bool = False) -> str:
    """Return a readable report: failures in full, each check in a line if ``verbose``."""
    lines: list[str] = []
    for check in report.checks:
        failing = [c for c in check.conditions if not c.passed]
        if verbose or failing or check.errors:
            proven = sum(1 for c in check.conditions if c.outcome == PROVEN)
            lines.append(
                f"{'ok  ' if check.passed else 'FAIL'} {check.target} [{check.kind}]: "
                f"{proven}/{len(check.conditions)} proven, {check.seconds:.1f} s"
            )
        lines.extend(f"     error: {error}" for error in check.errors)
        for condition in failing if not verbose else check.conditions:
            detail = f" ({condition.message})" if condition.message else ""
            lines.append(
                f"     line {condition.line}: {condition.outcome}, {condition.paths} path(s): "
                f"{condition.condition}{detail}"
            )
    if report.checks and not report.missing:
        lines.extend(format_chains(report, verbose=verbose))
    lines.append(report.summary())
    return "\n".join(lines)


# --- running the workers ---------------------------------------------------------------------


def profile_from_environment() -> str:
    """Return the profile `PROFILE_ENV` names, if it is one of `CONDITION_TIMEOUTS`, else ci."""
    named = os.environ.get(PROFILE_ENV, "ci")
    return named if named in CONDITION_TIMEOUTS else "ci"


def timeout_from_environment(profile: str | None = None) -> float:
    """Return the per-condition timeout `TIMEOUT_ENV` sets, else the profile's (`PROFILE_ENV`)."""
    named = os.environ.get(TIMEOUT_ENV)
    if named:
        return float(named)
    return CONDITION_TIMEOUTS[profile or profile_from_environment()]


def max_seconds_from_environment(profile: str | None = None) -> float:
    """Return the safety net of ``profile``, else of the profile `PROFILE_ENV` names."""
    return MAX_SECONDS[profile or profile_from_environment()]


def crosshair_installed() -> bool:
    """Return whether CrossHair can be imported here (the workers need it)."""
    return importlib.util.find_spec("crosshair") is not None


def run_symbolic_checks(
    per_condition_timeout: float,
    *,
    jobs: int = DEFAULT_JOBS,
    targets: Sequence[Target] = MODEL_TARGETS,
    max_seconds: float = MAX_SECONDS["ci"],
    profile: str | None = None,
) -> SymbolicReport:
    """
    Return what CrossHair establishes about every condition of ``targets``.

    Each condition is searched for at most ``per_condition_timeout`` CPU seconds times its
    target's weight, its function's (`FUNCTION_WEIGHTS`) and, under ``profile``, the
    profile's (`PROFILE_WEIGHTS`), at most `MAX_CONDITION_TIMEOUT`, on ``jobs`` workers.
    Workers still running ``max_seconds`` of wall-clock time after the start are stopped, and
    what they had not finished is ``not run``: the run is then incomplete, never failed or
    passed.
    """
    started = time.monotonic()
    jobs = max(jobs, 1)
    if not crosshair_installed():
        return SymbolicReport((), per_condition_timeout, max_seconds, 0.0, jobs, CROSSHAIR_MISSING)
    with _WorkerPool(jobs, started + max_seconds) as pool:
        jobs_to_run, load_errors = _collect(pool, targets)
        for job in jobs_to_run:
            weight = float(str(job["weight"])) * function_weight(
                f"{job['module']}.{job['function']}", profile
            )
            job["timeout"] = min(per_condition_timeout * weight, MAX_CONDITION_TIMEOUT)
        answers = pool.run(jobs_to_run)
        retry = [i for i, answer in enumerate(answers) if answer.get("outcome") == VACUOUS]
        for index in retry:
            job = jobs_to_run[index]
            job["timeout"] = min(
                float(str(job["timeout"])) * VACUOUS_RETRY_FACTOR, MAX_CONDITION_TIMEOUT
            )
        for index, answer in zip(retry, pool.run([jobs_to_run[i] for i in retry]), strict=True):
            answers[index] = answer
    results = [
        _condition_result(job, answer) for job, answer in zip(jobs_to_run, answers, strict=True)
    ]
    return SymbolicReport(
        checks=(*load_errors, *_group(results, jobs_to_run)),
        per_condition_timeout=per_condition_timeout,
        max_seconds=max_seconds,
        seconds=time.monotonic() - started,
        jobs=jobs,
    )


def function_weight(function: str, profile: str | None = None) -> float:
    """Return how many times its target's timeout ``function``'s conditions get in ``profile``."""
    by_profile = PROFILE_WEIGHTS.get(profile, {}) if profile is not None else {}
    return FUNCTION_WEIGHTS.get(function, 1.0) * by_profile.get(function, 1.0)


def _found_failure(check: CheckResult) -> bool:
    """Return whether ``check`` failed on something found, not on conditions left unchecked."""
    return bool(check.errors) or any(c.outcome in FAILING_OUTCOMES for c in check.conditions)


def _collect(
    pool: _WorkerPool, targets: Sequence[Target]
) -> tuple[list[dict[str, object]], list[CheckResult]]:
    """Return a job for every condition of ``targets``, and a check for each that failed."""
    collected = pool.run([{"collect": t.module, "kind": t.kind} for t in targets])
    jobs_to_run: list[dict[str, object]] = []
    load_errors: list[CheckResult] = []
    for target, answer in zip(targets, collected, strict=True):
        if answer.get("outcome") == NOT_RUN:
            # Stopped before its conditions were even listed: unchecked, not broken.
            unlisted = ConditionResult(
                target.module,
                0,
                "(conditions not collected)",
                NOT_RUN,
                message=str(answer["error"]),
            )
            load_errors.append(CheckResult(target.module, target.kind, (unlisted,)))
            continue
        if "error" in answer:
            load_errors.append(CheckResult(target.module, target.kind, (), (str(answer["error"]),)))
            continue
        jobs_to_run.extend(
            {**item, "kind": target.kind, "weight": target.weight}
            for item in _as_list(answer["conditions"])
        )
        jobs_to_run.extend(
            {**item, "kind": Z3, "weight": 1.0} for item in _as_list(answer.get("lemmas", []))
        )
    return jobs_to_run, load_errors


def _as_list(value: object) -> list[dict[str, object]]:
    """Return ``value``, a list of JSON objects from a worker."""
    if not isinstance(value, list):
        raise TypeError(f"a worker answered {value!r} where a list was expected")
    return value


def _condition_result(job: dict[str, object], answer: dict[str, object]) -> ConditionResult:
    """Return the result of one condition from its job and the worker's answer."""
    return ConditionResult(
        target=f"{job['module']}.{job['function']}",
        line=int(str(job["line"])),
        condition=str(job["condition"]),
        outcome=str(answer.get("outcome", ERROR)),
        paths=int(str(answer.get("paths", 0))),
        iterations=int(str(answer.get("iterations", 0))),
        message=str(answer.get("message", answer.get("error", ""))),
        seconds=float(str(answer.get("seconds", 0.0))),
        timeout=float(str(job["timeout"])),
    )


def _group(
    results: Sequence[ConditionResult], jobs: Sequence[dict[str, object]]
) -> Iterator[CheckResult]:
    """Yield one check per function, in the order the functions were collected."""
    by_target: dict[tuple[str, str], list[ConditionResult]] = {}
    for result, job in zip(results, jobs, strict=True):
        by_target.setdefault((result.target, str(job["kind"])), []).append(result)
    for (target, kind), conditions in by_target.items():
        yield CheckResult(target, kind, tuple(sorted(conditions, key=lambda c: c.line)))


class _WorkerPool:
    """Worker processes that answer jobs one at a time, the next job going to whoever is free."""

    def __init__(self, size: int, deadline: float) -> None:
        self.deadline = deadline
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "flowpace.symbolic", "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(size)
        ]
        self.watchdog = threading.Timer(max(deadline - time.monotonic(), 0.0), self.stop)
        self.watchdog.daemon = True
        self.watchdog.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.watchdog.cancel()
        for process in self.processes:
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    def stop(self) -> None:
        """Kill every worker: the safety net was reached."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()

    def run(self, jobs: Sequence[dict[str, object]]) -> list[dict[str, object]]:
        """Return the answer to every job, in order; a job no worker finished is ``not run``."""
        answers: list[dict[str, object] | None] = [None] * len(jobs)
        pending: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(jobs)):
            pending.put(index)
        threads = [
            threading.Thread(target=self._serve, args=(process, jobs, pending, answers))
            for process in self.processes
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [
            answer
            if answer is not None
            else {"outcome": NOT_RUN, "error": "stopped by the safety net"}
            for answer in answers
        ]

    def _serve(
        self,
        process: subprocess.Popen[str],
        jobs: Sequence[dict[str, object]],
        pending: queue.SimpleQueue[int],
        answers: list[dict[str, object] | None],
    ) -> None:
        """Feed ``process`` jobs until none is left or it dies."""
        stdin, stdout = process.stdin, process.stdout
        assert stdin is not None  # noqa: S101  # a pipe, as opened above
        assert stdout is not None  # noqa: S101  # a pipe, as opened above
        while time.monotonic() < self.deadline:
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            try:
                stdin.write(json.dumps(jobs[index]) + "\n")
                stdin.flush()
            except (BrokenPipeError, OSError):
                answers[index] = self._death_notice(process)
                return
            line = stdout.readline()
            if not line:
                answers[index] = self._death_notice(process)
                return
            answers[index] = json.loads(line)

    def _death_notice(self, process: subprocess.Popen[str]) -> dict[str, object]:
        """Return the answer for a job whose worker died or was stopped: ``not run``."""
        if time.monotonic() >= self.deadline:
            return {"outcome": NOT_RUN, "error": "stopped by the safety net"}
        process.kill()
        stderr = process.stderr.read() if process.stderr is not None else ""
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        return {"outcome": NOT_RUN, "error": f"worker died: {last[0]}"}


# --- the worker ------------------------------------------------------------------------------


def _worker(lines: IO[str], out: IO[str]) -> None:
    """Answer jobs, one JSON object a line, until the input ends."""
    checker = _Checker()
    for line in lines:
        job = json.loads(line)
        try:
            answer = checker.answer(job)
        except Exception as error:  # noqa: BLE001  # any failure of CrossHair is this job's error
            answer = {"outcome": ERROR, "error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def z3_lemma_jobs() -> list[dict[str, object]]:
    """Return a job for each lemma `flowpace._z3_lemmas` proves: one condition each."""
    import inspect  # noqa: PLC0415

    from flowpace import _z3_lemmas  # noqa: PLC0415  # needs Z3, a development dependency

    jobs: list[dict[str, object]] = []
    for lemma in _z3_lemmas.LEMMAS.values():
        function = _z3_lemmas.python_lemma(lemma)
        jobs.append(
            {
                "module": LEMMA_MODULE,
                "function": lemma.name,
                "line": inspect.getsourcelines(function)[1],
                "condition": f"Z3: {lemma.spec_id} over {', '.join(lemma.uses)}",
            }
        )
    return jobs


def check_z3_lemma(name: str) -> dict[str, object]:
    """Return the answer for one Z3 lemma: its encodings checked, then Z3's proof."""
    from flowpace import _z3_lemmas  # noqa: PLC0415  # needs Z3, a development dependency

    started = time.monotonic()
    result = _z3_lemmas.prove(_z3_lemmas.LEMMAS[name])
    outcome = {"proven": PROVEN, "counterexample": COUNTEREXAMPLE}.get(result.outcome, HELD)
    return {
        "outcome": outcome,
        "paths": 1 if outcome == PROVEN else 0,
        "message": result.message,
        "seconds": time.monotonic() - started,
    }


class _Checker:
    """Collects and checks conditions with CrossHair's API, in a worker process."""

    def __init__(self) -> None:
        # Imported here: CrossHair is a development dependency, and importing it installs
        # its models of the standard library, which the parent process does not need.
        import crosshair.core_and_libs  # noqa: F401, PLC0415  # registers the library models

        self.cache: dict[tuple[str, str, str], list[object]] = {}

    def answer(self, job: dict[str, object]) -> dict[str, object]:
        """Return the answer to one job: a collection or one condition's check."""
        if "collect" in job:
            collected = self.collect(str(job["collect"]), str(job["kind"]))
            if job["collect"] == LEMMA_MODULE and "conditions" in collected:
                collected["lemmas"] = z3_lemma_jobs()
            return collected
        if job["kind"] == Z3:
            return check_z3_lemma(str(job["function"]))
        return self.check(job)

    def options(self, kind: str, timeout: float = math.inf) -> object:
        """Return CrossHair's options for conditions of ``kind`` and a per-condition timeout."""
        from crosshair.options import AnalysisKind, AnalysisOptionSet  # noqa: PLC0415

        return AnalysisOptionSet(analysis_kind=[AnalysisKind[kind]], per_condition_timeout=timeout)

    def checkables(self, module_name: str, function: str, kind: str) -> list[object]:
        """Return CrossHair's checkables of one function: one per condition."""
        key = (module_name, function, kind)
        if key not in self.cache:
            import importlib  # noqa: PLC0415

            from crosshair.core import analyze_function  # noqa: PLC0415
            from crosshair.fnutil import FunctionInfo  # noqa: PLC0415

            module = importlib.import_module(module_name)
            info = FunctionInfo.from_module(module, function)
            self.cache[key] = list(analyze_function(info, self.options(kind)))  # type: ignore[arg-type]
        return self.cache[key]

    def collect(self, module_name: str, kind: str) -> dict[str, object]:
        """Return every condition of the functions defined in ``module_name``."""
        import importlib  # noqa: PLC0415

        from crosshair.core import ConditionCheckable  # noqa: PLC0415
        from crosshair.fnutil import FunctionInfo, get_top_level_classes_and_functions  # noqa: PLC0415

        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001  # any import failure is the target's error
            return {"error": f"cannot import {module_name}: {type(error).__name__}: {error}"}
        conditions: list[dict[str, object]] = []
        for name, member in get_top_level_classes_and_functions(module):
            if not isinstance(member, FunctionInfo):
                continue  # the model's classes are plain values, without conditions
            for index, checkable in enumerate(self.checkables(module_name, name, kind)):
                if isinstance(checkable, ConditionCheckable):
                    post = checkable.conditions.post[0]
                    source = post.expr_source if kind == PEP316 else "asserts"
                    line = post.line
                else:
                    messages = getattr(checkable, "messages", [])
                    source = "; ".join(m.message for m in messages) or "unparsable condition"
                    line = messages[0].line if messages else 0
                conditions.append(
                    {
                        "module": module_name,
                        "function": name,
                        "index": index,
                        "line": line,
                        "condition": source,
                    }
                )
        if not conditions:
            return {"error": f"{module_name} has no {kind} conditions to check"}
        return {"conditions": conditions}

    def check(self, job: dict[str, object]) -> dict[str, object]:
        """Return what CrossHair establishes about one condition within its timeout."""
        from collections import Counter  # noqa: PLC0415

        from crosshair.condition_parser import condition_parser  # noqa: PLC0415
        from crosshair.core import ConditionCheckable, analyze_calltree  # noqa: PLC0415
        from crosshair.statespace import MessageType, VerificationStatus  # noqa: PLC0415

        started = time.monotonic()
        kind = str(job["kind"])
        checkable = self.checkables(str(job["module"]), str(job["function"]), kind)[
            int(str(job["index"]))
        ]
        if not isinstance(checkable, ConditionCheckable):
            messages = getattr(checkable, "messages", [])
            text = "; ".join(m.message for m in messages) or "unparsable condition"
            return {"outcome": ERROR, "error": text}
        options = dataclasses.replace(
            checkable.options, per_condition_timeout=float(str(job["timeout"])), stats=Counter()
        )
        options.deadline = time.process_time() + options.per_condition_timeout
        with condition_parser(options.analysis_kind):
            analysis = analyze_calltree(options, checkable.conditions)
        answer: dict[str, object] = {
            "paths": analysis.num_confirmed_paths,
            "iterations": options.stats["num_paths"] if options.stats is not None else 0,
            "seconds": time.monotonic() - started,
        }
        failures = [m for m in analysis.messages if m.state > MessageType.CANNOT_CONFIRM]
        hard = [m for m in failures if m.state > MessageType.PRE_UNSAT]
        if hard:
            worst = max(hard, key=lambda m: m.state)
            syntax = worst.state in (MessageType.SYNTAX_ERR, MessageType.IMPORT_ERR)
            answer["outcome"] = ERROR if syntax else COUNTEREXAMPLE
            answer["message"] = worst.message
        elif failures:
            answer["outcome"] = VACUOUS
            answer["message"] = failures[0].message
        elif analysis.verification_status is VerificationStatus.CONFIRMED:
            answer["outcome"] = PROVEN
        elif analysis.num_confirmed_paths > 0:
            answer["outcome"] = HELD
        else:
            answer["outcome"] = VACUOUS
            answer["message"] = "no explored path reached the condition"
        return answer


# --- command line ----------------------------------------------------------------------------


def _by_profile(values: dict[str, float]) -> str:
    """Return per-profile values as help text reads them: ``dev 0.5, ci 1, nightly 10``."""
    return ", ".join(f"{profile} {value:g}" for profile, value in values.items())


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``python -m flowpace.symbolic``."""
    parser = argparse.ArgumentParser(
        prog="python -m flowpace.symbolic",
        description="Check the reference model's contracts and harnesses with CrossHair.",
        epilog="Exit status: 0 passed (every condition proven or held), 1 failed (a "
        "counterexample, a vacuous condition or an error), 2 usage error, 3 incomplete "
        "(nothing failed, but some condition was not run, or CrossHair is not installed).",
    )
    parser.add_argument(
        "--per-condition-timeout",
        type=float,
        default=None,
        metavar="CPU_SECONDS",
        help=f"CPU seconds per condition, times its target's weight (default: ${TIMEOUT_ENV}, "
        f"else by ${PROFILE_ENV}: {_by_profile(CONDITION_TIMEOUTS)})",
    )
    parser.add_argument(
        "--profile",
        choices=tuple(CONDITION_TIMEOUTS),
        default=None,
        help=f"the profile whose timeouts, weights and safety net to use (default: "
        f"${PROFILE_ENV}, else ci)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="SECONDS",
        help="safety net: wall-clock seconds after which what is left is not run and the "
        f"run incomplete (default by ${PROFILE_ENV}: {_by_profile(MAX_SECONDS)})",
    )
    parser.add_argument(
        "--jobs", type=int, default=DEFAULT_JOBS, metavar="N", help="worker processes"
    )
    parser.add_argument("--verbose", action="store_true", help="list every condition")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "modules", nargs="*", metavar="MODULE", help="model modules to check (default: all)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the symbolic checks and print the report; return the verdict's `EXIT_STATUS`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        _worker(sys.stdin, sys.stdout)
        return 0
    targets: tuple[Target, ...] = MODEL_TARGETS
    if args.modules:
        known = {target.module: target for target in MODEL_TARGETS}
        unknown = [name for name in args.modules if name not in known]
        if unknown:
            parser.error(f"not a checked model module: {', '.join(unknown)}")
        targets = tuple(known[name] for name in args.modules)
    for name in ("per_condition_timeout", "max_seconds", "jobs"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    profile = args.profile or profile_from_environment()
    timeout = args.per_condition_timeout or timeout_from_environment(profile)
    report = run_symbolic_checks(
        timeout,
        jobs=args.jobs,
        targets=targets,
        max_seconds=args.max_seconds or max_seconds_from_environment(profile),
        profile=profile,
    )
    text = report.to_json() if args.json else format_report(report, verbose=args.verbose)
    sys.stdout.write(text + "\n")
    return EXIT_STATUS[report.verdict]


if __name__ == "__main__":
    sys.exit(main())
