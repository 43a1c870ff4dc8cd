"""Z3 proofs of the nonlinear lemmas of the reference model (spec "Proof structure", LEM-1..4).

CrossHair confirms a condition over all paths only when Z3 decides every path, and Z3 does not
decide the paths of a division by a symbolic value within CrossHair's searches. These lemmas are
small enough to state to Z3 directly: each model function a lemma is about is encoded here as
a Z3 term over unbounded integers (`ENCODINGS`), with the ``u64`` clamps written out as the
model writes them, and each lemma of `flowpace_reference.lemmas` is stated over those terms
(`LEMMAS`): Z3 proves it when the negation of "precondition implies statement" is
unsatisfiable. Z3's budget is its ``rlimit``, a count of solver steps, so whether a proof
finishes never depends on the machine's speed.

An encoding could drift from the function it encodes. `check_encoding` evaluates each encoding
on sampled arguments (edge values and a fixed pseudo-random draw) and compares it with the model
function itself; `prove` runs that check for every function its lemma uses before asking Z3, and
reports a difference as a counterexample on that function. `tests/test_lemmas.py` does the same
on Hypothesis's draws, and checks each lemma's Z3 precondition against the ``pre:`` lines of the
Python lemma.

Tooling, like `flowpace.symbolic`: the implementation's core never imports this module, and it
needs Z3 (installed with CrossHair, a development dependency).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import z3  # type: ignore[import-untyped]  # Z3 ships no type information

from flowpace_reference import lemmas, measures, transitions, u64
from flowpace_reference.config import normalise
from flowpace_reference.types import Config, Options

U64_MAX: Final = u64.U64_MAX

DEFAULT_RLIMIT: Final = 5_000_000
"""Z3 resource units per lemma: each proof takes a few hundred thousand."""

SAMPLES: Final = 300
"""Sampled argument tuples per encoding in `check_encoding`."""

EDGES: Final = (0, 1, 2, 3, 7, 8, 9, 99, 100, 101, 999, 1_000, 1_001, 2**32 - 1, 2**32, 2**63)
"""Values every sample draws from besides random ones: the boundaries of the clamps."""

BASE_CONFIG: Final = normalise(Options())
"""The configuration the encodings' configuration arguments are made from."""


# --- the encodings -------------------------------------------------------------------------


def z_min(left: z3.ArithRef, right: z3.ArithRef | int) -> z3.ArithRef:
    """Return Z3's ``min(left, right)``."""
    return z3.If(left <= right, left, right)


def z_max(left: z3.ArithRef, right: z3.ArithRef | int) -> z3.ArithRef:
    """Return Z3's ``max(left, right)``."""
    return z3.If(left >= right, left, right)


def z_clamp(value: z3.ArithRef) -> z3.ArithRef:
    """Return `u64.clamp_u64` as Z3 (AR-1)."""
    return z_min(value, U64_MAX)


def z_debt_mu(flush_unit: z3.ArithRef, debt: z3.ArithRef) -> z3.ArithRef:
    """Return `measures.debt_milli_units` as Z3 (AR-2); Z3's ``/`` is ``//`` for these signs."""
    return z3.If(debt == 0, 0, z_clamp(z_max(debt * measures.MILLI / flush_unit, 1)))


def z_ratio(base_mu: z3.ArithRef, debt_mu: z3.ArithRef, min_ratio: z3.ArithRef) -> z3.ArithRef:
    """Return `transitions.throttle_ratio_pct` as Z3 (FC-7)."""
    ratio = z_min(base_mu * 100 / debt_mu, 100)
    return z_min(z_max(ratio, min_ratio), 100)


def z_share(bps: z3.ArithRef, pct: z3.ArithRef) -> z3.ArithRef:
    """Return `transitions.share_of` as Z3 (FC-7): ``max(sat_mul(bps, pct) // 100, 1)``."""
    return z_max(z_clamp(bps * pct) / 100, 1)


def z_rate(amount: z3.ArithRef, micros: z3.ArithRef) -> z3.ArithRef:
    """Return `u64.rate_per_second` as Z3 (AR-1)."""
    return z_clamp(amount * u64.MICROS_PER_SECOND / micros)


def with_flush_unit(flush_unit: int) -> Config:
    """Return `BASE_CONFIG` with ``flush_unit``: the only option `debt_milli_units` reads."""
    return dataclasses.replace(BASE_CONFIG, bp_flush_unit_bytes=flush_unit)


@dataclass(frozen=True, slots=True)
class Encoding:
    """A model function, its Z3 encoding, and the domain both are compared on."""

    name: str
    """The model function, by qualified name."""
    function: Callable[..., int]
    """The model function on plain integers (a configuration argument made by an adapter)."""
    encode: Callable[..., z3.ArithRef]
    """The Z3 term of the function, over Z3 integers."""
    domain: Callable[..., bool]
    """Whether integer arguments are in the function's precondition."""
    arity: int
    """How many integer arguments."""


ENCODINGS: Final = {
    encoding.name: encoding
    for encoding in (
        Encoding(
            "flowpace_reference.measures.debt_milli_units",
            lambda unit, debt: measures.debt_milli_units(with_flush_unit(unit), debt),
            z_debt_mu,
            lambda unit, debt: 1 <= unit <= U64_MAX and 0 <= debt <= U64_MAX,
            2,
        ),
        Encoding(
            "flowpace_reference.transitions.throttle_ratio_pct",
            transitions.throttle_ratio_pct,
            z_ratio,
            lambda base, mu, least: (
                0 <= base <= U64_MAX and 1 <= mu <= U64_MAX and 1 <= least <= 100
            ),
            3,
        ),
        Encoding(
            "flowpace_reference.transitions.share_of",
            transitions.share_of,
            z_share,
            lambda bps, pct: 0 <= bps <= U64_MAX and 0 <= pct <= 100,
            2,
        ),
        Encoding(
            "flowpace_reference.u64.rate_per_second",
            u64.rate_per_second,
            z_rate,
            lambda amount, micros: 0 <= amount <= U64_MAX and 1 <= micros <= U64_MAX,
            2,
        ),
    )
}
"""Every model function a Z3 lemma is stated over, by qualified name."""


# --- the lemmas ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Z3Lemma:
    """A lemma of `flowpace_reference.lemmas` stated to Z3."""

    name: str
    """The lemma's function in `flowpace_reference.lemmas`."""
    spec_id: str
    """Its ID in the spec's "Proof structure" section."""
    variables: tuple[str, ...]
    """The Z3 integers it quantifies over, in the order of the Python lemma's arguments."""
    state: Callable[..., tuple[z3.BoolRef, z3.BoolRef]]
    """Return the precondition and the statement over ``variables``."""
    uses: tuple[str, ...]
    """The `ENCODINGS` it is stated over: each is checked against the model first."""
    python_args: Callable[..., tuple[object, ...]] = lambda *values: values
    """Return the Python lemma's arguments from integer values of ``variables``."""
    covers: tuple[str, ...] = ()
    """Model functions whose whole contract this lemma proves (for the proof chains)."""

    @property
    def target(self) -> str:
        """Return the Python lemma, by qualified name."""
        return f"flowpace_reference.lemmas.{self.name}"


def _debt_mu_monotone(
    unit: z3.ArithRef, debt: z3.ArithRef, more: z3.ArithRef
) -> tuple[z3.BoolRef, z3.BoolRef]:
    pre = z3.And(unit >= 1, unit <= U64_MAX, debt >= 0, debt <= more, more <= U64_MAX)
    return pre, z_debt_mu(unit, debt) <= z_debt_mu(unit, more)


def _ratio_antitone(
    base: z3.ArithRef, mu: z3.ArithRef, more: z3.ArithRef, least: z3.ArithRef
) -> tuple[z3.BoolRef, z3.BoolRef]:
    pre = z3.And(
        base >= 0, base <= U64_MAX, mu >= 1, mu <= more, more <= U64_MAX, least >= 1, least <= 100
    )
    return pre, z_ratio(base, more, least) <= z_ratio(base, mu, least)


def _share_monotone(
    bps: z3.ArithRef, more_bps: z3.ArithRef, pct: z3.ArithRef, more_pct: z3.ArithRef
) -> tuple[z3.BoolRef, z3.BoolRef]:
    pre = z3.And(
        bps >= 0, bps <= more_bps, more_bps <= U64_MAX, pct >= 0, pct <= more_pct, more_pct <= 100
    )
    return pre, z_share(bps, pct) <= z_share(more_bps, more_pct)


def _share_bounded(bps: z3.ArithRef, pct: z3.ArithRef) -> tuple[z3.BoolRef, z3.BoolRef]:
    pre = z3.And(bps >= 0, bps <= U64_MAX, pct >= 0, pct <= 100)
    share = z_share(bps, pct)
    return pre, z3.And(share >= 1, share <= z_max(bps, 1))


def _rate_antitone(
    amount: z3.ArithRef, micros: z3.ArithRef, more: z3.ArithRef
) -> tuple[z3.BoolRef, z3.BoolRef]:
    pre = z3.And(amount >= 0, amount <= U64_MAX, micros >= 1, micros <= more, more <= U64_MAX)
    return pre, z_rate(amount, more) <= z_rate(amount, micros)


LEMMAS: Final = {
    lemma.name: lemma
    for lemma in (
        Z3Lemma(
            "debt_mu_monotone",
            "LEM-1",
            ("flush_unit", "debt", "more_debt"),
            _debt_mu_monotone,
            ("flowpace_reference.measures.debt_milli_units",),
            lambda unit, debt, more: (with_flush_unit(unit), debt, more),
        ),
        Z3Lemma(
            "ratio_antitone",
            "LEM-2",
            ("base_mu", "debt_mu", "more_mu", "min_ratio_pct"),
            _ratio_antitone,
            ("flowpace_reference.transitions.throttle_ratio_pct",),
        ),
        Z3Lemma(
            "share_monotone",
            "LEM-3",
            ("bps", "more_bps", "pct", "more_pct"),
            _share_monotone,
            ("flowpace_reference.transitions.share_of",),
        ),
        Z3Lemma(
            "share_bounded",
            "LEM-3",
            ("bps", "pct"),
            _share_bounded,
            ("flowpace_reference.transitions.share_of",),
            covers=("flowpace_reference.transitions.share_of",),
        ),
        Z3Lemma(
            "rate_antitone",
            "LEM-4",
            ("amount", "micros", "more_micros"),
            _rate_antitone,
            ("flowpace_reference.u64.rate_per_second",),
        ),
    )
}
"""The lemmas Z3 proves, by the name of their function in `flowpace_reference.lemmas`."""


# --- checking and proving ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LemmaResult:
    """What Z3 established about one lemma."""

    outcome: str
    """``proven``, ``counterexample`` or ``unknown`` (Z3 ran out of its budget)."""
    message: str = ""
    """The counterexample, the drifted encoding, or why Z3 gave up."""


def evaluate(term: z3.ExprRef) -> int | bool:
    """Return the value of a Z3 term without variables."""
    value = z3.simplify(term)
    if z3.is_true(value) or z3.is_false(value):
        return bool(z3.is_true(value))
    if not isinstance(value, z3.IntNumRef):
        raise TypeError(f"not a closed integer term: {term}")
    return int(value.as_long())


def sample_arguments(
    arity: int, domain: Callable[..., bool], count: int, seed: int = 0
) -> list[tuple[int, ...]]:
    """Return up to ``count`` argument tuples in ``domain``: edge values and random ones."""
    draw = random.Random(seed)  # noqa: S311  # a fixed sample, not a secret

    def one() -> int:
        kind = draw.randrange(4)
        if kind == 0:
            return draw.choice(EDGES)
        if kind == 1:
            return U64_MAX - draw.randrange(3)
        if kind == 2:
            return draw.randrange(2_000)
        return draw.randrange(U64_MAX + 1)

    found: list[tuple[int, ...]] = []
    for _ in range(count * 20):
        arguments = tuple(one() for _ in range(arity))
        if domain(*arguments):
            found.append(arguments)
            if len(found) == count:
                break
    return found


def encoding_differs(encoding: Encoding, arguments: Sequence[int]) -> str:
    """Return how ``encoding`` differs from its function at ``arguments``, or ``""``."""
    expected = encoding.function(*arguments)
    got = evaluate(encoding.encode(*(z3.IntVal(value) for value in arguments)))
    if got != expected:
        return f"{encoding.name}{tuple(arguments)} is {expected}, its Z3 encoding gives {got}"
    return ""


def check_encoding(encoding: Encoding, count: int = SAMPLES) -> str:
    """Return the first sampled difference between ``encoding`` and its function, or ``""``."""
    for arguments in sample_arguments(encoding.arity, encoding.domain, count):
        difference = encoding_differs(encoding, arguments)
        if difference:
            return difference
    return ""


def prove(lemma: Z3Lemma, rlimit: int = DEFAULT_RLIMIT) -> LemmaResult:
    """Return whether Z3 proves ``lemma``, after checking the encodings it is stated over."""
    for name in lemma.uses:
        difference = check_encoding(ENCODINGS[name])
        if difference:
            return LemmaResult("counterexample", f"the encoding drifted: {difference}")
    variables = [z3.Int(name) for name in lemma.variables]
    pre, statement = lemma.state(*variables)
    solver = z3.Solver()
    solver.set("rlimit", rlimit)
    solver.add(pre, z3.Not(statement))
    answer = solver.check()
    if answer == z3.unsat:
        return LemmaResult("proven")
    if answer == z3.sat:
        model = solver.model()
        values = {
            name: model.eval(var, model_completion=True)
            for name, var in zip(lemma.variables, variables, strict=True)
        }
        shown = ", ".join(f"{name}={value}" for name, value in values.items())
        return LemmaResult("counterexample", f"{lemma.name}({shown}) is false")
    return LemmaResult("unknown", f"Z3: {solver.reason_unknown()}")


def python_lemma(lemma: Z3Lemma) -> Callable[..., bool]:
    """Return the Python function of `flowpace_reference.lemmas` that ``lemma`` states."""
    function: Callable[..., bool] = getattr(lemmas, lemma.name)
    return function
