"""The compiled passes over a float array's entries (tape/_entries.py): relu's value and partial,
and an adjoint times a partial under the sweep's zero rule. Each must give numpy's numbers bit
for bit, so a run gives the same numbers whether numba is loaded or not; the oracles are closed
forms in numpy written here, and the same operations with the passes turned off."""
import contextlib
import subprocess
import sys

import numba  # noqa: F401  (loaded: the passes are taken)
import numpy as np
import pytest

import tape
import tape._tensor
from tape import Tape, Tensor

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64])
RELU = tape._tensor.ELEMENTWISE["relu"][0]  # the rule on arrays, as eager and traced matrix nodes take it
PASSES = pytest.mark.parametrize("compiled", [True, False], ids=["compiled pass", "numpy's form"])
pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning leaks out of either path
RNG = np.random.default_rng(11)
EDGES = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, 3e38, -3e38, 1.0, -1.0]


@contextlib.contextmanager
def numpy_forms():
    """The passes turned off: numpy's forms everywhere, as in a process without numba."""
    taken = tape._tensor.compiled_pass
    tape._tensor.compiled_pass = lambda *arrays: False
    try:
        yield
    finally:
        tape._tensor.compiled_pass = taken


def with_edges(shape, dtype) -> np.ndarray:
    a = RNG.standard_normal(shape).astype(dtype)
    flat = a.reshape(-1)
    flat[: min(len(EDGES), flat.size)] = np.array(EDGES, dtype)[: flat.size]
    return a


def same(a, b) -> None:
    """Equal bit for bit: values, nan where nan, the sign of each zero, dtype and shape."""
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


@PASSES
@DTYPES
@pytest.mark.parametrize("shape", [(64, 33), (7,), (2, 3, 4), (1, 1), ()], ids=str)
def test_relu_is_the_rule_entry_by_entry(shape, dtype, compiled):
    a = with_edges(shape, dtype)
    assert tape._tensor.compiled_pass(a)
    with contextlib.nullcontext() if compiled else numpy_forms():
        y, (p,) = RELU(a)
    with np.errstate(invalid="ignore"):
        expected = np.where(a > 0, a, np.zeros((), dtype))  # a nan is not > 0: relu(nan) = 0, as on scalar nodes
    same(y, expected)
    same(p, (a > 0).astype(dtype))
    assert not np.signbit(y).any()  # relu(-0.0) is +0.0


@DTYPES
@pytest.mark.parametrize("make", [lambda a: a[:, ::2], lambda a: a.T, lambda a: a[0, 0], lambda a: a[:0]],
                         ids=["strided", "transposed", "0-d", "empty"])
def test_relu_of_operands_the_pass_does_not_take(make, dtype):
    """Views not in C order, 0-d and empty arrays go to numpy's form, with the same numbers."""
    a = make(with_edges((6, 8), dtype))
    assert not tape._tensor.compiled_pass(a)
    y, (p,) = RELU(a)
    with np.errstate(invalid="ignore"):
        same(np.asarray(y), np.asarray(np.where(a > 0, a, np.zeros((), dtype)) + np.zeros((), dtype)))
        same(np.asarray(p), np.asarray(a > 0).astype(dtype))


def test_the_kernels_are_cached():
    """Compiled once on a machine, then loaded (numba's cache=True)."""
    from tape import _entries

    assert all(type(k._cache).__name__ == "FunctionCache" for k in [*_entries.KERNELS.values(), _entries._scaled_entries])


def test_compiled_pass_takes_float32_and_float64_arrays_of_one_shape_and_dtype_only():
    a = np.ones((3, 4))
    assert tape._tensor.compiled_pass(a, a.copy())
    assert tape._tensor.compiled_pass(a.astype(np.float32))
    for other in (a.astype(np.float16), a.astype(np.int64), np.ones((3, 1)), a.astype(np.float32), a.T.copy().T, 2.0,
                  [1.0] * 4):
        assert not tape._tensor.compiled_pass(a, other)
    assert not tape._tensor.compiled_pass(np.ones(0)) and not tape._tensor.compiled_pass(np.float64(1.0))


@PASSES
@DTYPES
@pytest.mark.parametrize("shape", [(9, 12), (7,)], ids=str)
def test_an_adjoint_times_a_partial(shape, dtype, compiled):
    """g * d entry by entry; where g or d is 0 and the other inf or nan, 0 (the sweep adds
    nothing for a zero adjoint or a zero partial), both ways round; nan or inf times a non-zero
    stays what IEEE says."""
    g, d = with_edges(shape, dtype), with_edges(shape, dtype)[::-1].copy()
    g.reshape(-1)[-4:], d.reshape(-1)[-4:] = [0.0, np.nan, -0.0, np.inf], [np.inf, 0.0, -np.inf, 0.0]
    g.reshape(-1)[:2], d.reshape(-1)[:2] = [np.nan, np.inf], [2.0, -3.0]
    assert tape._tensor.compiled_pass(g, d)
    with contextlib.nullcontext() if compiled else numpy_forms():
        got = tape._tensor._scaled(g, d)
    with np.errstate(invalid="ignore", over="ignore"):
        product = g * d
    expected = np.where(np.isfinite(product) | (g != 0) & (d != 0), product, np.zeros((), dtype))
    same(got, expected)
    assert (got.reshape(-1)[-4:] == 0).all()
    assert np.isnan(got.reshape(-1)[0]) and got.reshape(-1)[1] == -np.inf  # as IEEE has them


@DTYPES
def test_the_passes_give_a_relu_net_numpys_gradient_bit_for_bit(dtype):
    """A batch's loss and gradients through relu and dropout-like scales, eager and traced,
    with the passes (numba loaded) and without them."""
    x, labels = RNG.standard_normal((16, 12)).astype(dtype), RNG.integers(0, 5, 16)
    keep = (RNG.random((16, 20)) < 0.8).astype(dtype) / dtype(0.8)
    weights = [RNG.standard_normal(s).astype(dtype) for s in [(20, 12), (20,), (5, 20), (5,)]]

    def loss(W1, b1, W2, b2, x, keep):
        h = tape.relu(x @ W1.T + b1) * keep
        return tape.softmax_cross_entropy(h @ W2.T + b2, labels)

    def eager():
        with Tape():
            ws = [Tensor(w) for w in weights]
            value = loss(*ws, Tensor(x, requires_grad=False), keep)
            value.backward()
            return value.value, [w.grad for w in ws]

    def replayed():
        traced = tape.trace(loss, *[Tensor(w) for w in weights], x, keep)  # Tensors: a matrix program
        return traced.value_and_grad((0, 1, 2, 3))(*weights, x, keep)

    with numpy_forms():
        without = [eager(), replayed()]
    for (v0, g0), (v1, g1) in zip(without, [eager(), replayed()]):
        assert v0 == v1
        for a, b in zip(g0, g1):
            same(np.asarray(a), np.asarray(b))


def test_a_first_relu_gradient_does_not_load_numba():
    """Issue 20: a first gradient does without numba, relu's and the zero rule's too."""
    code = ("import sys, numpy as np, tape\n"
            "with tape.Tape():\n"
            "    t = tape.Tensor(np.array([[-1.0, 2.0], [3.0, -4.0]]))\n"
            "    (tape.relu(t) * np.array([[5.0, 6.0], [7.0, 8.0]])).sum().backward()\n"
            "assert t.grad.tolist() == [[0.0, 6.0], [7.0, 0.0]], t.grad\n"
            "assert 'numba' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@DTYPES
def test_an_adjoint_times_a_number_partial(dtype):
    """A partial that is a number (the rules' constants: add's 1.0, sub's -1.0, stop_gradient's
    0.0): a zero partial gives 0 even where the adjoint is inf or nan."""
    g = np.array([[1.5, -np.inf], [np.nan, -0.0]], dtype)
    same(tape._tensor._scaled(g, 1.0), g)
    same(tape._tensor._scaled(g, -1.0), -g)
    np.testing.assert_array_equal(tape._tensor._scaled(g, 0.0), np.zeros((2, 2), dtype))  # -0.0 * 0.0 stays -0.0
    with np.errstate(invalid="ignore"):
        same(tape._tensor._scaled(g, 2.0), g * dtype(2.0))


@PASSES
@DTYPES
def test_an_adjoint_times_a_partial_of_0_d_arrays(dtype, compiled):
    zero, inf, two, three = (np.array(x, dtype) for x in (0.0, np.inf, 2.0, 3.0))
    assert tape._tensor.compiled_pass(zero, inf)
    with contextlib.nullcontext() if compiled else numpy_forms():
        same(tape._tensor._scaled(zero, inf), np.array(0.0, dtype))
        same(tape._tensor._scaled(inf, zero), np.array(0.0, dtype))
        same(tape._tensor._scaled(two, three), np.array(6.0, dtype))
