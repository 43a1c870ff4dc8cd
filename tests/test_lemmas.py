"""The lemmas of the proof structure and their Z3 proofs (spec LEM-1 to LEM-9, INV-5).

`flowpace._z3_lemmas` proves the nonlinear lemmas of `flowpace_reference.lemmas` over its own
Z3 encodings of the model's functions. These tests keep that honest: each encoding equals the
model function on Hypothesis's draws, each lemma's Z3 precondition is the Python lemma's
``assumes:``/``pre:`` lines, each Python lemma holds on draws, and a bug planted in an encoding
or in the model is reported, on the right function, by the same step the symbolic run takes.
Cheap: Z3 answers each lemma in well under a second of CPU.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType

import pytest
import z3  # type: ignore[import-untyped]  # Z3 ships no type information
from hypothesis import given
from hypothesis import strategies as st

from flowpace import _z3_lemmas
from flowpace._z3_lemmas import ENCODINGS, LEMMAS, check_encoding, encoding_differs, prove
from flowpace_reference import lemmas, transitions, u64
from flowpace_reference.u64 import U64_MAX

U64 = st.one_of(
    st.integers(0, 2_000),
    st.integers(0, U64_MAX),
    st.sampled_from([U64_MAX, U64_MAX - 1, 2**32 - 1, 2**32, 1_000, 999, 100, 101]),
)
PCT = st.integers(0, 101)
DOMAIN_LINE = re.compile(r"^\s*(?:assumes|pre):\s*(.+)$", re.MULTILINE)


def domain_holds(lemma: _z3_lemmas.Z3Lemma, values: tuple[int, ...]) -> bool:
    """Return whether the Python lemma's own domain lines hold for ``values``."""
    function = _z3_lemmas.python_lemma(lemma)
    arguments = dict(zip(function.__code__.co_varnames, lemma.python_args(*values), strict=False))
    scope = {**vars(lemmas), **arguments}
    lines = DOMAIN_LINE.findall(function.__doc__ or "")
    assert lines, f"{lemma.name} states no domain"
    return all(eval(line, scope) for line in lines)  # noqa: S307  # the model's own contract text


def z3_domain_holds(lemma: _z3_lemmas.Z3Lemma, values: tuple[int, ...]) -> bool:
    """Return whether the Z3 precondition of ``lemma`` holds for ``values``."""
    pre, _ = lemma.state(*(z3.IntVal(value) for value in values))
    return bool(_z3_lemmas.evaluate(pre))


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_each_encoding_agrees_with_its_model_function_on_fixed_samples(name: str) -> None:
    """Spec LEM-1 to LEM-4: the Z3 term of each function is the function (the run's check)."""
    assert check_encoding(ENCODINGS[name]) == ""


@given(data=st.data())
@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_each_encoding_agrees_with_its_model_function_on_draws(
    name: str, data: st.DataObject
) -> None:
    """Spec LEM-1 to LEM-4: the same on Hypothesis's draws, in the function's domain."""
    encoding = ENCODINGS[name]
    arguments = data.draw(
        st.tuples(*[st.one_of(U64, PCT)] * encoding.arity).filter(
            lambda values: encoding.domain(*values)
        )
    )
    assert encoding_differs(encoding, arguments) == ""


@given(data=st.data())
@pytest.mark.parametrize("name", sorted(LEMMAS))
def test_each_z3_precondition_is_the_python_lemmas_domain(name: str, data: st.DataObject) -> None:
    """Spec LEM-1 to LEM-4: Z3 proves the lemma on the domain its Python statement names."""
    lemma = LEMMAS[name]
    values = data.draw(st.tuples(*[st.one_of(U64, PCT)] * len(lemma.variables)))
    if lemma.name == "debt_mu_monotone" and values[0] == 0:
        values = (1, *values[1:])  # a configuration's flush unit is at least 1 (CFG-4)
    assert z3_domain_holds(lemma, values) == domain_holds(lemma, values)
    if z3_domain_holds(lemma, values):
        # The statement itself, in Python, holds there: what Z3 proved of the encoding.
        assert _z3_lemmas.python_lemma(lemma)(*lemma.python_args(*values))


@pytest.mark.parametrize("name", sorted(LEMMAS))
def test_z3_proves_each_lemma(name: str) -> None:
    """Spec LEM-1 to LEM-4: each nonlinear lemma is proven, within Z3's step budget."""
    result = prove(LEMMAS[name])
    assert result.outcome == "proven", result.message


@contextmanager
def encoded_as(name: str, encode: object) -> Iterator[None]:
    """Replace the Z3 encoding of ``name`` for the duration (a bug planted in the proof)."""
    original = ENCODINGS[name]
    ENCODINGS[name] = _z3_lemmas.Encoding(
        original.name,
        original.function,
        encode,  # type: ignore[arg-type]  # a Z3 term builder like the original
        original.domain,
        original.arity,
    )
    try:
        yield
    finally:
        ENCODINGS[name] = original


PLANTED_MODEL_BUGS: dict[str, tuple[ModuleType, str, Callable[..., int], str]] = {
    # LEM-2: a ratio that grows with the debt: the throttle would relax as the debt grows.
    "ratio_antitone": (
        transitions,
        "throttle_ratio_pct",
        lambda base_mu, debt_mu, least: min(
            max(min(debt_mu * 100 // max(base_mu, 1), 100), least), 100
        ),
        "flowpace_reference.transitions.throttle_ratio_pct",
    ),
    # LEM-3: a share rounded up without the floor of 1 byte/s.
    "share_monotone": (
        transitions,
        "share_of",
        lambda bps, pct: u64.saturating_mul(bps, pct) // 100,
        "flowpace_reference.transitions.share_of",
    ),
    # LEM-4: a rate that wraps instead of saturating (AR-1).
    "rate_antitone": (
        u64,
        "rate_per_second",
        lambda amount, micros: amount * 1_000_000 // micros % (U64_MAX + 1),
        "flowpace_reference.u64.rate_per_second",
    ),
}
"""A bug in the model function each lemma is about, and the function it must be reported on."""


@pytest.mark.parametrize("name", sorted(PLANTED_MODEL_BUGS))
def test_a_bug_planted_in_a_lemmas_function_is_reported_on_that_function(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spec LEM-2 to LEM-4: the encoding no longer matches the model, and the run says where."""
    module, function, planted, qualified = PLANTED_MODEL_BUGS[name]
    encoding = ENCODINGS[qualified]
    monkeypatch.setitem(
        ENCODINGS,
        qualified,
        _z3_lemmas.Encoding(
            encoding.name, planted, encoding.encode, encoding.domain, encoding.arity
        ),
    )
    monkeypatch.setattr(module, function, planted)
    result = prove(LEMMAS[name])
    assert result.outcome == "counterexample", result
    assert qualified in result.message


def test_a_lemma_made_false_in_its_encoding_is_a_z3_counterexample() -> None:
    """Spec LEM-1: a debt in milli-units that falls past a threshold breaks monotonicity."""

    def falling(unit: z3.ArithRef, debt: z3.ArithRef) -> z3.ArithRef:
        exact = _z3_lemmas.z_debt_mu(unit, debt)
        return z3.If(debt > 10**6, exact - 1, exact)

    with encoded_as("flowpace_reference.measures.debt_milli_units", falling):
        lemma = LEMMAS["debt_mu_monotone"]
        # Checked against the model first: the falsified encoding drifts from it.
        drifted = prove(lemma)
        assert drifted.outcome == "counterexample"
        assert "flowpace_reference.measures.debt_milli_units" in drifted.message
        # Stated to Z3 without that check, the false lemma gets a counterexample too.
        solver = z3.Solver()
        unit, debt, more = z3.Ints("unit debt more")
        solver.add(unit >= 1, debt >= 0, debt <= more, more <= U64_MAX)
        solver.add(falling(unit, debt) > falling(unit, more))
        assert solver.check() == z3.sat
