"""Forward mode and second derivatives on matrix nodes (issue 30): `tape.jvp` of random programs
of Tensor operations against central differences of the program's values and against the
transpose of its VJP (<u, J v> = <J^T u, v>); jacobian forward == reverse; nested levels kept
apart; hessian, hvp and grad of grad against closed forms written here; kinks as the scalar side
gives them; float32 and float64, 0-d and empty inputs."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import Tensor

pytestmark = pytest.mark.filterwarnings("error")  # no numpy warning leaks out of forward mode
TOLERANCE = {np.float64: dict(rtol=1e-6, atol=1e-8), np.float32: dict(rtol=3e-3, atol=3e-3)}
C = np.linspace(-1.0, 1.0, 12).reshape(3, 4)  # constants the programs close over
ROW, COLUMN, W = C[1], C[:, :1] * 2.0, C.T[:, :2] + 0.5
LABELS = np.array([2, 0, 2])


def programs_of_a_matrix():
    """name -> a function of a (3, 4) Tensor with entries in [0.5, 2]: each operation and argument
    the issue lists, alone or composed."""
    s = lambda x: x[1, 2] * 0.5 + 0.2  # noqa: E731 - a Var (a 0-d result) among Tensors
    return {
        "broadcast row and column": lambda x: tape.tanh(x * ROW + COLUMN),
        "reflected operators": lambda x: (2.0 - x) / (1.0 + x) + 3.0 * x - C / x,
        "every unary rule": lambda x: (tape.sin(x) + tape.cos(x) + tape.tan(x / 4) + tape.atan(x) + tape.sinh(x)
                                       + tape.cosh(x) + tape.exp(x) + tape.expm1(x) + tape.log(x) + tape.log1p(x)
                                       + tape.sqrt(x) + tape.sigmoid(x) + tape.softplus(x) + tape.relu(x - 1.2345678)
                                       + abs(x - 1.2345678) - x),
        "powers": lambda x: x ** 3.0 + 2.0 ** x + x ** x + x ** 0.5,
        "sum along axis 0": lambda x: (x * x).sum(axis=0),
        "sum along axis 1, kept": lambda x: tape.sin(x).sum(axis=1, keepdims=True) * x,
        "sum of all": lambda x: (x * C).sum(),
        "a row and a column spread, then summed": lambda x: tape.concatenate([(x[0] + C).sum(axis=0),
                                                                              (x[:, 1:2] - C).sum(axis=1)]),
        "mean along axis -1": lambda x: (x ** 2.0).mean(axis=-1),
        "mean along both axes": lambda x: tape.exp(x).mean(axis=(0, 1)),
        "logsumexp along axis 0": lambda x: (x * 3.0).logsumexp(axis=0),
        "logsumexp along axis 1, kept": lambda x: x.logsumexp(axis=1, keepdims=True) - x,
        "logsumexp of all": lambda x: tape.logsumexp(x * x),
        "indexing with repeats": lambda x: x[[0, 0, 2]] * x[[1, 1, 0]],
        "slices and a pair of index arrays": lambda x: x[1:, ::2].sum() + x[[0, 2], [1, 1]] * x[2, 3],
        "concatenate": lambda x: tape.concatenate([x, tape.sin(x), C], axis=1),
        "concatenate flattened": lambda x: tape.concatenate([x, C[0], x[0]], axis=None),
        "stack": lambda x: tape.stack([x, x * x], axis=-1),
        "stack of results without axes": lambda x: tape.stack([x.sum(), x[0, 0], 2.0, s(x)]),
        "reshape and transpose": lambda x: x.reshape(6, 2) @ x.T.reshape(2, 6) + x.transpose(1, 0).reshape(-1)[:6],
        "matmul of 2-d operands": lambda x: x @ W + (C.T @ x).sum(axis=1)[:2],
        "matmul of 1-d operands": lambda x: (x[0] @ x[1]) * (x @ ROW) + (x[2] @ W)[[0, 1, 1]] + C[:2, :3].T @ x[0, :2],
        "mixed Vars and numbers": lambda x: x * s(x) + x.sum() * s(x) - s(x) * 2.0 + tape.sin(x[1, 1]) * x - 1.0 / s(x),
        "softmax cross-entropy": lambda x: tape.softmax_cross_entropy(x * C, LABELS),
        "mse of either operand": lambda x: tape.mse(x, C) + tape.mse(C * 2.0, tape.sqrt(x)),
        "a layer and its loss": lambda x: tape.softmax_cross_entropy(tape.sigmoid(x @ W.T[:, :4].T + ROW[:2]) @ C[:2, :3],
                                                                     LABELS),
    }


PROGRAMS = programs_of_a_matrix()
DTYPES = pytest.mark.parametrize("dtype", [np.float64, np.float32])
matrices = st.lists(st.floats(0.5, 2.0), min_size=12, max_size=12).map(lambda xs: np.array(xs).reshape(3, 4))
directions = st.lists(st.floats(-1.0, 1.0), min_size=12, max_size=12).map(lambda xs: np.array(xs).reshape(3, 4))


def value(f, x) -> np.ndarray:
    """f at x, on a constant Tensor: the program's value, no derivative taken."""
    out = f(Tensor(x, requires_grad=False))
    return np.asarray(out.value if isinstance(out, Tensor) else float(out), np.float64)


def central(f, x, v, h=1e-6) -> np.ndarray:
    """(f(x + h v) - f(x - h v)) / 2h, in float64."""
    return (value(f, x + h * v) - value(f, x - h * v)) / (2 * h)


@pytest.mark.parametrize("name", PROGRAMS)
@DTYPES
@settings(max_examples=8, deadline=None)
@given(x=matrices, v=directions)
def test_jvp_against_central_differences(name, dtype, x, v):
    f = PROGRAMS[name]
    out, tangent = tape.jvp(f, (Tensor(x.astype(dtype)),), (v,))
    x32 = x.astype(dtype).astype(np.float64)  # the point the jvp saw
    np.testing.assert_allclose(out, value(f, x32), **TOLERANCE[dtype])
    np.testing.assert_allclose(tangent, central(f, x32, v), **TOLERANCE[dtype])
    # a Tensor output's tangent in its dtype (float32 unless a float64 constant promoted it), a number's a float
    assert tangent.dtype == out.dtype if np.ndim(out) else isinstance(tangent, float) and isinstance(out, float)
    assert np.shape(tangent) == np.shape(out)


@pytest.mark.parametrize("name", PROGRAMS)
@DTYPES
@settings(max_examples=5, deadline=None)
@given(x=matrices, v=directions, seed=st.integers(0, 2**32 - 1))
def test_jvp_is_the_transpose_of_the_vjp(name, dtype, x, v, seed):
    f = PROGRAMS[name]
    x = x.astype(dtype)
    out, tangent = tape.jvp(f, (Tensor(x),), (v,))
    u = np.random.default_rng(seed).standard_normal(np.shape(out))
    _, pullback = tape.vjp(f, [Tensor(x)])
    (adjoint,) = pullback(u if np.ndim(out) else float(u))
    np.testing.assert_allclose(np.sum(u * tangent), np.sum(adjoint * v), **TOLERANCE[dtype])


@pytest.mark.parametrize("name", ["broadcast row and column", "indexing with repeats", "stack",
                                  "reshape and transpose", "matmul of 1-d operands", "softmax cross-entropy"])
@DTYPES
def test_jacobian_forward_is_jacobian_reverse(name, dtype):
    x = Tensor(np.random.default_rng(1).uniform(0.5, 2.0, (3, 4)).astype(dtype))
    forward = tape.jacobian(PROGRAMS[name], mode="forward")(x)
    reverse = tape.jacobian(PROGRAMS[name], mode="reverse")(x)
    assert forward.shape == reverse.shape == np.shape(value(PROGRAMS[name], x.value)) + (3, 4)
    assert forward.dtype == reverse.dtype
    np.testing.assert_allclose(forward, reverse, **TOLERANCE[dtype])
    np.testing.assert_allclose(tape.jacobian(PROGRAMS[name], mode="auto")(x), reverse, **TOLERANCE[dtype])


def test_forward_mode_does_one_pass_not_a_sweep_per_output_entry(monkeypatch):
    from tape import _tape

    def no_sweeps(*args, **kwargs):
        raise AssertionError("a sweep in forward mode")

    monkeypatch.setattr(_tape.Tape, "sweep", no_sweeps)
    x = np.random.default_rng(2).uniform(0.5, 2.0, (3, 4))
    tape.jvp(PROGRAMS["a layer and its loss"], (Tensor(x),), (np.ones((3, 4)),))
    tape.jacobian(PROGRAMS["stack"], mode="forward")(Tensor(x))


def test_float32_jvp_does_not_overflow_where_a_jacobian_would():
    x = Tensor(np.full((200, 200), 1.0, np.float32))
    _, tangent = tape.jvp(lambda t: tape.exp(t * 80.0).sum(axis=1), (x,), (np.full((200, 200), 1e-3),))
    assert tangent.dtype == np.float32 and np.isfinite(tangent).all()
    np.testing.assert_allclose(tangent, 200 * 80.0 * np.exp(80.0) * 1e-3, rtol=1e-3)


@DTYPES
def test_0d_and_empty_inputs(dtype):
    x0 = Tensor(np.array(1.3, dtype))
    out, tangent = tape.jvp(lambda t: tape.stack([tape.sin(t) * t, t * t]), (x0,), (np.array(0.5),))
    np.testing.assert_allclose(out, [np.sin(1.3) * 1.3, 1.69], **TOLERANCE[dtype])
    np.testing.assert_allclose(tangent, [0.5 * (np.cos(1.3) * 1.3 + np.sin(1.3)), 1.3], **TOLERANCE[dtype])
    out, tangent = tape.jvp(lambda t: tape.sin(t) * t, (x0,), (np.array(0.5),))
    assert isinstance(out, float) and isinstance(tangent, float)
    assert tangent == pytest.approx(0.5 * (np.cos(1.3) * 1.3 + np.sin(1.3)), rel=1e-6)
    empty = Tensor(np.zeros((0, 3), dtype))
    out, tangent = tape.jvp(lambda t: tape.sin(t).sum(axis=0) + (t @ np.ones((3, 2), dtype)).sum(), (empty,), (np.zeros((0, 3)),))
    assert tangent.shape == (3,) and tangent.dtype == dtype and not tangent.any()
    assert tape.jacobian(lambda t: t @ np.ones((3, 2)), mode="forward")(empty).shape == (0, 2, 0, 3)
    assert tape.hessian(lambda t: (t * t).sum())(empty).shape == (0, 3, 0, 3)
    np.testing.assert_allclose(tape.hessian(lambda t: t * t * t)(x0), 6 * 1.3, **TOLERANCE[dtype])


def test_a_structure_of_tensors():
    w, b = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0.5, -1.0])
    vw, vb = np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([1.0, 2.0])
    f = lambda p: {"loss": ((p["w"] @ p["b"]) ** 2.0).sum(), "pair": [p["b"] * 2.0, p["w"][0]]}  # noqa: E731
    out, tangent = tape.jvp(f, ({"w": Tensor(w), "b": Tensor(b)},), ({"w": vw, "b": vb},))
    z = w @ b
    assert out["loss"] == pytest.approx(np.sum(z ** 2))
    assert tangent["loss"] == pytest.approx(np.sum(2 * z * (vw @ b + w @ vb)))
    np.testing.assert_allclose(tangent["pair"][0], 2 * vb)
    np.testing.assert_allclose(tangent["pair"][1], vw[0])
    with pytest.raises(ValueError, match="tangent 0 is not a structure like primal 0's"):
        tape.jvp(f, ({"w": Tensor(w), "b": Tensor(b)},), ({"w": vw},))
    with pytest.raises(ValueError, match=r"a leaf of primal 0 has shape \(2,\) but its tangent has shape \(3,\)"):
        tape.jvp(f, ({"w": Tensor(w), "b": Tensor(b)},), ({"w": vw, "b": np.ones(3)},))


def test_a_var_of_another_tape_is_a_constant_to_forward_mode():
    s = tape.Var(0.7)
    x, v = np.array([0.5, 2.0]), np.array([1.0, -3.0])
    out, tangent = tape.jvp(lambda t: (t * s).sum() * s + s, (Tensor(x),), (v,))
    assert out == pytest.approx(0.7 * 0.7 * 2.5 + 0.7) and tangent == pytest.approx(0.49 * -2.0)


def test_stop_gradient_passes_no_tangent():
    x, v = np.array([0.5, 2.0]), np.array([1.0, -3.0])
    _, tangent = tape.jvp(lambda t: tape.stop_gradient(t) * t, (Tensor(x),), (v,))
    np.testing.assert_array_equal(tangent, x * v)
    np.testing.assert_array_equal(tape.hessian(lambda t: (tape.stop_gradient(t) * t * t).sum())(Tensor(x)), np.diag(2 * x))


def test_shapes_of_tangents_are_checked():
    with pytest.raises(ValueError, match=r"jvp: primal 0 has shape \(2, 2\) but its tangent has shape \(4,\)"):
        tape.jvp(lambda t: t.sum(), (Tensor(np.ones((2, 2))),), (np.ones(4),))
    with pytest.raises(ValueError, match=r"hvp: x has shape \(2, 2\) but v has shape \(4,\)"):
        tape.hvp(lambda t: t.sum(), Tensor(np.ones((2, 2))), np.ones(4))


# -- levels ----------------------------------------------------------------------------------------


def test_nested_jvps_on_tensors_keep_their_levels_apart():
    x, y = Tensor(np.array([3.0, -1.0])), Tensor(np.array([2.0, 5.0]))
    one = np.ones(2)
    # d/dx [x * d/dy (x + y)] = 1 (confused: 2)
    _, tangent = tape.jvp(lambda x: x * tape.jvp(lambda y: x + y, (y,), (one,))[1], (x,), (one,))
    np.testing.assert_allclose(tangent, one)
    # d/dx [d/dy (x * y)] = 1 (confused: d/dx (x + y) counted twice)
    _, tangent = tape.jvp(lambda x: tape.jvp(lambda y: x * y, (y,), (one,))[1], (x,), (one,))
    np.testing.assert_allclose(tangent, one)
    # the same with grad inside: d/dx sum(x * d/dy sum(x + y)) = 1
    np.testing.assert_allclose(tape.grad(lambda x: (x * tape.grad(lambda y: (x + y).sum())(y)).sum())(x), one)


def test_forward_over_forward_gives_second_directional_derivatives():
    x, u, v = np.array([0.3, -0.7]), np.array([1.0, 2.0]), np.array([-0.5, 1.5])
    inner = lambda t: tape.jvp(lambda s: (tape.sin(s) * s).sum(), (t,), (v,))[1]  # noqa: E731
    _, second = tape.jvp(inner, (Tensor(x),), (u,))
    assert second == pytest.approx(np.sum((2 * np.cos(x) - x * np.sin(x)) * u * v))


def test_jvp_of_grad_is_the_hvp_forward_over_forward():
    x, v = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -2.0])
    g = lambda t: (tape.sin(t) * t * t).sum()  # noqa: E731
    diagonal = 2 * np.sin(x) + 4 * x * np.cos(x) - x * x * np.sin(x)  # the Hessian is diagonal
    np.testing.assert_allclose(tape.jvp(tape.grad(g), (Tensor(x),), (v,))[1], diagonal * v)
    np.testing.assert_allclose(tape.hvp(g, Tensor(x), v), diagonal * v)


# -- second derivatives against closed forms --------------------------------------------------------


@DTYPES
def test_hessians_of_sums_of_cubes_and_of_sin_x_times_x(dtype):
    x = np.array([0.5, -1.25, 2.0], dtype)
    h = tape.hessian(lambda t: (t ** 3.0).sum())(Tensor(x))
    assert h.dtype == dtype and h.shape == (3, 3)
    np.testing.assert_allclose(h, np.diag(6 * x.astype(np.float64)), **TOLERANCE[dtype])
    h = tape.hessian(lambda t: (tape.sin(t) * t).sum())(Tensor(x))
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(h, np.diag(2 * np.cos(x64) - x64 * np.sin(x64)), **TOLERANCE[dtype])


@DTYPES
def test_hvps_of_logsumexp_mse_and_a_quadratic_form(dtype):
    rng = np.random.default_rng(4)
    x, v, a = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((5, 5))
    x, v = x.astype(dtype), v.astype(dtype)
    x64, v64 = x.astype(np.float64), v.astype(np.float64)
    p = np.exp(x64 - x64.max()) / np.exp(x64 - x64.max()).sum()
    result = tape.hvp(lambda t: t.logsumexp(), Tensor(x), v)
    assert result.dtype == dtype and result.shape == (5,)
    np.testing.assert_allclose(result, p * v64 - p * (p @ v64), **TOLERANCE[dtype])
    np.testing.assert_allclose(tape.hvp(lambda t: tape.mse(t, np.ones(5)), Tensor(x), v), 2 * v64 / 5, **TOLERANCE[dtype])
    np.testing.assert_allclose(tape.hvp(lambda t: t @ a @ t, Tensor(x), v), (a + a.T) @ v64, **TOLERANCE[dtype])


def test_hvp_where_a_recorded_tangent_is_spread_by_broadcasting():
    # f(x) = sum_i (sum_j (sin x_i + c_ij))^2 = sum_i (4 sin x_i + r_i)^2, r the rows' sums of C:
    # d2f/dx_i2 = 2 (16 cos^2 x_i - 4 sin x_i (4 sin x_i + r_i))
    x, v = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -2.0])
    f = lambda t: ((tape.sin(t).reshape(3, 1) + C).sum(axis=1) ** 2.0).sum()  # noqa: E731
    r = C.sum(axis=1)
    diagonal = 2 * (16 * np.cos(x) ** 2 - 4 * np.sin(x) * (4 * np.sin(x) + r))
    np.testing.assert_allclose(tape.hvp(f, Tensor(x), v), diagonal * v)


def test_a_dual_tensor_is_a_tensor_but_no_node():
    seen = {}

    def f(t):
        seen.update(cls=isinstance(t, Tensor), grad=t.requires_grad, node=t.node, shape=t.shape, n=len(t), size=t.size)
        seen.update(one=t[1].item(), number=float(t.sum()), dtype=t.dtype)
        with pytest.raises(ValueError, match=r"item\(\) of a DualTensor of shape \(2,\)"):
            t.item()
        return t

    tape.jvp(f, (Tensor(np.array([1.5, 2.5], np.float32)),), (np.ones(2),))
    assert seen == dict(cls=True, grad=False, node=-1, shape=(2,), n=2, size=2, one=2.5, number=4.0, dtype=np.float32)


def test_grad_of_grad_of_a_sum_of_cubes():
    x, c = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.0, -2.0])
    g = lambda t: (t * t * t).sum()  # noqa: E731
    for i in range(3):
        np.testing.assert_allclose(tape.grad(lambda t: tape.grad(g)(t)[i])(Tensor(x)), 6 * x[i] * np.eye(3)[i])
    np.testing.assert_allclose(tape.grad(lambda t: (tape.grad(g)(t) * c).sum())(Tensor(x)), 6 * x * c)
    # three levels: d/dx of d2/dx2 of x^4 is 24 x
    np.testing.assert_allclose(tape.grad(lambda t: tape.grad(lambda s: tape.grad(lambda r: (r ** 4.0).sum())(s).sum())(t).sum())(
        Tensor(x)), 24 * x)


def test_check_grads_of_order_2_on_tensor_functions():
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 2.0, (3, 4))
    for name in ("broadcast row and column", "softmax cross-entropy", "a layer and its loss", "powers"):
        tape.check_grads(lambda t: PROGRAMS[name](t).sum() if np.ndim(value(PROGRAMS[name], x)) else PROGRAMS[name](t),
                         Tensor(x), order=2, rtol=1e-4, atol=1e-5)
    tape.check_grads(lambda t, w: tape.softmax_cross_entropy(t @ w, LABELS), Tensor(x), Tensor(W.T[:, :4].T @ C[:2, :3]),
                     order=2, rtol=1e-4, atol=1e-5)


def test_check_grads_of_order_2_catches_a_wrong_second_order_rule(monkeypatch):
    from tape import _vectorized

    monkeypatch.setitem(_vectorized.RECORDED_PARTIALS, "sin", lambda on, a, y: (on.cos(a) * 1.01,))
    x = Tensor(np.array([0.4, 1.1]))
    tape.check_grads(lambda t: tape.sin(t).sum(), x)  # first order is the table's on arrays: still right
    with pytest.raises(tape.GradientCheckError, match="the Hessian along d"):
        tape.check_grads(lambda t: tape.sin(t).sum(), x, order=2)


def test_a_wrong_jvp_is_caught(monkeypatch):
    from tape import _tensor

    rule = _tensor.STRUCTURAL["matmul"]
    monkeypatch.setitem(_tensor.STRUCTURAL, "matmul", rule._replace(jvp=lambda ts, y, a, b: 1.01 * rule.jvp(ts, y, a, b)))
    with pytest.raises(tape.GradientCheckError, match="forward mode"):
        tape.check_grads(lambda t: (t @ W).sum(), Tensor(C))


# -- kinks: what the scalar side gives, never nan where the derivative is 0 --------------------------


def test_second_derivatives_at_kinks_are_the_scalar_sides():
    at = np.array([0.0, 4.0, -1.0])
    relu = tape.hessian(lambda t: tape.relu(t).sum())(Tensor(at))
    np.testing.assert_array_equal(relu, np.zeros((3, 3)))
    assert tape.grad(tape.grad(tape.relu))(0.0) == 0.0  # the scalar side
    root = tape.hessian(lambda t: tape.sqrt(t[:2]).sum())(Tensor(at))
    assert np.isnan(root[0, 0]) and np.isnan(tape.grad(tape.grad(tape.sqrt))(0.0))  # no second derivative at 0
    assert root[1, 1] == pytest.approx(-0.25 * 4.0 ** -1.5)
    off_diagonal = ~np.eye(3, dtype=bool) | (np.arange(3) == 2)[:, None]
    np.testing.assert_array_equal(root[off_diagonal], 0.0)  # 0, not nan, where nothing moves
    square = tape.hessian(lambda t: (t ** 2.0).sum())(Tensor(at))  # x ** 2 at 0: its slope's branch, exact
    np.testing.assert_array_equal(square, 2 * np.eye(3))
    assert tape.grad(tape.grad(lambda s: s ** 2.0))(0.0) == 2.0


def test_first_derivatives_at_kinks_are_the_scalar_sides():
    x = Tensor(np.array([0.0, 4.0]))
    _, tangent = tape.jvp(tape.sqrt, (x,), (np.array([1.0, 1.0]),))
    assert tangent[0] == np.inf == tape.jvp(tape.sqrt, (0.0,), (1.0,))[1]
    _, tangent = tape.jvp(tape.sqrt, (x,), (np.array([0.0, 1.0]),))
    assert tangent[0] == 0.0 and tangent[1] == 0.25  # 0 * inf adds nothing, as a sweep adds nothing
    _, tangent = tape.jvp(tape.relu, (x,), (np.array([1.0, 1.0]),))
    np.testing.assert_array_equal(tangent, [tape.jvp(tape.relu, (0.0,), (1.0,))[1], 1.0])


# -- batched tangents: k directions at once (vmap of jvp), and hessian by forward over reverse ----------


def extra_programs():
    """name -> a function of a (3, 4) Tensor: what a leading axis of directions must not disturb
    (axes counted either way, kept axes, indices that move axes, an operand of fewer axes)."""
    cube = lambda x: x.reshape(3, 2, 2)  # noqa: E731
    return {
        "sum along axis -2 and a tuple of axes": lambda x: x.sum(axis=-2) + (x * x).sum(axis=(0, 1)) * x[0],
        "mean along axis 0, kept, against x": lambda x: x.mean(axis=0, keepdims=True) * x,
        "logsumexp along axis -1, kept": lambda x: x.logsumexp(axis=-1, keepdims=True) * x,
        "an index with ...": lambda x: x[..., 1] * x[..., ::2].sum(axis=-1),
        "index arrays apart (their axis goes first)": lambda x: cube(x)[[0, 2], :, [1, 0]] * cube(x)[None, 1, :, 0],
        "a boolean mask": lambda x: x[C > 0.0] * 2.0,
        "transpose with negative axes": lambda x: cube(x).transpose(-1, 0, 1) * cube(x).transpose(2, 0, 1),
        "concatenate along axis -1, stack along 1": lambda x: tape.concatenate([x, x * x], axis=-1)[:, :4]
                                                                  + tape.stack([x, C], axis=1).sum(axis=1),
        "a row, a column and a Var broadcast": lambda x: x[0] * x + x[:, 1:2] * x + x.sum() * x,
        "matmul with both operands in x": lambda x: x.T @ x + (x[0] @ x.T)[1] + (x @ x[1]).sum() + (x[:, :3] @ x[1, :3])[2],
        "a vector times a matrix both in x": lambda x: x[0, :3] @ x[:, :2],
    }


BATCHED = {**PROGRAMS, **extra_programs()}


@pytest.mark.parametrize("name", BATCHED)
@DTYPES
def test_batched_jvp_is_k_jvps_each_against_central_differences(name, dtype):
    f = BATCHED[name]
    rng = np.random.default_rng(7)
    x = rng.uniform(0.5, 2.0, (3, 4)).astype(dtype)
    directions = rng.uniform(-1.0, 1.0, (3, 3, 4))
    out, tangents = tape.jvp(f, (Tensor(x),), (directions,), batched=True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(out, value(f, x64), **TOLERANCE[dtype])
    assert np.shape(tangents) == (3, *np.shape(out))
    assert np.asarray(tangents).dtype == (out.dtype if np.ndim(out) else np.float64)
    for tangent, v in zip(tangents, directions):
        np.testing.assert_allclose(tangent, central(f, x64, v), **TOLERANCE[dtype])


@DTYPES
def test_batched_jvp_of_two_primals_either_a_constant_direction(dtype):
    # f(A, B) = sum(sin(A) @ B): along (U, V), sum(cos(A) U @ B + sin(A) @ V)
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 3)).astype(dtype), rng.normal(size=(3,)).astype(dtype)
    us, vs = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 3))
    vs[1] = 0.0
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    _, tangents = tape.jvp(lambda a, b: (tape.sin(a) @ b).sum(), (Tensor(a), Tensor(b)), (us, vs), batched=True)
    expected = [np.sum((np.cos(a64) * u) @ b64 + np.sin(a64) @ v) for u, v in zip(us, vs)]
    assert tangents.shape == (4,) and tangents.dtype == np.float64  # a number's, as a jvp's float
    np.testing.assert_allclose(tangents, expected, **TOLERANCE[dtype])
    # an output independent of x: zero tangents, one per direction
    _, tangents = tape.jvp(lambda a, b: (a.sum(), C), (Tensor(a), Tensor(b)), (us, vs), batched=True)
    assert tangents[1].shape == (4, 3, 4) and not tangents[1].any()


@DTYPES
def test_batched_jvp_of_0d_and_empty_inputs(dtype):
    _, tangents = tape.jvp(lambda x: tape.sin(x) * x, (Tensor(np.array(0.7, dtype)),), (np.array([1.0, -2.0, 0.5]),),
                           batched=True)
    np.testing.assert_allclose(tangents, (np.cos(0.7) * 0.7 + np.sin(0.7)) * np.array([1.0, -2.0, 0.5]), **TOLERANCE[dtype])
    out, tangents = tape.jvp(lambda x: (x * 2.0).sum(axis=0), (Tensor(np.zeros((0, 3), dtype)),), (np.zeros((2, 0, 3)),),
                             batched=True)
    assert tangents.shape == (2, 3) and not tangents.any()


def test_batched_tangents_are_checked():
    x = Tensor(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"jvp: primal 0 has shape \(2, 2\) but each direction of its tangent has shape \(4,\)"):
        tape.jvp(lambda t: t.sum(), (x,), (np.ones((3, 4)),), batched=True)
    with pytest.raises(ValueError, match=r"primal 1's tangent has shape \(2, 2, 2\), the first had 3 directions"):
        tape.jvp(lambda s, t: (s + t).sum(), (x, x), (np.ones((3, 2, 2)), np.ones((2, 2, 2))), batched=True)
    with pytest.raises(ValueError, match=r"leading axis of directions.*shape \(\)"):
        tape.jvp(lambda t: t * 2.0, (Tensor(np.array(1.0)),), (np.array(1.0),), batched=True)
    with pytest.raises(TypeError, match=r"batched=True takes Tensor primals"):
        tape.jvp(lambda t: t * 2.0, (np.ones(2),), (np.ones((3, 2)),), batched=True)


def test_batched_nested_jvps_keep_their_levels_apart():
    # h(x) = sum_i <x, v_i> * sum(x), the inner sum over a batch of directions of y -> sum(x * y):
    # along u, <u, s> sum(x) + <x, s> sum(u) with s = sum_i v_i (confused: the inner tangents pick up u)
    rng = np.random.default_rng(9)
    x, y, vs, us = rng.normal(size=3), rng.normal(size=3), rng.normal(size=(4, 3)), rng.normal(size=(2, 3))
    inner = lambda x: tape.jvp(lambda y: (x * y).sum(), (Tensor(y),), (vs,), batched=True)[1]  # noqa: E731
    _, tangents = tape.jvp(lambda x: inner(x).sum() * x.sum(), (Tensor(x),), (us,), batched=True)
    s = vs.sum(axis=0)
    np.testing.assert_allclose(tangents, [(u @ s) * x.sum() + (x @ s) * u.sum() for u in us], rtol=1e-12)


def second_differences(f, x, h=1e-4) -> np.ndarray:
    """The Hessian of scalar f at x by central differences of its values, entry pair by pair."""
    n, e = x.size, np.eye(x.size).reshape((x.size, *x.shape)) * h
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = (f(x + e[i] + e[j]) - f(x + e[i] - e[j]) - f(x - e[i] + e[j])
                                     + f(x - e[i] - e[j])) / (4 * h * h)
    return out.reshape(x.shape + x.shape)


@pytest.mark.parametrize("name", BATCHED)
def test_hessian_of_each_program_against_second_differences(name):
    # each program's output weighed by fixed numbers into a scalar; float32 against float64
    rng = np.random.default_rng(10)
    x = rng.uniform(0.5, 2.0, (3, 4))
    weights = rng.normal(size=np.shape(value(BATCHED[name], x)))
    scalar = lambda x: (BATCHED[name](x) * weights).sum()  # noqa: E731
    h = tape.hessian(scalar)(Tensor(x))
    assert h.shape == (3, 4, 3, 4) and h.dtype == np.float64
    np.testing.assert_allclose(h, second_differences(lambda x: float(value(scalar, x)), x), rtol=1e-5, atol=1e-5)
    h32 = tape.hessian(scalar)(Tensor(x.astype(np.float32)))
    assert h32.dtype == np.float32
    np.testing.assert_allclose(h32, h, rtol=2e-3, atol=2e-3 * np.abs(h).max())


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 6, None])  # 6 entries: a multiple, one more, one fewer, all
def test_hessian_in_chunks_of_directions(chunk_size, monkeypatch):
    # f(x) = sum(exp(A x)) for x of 6 entries: H = A^T diag(exp(A x)) A
    from tape import _transforms

    rng = np.random.default_rng(11)
    a, x = rng.normal(size=(5, 6)), rng.normal(size=6) * 0.3
    chunks = []
    real = _transforms.forward_over_reverse
    monkeypatch.setattr(_transforms, "forward_over_reverse", lambda fn, x, d, tag: chunks.append(len(d)) or real(fn, x, d, tag))
    h = tape.hessian(lambda x: tape.exp(a @ x).sum(), chunk_size=chunk_size)(Tensor(x))
    np.testing.assert_allclose(h, a.T @ (np.exp(a @ x)[:, None] * a), rtol=1e-12, atol=1e-12)
    size = chunk_size or 6
    assert chunks == [min(size, 6 - start) for start in range(0, 6, size)]


def test_hessian_chunk_size_is_checked():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"hessian: chunk_size must be a positive integer or None, got"):
            tape.hessian(lambda x: x.sum(), chunk_size=bad)


def test_hessian_of_a_sum_of_sigmoids_of_x_times_w_in_w():
    # f(W) = sum sigmoid(XW): H[a, j, b, l] = [j == l] sum_n s''(Z[n, j]) X[n, a] X[n, b]
    rng = np.random.default_rng(12)
    x, w = rng.normal(size=(5, 3)), rng.normal(size=(3, 2))
    s = 1.0 / (1.0 + np.exp(-(x @ w)))
    curvature = s * (1 - s) * (1 - 2 * s)
    expected = np.einsum("nj,na,nb,jl->ajbl", curvature, x, x, np.eye(2))
    np.testing.assert_allclose(tape.hessian(lambda w: tape.sigmoid(x @ w).sum())(Tensor(w)), expected, rtol=1e-12, atol=1e-14)


def test_hessian_keeps_a_jvp_inside_its_function_apart():
    # f(x) = d/dy sum(x^2 y) along v = sum(x^2 v): H = 2 diag(v); batched inside, 2 diag(sum of the v's)
    # (confused, the inner level would take the hessian's directions for its own)
    rng = np.random.default_rng(13)
    x, y, vs = rng.normal(size=3), rng.normal(size=3), rng.normal(size=(4, 3))
    inner = lambda x: tape.jvp(lambda y: (x * x * y).sum(), (Tensor(y),), (vs[0],))[1]  # noqa: E731
    np.testing.assert_allclose(tape.hessian(inner)(Tensor(x)), 2 * np.diag(vs[0]), rtol=1e-12)
    batched = lambda x: tape.jvp(lambda y: (x * x * y).sum(), (Tensor(y),), (vs,), batched=True)[1].sum()  # noqa: E731
    np.testing.assert_allclose(tape.hessian(batched)(Tensor(x)), 2 * np.diag(vs.sum(axis=0)), rtol=1e-12)
    # a jvp in x itself inside: f(x) = d/dx sum(x^3) along v = 3 sum(x^2 v), H = 6 diag(v)
    along = lambda x: tape.jvp(lambda t: (t ** 3.0).sum(), (x,), (vs[1],))[1]  # noqa: E731
    np.testing.assert_allclose(tape.hessian(along)(Tensor(x)), 6 * np.diag(vs[1]), rtol=1e-12)


@DTYPES
def test_hessian_of_empty_and_constant_functions(dtype):
    h = tape.hessian(lambda x: (x * x).sum())(Tensor(np.zeros((0, 2), dtype)))
    assert h.shape == (0, 2, 0, 2) and h.dtype == dtype
    h = tape.hessian(lambda x: float(np.sum(C)))(Tensor(np.ones(3, dtype)))
    assert h.shape == (3, 3) and h.dtype == dtype and not h.any()
    with pytest.raises(TypeError, match=r"hessian: the function must return a scalar, got shape \(3,\)"):
        tape.hessian(lambda x: x * 2.0)(Tensor(np.ones(3, dtype)))


def test_grad_of_a_batched_jvp_records_its_tangents():
    # inside a derivative the k tangents are nodes: d/dw sum_i <grad f(w), v_i> = H sum_i v_i, with
    # f(w) = sum sigmoid(Xw), H = X^T diag(s'') X
    rng = np.random.default_rng(14)
    x, vs, w = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=3)
    f = lambda w: tape.sigmoid(x @ w).sum()  # noqa: E731
    s = 1.0 / (1.0 + np.exp(-(x @ w)))
    hessian = x.T @ ((s * (1 - s) * (1 - 2 * s))[:, None] * x)
    result = tape.grad(lambda w: tape.jvp(f, (w,), (vs,), batched=True)[1].sum())(Tensor(w))
    np.testing.assert_allclose(result, hessian @ vs.sum(axis=0), rtol=1e-12, atol=1e-14)


@DTYPES
def test_an_operand_spread_along_an_empty_axis_has_a_zero_gradient_of_its_shape(dtype):
    # x (1, 3) broadcast against (0, 3): d sum(x + E) / dx sums over no rows, zeros of x's shape
    x = Tensor(np.ones((1, 3), dtype))
    gradient = tape.grad(lambda x: (x + np.zeros((0, 3), dtype)).sum() + x.sum())(x)
    assert gradient.shape == (1, 3) and gradient.dtype == dtype
    np.testing.assert_array_equal(gradient, np.ones((1, 3)))
    h = tape.hessian(lambda x: ((x * x) + np.zeros((0, 3), dtype)).sum() + (x * x).sum())(x)
    np.testing.assert_array_equal(h.reshape(3, 3), 2 * np.eye(3))
