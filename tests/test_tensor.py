"""Matrix nodes (tape.Tensor): every operation against derivatives written here in numpy and
against central differences; mixed scalar/matrix programs; float32; bad input."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import StaleVarError, Tape, Tensor, TraceError, Var

RNG = np.random.default_rng(0)

# name -> (a point inside the domain, the derivative as the test writes it)
UNARY = {
    "sin": (lambda r, s: r.uniform(-3, 3, s), np.cos),
    "cos": (lambda r, s: r.uniform(-3, 3, s), lambda a: -np.sin(a)),
    "tan": (lambda r, s: r.uniform(-1.2, 1.2, s), lambda a: 1 / np.cos(a) ** 2),
    "atan": (lambda r, s: r.uniform(-3, 3, s), lambda a: 1 / (1 + a * a)),
    "sinh": (lambda r, s: r.uniform(-3, 3, s), np.cosh),
    "cosh": (lambda r, s: r.uniform(-3, 3, s), np.sinh),
    "tanh": (lambda r, s: r.uniform(-3, 3, s), lambda a: 1 / np.cosh(a) ** 2),
    "exp": (lambda r, s: r.uniform(-3, 3, s), np.exp),
    "expm1": (lambda r, s: r.uniform(-3, 3, s), np.exp),
    "log": (lambda r, s: r.uniform(0.2, 3, s), lambda a: 1 / a),
    "log1p": (lambda r, s: r.uniform(-0.8, 3, s), lambda a: 1 / (1 + a)),
    "sqrt": (lambda r, s: r.uniform(0.2, 3, s), lambda a: 0.5 / np.sqrt(a)),
    "sigmoid": (lambda r, s: r.uniform(-6, 6, s), lambda a: np.exp(-a) / (1 + np.exp(-a)) ** 2),
    "softplus": (lambda r, s: r.uniform(-6, 6, s), lambda a: 1 / (1 + np.exp(-a))),
    "relu": (lambda r, s: r.choice([-1, 1], s) * r.uniform(0.1, 3, s), lambda a: (a > 0).astype(float)),
}
VALUES = {"sin": np.sin, "cos": np.cos, "tan": np.tan, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
          "tanh": np.tanh, "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "sqrt": np.sqrt,
          "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "softplus": lambda a: np.log1p(np.exp(a)),
          "relu": lambda a: np.maximum(a, 0)}


def test_the_worked_example_in_matrix_form():
    with Tape():
        x = Tensor([math.pi, 1.0])
        y = x[1] * tape.cos(x[0]) + tape.exp(x[1])  # entries of a matrix node are Vars
        assert isinstance(y, Var)
        y.backward()
        np.testing.assert_allclose(y.value, -1 + math.e)
        np.testing.assert_allclose(x.grad, [-1.0 * math.sin(math.pi), math.cos(math.pi) + math.e], atol=1e-15)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_every_function_of_the_rule_table_entry_by_entry(name):
    point, derivative = UNARY[name]
    a = point(RNG, (3, 4))
    weights = RNG.standard_normal((3, 4))
    with Tape():
        x = Tensor(a)
        y = getattr(tape, name)(x)
        assert isinstance(y, Tensor) and y.shape == (3, 4)
        np.testing.assert_allclose(y.value, VALUES[name](a), rtol=1e-13)
        (y * weights).sum().backward()
        np.testing.assert_allclose(x.grad, weights * derivative(a), rtol=1e-10, atol=1e-14)
    tape.check_grads(lambda t: (getattr(tape, name)(t) * weights).sum(), Tensor(a))


BROADCASTS = [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 3), ()), ((2, 1), (1, 3)), ((3,), (2, 3)), ((4, 1, 3), (2, 1))]


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "**"])
@pytest.mark.parametrize("shapes", BROADCASTS)
def test_binary_operators_broadcast_and_sum_the_adjoint_back(op, shapes):
    a = RNG.uniform(0.5, 2, shapes[0])
    b = RNG.uniform(0.5, 2, shapes[1])
    value, (da, db) = {
        "+": (a + b, (1.0, 1.0)), "-": (a - b, (1.0, -1.0)), "*": (a * b, (b, a)),
        "/": (a / b, (1 / b, -a / b ** 2)), "**": (a ** b, (b * a ** (b - 1), a ** b * np.log(a))),
    }[op]
    g = RNG.standard_normal(np.shape(value))

    def summed(d, shape):  # the test's own unbroadcast: sum over the leading and the repeated axes
        full = np.broadcast_to(g * d, np.shape(value))
        full = full.sum(axis=tuple(range(full.ndim - len(shape))))
        return full.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)

    apply = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y,
             "**": lambda x, y: x ** y}[op]
    with Tape():
        x, y = Tensor(a), Tensor(b) if np.ndim(b) else Var(float(b))
        z = apply(x, y)
        np.testing.assert_allclose(z.value, value, rtol=1e-13)
        (z * g).sum().backward()
        np.testing.assert_allclose(x.grad, summed(da, np.shape(a)), rtol=1e-10)
        np.testing.assert_allclose(y.grad, summed(db, np.shape(b)), rtol=1e-10)
    tape.check_grads(lambda x, y: (apply(x, y) * g).sum(), Tensor(a), Tensor(b))


def test_constants_on_either_side_and_a_numpy_array_on_the_left():
    a = RNG.uniform(1, 2, (2, 3))
    c = RNG.uniform(1, 2, (2, 3))
    with Tape():
        x = Tensor(a)
        y = (3.0 - x) * c + 2 / x - -x + c ** x - x ** 2
        assert isinstance(y, Tensor)
        y.sum().backward()
        expected = -c - 2 / a ** 2 + 1 + c ** a * np.log(c) - 2 * a
        np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((3, 4), (4,)), ((4,), (4, 2)), ((4,), (4,))])
def test_the_matrix_product_and_the_notes_tensor_form(shapes):
    a, w = RNG.standard_normal(shapes[0]), RNG.standard_normal(shapes[1])
    z_value = a @ w
    z_bar = RNG.standard_normal(np.shape(z_value))
    with Tape():
        x, W = Tensor(a), Tensor(w)
        z = x @ W
        (z * z_bar).sum().backward() if np.ndim(z_value) else (z * float(z_bar)).backward()
        a2, w2 = np.atleast_2d(a), w.reshape(len(w), -1)
        zb2 = np.reshape(z_bar, (a2.shape[0], w2.shape[1]))
        np.testing.assert_allclose(x.grad, (zb2 @ w2.T).reshape(a.shape), rtol=1e-12)  # X̄ = Z̄Wᵀ
        np.testing.assert_allclose(W.grad, (a2.T @ zb2).reshape(w.shape), rtol=1e-12)  # W̄ = XᵀZ̄
    tape.matmul(Tensor(a), w)  # tape.matmul takes Tensors too


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_sums_means_and_logsumexp_along_each_axis(axis, keepdims):
    a = RNG.standard_normal((3, 4))
    with Tape():
        x = Tensor(a)
        for name, value, local in [
            ("sum", a.sum(axis=axis, keepdims=True), lambda y: np.ones_like(a)),
            ("mean", a.mean(axis=axis, keepdims=True), lambda y: np.ones_like(a) * y.size / a.size),
            ("logsumexp", np.log(np.exp(a).sum(axis=axis, keepdims=True)), lambda y: np.exp(a - y)),
        ]:
            y = getattr(x, name)(axis=axis, keepdims=keepdims)
            expected_shape = value.shape if keepdims else np.squeeze(value, axis=axis).shape if axis is not None else ()
            assert np.shape(y.value) == expected_shape
            np.testing.assert_allclose(np.reshape(y.value, value.shape), value, rtol=1e-13)
            g = RNG.standard_normal(expected_shape)
            (y * g).sum().backward() if expected_shape else (y * float(g)).backward()
            np.testing.assert_allclose(x.grad, np.reshape(g, value.shape) * local(value), rtol=1e-12)
    assert isinstance(tape.logsumexp(Tensor(a)), Var)
    np.testing.assert_allclose(tape.logsumexp(Tensor(a), axis=1).value, np.log(np.exp(a).sum(1)))
    np.testing.assert_allclose(tape.sum(Tensor(a), axis=0).value, a.sum(0))


def test_logsumexp_does_not_overflow():
    with Tape():
        x = Tensor([[1000.0, 1000.0], [-1000.0, 0.0]])
        y = x.logsumexp(axis=1)
        np.testing.assert_allclose(y.value, [1000 + math.log(2), 0.0], atol=1e-12)
        y.sum().backward()
        np.testing.assert_allclose(x.grad, [[0.5, 0.5], [0.0, 1.0]], atol=1e-12)


def test_reshape_transpose_and_indexing_route_the_adjoint_back():
    a = RNG.standard_normal((2, 3, 4))
    g = RNG.standard_normal((4, 6))
    with Tape():
        x = Tensor(a)
        y = x.transpose(2, 0, 1).reshape(4, 6)
        np.testing.assert_array_equal(y.value, a.transpose(2, 0, 1).reshape(4, 6))
        (y * g).sum().backward()
        np.testing.assert_allclose(x.grad, g.reshape(4, 2, 3).transpose(1, 2, 0))
        m = Tensor(a[0])
        (m.T * a[1].T).sum().backward()
        np.testing.assert_allclose(m.grad, a[1])
        rows = m[[0, 0, 1]]  # a row taken twice gets both adjoints
        (rows[:, 1:3] * 2.0).sum().backward()
        expected = np.zeros((3, 4))
        expected[0, 1:3], expected[1, 1:3] = 4.0, 2.0
        np.testing.assert_allclose(m.grad, expected)
        entry = m[1, 2]
        assert isinstance(entry, Var) and entry.value == a[0, 1, 2]
        (entry * entry).backward()
        expected = np.zeros((3, 4))
        expected[1, 2] = 2 * a[0, 1, 2]
        np.testing.assert_allclose(m.grad, expected)


def test_concatenate_and_stack_of_tensors_and_vars():
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal((1, 3))
    g = RNG.standard_normal((3, 3))
    with Tape():
        x, y = Tensor(a), Tensor(b)
        z = tape.concatenate([x, y], axis=0)
        (z * g).sum().backward()
        np.testing.assert_allclose(x.grad, g[:2])
        np.testing.assert_allclose(y.grad, g[2:])
        u, v = Var(2.0), Var(3.0)
        s = tape.stack([u, v * u, 1.0])  # matrix nodes from scalar Vars
        np.testing.assert_allclose(s.value, [2.0, 6.0, 1.0])
        (s * np.array([1.0, 10.0, 100.0])).sum().backward()
        assert (u.grad, v.grad) == (1.0 + 10 * 3.0, 10 * 2.0)
        one = tape.stack([y])  # one operand of an operation of any number
        (one * 3.0).sum().backward()
        np.testing.assert_allclose(y.grad, np.full((1, 3), 3.0))
        w = tape.stack([x, x * 2.0], axis=1)
        assert w.shape == (2, 2, 3)
        w.sum().backward()
        np.testing.assert_allclose(x.grad, np.full((2, 3), 3.0))


def test_softmax_cross_entropy_and_mse():
    logits, labels = RNG.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    targets = RNG.standard_normal((5, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    with Tape():
        z = Tensor(logits)
        loss = tape.softmax_cross_entropy(z, labels)
        np.testing.assert_allclose(loss.value, -np.log(p[np.arange(5), labels]).mean(), rtol=1e-13)
        loss.backward()
        np.testing.assert_allclose(z.grad, (p - np.eye(4)[labels]) / 5, rtol=1e-12, atol=1e-15)
        error = tape.mse(z, targets)
        np.testing.assert_allclose(error.value, ((logits - targets) ** 2).mean())
        error.backward()
        np.testing.assert_allclose(z.grad, 2 * (logits - targets) / 20)
    with pytest.raises(ValueError, match="label 4 at position 1"):
        tape.softmax_cross_entropy(Tensor(logits), [0, 4, 0, 0, 0])
    with pytest.raises(ValueError, match=r"expected logits \(rows, classes\) and a label per row, got shapes \(4,\) and \(1,\)"):
        tape.softmax_cross_entropy(Tensor(logits[0]), [0])
    for short in ([0, 1], [0]):  # one label would broadcast over every row
        with pytest.raises(ValueError, match=rf"got shapes \(5, 4\) and \({len(short)},\)"):
            tape.softmax_cross_entropy(Tensor(logits), short)
    with pytest.raises(ValueError, match=r"mse: outputs of shape \(5, 4\) against targets of shape \(4,\)"):
        tape.mse(Tensor(logits), targets[0])


def test_a_mixed_program_flows_across_in_one_sweep():
    a = RNG.standard_normal((3, 3))
    with Tape() as t:
        s = Var(0.5)
        x = Tensor(a)
        h = tape.tanh(x * s)  # a Var scales a matrix node
        total = h.sum()  # a Var from a matrix node
        y = total * total + tape.sin(h[0, 1]) * s  # scalar nodes on top
        y.backward()
        th = np.tanh(a * 0.5)
        dh = 2 * th.sum() * np.ones((3, 3))
        dh[0, 1] += math.cos(th[0, 1]) * 0.5
        np.testing.assert_allclose(x.grad, dh * (1 - th ** 2) * 0.5, rtol=1e-12)
        np.testing.assert_allclose(s.grad, (dh * (1 - th ** 2) * a).sum() + math.sin(th[0, 1]), rtol=1e-12)
        assert t.grads  # the matrix nodes' adjoints of that sweep
    tape.check_grads(lambda x, s: (tape.tanh(x * s).sum()) ** 2 + tape.sin(tape.tanh(x * s)[0, 1]) * s, Tensor(a), 0.5)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2 ** 31 - 1))
def test_a_layer_against_finite_differences(n, m, k, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, m)), rng.standard_normal((k, m)), rng.standard_normal(k)

    def layer(x, w, b):
        return tape.logsumexp(tape.sigmoid(x @ w.T + b), axis=1).mean()

    tape.check_grads(layer, Tensor(x), Tensor(w), Tensor(b))


def test_float32_stays_float32_within_its_tolerance():
    a = RNG.standard_normal((4, 5))
    w = RNG.standard_normal((5, 3))
    grads = {}
    for dtype in (np.float32, np.float64):
        with Tape():
            x, W = Tensor(a, dtype=dtype), Tensor(w, dtype=dtype)
            z = tape.relu(x @ W + 1) * 0.5 + tape.sigmoid(x @ W) / 3
            assert z.dtype == dtype
            z.logsumexp(axis=1).sum().backward()
            assert x.grad.dtype == dtype and W.grad.dtype == dtype
            grads[dtype] = W.grad
    np.testing.assert_allclose(grads[np.float32], grads[np.float64], rtol=1e-5, atol=1e-6)


def test_integer_input_promotes_and_other_dtypes_are_refused():
    with Tape():
        x = Tensor(np.array([[1, 2], [3, 4]]))
        assert x.dtype == np.float64
        (x * x).sum().backward()
        np.testing.assert_allclose(x.grad, [[2, 4], [6, 8]])
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got int32"):
        Tensor([1, 2], dtype=np.int32)
    with pytest.raises(TypeError, match="expected real numbers, got an array of dtype complex128"):
        Tensor([1j])
    with pytest.raises(ValueError, match=r"entry \(1,\) is nan"):
        Tensor([1.0, float("nan")])
    with pytest.raises(ValueError, match=r"entry \(0, 1\) is inf"):
        Tensor([[1.0, float("inf")]])
    with pytest.raises(ValueError, match="not a rectangular array"):
        Tensor([[1.0], [1.0, 2.0]])
    with Tape(), pytest.raises(ValueError, match=r"operand: entry \(0,\) is nan"):
        Tensor([1.0]) * np.array([np.nan])
    with pytest.raises(TypeError, match="an array of Vars .* tape.stack"):
        tape.grad(lambda x: (Tensor([1.0, 2.0]) * x).sum())(np.array([1.0, 2.0]))


def test_bad_shapes_and_domains_say_what_was_wrong():
    with Tape():
        x = Tensor(np.ones((2, 3)))
        with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) @ \(2, 3\) do not fit: 3 columns against 2 rows"):
            x @ x
        with pytest.raises(ValueError, match=r"add: operands of shapes \(2, 3\) and \(4,\) do not broadcast"):
            x + Tensor(np.ones(4))
        with pytest.raises(ValueError, match=r"reshape: cannot make 6 entries of shape \(2, 3\) into shape \(4, 2\)"):
            x.reshape(4, 2)
        with pytest.raises(ValueError, match="axis 2 is out of range for a Tensor of 2 axes"):
            x.sum(axis=2)
        with pytest.raises(ValueError, match=r"concatenate: operands of shapes \[\(2, 3\), \(2, 2\)\] do not fit together along axis 0"):
            tape.concatenate([x, Tensor(np.ones((2, 2)))])
        with pytest.raises(ValueError, match="stack: axis 3 is out of range"):
            tape.stack([x, x], axis=3)
        with pytest.raises(ValueError, match="matmul: operands must have 1 or 2 axes"):
            Tensor(np.ones((2, 2, 2))) @ x.T
        with pytest.raises(ValueError, match=r"entry \(1, 0\) of log on shape \(2, 2\): log\(-1.0\): math domain error \(log needs x > 0\)"):
            tape.log(Tensor([[1.0, 2.0], [-1.0, 3.0]]))
        with pytest.raises(ZeroDivisionError):
            Tensor([1.0, 2.0]) / Tensor([1.0, 0.0])
        with pytest.raises(ValueError, match="backward\\(\\) needs a Tensor of one element"):
            x.backward()
        with pytest.raises(TypeError, match="cannot combine|takes Tensors"):
            x @ "a"
    with pytest.raises(TypeError):
        Tensor(np.ones(2)) + "a"


def test_nodes_of_two_tapes_and_stale_nodes_are_refused():
    with Tape():
        x = Tensor(np.ones(2))
    with Tape() as t:
        y = Tensor(np.ones(2))
        with pytest.raises(ValueError, match="two tapes"):
            x + y
        with pytest.raises(ValueError, match="two tapes"):
            y * Var(2.0) + Tensor(np.ones(2)) * x
        mark = t.mark()
        z = y * 2.0
        t.rewind(mark)
        with pytest.raises(StaleVarError):
            z + y
        with pytest.raises(StaleVarError):
            z.grad  # noqa: B018


def test_no_grad_and_constants_record_nothing():
    with Tape() as t:
        x = Tensor(np.ones((2, 2)))
        before = len(t)
        with tape.no_grad():
            y = tape.sigmoid(x @ x)
            assert isinstance(y, Tensor) and not y.requires_grad
            assert isinstance(x.sum(), float)
        c = Tensor(np.ones(2), requires_grad=False)
        assert isinstance(c * 2.0, Tensor) and len(t) == before


def test_tracing_a_tensor_operation_is_refused():
    with pytest.raises(TraceError, match="a Tensor operation while tracing"):
        tape.trace(lambda x: (Tensor(np.ones(2)) * x).sum(), 1.0)


def test_the_transforms_take_functions_of_tensors():
    a, w = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 2))

    def f(x, W):
        return (tape.tanh(x @ W) ** 2).sum()

    th = np.tanh(a @ w)
    g = 2 * th * (1 - th ** 2)
    value, (ga, gw) = tape.value_and_grad(f, (0, 1))(Tensor(a), Tensor(w))
    np.testing.assert_allclose(value, (th ** 2).sum())
    np.testing.assert_allclose(ga, g @ w.T, rtol=1e-12)
    np.testing.assert_allclose(gw, a.T @ g, rtol=1e-12)
    np.testing.assert_allclose(tape.grad(f, 1)(Tensor(a), Tensor(w)), a.T @ g, rtol=1e-12)
    out, pullback = tape.vjp(lambda x: tape.tanh(x @ w), [Tensor(a)])
    cot = RNG.standard_normal((3, 2))
    np.testing.assert_allclose(pullback(cot)[0], (cot * (1 - th ** 2)) @ w.T, rtol=1e-12)
    J = tape.jacobian(lambda x: tape.tanh(x @ w))(Tensor(a))
    assert J.shape == (3, 2, 3, 4)
    np.testing.assert_allclose(J[1, 0, 1], (1 - th[1, 0] ** 2) * w[:, 0], rtol=1e-12)
    assert not J[1, 0, 0].any()
    v = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(tape.jvp(lambda x: tape.tanh(x @ w), [Tensor(a)], [v])[1], (1 - th ** 2) * (v @ w), rtol=1e-12)
    # second derivatives of sum(x * x): the Hessian 2I, along v 2v, grad of grad(.).sum() twos
    np.testing.assert_allclose(tape.hessian(lambda x: (x * x).sum())(Tensor(a)), 2 * np.eye(12).reshape(3, 4, 3, 4))
    np.testing.assert_allclose(tape.hvp(lambda x: (x * x).sum(), Tensor(a), v), 2 * v)
    np.testing.assert_allclose(tape.grad(lambda x: tape.grad(lambda y: (y * y).sum())(x).sum())(Tensor(a)), np.full((3, 4), 2.0))
    tape.check_grads(lambda x: (x * x).sum(), Tensor(a), order=2)


def test_check_grads_catches_a_wrong_vjp(monkeypatch):
    from tape import _tensor

    rule = _tensor.STRUCTURAL["matmul"]
    wrong = rule._replace(vjps=(lambda g, y, a, b: 1.01 * g @ b.T, rule.vjps[1]))
    monkeypatch.setitem(_tensor.STRUCTURAL, "matmul", wrong)
    with pytest.raises(tape.GradientCheckError):
        tape.check_grads(lambda x: (x @ np.ones((2, 2))).sum(), Tensor(np.ones((2, 2))))


def test_the_tape_shows_matrix_nodes_with_their_shapes():
    with Tape() as t:
        x = Tensor(np.ones((2, 3)))
        w = Tensor(np.ones((3, 4)))
        y = tape.sigmoid(x @ w).sum()
        y.backward()
        text = t.format()
        assert "leaf (2, 3)" in text and "matmul (2, 4)" in text and "sigmoid (2, 4)" in text and "sum ()" in text
        assert t.node(2) == ("matmul (2, 4)", [0, 1], [])
        assert "(its VJP)" in text
        html = t._repr_html_()
        assert "matmul (2, 4)" in html
    assert "Tensor([[1., 1., 1.]" in repr(x) and "node=0" in repr(x)


def test_relu_on_arrays_is_the_rule_exactly_at_zero_and_at_infinity():
    with Tape(), np.errstate(over="ignore"):
        y = tape.relu(Tensor([-3.0, -0.0, 0.0, 2.0, -1e200, 1e200]) * 1e200)  # the last two overflow: -inf, inf
        np.testing.assert_array_equal(y.value, [0.0, 0.0, 0.0, 2e200, 0.0, math.inf])  # np.where's answer
        assert not np.signbit(y.value).any()  # +0.0, as `a if a > 0.0 else 0.0` gives on floats
        y[:4].sum().backward()


def test_backward_from_a_one_element_tensor():
    a, w = RNG.standard_normal((1, 3)), RNG.standard_normal((3, 1))
    with Tape():
        x, W = Tensor(a), Tensor(w)
        y = x @ W  # shape (1, 1): a Tensor, not a Var
        assert isinstance(y, Tensor) and y.shape == (1, 1)
        y.backward()
        np.testing.assert_allclose(x.grad, w.T)
        np.testing.assert_allclose(W.grad, a.T)
        np.testing.assert_allclose(y.grad, [[1.0]])
