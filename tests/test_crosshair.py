"""CrossHair on the reference model: contracts, harnesses, planted bugs, diffbehavior (INV-1..9).

Every CrossHair run here is a separate process pointed at modules by name, never at files,
and every one is timed by a per-condition timeout in CPU seconds, so that a loaded machine
makes a run longer but never changes what it searches. The slow part, all the contracts and
harnesses of the model, gets the per-condition timeout of the Hypothesis profile
(`flowpace.symbolic.CONDITION_TIMEOUTS`) or of ``FLOWPACE_SYMBOLIC_TIMEOUT``, and runs one test
per module so that each stays well under pytest's ``faulthandler_timeout``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import settings

from flowpace.symbolic import (
    CHAINS,
    CONDITION_TIMEOUTS,
    HELD,
    INCOMPLETE,
    MODEL_TARGETS,
    NOT_RUN,
    PEP316,
    PROFILE_WEIGHTS,
    PROVEN,
    TIMEOUT_ENV,
    Z3,
    CheckResult,
    ConditionResult,
    SymbolicReport,
    Target,
    call_graph,
    chain_members,
    chain_results,
    format_report,
    function_weight,
    run_symbolic_checks,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "reference" / "flowpace_reference"
IMPL = ROOT / "impl" / "flowpace"
TESTS = ROOT / "tests"

PLANT_TIMEOUT = 10.0
"""CPU seconds per condition when hunting a planted bug (spec VER-3): each is found in 1 to 5.

CrossHair counts this budget, and each path's, in the CPU time of the process checking (it
compares ``time.process_time()``), so a loaded machine stretches a hunt without cutting it
short. Its one wall-clock limit is Z3's, on each query: half the per-path budget, which is the
square root of the condition's unless given. The hunts give each path the whole condition's
budget (`plant_options`), so a query may take 5 wall seconds rather than 1.6: a loaded machine
that slows the solver threefold no longer makes a query give up where an idle one would not.
"""


def plant_options(timeout: float = PLANT_TIMEOUT) -> list[str]:
    """Return CrossHair's options for a hunt: ``timeout`` CPU seconds per condition and path."""
    return [f"--per_condition_timeout={timeout}", f"--per_path_timeout={timeout}"]


DIFF_TIMEOUT = float(os.environ.get("FLOWPACE_DIFF_TIMEOUT", "6"))
"""CPU seconds each ``diffbehavior`` run may take (both orderings together)."""

# Counterexample found: CrossHair exits 1; 2 means it could not run, which is a failure too.
FOUND = 1
TESTS_FAILED = 1
"""pytest's exit status when some test failed (2 and above: it could not run them)."""


MINIMUM_CONDITIONS = {
    "flowpace_reference.u64": 7,
    "flowpace_reference.config": 19,
    "flowpace_reference.measures": 15,
    "flowpace_reference.transitions": 100,
    # Three lemmas CrossHair checks, five Z3 proves (spec LEM-1 to LEM-6).
    "flowpace_reference.lemmas": 8,
    "flowpace_reference.symbolic": 7,
    # spec EXT-1, EXT-4, EXT-8 b: the slot's bounds and its monotonicity lemmas among them.
    "flowpace_reference.extended": 23,
}
"""Conditions each module states today: fewer means some went missing."""

ALWAYS_PROVEN = frozenset({"flowpace_reference.u64", "flowpace_reference.measures"})
"""Modules whose every condition CrossHair proves: it exhausts every path within `PROOF_TIMEOUT`."""

PROOF_TIMEOUT = 20.0
"""CPU seconds per condition of an `ALWAYS_PROVEN` module.

Each proof takes well under a second on an idle machine, but on a loaded CI runner the
profile's timeout (1 s under ``ci``) cut one short and it was reported as held. A proof
stops as soon as its paths are exhausted, so this ceiling costs nothing when proofs succeed.
"""


def profile_timeout() -> float:
    """Return the per-condition timeout of this run: `TIMEOUT_ENV`, else the loaded profile's."""
    named = os.environ.get(TIMEOUT_ENV)
    if named:
        return float(named)
    return CONDITION_TIMEOUTS.get(settings.get_current_profile_name(), CONDITION_TIMEOUTS["ci"])


@pytest.mark.parametrize("target", MODEL_TARGETS, ids=lambda target: target.module)
def test_contracts_and_harnesses_hold_within_the_timeout(target: Target) -> None:
    """Spec CFG-4, AR-1..8, INV-1..9: no counterexample, no vacuous condition, no error."""
    timeout = profile_timeout()
    if target.module in ALWAYS_PROVEN:
        timeout = max(timeout, PROOF_TIMEOUT)
    report = run_symbolic_checks(timeout, targets=(target,))
    assert report.passed, format_report(report)
    assert len(report.conditions) >= MINIMUM_CONDITIONS[target.module], format_report(report)
    if target.module in ALWAYS_PROVEN:
        unproven = [
            f"{c.target}:{c.line} {c.outcome}" for c in report.conditions if c.outcome != PROVEN
        ]
        assert not unproven, unproven


POST = re.compile(r"^post:", re.MULTILINE)
"""A postcondition line of a PEP 316 docstring contract."""


def public_functions(path: Path) -> dict[str, str]:
    """Return the docstring of every public top-level function defined in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name: ast.get_docstring(node) or ""
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }


@pytest.mark.parametrize("module", ["u64", "config", "measures", "transitions", "extended"])
def test_every_public_model_function_states_a_contract(module: str) -> None:
    """Spec CFG to INV: each public function of the model says what it guarantees (post:)."""
    functions = public_functions(MODEL / f"{module}.py")
    assert functions
    missing = [name for name, doc in functions.items() if not POST.search(doc)]
    assert not missing, f"{module}: no post: contract on {missing}"


def test_every_harness_states_its_preconditions_first() -> None:
    """Spec INV-1 to INV-9: CrossHair's asserts mode checks only functions that open with assert."""
    tree = ast.parse((MODEL / "symbolic.py").read_text(encoding="utf-8"))
    harnesses = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(statement, ast.Assert) for statement in node.body)
        and node.returns is not None
        and isinstance(node.returns, ast.Constant)
        and node.returns.value is None
    ]
    assert len(harnesses) >= 7
    for harness in harnesses:
        first = harness.body[1] if isinstance(harness.body[0], ast.Expr) else harness.body[0]
        assert isinstance(first, ast.Assert), f"{harness.name} does not open with its preconditions"


def test_a_target_without_conditions_fails_instead_of_passing() -> None:
    """Spec INV-1..9: ``crosshair check flowpace_reference`` checks nothing; the runner says so."""
    empty = run_symbolic_checks(1.0, jobs=1, targets=(Target("flowpace_reference", PEP316),))
    assert empty.verdict == "failed"
    assert any("no PEP316 conditions" in error for check in empty.checks for error in check.errors)


def test_conditions_the_safety_net_stopped_leave_the_run_incomplete() -> None:
    """Spec INV-1..9: a run cut short is incomplete, never passed, never failed."""
    report = run_symbolic_checks(
        5.0, jobs=1, targets=(Target("flowpace_reference.u64", PEP316),), max_seconds=0.001
    )
    assert report.verdict == INCOMPLETE, format_report(report)
    assert report.count(NOT_RUN) == len(report.conditions) > 0
    assert "INCOMPLETE" in report.summary()


def test_a_missing_crosshair_leaves_the_run_incomplete(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec INV-1..9: without CrossHair nothing is checked, and the run says what to install."""
    monkeypatch.setattr("flowpace.symbolic.crosshair_installed", lambda: False)
    report = run_symbolic_checks(1.0, targets=MODEL_TARGETS)
    assert report.verdict == INCOMPLETE
    assert 'pip install "flowpace[verify]"' in report.summary()


def test_the_command_exits_3_when_incomplete_and_2_on_bad_usage() -> None:
    """Spec INV-1..9: the exit status tells a failure found from a run that was cut short."""
    base = [sys.executable, "-m", "flowpace.symbolic", "flowpace_reference.u64"]
    cut = subprocess.run(  # noqa: S603  # this interpreter, our module
        [*base, "--max-seconds", "0.001"], capture_output=True, text=True, check=False
    )
    assert cut.returncode == 3, cut.stdout + cut.stderr
    assert "symbolic checks INCOMPLETE" in cut.stdout
    bad = subprocess.run(  # noqa: S603  # this interpreter, our module
        [*base, "--per-condition-timeout", "0"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "--per-condition-timeout must be positive" in bad.stderr


# --- planted bugs ----------------------------------------------------------------------------

PLANTED = {
    # spec FC-6 rule 5, INV-3: steady state throttles only *above* soft.
    "soft-threshold-strict": (
        "transitions.py",
        "if not cold_start and debt_mu <= threshold_milli_units(config.bp_soft_debt_units):",
        "if not cold_start and debt_mu < threshold_milli_units(config.bp_soft_debt_units):",
        # The regime choice states INV-3 as its contract (LEM-6): the bug breaks it at soft.
        ["flowpace_reference.transitions.regime_at"],
        "regime_at",
    ),
    # spec AR-1: a product saturates at u64::MAX; it never wraps.
    "wrapping-product": (
        "u64.py",
        "    return clamp_u64(left * right)",
        "    return (left * right) % (U64_MAX + 1)",
        ["flowpace_reference.u64"],
        "saturating_mul",
    ),
    # spec AR-8, DIV-1: the seed's charge rule, which mistakes 0 bytes written for none yet.
    "seed-charge-rule": (
        "measures.py",
        "return task.actual_bytes if task.io_reported else task.est_bytes",
        "return task.actual_bytes if task.actual_bytes != 0 else task.est_bytes",
        ["flowpace_reference.measures"],
        "outstanding_charge",
    ),
    # spec LEM-5, INV-5: a delay doubled *below* hard instead of at or above it; each contract
    # of `capped_delay` still holds (a doubled delay is no shorter), but a larger debt can now
    # halve the delay: the composition lemma says so.
    "capped-delay-doubles-below-hard": (
        "transitions.py",
        "if debt_mu >= threshold_milli_units(config.bp_hard_debt_units):\n        delay = ",
        "if debt_mu < threshold_milli_units(config.bp_hard_debt_units):\n        delay = ",
        ["flowpace_reference.lemmas.capped_delay_monotone"],
        "capped_delay_monotone",
    ),
    # spec LEM-6, INV-5: the hard zone's delay halved: within bounds, every zero and stop
    # regime right, but the delay drops where the debt crosses hard. The composition lemma
    # rests on the contracts of `delay_at` and `delay_in_regime`; the bug breaks the latter's.
    "hard-zone-halved": (
        "transitions.py",
        "    if regime in THROTTLED_REGIMES:\n        return throttled_us\n",
        (
            "    if regime is ForegroundRegime.HARD_ZONE:\n        return throttled_us // 2\n"
            "    if regime in THROTTLED_REGIMES:\n        return throttled_us\n"
        ),
        ["flowpace_reference.transitions.delay_in_regime"],
        "delay_in_regime",
    ),
    # spec LEM-6, INV-4: stop reached only *above* its threshold: the regime's contract breaks.
    "stop-threshold-strict": (
        "transitions.py",
        "if debt_mu >= threshold_milli_units(config.bp_stop_debt_units):",
        "if debt_mu > threshold_milli_units(config.bp_stop_debt_units):",
        ["flowpace_reference.transitions.regime_at"],
        "regime_at",
    ),
    # spec LEM-8, INV-6: a pacing interval allowed one microsecond past the maximum.
    "interval-past-the-maximum": (
        "transitions.py",
        "min(rate_per_second(nbytes, disk_rate_bps), config.bp_max_delay_us)",
        "min(rate_per_second(nbytes, disk_rate_bps), config.bp_max_delay_us + 1)",
        ["flowpace_reference.transitions.interval_for"],
        "interval_for",
    ),
    # spec LEM-9, CFG-4: a pacing threshold allowed one above soft by its rule.
    "pacing-rule-above-soft": (
        "config.py",
        "    return min(pacing or 1, soft)",
        "    return min(pacing or 1, soft + 1)",
        ["flowpace_reference.config.normalised_pacing"],
        "normalised_pacing",
    ),
    # spec LEM-9, CFG-4: the composition wrong, each rule right: stop forced above soft, not
    # above hard.
    "stop-rule-given-soft": (
        "config.py",
        "stop = normalised_stop(hard, options.bp_stop_debt_units)",
        "stop = normalised_stop(soft, options.bp_stop_debt_units)",
        ["flowpace_reference.config.normalise"],
        "normalise",
    ),
    # spec CFG-3, CFG-4: a u64 option allowed one past its field. `reject` is taken as given,
    # and the proof of `check_options` still sees the value it lets through.
    "u64-range-one-past": (
        "config.py",
        '(name, U64_MAX, "u64") for name in U64_OPTIONS',
        '(name, U64_MAX + 1, "u64") for name in U64_OPTIONS',
        ["flowpace_reference.config.check_options"],
        "check_options",
    ),
    # spec LEM-10, CFG-3: an option error built, not raised; its callers' proofs take `reject`'s
    # contract (it never returns), so only its own check can see this.
    "reject-returns": (
        "config.py",
        '    raise error(f"option {name} must {requirement}, got {value!r}{context}")',
        '    error(f"option {name} must {requirement}, got {value!r}{context}")',
        ["flowpace_reference.config.reject"],
        "reject",
    ),
}


def planted_copy(tmp_path: Path, package: Path, file: str, old: str, new: str) -> Path:
    """Return a directory holding a copy of ``package`` with ``old`` replaced by ``new``."""
    copy = tmp_path / package.name
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = copy / file
    text = source.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the bug's site moved: {old!r}"
    source.write_text(text.replace(old, new), encoding="utf-8")
    return tmp_path


def crosshair(
    args: list[str], *, cwd: Path, pythonpath: list[Path]
) -> subprocess.CompletedProcess[str]:
    """Run CrossHair in this interpreter with ``pythonpath`` first on the import path."""
    env: Mapping[str, str] = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(path) for path in pythonpath),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(  # noqa: S603  # this interpreter, CrossHair's module
        [sys.executable, "-m", "crosshair", *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("bug", sorted(PLANTED))
def test_crosshair_check_reports_a_planted_bug(bug: str, tmp_path: Path) -> None:
    """Spec AR-1, AR-8, INV-3: a bug planted in a copy is a counterexample on its function."""
    file, old, new, targets, function = PLANTED[bug]
    copy = planted_copy(tmp_path, MODEL, file, old, new)
    done = crosshair(
        ["check", *targets, *plant_options()],
        cwd=tmp_path,
        pythonpath=[copy],
    )
    assert done.returncode == FOUND, done.stdout + done.stderr
    found = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert found, done.stdout
    assert all(line.startswith(str(copy)) for line in found), "the copy was not the one checked"
    assert any(f"when calling {function}(" in line for line in found), found


def test_crosshair_check_passes_the_unchanged_model(tmp_path: Path) -> None:
    """Spec AR-1 to AR-8: the same command, on the model as it is, exits 0."""
    done = crosshair(
        [
            "check",
            "flowpace_reference.u64",
            "flowpace_reference.measures",
            *plant_options(),
        ],
        cwd=tmp_path,
        pythonpath=[ROOT / "reference"],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stdout


# --- diffbehavior: the model's decisions against the implementation's ------------------------

TWINS = (
    "foreground_delay_at",
    "flush_plan_at",
    "paced_flush_at",
    "io_sample_at",
    "normalised_options",
)
"""Decisions with a twin in `crosshair_impl_adapters` (spec FC-6..10, FC-2 and AR-6, CFG-2)."""


def diffbehavior(
    name: str, *, cwd: Path, pythonpath: list[Path]
) -> subprocess.CompletedProcess[str]:
    """Run ``crosshair diffbehavior`` between the model's and the implementation's ``name``."""
    return crosshair(
        [
            "diffbehavior",
            f"flowpace_reference.symbolic.{name}",
            f"crosshair_impl_adapters.{name}",
            f"--per_condition_timeout={DIFF_TIMEOUT}",
            # Both sides raise the same errors for bad options; their messages may differ.
            "--exception_equivalence=SAME_TYPE",
        ],
        cwd=cwd,
        pythonpath=pythonpath,
    )


def test_diffbehavior_finds_no_difference(tmp_path: Path) -> None:
    """Spec FC-2, FC-6 to FC-10, AR-6, CFG-2: the implementation decides as the model does."""
    pythonpath = [TESTS, ROOT / "impl", ROOT / "reference"]
    # Two at a time: one CrossHair process per core.
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(
            zip(
                TWINS,
                pool.map(
                    lambda name: diffbehavior(name, cwd=tmp_path, pythonpath=pythonpath), TWINS
                ),
                strict=True,
            )
        )
    differing = {
        name: done.stdout + done.stderr
        for name, done in runs.items()
        if done.returncode != 0 or "No differences found" not in done.stdout
    }
    assert not differing, differing


def test_diffbehavior_reports_a_planted_difference(tmp_path: Path) -> None:
    """Spec FC-6 rule 5: the same run finds a strict soft comparison planted in the impl."""
    copy = planted_copy(
        tmp_path, IMPL, "_rules.py", "if debt_mu <= tuning.soft_mu:", "if debt_mu < tuning.soft_mu:"
    )
    done = diffbehavior(
        "foreground_delay_at", cwd=tmp_path, pythonpath=[copy, TESTS, ROOT / "reference"]
    )
    assert done.returncode == FOUND, done.stdout + done.stderr
    assert "Given: (" in done.stdout


# --- the Hypothesis profile on the crosshair backend -----------------------------------------

PROPERTY_TESTS = "ar1_clamps_never_wrap or ar6_inv8_ewma_lies_between_old_and_sample"
"""Model properties quick enough on the crosshair backend for every run (spec AR-1, AR-6)."""


def model_properties(profile: str, model: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the selected model properties under ``profile`` against the model in ``model``."""
    env = {**os.environ, "HYPOTHESIS_PROFILE": profile, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CI", None)  # the profile named here, not the one CI would pick
    return subprocess.run(  # noqa: S603  # this interpreter, pytest
        [
            sys.executable,
            "-m",
            "pytest",
            str(TESTS / "test_model_properties.py"),
            "-k",
            PROPERTY_TESTS,
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            # The model under test first; the run's example database lives in tmp_path (cwd).
            "-o",
            f"pythonpath={model} {ROOT / 'impl'} {TESTS}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_model_properties_pass_on_the_crosshair_backend(tmp_path: Path) -> None:
    """Spec AR-1, AR-6: ``HYPOTHESIS_PROFILE=crosshair`` runs model properties symbolically."""
    done = model_properties("crosshair", ROOT / "reference", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_crosshair_backend_finds_what_random_examples_miss(tmp_path: Path) -> None:
    """Spec AR-6, INV-8: a bug on one difference in 2**64 is found by the crosshair profile."""
    copy = planted_copy(
        tmp_path,
        MODEL,
        "measures.py",
        "    if old == 0:\n        return sample\n",
        "    if old == 0:\n        return sample\n"
        "    if sample - old == 12_345_678_901_234:\n        return sample + 1\n",
    )
    done = model_properties("crosshair", copy, tmp_path)
    assert done.returncode == TESTS_FAILED, done.stdout + done.stderr
    assert "FAILED" in done.stdout
    assert "test_ar6_inv8_ewma_lies_between_old_and_sample" in done.stdout


# --- proof chains ----------------------------------------------------------------------------


def fake_report(
    outcomes: Mapping[str, str], kinds: Mapping[str, str] | None = None
) -> SymbolicReport:
    """Return a report with one condition per function, each with the given outcome."""
    checks = tuple(
        CheckResult(
            name, (kinds or {}).get(name, PEP316), (ConditionResult(name, 1, "c", outcome),)
        )
        for name, outcome in outcomes.items()
    )
    return SymbolicReport(checks, 1.0, 10.0, 0.0, 1)


def every_member_of(claim: str) -> list[str]:
    """Return every function the chain of ``claim`` rests on."""
    chain = next(chain for chain in CHAINS if chain.claim == claim)
    return chain_members(chain, call_graph())


def test_every_invariant_has_a_proof_chain() -> None:
    """Spec INV-1 to INV-9, CFG-4: the report says what each one's proof rests on."""
    assert [chain.claim for chain in CHAINS] == [*(f"INV-{n}" for n in range(1, 10)), "CFG-4"]


def test_a_chain_rests_on_every_contract_its_functions_call() -> None:
    """Spec LEM-1 to LEM-7, INV-5: the chain reaches the lemmas' callees, transitively."""
    members = every_member_of("INV-5")
    for name in (
        "flowpace_reference.lemmas.ratio_antitone",
        "flowpace_reference.transitions.regime_at",  # through delay_at
        "flowpace_reference.transitions.throttle_ratio_pct",  # through throttled_delay_at
        "flowpace_reference.u64.rate_per_second",
        "flowpace_reference.measures.debt_milli_units",  # through debt_mu_monotone
    ):
        assert name in members, name
    assert "flowpace_reference.config.normalise" in every_member_of("CFG-4")
    assert "flowpace_reference.config.check_options" in every_member_of("CFG-4")


def test_a_claim_is_proven_only_when_its_whole_chain_is() -> None:
    """Spec INV-2, LEM-2: one held callee leaves the claim held; a Z3 proof counts for a lemma."""
    members = every_member_of("INV-5")
    lemma = "flowpace_reference.lemmas.ratio_antitone"
    outcomes = dict.fromkeys(members, PROVEN)
    kinds = {lemma: Z3}
    verdicts = {r.chain.claim: r.verdict for r in chain_results(fake_report(outcomes, kinds))}
    assert verdicts["INV-5"] == PROVEN
    held = {**outcomes, "flowpace_reference.transitions.share_of": HELD}
    results = chain_results(fake_report(held, kinds))
    verdicts = {r.chain.claim: r.verdict for r in results}
    assert verdicts["INV-5"] == HELD
    assert verdicts["INV-2"] == HELD  # share_of is under delay_at's throttled delay too
    assert verdicts["CFG-4"] == "not checked"
    broken = {**outcomes, lemma: "counterexample"}
    verdicts = {r.chain.claim: r.verdict for r in chain_results(fake_report(broken, kinds))}
    assert verdicts["INV-5"] == "failed"


def test_a_contract_taken_as_given_is_named_and_a_counterexample_to_it_still_fails() -> None:
    """Spec LEM-10, CFG-4: `reject`, held, leaves CFG-4 proven and named; broken, it fails."""
    given = "flowpace_reference.config.reject"
    members = every_member_of("CFG-4")
    assert given in members
    assert "flowpace_reference.config.check_options" in members
    outcomes = dict.fromkeys(members, PROVEN)
    report = fake_report({**outcomes, given: HELD})
    verdicts = {r.chain.claim: r.verdict for r in chain_results(report)}
    assert verdicts["CFG-4"] == PROVEN
    assert f"taken as given: {given}" in format_report(report)
    unproven = {**outcomes, given: HELD, "flowpace_reference.config.check_options": HELD}
    verdicts = {r.chain.claim: r.verdict for r in chain_results(fake_report(unproven))}
    assert verdicts["CFG-4"] == HELD  # only the listed contract is given
    broken = {**outcomes, given: "counterexample"}
    verdicts = {r.chain.claim: r.verdict for r in chain_results(fake_report(broken))}
    assert verdicts["CFG-4"] == "failed"


def test_ci_weights_the_delay_chains_and_dev_keeps_its_budget() -> None:
    """Spec VER-3, INV-2 to INV-5: profile weights name chain members; dev gets none."""
    assert "dev" not in PROFILE_WEIGHTS
    delay_chains = {name for claim in ("INV-2", "INV-5") for name in every_member_of(claim)}
    for profile, weights in PROFILE_WEIGHTS.items():
        assert set(weights) <= delay_chains, profile
        for name in weights:
            assert function_weight(name, profile) > function_weight(name, "dev")
            assert function_weight(name, "dev") == function_weight(name)
    # The function weights hold in every profile, and multiply.
    check_options = "flowpace_reference.config.check_options"
    assert function_weight(check_options, "ci") == function_weight(check_options) > 1


def test_the_command_takes_its_budget_from_the_profile_named() -> None:
    """Spec VER-3: ``--profile nightly`` gives each condition nightly's CPU seconds."""
    done = subprocess.run(  # this interpreter, our module
        [
            sys.executable,
            "-m",
            "flowpace.symbolic",
            "flowpace_reference.u64",
            "--profile",
            "nightly",
            "--max-seconds",
            "0.001",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HYPOTHESIS_PROFILE": "dev"},
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"{CONDITION_TIMEOUTS['nightly']:g} CPU s per condition" in done.stdout
