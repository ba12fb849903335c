"""Comparisons are exact on every path: Vars, Duals, VarArrays, Tensors, a trace's guards and its
replays, numpy inputs to the transforms. A float32 near a float64 threshold is compared by its
true value, never rounded with the threshold to float32 as NumPy 2 does (NEP 50).

The oracle is Python's Fraction of each operand: the exact value of a binary float.
"""
import operator
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import Dual, Tape, Var, VarArray

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def exactly(op: str, a, b) -> bool:
    return OPS[op](Fraction(float(a)), Fraction(float(b)))  # float() of a float32 or float16 is exact


@st.composite
def near_a_threshold(draw):
    """(x, c, dtype): a float64 threshold c and a float32 or float16 x within an ulp of it, where
    rounding c to x's type decides the comparison."""
    dtype = draw(st.sampled_from([np.float32, np.float16]))
    c = draw(st.floats(-60000, 60000, allow_nan=False, allow_infinity=False))
    x = dtype(c)
    for _ in range(draw(st.integers(-1, 1)) % 3):
        x = np.nextafter(x, dtype(np.inf if draw(st.booleans()) else -np.inf))
    return x, c, dtype


def test_numpy_itself_rounds_the_threshold_which_the_engine_does_not():
    x = np.float32(0.1)  # 0.100000001490116...
    assert not x > 0.1 and exactly(">", x, 0.1)  # the disagreement this file is about
    with Tape():
        assert Var(x) > 0.1 and 0.1 < Var(x)


@pytest.mark.parametrize("op", sorted(OPS))
@settings(max_examples=60, deadline=None)
@given(case=near_a_threshold())
def test_every_kind_of_operand_compares_exactly_on_both_sides(op, case):
    x, c, dtype = case
    expected, reflected = exactly(op, x, c), exactly(op, c, x)
    compare = OPS[op]
    with Tape():
        assert compare(Var(x), c) is expected and compare(c, Var(x)) is reflected
        assert compare(Var(c), x) is reflected and bool(compare(x, Var(c))) is expected  # the numpy scalar as a constant
        a = VarArray([x, c])
        np.testing.assert_array_equal(compare(a, c), [expected, compare(c, c)])
        np.testing.assert_array_equal(compare(c, a), [reflected, compare(c, c)])
        np.testing.assert_array_equal(compare(VarArray([c]), np.array([x], dtype=dtype)), [reflected])
    assert compare(Dual(float(x), 1.0), c) is expected and compare(c, Dual(float(x), 1.0)) is reflected
    assert compare(Dual(c, 1.0), x) is reflected and compare(Dual(x, 1.0), c) is expected
    if dtype is np.float32:  # a Tensor is float32 or float64
        t = tape.Tensor(np.array([x, x], dtype=np.float32))
        np.testing.assert_array_equal(compare(t, c), [expected] * 2)
        np.testing.assert_array_equal(compare(c, t), [reflected] * 2)
        np.testing.assert_array_equal(compare(tape.Tensor(np.array([c])), x), [reflected])


def branchy(op: str, c: float):
    """2x where x <op> c, else 3x: the branch shows in the value and the slope."""
    return lambda x: 2.0 * x if OPS[op](x, c) else 3.0 * x


@pytest.mark.parametrize("op", sorted(OPS))
@settings(max_examples=40, deadline=None)
@given(case=near_a_threshold())
def test_the_transforms_take_the_exact_branch_of_numpy_inputs(op, case):
    x, c, dtype = case
    slope = 2.0 if exactly(op, x, c) else 3.0
    f = branchy(op, c)
    assert tape.value_and_grad(f)(x) == (slope * float(x), slope)
    assert tape.jvp(f, (x,), (1.0,)) == (slope * float(x), slope)
    assert f(float(x)) == slope * float(x)  # the plain call on the float that holds x exactly
    vector = lambda v: f(v[0]) + 0.0 * v[1]  # noqa: E731
    np.testing.assert_array_equal(tape.grad(vector)(np.array([x, x], dtype=dtype)), [slope, 0.0])


@pytest.mark.parametrize("op", sorted(OPS))
@settings(max_examples=30, deadline=None)
@given(case=near_a_threshold(), threshold_type=st.sampled_from([float, np.float32, np.float16]))
def test_a_traces_guards_are_replayed_with_the_comparison_they_were_made_with(op, case, threshold_type):
    """Traced far from the threshold, on each side of it: the replay at x holds iff the exact
    comparison there comes out as traced, and a retracing function gives the exact branch."""
    x, c, _ = case
    c = threshold_type(c)
    if not np.isfinite(c):
        return
    f = branchy(op, c)
    slope = 2.0 if exactly(op, x, c) else 3.0
    for at in (float(c) - 1.0, float(c) + 1.0):
        traced_slope = 2.0 if exactly(op, at, c) else 3.0
        traced = tape.trace(f, at)
        if traced_slope == slope:
            assert traced.grad()(x) == slope and traced(x) == slope * float(x)
        else:
            with pytest.raises(tape.GuardError):
                traced.grad()(x)
        assert tape.trace(f, at, retrace=True).value_and_grad()(x) == (slope * float(x), slope)
    assert tape.trace(f, x).value_and_grad()(x) == (slope * float(x), slope)  # traced at x itself


@pytest.mark.parametrize("op", sorted(OPS))
def test_a_varray_comparison_is_a_guard_of_each_entry(op):
    c = 0.1
    x = np.array([np.float32(0.1), 0.5, -0.5])  # the float32 nearest 0.1 is above it
    weights = np.array([1.0, -2.0, 3.0])

    def f(v):
        a = VarArray(v)
        return (a * np.where(OPS[op](a, c), 2.0, 3.0) * weights).sum()

    slopes = np.where([exactly(op, e, c) for e in x], 2.0, 3.0) * weights
    np.testing.assert_array_equal(tape.grad(f)(x), slopes)
    traced = tape.trace(f, x)
    np.testing.assert_array_equal(traced.grad()(x), slopes)
    flipped = x.copy()
    flipped[0] = 0.09
    with pytest.raises(tape.GuardError, match=r"argument 0\[0\]"):
        traced.grad()(flipped)
    np.testing.assert_array_equal(tape.trace(f, x, retrace=True).grad()(flipped),
                                  np.where([exactly(op, e, c) for e in flipped], 2.0, 3.0) * weights)


def test_a_varray_compared_with_something_else_is_refused_by_python():
    with Tape():
        with pytest.raises(TypeError):
            VarArray([1.0]) < "a"
