"""Second derivatives and forward mode of functions of matrix nodes (issue 30) against closed forms
written here: each case runs with the input a numpy array (scalar nodes, the path that has
always had every mode: it shows the oracles are right) and a tape.Tensor (matrix nodes). The
oracles are a few lines of numpy, never the engine."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape

KINDS = pytest.mark.parametrize("kind", ["array", "matrix"])  # -k "not matrix": the scalar-node cases alone
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32])
TOLERANCE = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}


def given_as(kind: str, x, dtype=np.float64):
    """x in dtype, as the function's argument: a numpy array or one matrix node."""
    x = np.asarray(x, dtype=dtype)
    return tape.Tensor(x) if kind == "matrix" else x


def check_result(kind: str, result, expected: np.ndarray, dtype=np.float64) -> None:
    """result equals expected within dtype's tolerance; from a Tensor argument it has the
    argument's dtype, as a gradient has."""
    assert np.shape(result) == expected.shape
    if kind == "matrix":
        assert np.asarray(result).dtype == dtype
    np.testing.assert_allclose(np.asarray(result, dtype=np.float64), expected, **TOLERANCE[dtype])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@KINDS
@DTYPES
def test_hessian_of_a_quadratic_form_is_a_plus_its_transpose(kind, dtype):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4)).astype(dtype)
    x = rng.normal(size=4)
    check_result(kind, tape.hessian(lambda x: x @ (a @ x))(given_as(kind, x, dtype)), (a + a.T).astype(np.float64), dtype)
    symmetric = a + a.T
    half = tape.hessian(lambda x: 0.5 * (x @ (symmetric @ x)))(given_as(kind, x, dtype))
    check_result(kind, half, symmetric.astype(np.float64), dtype)


@KINDS
def test_hessian_of_a_quadratic_form_in_columns_has_the_argument_shape_twice(kind):
    # f(X) = sum_j x_j^T A x_j over the columns x_j: H[i, j, k, l] = (A + A^T)[i, k] [j == l]
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3))
    x = rng.normal(size=(3, 2))
    expected = np.einsum("ik,jl->ijkl", a + a.T, np.eye(2))
    check_result(kind, tape.hessian(lambda x: (x * (a @ x)).sum())(given_as(kind, x)), expected)


def logistic_data(dtype, n: int = 30, d: int = 4):
    """(X, y, w) of a small logistic regression, X and y in dtype."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d) * 0.5
    y = (rng.random(n) < sigmoid(x @ w)).astype(float)
    return x.astype(dtype), y.astype(dtype), w


def logistic_loss(x, y):
    """w -> the mean over samples of log(1 + e^z) - y z with z = Xw (the negative log-likelihood)."""
    def loss(w):
        z = x @ w
        return (tape.softplus(z) - y * z).mean()

    return loss


@KINDS
@DTYPES
def test_hessian_of_the_logistic_loss_is_x_transposed_d_x_over_n(kind, dtype):
    x, y, w = logistic_data(dtype)
    p = sigmoid(x.astype(np.float64) @ w.astype(dtype).astype(np.float64))
    expected = x.T.astype(np.float64) @ np.diag(p * (1 - p)) @ x.astype(np.float64) / len(y)
    check_result(kind, tape.hessian(logistic_loss(x, y))(given_as(kind, w, dtype)), expected, dtype)
    v = np.linspace(-1.0, 1.0, len(w))
    v = v.astype(dtype)  # a numpy direction for a Tensor x too
    check_result(kind, tape.hvp(logistic_loss(x, y), given_as(kind, w, dtype), v), expected @ v.astype(np.float64), dtype)


@KINDS
def test_check_grads_of_second_order_on_the_logistic_loss(kind):
    x, y, w = logistic_data(np.float64)
    tape.check_grads(logistic_loss(x, y), given_as(kind, w), order=2)


@KINDS
@DTYPES
def test_hvp_of_a_sum_of_sigmoids_of_x_times_w(kind, dtype):
    # f(W) = sum sigmoid(XW): grad = X^T s'(Z), so H[V] = X^T (s''(Z) * (XV)), s'' = s(1 - s)(1 - 2s)
    rng = np.random.default_rng(3)
    x, w, v = rng.normal(size=(5, 3)).astype(dtype), rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    x64, w64, v64 = (np.asarray(a, dtype).astype(np.float64) for a in (x, w, v))
    s = sigmoid(x64 @ w64)
    expected = x64.T @ (s * (1 - s) * (1 - 2 * s) * (x64 @ v64))
    result = tape.hvp(lambda w: tape.sigmoid(x @ w).sum(), given_as(kind, w, dtype), given_as(kind, v, dtype))  # v a Tensor too
    check_result(kind, result, expected, dtype)


LABELS = np.array([0, 3, 1])


def cross_entropy(z):
    """The mean over rows of -log softmax(z)[label]: row by row for an array of scalar nodes, else
    (matrix nodes, whatever their kind inside a transform) the one node."""
    if isinstance(z, np.ndarray):
        return sum(tape.logsumexp(list(row)) - row[k] for row, k in zip(z, LABELS)) / len(LABELS)
    return tape.softmax_cross_entropy(z, LABELS)


@KINDS
@DTYPES
def test_hessian_of_softmax_cross_entropy_in_the_logits(kind, dtype):
    # rows apart: H[r, i, r', j] = [r == r'] (diag(p_r) - p_r p_r^T)[i, j] / n
    rng = np.random.default_rng(4)
    z = rng.normal(size=(3, 4)).astype(dtype)
    e = np.exp(z.astype(np.float64))
    p = e / e.sum(axis=1, keepdims=True)
    expected = np.zeros((3, 4, 3, 4))
    for r in range(3):
        expected[r, :, r, :] = (np.diag(p[r]) - np.outer(p[r], p[r])) / 3
    check_result(kind, tape.hessian(cross_entropy)(given_as(kind, z, dtype)), expected, dtype)


@KINDS
@pytest.mark.parametrize("shape", [(), (1,)])
def test_hessian_of_a_function_of_one_entry(kind, shape):
    # f(x) = x^2 sin x: f'' = (2 - x^2) sin x + 4 x cos x
    x = np.full(shape, 0.7)
    expected = np.full(shape + shape, (2 - 0.49) * np.sin(0.7) + 4 * 0.7 * np.cos(0.7))
    f = (lambda x: x**2 * tape.sin(x)) if shape == () else (lambda x: (x**2 * tape.sin(x)).sum())
    check_result(kind, tape.hessian(f)(given_as(kind, x)), expected)


def cube(x):
    return (x**3).sum()


@KINDS
def test_grad_of_grad_of_a_sum_of_cubes(kind):
    x = np.array([0.5, -1.5, 2.0])
    weights = np.array([1.0, 2.0, -3.0])
    # d/dx sum(weights * 3x^2) = 6 x weights
    outer = tape.grad(lambda x: (tape.grad(cube)(x) * weights).sum())(given_as(kind, x))
    check_result(kind, outer, 6 * x * weights)
    check_result(kind, tape.grad(lambda x: tape.grad(cube)(x).sum())(given_as(kind, x[:1])), 6 * x[:1])
    check_result(kind, tape.hessian(cube)(given_as(kind, x)), np.diag(6 * x))
    check_result(kind, tape.hvp(cube, given_as(kind, x), weights), 6 * x * weights)


@KINDS
def test_nested_jvps_keep_their_perturbations_apart(kind):
    x, y = np.array([1.0, 2.0, -0.5]), np.array([0.3, 0.4, 0.5])
    u, v = np.array([1.0, -1.0, 2.0]), np.array([0.5, 2.0, 1.0])
    # d/dx [x * d/dy (x + y) along v] along u = u * v (confused: the inner tangent picks up x's, 2 u v)
    _, tangent = tape.jvp(lambda x: x * tape.jvp(lambda y: x + y, (given_as(kind, y),), (v,))[1],
                          (given_as(kind, x),), (u,))
    check_result(kind, tangent, u * v)
    # d/dx [d/dy (x * y) along v] along u = u * v (confused: u * y + x * v differentiated again)
    _, tangent = tape.jvp(lambda x: tape.jvp(lambda y: x * y, (given_as(kind, y),), (v,))[1],
                          (given_as(kind, x),), (u,))
    check_result(kind, tangent, u * v)


@KINDS
def test_nested_grads_keep_their_sweeps_apart(kind):
    x, y = np.array([1.0, 2.0, -0.5]), np.array([0.3, 0.4, 0.5])
    # d/dx sum(x * d/dy sum(x + y)) = d/dx sum(x) = 1, not 2
    inner = lambda x: tape.grad(lambda y: (x + y).sum())(given_as(kind, y))  # noqa: E731
    check_result(kind, tape.grad(lambda x: (x * inner(x)).sum())(given_as(kind, x)), np.ones(3))
    # d/dx sum(d/dy sum(x * y) * x) = d/dx sum(x^2) = 2x
    inner = lambda x: tape.grad(lambda y: (x * y).sum())(given_as(kind, y))  # noqa: E731
    check_result(kind, tape.grad(lambda x: (inner(x) * x).sum())(given_as(kind, x)), 2 * x)


W = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 1.0]])
B = np.array([0.1, -0.2])


def layer(x):
    """X -> the column sums of tanh(XW + b): a matrix product, broadcasting, a reduction along an axis."""
    return tape.tanh(x @ W + B).sum(axis=0)


def layer_in_numpy(x):
    return np.tanh(x @ W + B).sum(axis=0)


@KINDS
@DTYPES
@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_jvp_agrees_with_central_differences(kind, dtype, seed):
    rng = np.random.default_rng(seed)
    x, v = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(4, 3)).astype(dtype)
    value, tangent = tape.jvp(layer, (given_as(kind, x, dtype),), (given_as(kind, v, dtype),))
    x64, v64, h = x.astype(np.float64), v.astype(np.float64), 1e-6
    expected = (layer_in_numpy(x64 + h * v64) - layer_in_numpy(x64 - h * v64)) / (2 * h)
    tolerance = dict(rtol=1e-6, atol=1e-7) if dtype == np.float64 else dict(rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.asarray(value, np.float64), layer_in_numpy(x64), **tolerance)
    np.testing.assert_allclose(np.asarray(tangent, np.float64), expected, **tolerance)


@KINDS
def test_forward_mode_jacobian_of_a_layer(kind):
    # J[j, a, b] = d/dX[a, b] sum_a' tanh(Z[a', j]) = (1 - tanh(Z[a, j])^2) W[b, j]
    x = np.random.default_rng(5).normal(size=(4, 3))
    t = np.tanh(x @ W + B)
    expected = np.einsum("aj,bj->jab", 1 - t**2, W)
    check_result(kind, tape.jacobian(layer, mode="forward")(given_as(kind, x)), expected)


@KINDS
def test_a_direction_of_another_shape_or_a_function_that_is_no_scalar_is_refused_by_name(kind):
    x = given_as(kind, np.ones(3))
    with pytest.raises(ValueError, match=r"hvp: x has shape \(3,\) but v has shape \(2,\)"):
        tape.hvp(cube, x, np.ones(2))
    with pytest.raises(ValueError, match=r"jvp: primal 0 has shape \(3,\) but its tangent has shape \(2,\)"):
        tape.jvp(cube, (x,), (np.ones(2),))
    with pytest.raises(TypeError, match=r"must return a scalar"):
        tape.hessian(lambda x: x * 2.0)(x)


def test_hessian_checks_each_constant_array_of_its_rows_and_again_at_each_call():
    """tape.hessian checks a constant array once for all its rows (constants_checked_once): an
    integer constant still promoted, a non-finite one refused by name, and a call after one (or
    a grad) sees the array's entries as they are then."""
    counts = np.array([1, 2, 3])  # integers: taken as float64
    hessian = tape.hessian(lambda w: (counts * w * w * w).sum())
    w = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(hessian(tape.Tensor(w)), np.diag(6.0 * np.array([1, 2, 3]) * w), rtol=1e-12)
    scales = np.array([1.0, 2.0, 3.0])
    hessian = tape.hessian(lambda w: (scales * w * w).sum())
    np.testing.assert_allclose(hessian(tape.Tensor(w)), np.diag([2.0, 4.0, 6.0]), rtol=1e-12)
    scales[1] = np.inf  # the same array, changed between calls
    with pytest.raises(ValueError, match=r"mul: an operand: entry \(1,\) is inf"):
        tape.grad(lambda w: (scales * w).sum())(tape.Tensor(w))
    with pytest.raises(ValueError, match=r"mul: an operand: entry \(1,\) is inf; a Tensor holds finite numbers"):
        hessian(tape.Tensor(w))
