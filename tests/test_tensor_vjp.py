"""The VJP of every structural operation (tape/_tensor.py's STRUCTURAL) with a random cotangent
on every operand, in float32 and float64, against central differences of <cotangent, f> written
here in numpy; the forward derivative (`tape.jvp` on Tensors) with random tangents the same way;
extreme and empty inputs; gradients keep their operand's dtype and shape."""
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import Tape, Tensor, Var

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning leaks out of a value or a VJP
RNG = np.random.default_rng(7)
TOLERANCE = {np.float64: dict(rtol=1e-7, atol=1e-9), np.float32: dict(rtol=2e-3, atol=2e-4)}


def pullback(fn, operands: list, tensors: tuple, cotangent, dtype):
    """(value, adjoints of the operands at `tensors`) of fn: those operands as Tensors of dtype,
    the others as arrays of dtype; the tape swept once, seeded with `cotangent` at the output."""
    operands = [np.asarray(x, dtype) for x in operands]
    with Tape() as t:
        xs = [Tensor(x) if i in tensors else x for i, x in enumerate(operands)]
        y = fn(*xs)
        if isinstance(y, Var):
            seed = np.zeros(y.node + 1)
            seed[y.node] = float(cotangent)
            t.sweep(seed)
            value = np.asarray(y.value, dtype)
        else:
            t.sweep(np.zeros(y.node + 1), {y.node: np.asarray(cotangent, y.dtype)})
            value = y.value
        return value, [xs[i].grad for i in tensors]


def central(f, operands: list, i: int, cotangent, h: float = 1e-4) -> np.ndarray:
    """d<cotangent, f(operands)>/d(operand i) by central differences, in float64."""
    operands = [np.asarray(x, np.float64) for x in operands]
    x, out = operands[i], np.zeros(np.shape(operands[i]))
    for k in np.ndindex(x.shape):
        step = np.zeros(x.shape)
        step[k] = h
        up = operands[:i] + [x + step] + operands[i + 1:]
        down = operands[:i] + [x - step] + operands[i + 1:]
        out[k] = (np.sum(cotangent * f(*up)) - np.sum(cotangent * f(*down))) / (2 * h)
    return out


def check(fn, f, operands: list, tensors: tuple, dtype):
    """fn's value is numpy's f, and its VJP with a random cotangent is central differences', for
    each operand in `tensors`; each adjoint has its operand's dtype and shape."""
    operands = [np.asarray(x, dtype) for x in operands]
    expected = f(*[x.astype(np.float64) for x in operands])
    cotangent = RNG.standard_normal(np.shape(expected))
    value, adjoints = pullback(fn, operands, tensors, cotangent.astype(dtype), dtype)
    assert np.shape(value) == np.shape(expected) and value.dtype == dtype
    np.testing.assert_allclose(value, expected, **TOLERANCE[dtype])
    for i, adjoint in zip(tensors, adjoints):
        assert adjoint.shape == operands[i].shape and adjoint.dtype == dtype, (i, adjoint.shape, adjoint.dtype)
        np.testing.assert_allclose(adjoint, central(f, operands, i, cotangent.astype(dtype)), **TOLERANCE[dtype])


DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])


def normal(*shape):
    return RNG.standard_normal(shape)


# -- the matrix product ----------------------------------------------------------------------------

MATMUL = {
    "2-d @ 2-d": (normal(3, 4), normal(4, 2)),
    "1-d @ 2-d": (normal(4), normal(4, 2)),
    "2-d @ 1-d": (normal(3, 4), normal(4)),
    "1-d @ 1-d": (normal(4), normal(4)),
    "1 x 1": (normal(1, 1), normal(1, 1)),
}


@DTYPES
@pytest.mark.parametrize("case", sorted(MATMUL))
@pytest.mark.parametrize("tensors", [(0, 1), (0,), (1,)], ids=["Tensor@Tensor", "Tensor@array", "array@Tensor"])
def test_matmul_of_every_form(case, tensors, dtype):
    check(lambda a, b: a @ b, lambda a, b: a @ b, list(MATMUL[case]), tensors, dtype)


@DTYPES
@pytest.mark.parametrize("left, right", [(False, True), (True, False), (True, True)])
@pytest.mark.parametrize("tensors", [(0, 1), (0,), (1,)])
def test_matmul_of_transposed_views(left, right, tensors, dtype):
    """x @ W.T is the MLP's layer: W.T is a transposed view, whose adjoint is made in W's order."""
    a, b = normal(4, 3) if left else normal(3, 4), normal(2, 4) if right else normal(4, 2)

    def fn(x, w):
        return (x.T if left else x) @ (w.T if right else w)

    check(fn, lambda x, w: (x.T if left else x) @ (w.T if right else w), [a, b], tensors, dtype)


@DTYPES
def test_tape_matmul_and_the_reflected_operator_agree(dtype):
    a, b = normal(3, 4), normal(4, 2)
    check(lambda x, w: tape.matmul(x, w), lambda x, w: x @ w, [a, b], (0, 1), dtype)
    check(lambda x, w: w.__rmatmul__(x), lambda x, w: x @ w, [a, b], (1,), dtype)


# -- reductions ------------------------------------------------------------------------------------

def _lse(a, axis, keepdims):  # the test's own: log of a sum of exponentials, shifted by the max
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis=axis) + np.log(np.exp(a - m).sum(axis=axis)) if not keepdims else \
        m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


REDUCTIONS = {
    "sum": lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims),
    "mean": lambda a, axis, keepdims: np.sum(a, axis=axis, keepdims=keepdims) * np.size(np.sum(a, axis=axis)) / a.size,
    "logsumexp": _lse,
}
AXES_OF_3 = [None, 0, 1, 2, -1, -2, -3, (0, 2), (-1, 0), (2, -2), (0, 1, 2), ()]


@DTYPES
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("axis", AXES_OF_3, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_along_every_axis(name, axis, keepdims, dtype):
    f = REDUCTIONS[name]
    check(lambda x: getattr(x, name)(axis=axis, keepdims=keepdims), lambda a: f(a, axis, keepdims),
          [normal(2, 3, 4)], (0,), dtype)


@DTYPES
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("axis, keepdims", [(None, False), (None, True), ((), False)])
def test_reductions_of_a_0d_tensor(name, axis, keepdims, dtype):
    f = REDUCTIONS[name]
    check(lambda x: getattr(x, name)(axis=axis, keepdims=keepdims), lambda a: f(a, axis, keepdims),
          [np.array(0.7)], (0,), dtype)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=4), st.data(), st.sampled_from(sorted(REDUCTIONS)),
       st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_reductions_of_drawn_shapes_and_axes(shape, data, name, keepdims, dtype):
    n = len(shape)
    axis = data.draw(st.one_of(st.none(), st.integers(-n, n - 1),
                               st.lists(st.integers(0, n - 1), unique=True).map(
                                   lambda axes: tuple(a - n if a % 2 else a for a in axes)))) # some negative
    f = REDUCTIONS[name]
    check(lambda x: getattr(x, name)(axis=axis, keepdims=keepdims), lambda a: f(a, axis, keepdims),
          [RNG.standard_normal(shape)], (0,), dtype)


@DTYPES
@pytest.mark.parametrize("a, expected", [
    ([1e16, 1e16], [0.5, 0.5]),  # the sum 1e16 + log 2 rounds to 1e16: exp(a - y) would give ones
    ([1e16, 1e16 - 3e16], [1.0, 0.0]),
    ([-1e16, -1e16, -1e16, -1e16], [0.25] * 4),
    ([3e4, 3e4, 3e4 - 1.0], np.exp([0.0, 0.0, -1.0]) / np.exp([0.0, 0.0, -1.0]).sum()),
    ([-1e30, 1e30], [0.0, 1.0]),
    ([0.0], [1.0]),
])
def test_logsumexp_gradient_is_softmax_at_extremes(a, expected, dtype):
    """Entries far beyond exp's range, and equal ones whose log-sum rounds back to the entry."""
    g = RNG.standard_normal()
    value, (adjoint,) = pullback(lambda x: x.logsumexp(), [a], (0,), g, dtype)
    assert np.isfinite(value) and adjoint.dtype == dtype
    np.testing.assert_allclose(adjoint, g * np.asarray(expected), rtol=1e-6 if dtype == np.float32 else 1e-12)


@DTYPES
def test_logsumexp_gradient_along_each_axis_at_extremes(dtype):
    a = np.array([[1e16, 1e16, -1e16], [5.0, 5.0, 5.0]])
    g = RNG.standard_normal(3)
    _, (along_0,) = pullback(lambda x: x.logsumexp(axis=0), [a], (0,), g, dtype)
    np.testing.assert_allclose(along_0, [[g[0], g[1], 0.0], [0.0, 0.0, g[2]]], rtol=1e-6)
    g = RNG.standard_normal((2, 1))
    _, (along_1,) = pullback(lambda x: x.logsumexp(axis=-1, keepdims=True), [a], (0,), g, dtype)
    np.testing.assert_allclose(along_1, g * [[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)


def test_logsumexp_of_minus_infinity_is_minus_infinity_and_its_gradient_is_refused():
    with Tape(), np.errstate(over="ignore"):
        x = Tensor([[1.0, 2.0], [3.0, 4.0]])
        y = (x * -1e308 * 10.0).logsumexp(axis=1)  # the products overflow to -inf
        assert y.value.tolist() == [-np.inf, -np.inf]
        with pytest.raises(ValueError, match="logsumexp: no derivative at a slice of only -inf"):
            y.sum().backward()


# -- empty operands --------------------------------------------------------------------------------

@DTYPES
@pytest.mark.parametrize("shape, axis, expected", [
    ((0, 3), 0, np.full(3, -np.inf)), ((0, 3), None, -np.inf), ((0, 3), 1, np.zeros(0)),
    ((3, 0), -1, np.full(3, -np.inf)),
])
def test_logsumexp_of_nothing_is_minus_infinity(shape, axis, expected, dtype):
    """As scipy's: log 0, the log of an empty sum; its gradient has no entries."""
    g = RNG.standard_normal(np.shape(expected))
    value, (adjoint,) = pullback(lambda x: x.logsumexp(axis=axis), [np.zeros(shape)], (0,), g, dtype)
    np.testing.assert_array_equal(value, expected)
    assert adjoint.shape == shape and adjoint.dtype == dtype


@DTYPES
@pytest.mark.parametrize("shape, axis", [((0, 3), 0), ((0, 3), None), ((0, 3), 1), ((3, 0), 0), ((0, 0), 1)])
def test_sum_of_nothing_is_zero(shape, axis, dtype):
    expected = np.zeros(shape).sum(axis=axis)
    g = RNG.standard_normal(np.shape(expected))
    value, (adjoint,) = pullback(lambda x: x.sum(axis=axis), [np.zeros(shape)], (0,), g, dtype)
    np.testing.assert_array_equal(value, expected)
    assert adjoint.shape == shape and adjoint.dtype == dtype


@DTYPES
@pytest.mark.parametrize("shape, axis", [((0, 3), 1), ((3, 0), 0), ((0, 0), 0), ((2, 0, 3), (0, 2))])
def test_mean_over_slices_that_have_entries_is_taken(shape, axis, dtype):
    """No slice to average (the result has no entries): an empty result, an empty gradient."""
    expected = np.zeros(shape).sum(axis=axis)
    g = RNG.standard_normal(np.shape(expected))
    value, (adjoint,) = pullback(lambda x: x.mean(axis=axis), [np.zeros(shape)], (0,), g, dtype)
    assert value.shape == expected.shape and adjoint.shape == shape and adjoint.dtype == dtype


@pytest.mark.parametrize("shape, axis", [((0, 3), 0), ((0, 3), None), ((3, 0), 1), ((2, 0, 3), (1, 2)), ((0,), -1)])
def test_mean_of_nothing_is_refused_by_name(shape, axis):
    with Tape(), pytest.raises(ValueError, match=r"mean: the mean of no entries .* of a Tensor of shape"):
        Tensor(np.zeros(shape)).mean(axis=axis)


def test_losses_of_nothing_are_refused_by_name():
    with Tape():
        with pytest.raises(ValueError, match=r"softmax_cross_entropy: no rows \(logits of shape \(0, 3\)\)"):
            tape.softmax_cross_entropy(Tensor(np.zeros((0, 3))), np.zeros(0, int))
        with pytest.raises(ValueError, match=r"mse: no entries \(outputs of shape \(0, 3\)\)"):
            tape.mse(Tensor(np.zeros((0, 3))), np.zeros((0, 3)))


# -- shapes ----------------------------------------------------------------------------------------

@DTYPES
@pytest.mark.parametrize("shape", [(4, 6), (24,), (2, -1), (-1, 3, 2), (1, 24, 1), (2, 3, 4)], ids=str)
def test_reshape(shape, dtype):
    check(lambda x: x.reshape(shape), lambda a: a.reshape(shape), [normal(2, 3, 4)], (0,), dtype)
    check(lambda x: x.reshape(*shape), lambda a: a.reshape(shape), [normal(4, 6)], (0,), dtype)


@DTYPES
def test_reshape_of_and_to_0d(dtype):
    check(lambda x: x.reshape(1, 1), lambda a: a.reshape(1, 1), [np.array(0.3)], (0,), dtype)
    check(lambda x: x.reshape(()), lambda a: a.reshape(()), [normal(1, 1)], (0,), dtype)


@DTYPES
@pytest.mark.parametrize("axes", [None, (2, 0, 1), (1, 2, 0), (0, 1, 2), (-1, 0, 1), (2, -3, -2), (-1, -2, -3),
                                  (1, -1, 0)], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 4), (3, 3, 3)], ids=str)
def test_transpose_with_any_axes(axes, shape, dtype):
    """A cube too: a wrong inverse permutation there still has the right shape."""
    spelt = () if axes is None else axes
    check(lambda x: x.transpose(*spelt), lambda a: np.transpose(a, axes), [normal(*shape)], (0,), dtype)
    check(lambda x: x.transpose(spelt), lambda a: np.transpose(a, axes), [normal(*shape)], (0,), dtype)


@DTYPES
@pytest.mark.parametrize("axes", [(-1, -2), (1, 0), (-2, -1)], ids=str)
def test_transpose_of_a_matrix_and_T(axes, dtype):
    check(lambda x: x.transpose(*axes), lambda a: np.transpose(a, axes), [normal(3, 3)], (0,), dtype)
    check(lambda x: x.T, lambda a: a.T, [normal(2, 5)], (0,), dtype)
    check(lambda x: x.T, lambda a: a.T, [np.array(1.5)], (0,), dtype)


# -- indexing --------------------------------------------------------------------------------------

MASK = RNG.standard_normal((3, 4)) > 0
INDEXES = {
    "int": 1,
    "negative int": -1,
    "two ints (a Var)": (2, -3),
    "slices": (slice(1, None), slice(None, None, 2)),
    "negative steps": (slice(None, None, -1), slice(3, 0, -2)),
    "repeated rows": [0, 2, 0, 0],
    "repeated entries": ([0, 1, 0, 2], [3, 3, 3, 0]),
    "fancy and slice": (slice(None), [1, 1, -1]),
    "boolean mask": MASK,
    "boolean rows": np.array([True, False, True]),
    "newaxis": (None, slice(None), 2),
    "Ellipsis": (Ellipsis, 1),
    "Ellipsis, newaxis and fancy": (Ellipsis, None, [2, 2, 0]),
    "empty slice": slice(2, 2),
}


@DTYPES
@pytest.mark.parametrize("name", sorted(INDEXES))
def test_getitem(name, dtype):
    """A repeated index gets the sum of its adjoints."""
    index = INDEXES[name]
    check(lambda x: x[index], lambda a: a[index], [normal(3, 4)], (0,), dtype)


@DTYPES
@pytest.mark.parametrize("index", [None, Ellipsis, (), (None, None)], ids=str)
def test_getitem_of_a_0d_tensor(index, dtype):
    check(lambda x: x[index], lambda a: a[index], [np.array(2.5)], (0,), dtype)


# -- joining ---------------------------------------------------------------------------------------

MIXES = pytest.mark.parametrize("tensors", [(0, 1, 2), (1,), (0, 2)],
                                ids=["all Tensors", "array, Tensor, array", "Tensor, array, Tensor"])


@DTYPES
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@MIXES
def test_concatenate_along_every_axis(axis, tensors, dtype):
    shapes = [[2, 3, 4] for _ in range(3)]
    for shape, n in zip(shapes, (1, 2, 3)):
        shape[axis] = n
    operands = [normal(*s) for s in shapes]
    check(lambda *xs: tape.concatenate(xs, axis=axis), lambda *xs: np.concatenate(xs, axis=axis), operands, tensors,
          dtype)


@DTYPES
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
@MIXES
def test_stack_along_every_axis(axis, tensors, dtype):
    operands = [normal(2, 3) for _ in range(3)]
    check(lambda *xs: tape.stack(xs, axis=axis), lambda *xs: np.stack(xs, axis=axis), operands, tensors, dtype)


@DTYPES
@pytest.mark.parametrize("axis", [0, -1])
def test_stack_of_0d_tensors_and_vars(axis, dtype):
    check(lambda *xs: tape.stack(xs, axis=axis), lambda *xs: np.stack(xs, axis=axis),
          [np.array(1.5), np.array(-2.0), np.array(0.5)], (0, 2), dtype)
    g = RNG.standard_normal(2)
    with Tape() as t:
        u, x = Var(1.5), Tensor(np.array(-2.0, dtype))
        s = tape.stack([u * 3.0, x], axis=axis)
        t.sweep(np.zeros(s.node + 1), {s.node: g.astype(s.dtype)})
        np.testing.assert_allclose([u.grad, x.grad], [3 * g[0], g[1]], rtol=1e-6)
        assert x.grad.dtype == dtype and x.grad.shape == ()


# -- losses ----------------------------------------------------------------------------------------

def _cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean()


@DTYPES
@pytest.mark.parametrize("rows, classes", [(1, 1), (1, 3), (5, 4), (3, 2)])
def test_softmax_cross_entropy(rows, classes, dtype):
    labels = RNG.integers(0, classes, rows)
    logits = normal(rows, classes) * 3
    check(lambda z: tape.softmax_cross_entropy(z, labels), lambda z: _cross_entropy(z, labels), [logits], (0,), dtype)


@DTYPES
def test_softmax_cross_entropy_of_extreme_logits(dtype):
    logits, labels = np.array([[1e16, 1e16, -1e16], [0.0, 3e4, 3e4]]), np.array([0, 1])
    g = RNG.standard_normal()
    value, (adjoint,) = pullback(lambda z: tape.softmax_cross_entropy(z, labels), [logits], (0,), g, dtype)
    np.testing.assert_allclose(value, np.log(2), rtol=1e-6)
    np.testing.assert_allclose(adjoint, g / 2 * np.array([[-0.5, 0.5, 0.0], [0.0, -0.5, 0.5]]), rtol=1e-6, atol=1e-30)


@DTYPES
@pytest.mark.parametrize("transposed", [False, True], ids=["rows", "columns of a transposed view"])
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_the_softmax_cross_entropy_of_rows_is_the_float64_result_rounded(transposed, label_dtype, dtype):
    """Every softmax along a matrix's rows is computed in float64 (a compiled pass per row): in
    float32 the softmax is float64's rounded, so the gradient is exactly (p rounded - one-hot)
    times g / rows in float32 (numpy's float32 path is an ulp off in three entries), and the
    loss float64's rounded. Rows of equal logits (1/3 exactly), the label at the max and off it,
    an exp that underflows to 0, logits in memory by columns, labels of another integer type."""
    logits = np.array([[2.0, 2.0, 2.0], [0.5, -1.25, 4.0], [-80.0, 30.0, 29.0], [1e-3, -2e-3, 0.0],
                       [7.0, -7.0, 7.5]])
    labels, g = np.array([1, 2, 1, 0, 1], label_dtype), RNG.standard_normal()
    shifted = logits - logits.max(axis=1, keepdims=True)  # the oracle, in float64
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    loss = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(5), labels])
    adjoint = g * (p - np.eye(3)[labels]) / 5
    given = np.ascontiguousarray(logits.T).T if transposed else logits
    value, (grad,) = pullback(lambda z: tape.softmax_cross_entropy(z, labels), [given.astype(dtype)], (0,), g, dtype)
    assert value.dtype == grad.dtype == dtype
    if dtype == np.float32:
        assert value == np.float32(loss)
        one_hot = np.eye(3, dtype=np.float32)[labels]
        np.testing.assert_array_equal(grad, (p.astype(np.float32) - one_hot) * (np.float32(g) / np.float32(5)))
    else:
        np.testing.assert_allclose(value, loss, rtol=1e-14)
        np.testing.assert_allclose(grad, adjoint, rtol=1e-13, atol=1e-300)
    assert grad[2, 0] == 0.0 or dtype == np.float64  # e^-110 is 0 in float32
    np.testing.assert_array_equal(grad[0, [0, 2]], grad[0, [2, 0]])  # equal logits, equal entries


@pytest.mark.parametrize("bad", [np.inf, np.nan, "a row of -inf"])
def test_the_compiled_softmax_of_rows_leaves_a_nan_a_plus_inf_or_a_row_of_minus_inf_to_numpy(bad):
    """It takes rows with a finite max, -inf entries among them (classes ruled out: their exp is
    0; a label there costs +inf), giving their summed loss (0 without labels); a matrix holding a
    nan, a +inf or a row of -inf only it leaves to numpy's path (nan), which refuses or gives as
    it says (tests/test_tensor_edges.py)."""
    from tape._rows import softmax_rows

    a, out = np.array([[1.0, 2.0, -np.inf], [0.0, 0.0, 3.0]]), np.empty((2, 3))
    p = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
    assert softmax_rows(a, np.array([1, 0]), out) == pytest.approx(-np.log(p[0, 1]) - np.log(p[1, 0]), rel=1e-15)
    np.testing.assert_allclose(out, p, rtol=1e-15)
    assert out[0, 2] == 0.0
    assert softmax_rows(a, np.array([2, 0]), out) == np.inf
    assert softmax_rows(a, np.zeros(0, np.int64), out) == 0.0
    if bad == "a row of -inf":
        a[0] = -np.inf
    else:
        a[1, 1] = bad
    assert math.isnan(softmax_rows(a, np.array([1, 0]), out))


@DTYPES
@pytest.mark.parametrize("shape", [(3, 4), (5,), ()], ids=str)
@pytest.mark.parametrize("tensors", [(0, 1), (0,), (1,)])
def test_mse_in_both_operands(shape, tensors, dtype):
    check(lambda a, b: tape.mse(a, b), lambda a, b: np.mean((a - b) ** 2), [RNG.standard_normal(shape),
                                                                            RNG.standard_normal(shape)], tensors, dtype)


# -- a float32 operand beside float64 constants ------------------------------------------------------

MIXED = {
    "Tensor @ array": (lambda x, c: x @ c, (3, 4), (4, 2)),
    "array @ Tensor": (lambda x, c: c.T @ x, (3, 4), (3, 2)),
    "concatenate": (lambda x, c: tape.concatenate([x, c], axis=1), (3, 4), (3, 2)),
    "stack": (lambda x, c: tape.stack([c, x], axis=-1), (3, 4), (3, 4)),
    "mse": (lambda x, c: tape.mse(x, c), (3, 4), (3, 4)),
    "mse, reflected": (lambda x, c: tape.mse(c, x), (3, 4), (3, 4)),
    "elementwise, broadcast": (lambda x, c: x * c, (3, 4), (2, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_a_float32_operands_gradient_stays_float32_beside_float64_constants(name):
    fn, shape, other = MIXED[name]
    a, c = normal(*shape), normal(*other)
    with Tape() as t:
        x = Tensor(a, dtype=np.float32)
        y = fn(x, c)  # numpy promotes the value to float64, as it would
        if isinstance(y, Var):
            y.backward()
        else:
            t.sweep(np.zeros(y.node + 1), {y.node: RNG.standard_normal(y.shape)})
        assert x.grad.dtype == np.float32 and x.grad.shape == shape


# -- forward mode ----------------------------------------------------------------------------------

FORWARD = {  # name -> (the function on Tensors, numpy's, operand shapes)
    "matmul": (lambda a, b: a @ b, lambda a, b: a @ b, [(3, 4), (4, 2)]),
    "matmul 1-d": (lambda a, b: a @ b, lambda a, b: a @ b, [(4,), (4, 2)]),
    "sum": (lambda a: a.sum(axis=(0, -1)), lambda a: a.sum(axis=(0, -1)), [(2, 3, 4)]),
    "mean": (lambda a: a.mean(axis=-2, keepdims=True), lambda a: a.mean(axis=-2, keepdims=True), [(2, 3, 4)]),
    "logsumexp": (lambda a: a.logsumexp(axis=1), lambda a: _lse(a, 1, False), [(2, 3, 4)]),
    "reshape": (lambda a: a.reshape(-1, 2), lambda a: a.reshape(-1, 2), [(2, 3, 4)]),
    "transpose": (lambda a: a.transpose(-1, 0, 1), lambda a: a.transpose(-1, 0, 1), [(2, 3, 4)]),
    "getitem": (lambda a: a[[0, 0, 1], ::-1], lambda a: a[[0, 0, 1], ::-1], [(2, 3)]),
    "concatenate": (lambda a, b: tape.concatenate([a, b], axis=-1), lambda a, b: np.concatenate([a, b], axis=-1),
                    [(2, 3), (2, 1)]),
    "stack": (lambda a, b: tape.stack([a, b], axis=1), lambda a, b: np.stack([a, b], axis=1), [(2, 3), (2, 3)]),
    "softmax_cross_entropy": (lambda z: tape.softmax_cross_entropy(z, [2, 0]), lambda z: _cross_entropy(z, [2, 0]),
                              [(2, 3)]),
    "mse": (lambda a, b: tape.mse(a, b), lambda a, b: np.mean((a - b) ** 2), [(2, 3), (2, 3)]),
    "mask": (lambda a: a[MASK], lambda a: a[MASK], [(3, 4)]),
    "0-d reshape": (lambda a: a.reshape(1, 1), lambda a: a.reshape(1, 1), [()]),
    "0-d logsumexp": (lambda a: a.logsumexp(), lambda a: _lse(a, None, False), [()]),
}


@DTYPES
@pytest.mark.parametrize("name", sorted(FORWARD))
def test_jvp_of_tensor_functions_with_random_tangents(name, dtype):
    """tape.jvp on Tensors (built from reverse sweeps) against central differences along the tangents."""
    fn, f, shapes = FORWARD[name]
    primals = [RNG.standard_normal(s).astype(dtype).astype(np.float64) for s in shapes]
    tangents = [RNG.standard_normal(s) for s in shapes]
    value, tangent = tape.jvp(fn, [Tensor(p, dtype=dtype) for p in primals], tangents)
    h = 1e-5
    expected = (f(*[p + h * v for p, v in zip(primals, tangents)]) - f(*[p - h * v for p, v in zip(primals, tangents)]))
    expected /= 2 * h
    np.testing.assert_allclose(value, f(*primals), **TOLERANCE[dtype])
    np.testing.assert_allclose(tangent, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("shape", [(-1, 4), (4, 2), (-1, -1)], ids=str)
def test_a_reshape_that_does_not_fit_says_so_by_name(shape):
    words = re.escape(f"reshape: cannot make 6 entries of shape (2, 3) into shape {shape}")
    with Tape(), pytest.raises(ValueError, match=words):
        Tensor(np.ones((2, 3))).reshape(shape)
