"""Every operation of the rule table, in every mode, against oracles that share nothing with the
table: closed forms written here, and central differences.

Modes: scalar reverse (Var.backward, tape.grad), VarArray reverse, forward (tape.jvp), a traced
replay, and the second derivatives: grad of grad, jvp of grad, hessian, hvp and a traced
hessian. Binary operations with both operands Vars and with a constant on either side.
"""
import math
import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tape
from tape import Tape, Var, VarArray

finite = dict(allow_nan=False, allow_infinity=False)


def floats(lo, hi, avoid=None):
    s = st.floats(lo, hi, **finite)
    return s.filter(lambda x: abs(x - avoid) > 1e-3) if avoid is not None else s


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# name: (the operation, its value on floats, first derivative, second derivative, its domain),
# the derivatives written from calculus, not from the engine
UNARY = {
    "neg": (operator.neg, lambda x: -x, lambda x: -1.0, lambda x: 0.0, floats(-5, 5)),
    "abs": (abs, abs, lambda x: math.copysign(1.0, x), lambda x: 0.0, floats(-5, 5, avoid=0.0)),
    "stop_gradient": (tape.stop_gradient, lambda x: x, lambda x: 0.0, lambda x: 0.0, floats(-5, 5)),
    "sin": (tape.sin, math.sin, math.cos, lambda x: -math.sin(x), floats(-10, 10)),
    "cos": (tape.cos, math.cos, lambda x: -math.sin(x), lambda x: -math.cos(x), floats(-10, 10)),
    "tan": (tape.tan, math.tan, lambda x: 1 / math.cos(x) ** 2, lambda x: 2 * math.tan(x) / math.cos(x) ** 2, floats(-1.4, 1.4)),
    "atan": (tape.atan, math.atan, lambda x: 1 / (1 + x * x), lambda x: -2 * x / (1 + x * x) ** 2, floats(-10, 10)),
    "sinh": (tape.sinh, math.sinh, math.cosh, math.sinh, floats(-5, 5)),
    "cosh": (tape.cosh, math.cosh, math.sinh, math.cosh, floats(-5, 5)),
    "tanh": (tape.tanh, math.tanh, lambda x: 1 / math.cosh(x) ** 2, lambda x: -2 * math.tanh(x) / math.cosh(x) ** 2, floats(-5, 5)),
    "exp": (tape.exp, math.exp, math.exp, math.exp, floats(-10, 5)),
    "expm1": (tape.expm1, math.expm1, math.exp, math.exp, floats(-10, 5)),
    "log": (tape.log, math.log, lambda x: 1 / x, lambda x: -1 / x**2, floats(1e-2, 100)),
    "log1p": (tape.log1p, math.log1p, lambda x: 1 / (1 + x), lambda x: -1 / (1 + x) ** 2, floats(-0.99, 100)),
    "sqrt": (tape.sqrt, math.sqrt, lambda x: 0.5 / math.sqrt(x), lambda x: -0.25 / x**1.5, floats(1e-2, 100)),
    "sigmoid": (tape.sigmoid, sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x)),
                lambda x: sigmoid(x) * (1 - sigmoid(x)) * (1 - 2 * sigmoid(x)), floats(-20, 20)),
    "softplus": (tape.softplus, lambda x: math.log1p(math.exp(x)), sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x)), floats(-20, 20)),
    "relu": (tape.relu, lambda x: max(x, 0.0), lambda x: float(x > 0), lambda x: 0.0, floats(-10, 10, avoid=0.0)),
}
TRACE_AT = {"log": 1.5, "log1p": 0.5, "sqrt": 2.0}  # where each operation is traced (else 0.3)


def close(a, b, rel=1e-9, absolute=1e-12):
    return a == pytest.approx(b, rel=rel, abs=absolute)


def central_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def test_the_table_and_this_file_name_the_same_operations():
    assert {r.name for r in tape.RULES} == set(UNARY) | set(BINARY)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_value_and_first_derivative_in_every_mode(name):
    op, value, first, _, domain = UNARY[name]
    traced = tape.trace(op, TRACE_AT.get(name, 0.3)).grad()

    @settings(max_examples=25, deadline=None)
    @given(domain, domain)
    def check(x, x2):
        expected = first(x)
        assert close(op(x), value(x))
        with Tape():  # a Var, swept
            v = Var(x)
            y = op(v)
            y.backward()
            assert close(y.value, value(x)) and close(v.grad, expected)
        assert close(tape.grad(op)(x), expected)  # reverse, on a tape of its own
        assert close(tape.jvp(op, (x,), (1.0,))[1], expected)  # forward
        assert close(traced(x), expected)  # a replay of a trace made elsewhere
        with Tape():  # entry by entry of a VarArray, weighted so that each entry counts apart
            a = VarArray([x, x2])
            (op(a) * np.array([1.0, -2.0])).sum().backward()
            assert close(a.grad[0], expected) and close(a.grad[1], -2 * first(x2))
        _, column = tape.jvp(op, (np.array([x, x2]),), (np.array([1.0, 0.0]),))  # forward on an array
        assert close(column[0], expected) and close(column[1], 0.0)
        if name != "stop_gradient":  # whose value has a derivative its rule denies by design
            assert close(expected, central_difference(value, x), rel=1e-5, absolute=1e-6)

    check()


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_second_derivative_in_every_mode(name):
    op, _, _, second, domain = UNARY[name]
    at = TRACE_AT.get(name, 0.3)
    traced_hessian = tape.trace(lambda v: op(v[0]), np.array([at])).hessian()

    @settings(max_examples=15, deadline=None)
    @given(domain)
    def check(x):
        expected = second(x)
        assert close(tape.grad(tape.grad(op))(x), expected, rel=1e-8)  # reverse over forward
        assert close(tape.jvp(tape.grad(op), (x,), (1.0,))[1], expected, rel=1e-8)  # forward over forward
        assert close(tape.hessian(lambda v: op(v[0]))(np.array([x]))[0, 0], expected, rel=1e-8)
        assert close(tape.hvp(lambda v: op(v[0]), np.array([x]), np.array([2.0]))[0], 2 * expected, rel=1e-8)
        assert close(traced_hessian(np.array([x]))[0, 0], expected, rel=1e-8)  # either side of a kink too

    check()


# name: (the operation, first partials, Hessian [[d2/da2, d2/dadb], [., d2/db2]], domain of a and b)
BINARY = {
    "add": (operator.add, lambda a, b: (1.0, 1.0), lambda a, b: [[0, 0], [0, 0]], floats(-5, 5), floats(-5, 5)),
    "sub": (operator.sub, lambda a, b: (1.0, -1.0), lambda a, b: [[0, 0], [0, 0]], floats(-5, 5), floats(-5, 5)),
    "mul": (operator.mul, lambda a, b: (b, a), lambda a, b: [[0, 1], [1, 0]], floats(-5, 5), floats(-5, 5)),
    "truediv": (operator.truediv, lambda a, b: (1 / b, -a / b**2),
                lambda a, b: [[0, -1 / b**2], [-1 / b**2, 2 * a / b**3]],
                floats(-5, 5), st.one_of(floats(-5, -0.1), floats(0.1, 5))),
    "pow": (operator.pow, lambda a, b: (b * a ** (b - 1), a**b * math.log(a)),
            lambda a, b: [[b * (b - 1) * a ** (b - 2), a ** (b - 1) * (1 + b * math.log(a))],
                          [a ** (b - 1) * (1 + b * math.log(a)), a**b * math.log(a) ** 2]],
            floats(0.1, 4), floats(-3, 3)),
}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_first_partials_in_every_mode_with_constants_on_either_side(name):
    op, partials, _, a_domain, b_domain = BINARY[name]
    traced = tape.trace(op, 1.5, 0.7).grad((0, 1))
    traced_right = tape.trace(lambda x: op(x, 0.7), 1.5)  # the constant is part of the trace
    traced_left = tape.trace(lambda y: op(1.5, y), 0.7)

    @settings(max_examples=25, deadline=None)
    @given(a_domain, b_domain)
    def check(a, b):
        da, db = partials(a, b)
        assert close(op(a, b), op(float(a), float(b)))
        got = tape.grad(op, argnums=(0, 1))(a, b)
        assert close(got[0], da) and close(got[1], db)
        assert close(tape.grad(lambda x: op(x, b))(a), da) and close(tape.grad(lambda y: op(a, y))(b), db)
        assert close(tape.jvp(op, (a, b), (1.0, 0.0))[1], da) and close(tape.jvp(op, (a, b), (0.0, 1.0))[1], db)
        assert close(tape.jvp(lambda x: op(x, b), (a,), (1.0,))[1], da)
        assert close(tape.jvp(lambda y: op(a, y), (b,), (1.0,))[1], db)
        t = traced(a, b)
        assert close(t[0], da) and close(t[1], db)
        if (a, b) != (1.5, 0.7):
            assert close(tape.trace(lambda x: op(x, b), 1.5).grad()(a), da)
            assert close(tape.trace(lambda y: op(a, y), 0.7).grad()(b), db)
        assert traced_right(1.5) == op(1.5, 0.7) and traced_left(0.7) == op(1.5, 0.7)
        with Tape():  # VarArrays: both nodes, a constant right, a constant left
            x, y = VarArray([a, a]), VarArray([b, b])
            (op(x, y) * np.array([1.0, 3.0])).sum().backward()
            assert close(x.grad[1], 3 * da) and close(y.grad[1], 3 * db)
            x = VarArray([a])
            op(x, np.array([b])).sum().backward()
            assert close(x.grad[0], da)
            y = VarArray([b])
            op(np.array([a]), y).sum().backward()
            assert close(y.grad[0], db)
        assert close(da, central_difference(lambda x: op(x, b), a), rel=1e-5, absolute=1e-6)
        assert close(db, central_difference(lambda y: op(a, y), b), rel=1e-5, absolute=1e-6)

    check()


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_second_partials_in_every_mode(name):
    op, _, hessian, a_domain, b_domain = BINARY[name]
    traced_hessian = tape.trace(lambda v: op(v[0], v[1]), np.array([1.5, 0.7])).hessian()

    @settings(max_examples=15, deadline=None)
    @given(a_domain, b_domain)
    def check(a, b):
        expected = np.array(hessian(a, b), dtype=float)
        np.testing.assert_allclose(tape.hessian(lambda v: op(v[0], v[1]))(np.array([a, b])), expected, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(traced_hessian(np.array([a, b])), expected, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(tape.hvp(lambda v: op(v[0], v[1]), np.array([a, b]), np.array([1.0, -2.0])),
                                   expected @ [1.0, -2.0], rtol=1e-8, atol=1e-10)
        assert close(tape.grad(tape.grad(lambda x: op(x, b)))(a), expected[0, 0], rel=1e-8)  # constant right
        assert close(tape.grad(tape.grad(lambda y: op(a, y)))(b), expected[1, 1], rel=1e-8)  # constant left
        mixed = tape.grad(lambda y: tape.grad(lambda x: op(x, y))(a))(b)  # the inner grad closes over y
        assert close(mixed, expected[0, 1], rel=1e-8, absolute=1e-10)

    check()


def pow_hessian(a, b):
    """The Hessian of a**b; for a negative base d/db a**b does not exist, nor its derivatives."""
    if a < 0:
        return [[b * (b - 1) * a ** (b - 2), math.nan], [math.nan, math.nan]]
    return BINARY["pow"][2](a, b)


# name: (a function of a vector, its Hessian from calculus, points on either side of a branch of
# the table's partials: abs's sign, relu's step, sqrt's edge at 0, a power's special cases)
BRANCHING = {
    "abs": (lambda v: v[0] * abs(v[0]), lambda x: [[2.0 * math.copysign(1.0, x)]], [-1.5, 0.5]),
    "relu": (lambda v: tape.relu(v[0]) ** 2, lambda x: [[2.0 if x > 0 else 0.0]], [-1.0, 2.0]),
    "sqrt": (lambda v: tape.sqrt(v[0]), lambda x: [[-0.25 * x**-1.5 if x > 0 else math.nan]], [0.0, 1.0, 4.0]),
    "integer-power": (lambda v: v[0] ** 3.0, lambda x: [[6.0 * x]], [-2.0, 0.0, 1.5]),
    "pow": (lambda v: v[0] ** v[1], pow_hessian, [(2.0, 3.0), (-2.0, 3.0), (-1.5, 2.0), (0.5, -1.0)]),
}


@pytest.mark.parametrize("retrace", [False, True])
@pytest.mark.parametrize("name", sorted(BRANCHING))
def test_a_traced_hessian_at_the_other_side_of_a_partials_branch(name, retrace):
    """Traced at each point, the Hessian at every other one (and again at the first): the
    comparisons in the table's partials are the rules' branches, not the function's."""
    fn, hessian, points = BRANCHING[name]
    for at in points:
        traced_hessian = tape.trace(fn, np.atleast_1d(at), retrace=retrace).hessian()
        for x in [*points, at]:
            expected = np.array(hessian(*np.atleast_1d(x)), dtype=float)
            np.testing.assert_allclose(traced_hessian(np.atleast_1d(x)), expected, rtol=1e-12)
            np.testing.assert_allclose(tape.hessian(fn)(np.atleast_1d(x)), expected, rtol=1e-12)


# -- powers where the table's special cases live ------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 5])
@settings(max_examples=15, deadline=None)
@given(x=floats(-3, 3))
def test_integer_powers_of_negative_bases_and_zero(n, x):
    assert close(tape.grad(lambda v: v**n)(x), n * x ** (n - 1))
    assert close(tape.grad(tape.grad(lambda v: v**n))(x), n * (n - 1) * x ** (n - 2), rel=1e-8)
    assert close(tape.grad(lambda v: v**n)(0.0), 0.0) and close(tape.grad(tape.grad(lambda v: v**n))(0.0), 2.0 if n == 2 else 0.0)


def test_powers_at_the_edge_of_their_domain():
    assert tape.grad(lambda x: x**0.5)(0.0) == math.inf  # the slope of sqrt at 0
    assert tape.grad(tape.sqrt)(0.0) == math.inf
    assert math.isnan(tape.grad(tape.grad(tape.sqrt))(0.0))  # no second derivative there: nan, not 0
    assert math.isnan(tape.grad(tape.grad(lambda x: x**0.5))(0.0))
    assert tape.grad(lambda x: x**1.0)(0.0) == 1.0 and tape.grad(lambda x: x**0.0)(0.0) == 0.0
    assert tape.grad(lambda x: 2.0**x)(3.0) == pytest.approx(8 * math.log(2))
    assert tape.grad(lambda x: x ** (x + 1))(0.0) == 1.0  # the one-sided limit of x^x (log x + 1 + 1/x) x ...
    assert math.isnan(tape.grad(tape.grad(lambda x: x ** (x + 1)))(0.0))  # ... whose derivative is -inf: nan
    assert math.isnan(tape.grad(lambda y: (-2.0) ** y)(2.0))  # d/dy (-2)^y: log of a negative base
    assert tape.grad(lambda x: 0.0 * tape.sqrt(x))(0.0) == 0.0  # a zero adjoint is not swept (0 * inf)
    with Tape():
        a = VarArray([0.0, 4.0])
        tape.sqrt(a).sum().backward()
        assert a.grad[0] == math.inf and a.grad[1] == 0.25


# -- reductions -------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.lists(floats(-3, 3), min_size=1, max_size=6), floats(-2, 2))
def test_sum_dot_and_logsumexp_of_vars_and_constants(values, c):
    x = np.array(values)
    k = len(x)
    p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    with_constant = lambda f: lambda v: f(list(v) + [c])  # noqa: E731
    np.testing.assert_allclose(tape.grad(with_constant(tape.sum))(x), np.ones(k))
    np.testing.assert_allclose(tape.grad(lambda v: tape.logsumexp(v))(x), p, rtol=1e-12)
    q = np.exp(np.append(x, c) - max(x.max(), c))
    np.testing.assert_allclose(tape.grad(with_constant(tape.logsumexp))(x), q[:k] / q.sum(), rtol=1e-12)
    assert tape.logsumexp(list(x)) == pytest.approx(math.log(np.exp(x).sum()))
    weights = np.arange(1.0, k + 1)
    np.testing.assert_allclose(tape.grad(lambda v: tape.dot(weights, v))(x), weights)  # constants on the left
    np.testing.assert_allclose(tape.grad(lambda v: tape.dot(v, weights))(x), weights)  # and on the right
    np.testing.assert_allclose(tape.grad(lambda v: tape.dot(v, v))(x), 2 * x)  # pairs of two nodes
    mixed = lambda v: tape.dot([v[0], 2.0, v[-1], 3.0], [v[-1], v[0], 5.0, 7.0])  # noqa: E731
    expected = np.zeros(k)
    expected[0] += x[-1] + 2.0
    expected[-1] += x[0] + 5.0
    np.testing.assert_allclose(tape.grad(mixed)(x), expected)
    assert mixed(x) == pytest.approx(x[0] * x[-1] + 2 * x[0] + 5 * x[-1] + 21)
    for f in (with_constant(tape.sum), tape.logsumexp, mixed, lambda v: tape.dot(v, weights)):
        _, forward = tape.jvp(f, (x,), (weights,))
        assert forward == pytest.approx(tape.grad(f)(x) @ weights)
        traced = tape.trace(f, x + 0.5)
        assert traced.grad()(x) == pytest.approx(tape.grad(f)(x), rel=1e-12)
    np.testing.assert_allclose(tape.hessian(tape.logsumexp)(x), np.diag(p) - np.outer(p, p), atol=1e-12)
    np.testing.assert_allclose(tape.hessian(lambda v: tape.dot(v, v))(x), 2 * np.eye(k), atol=1e-12)


AXES = [(2, 3, None), (2, 3, 0), (2, 3, 1), (2, 3, -1), (2, 3, 4, 0), (2, 3, 4, 1), (2, 3, 4, 2), (5, 0), (5, None)]


@pytest.mark.parametrize("case", AXES)
def test_varray_reductions_along_every_axis(case):
    *shape, axis = case
    rng = np.random.default_rng(len(shape) * 10 + (axis or 0))
    x = rng.normal(size=shape)
    kept = () if axis is None else tuple(np.delete(shape, axis))
    w = rng.normal(size=kept)  # the loss weighs each output apart
    count = x.size if axis is None else shape[axis]
    softmax = np.exp(x - x.max(axis=axis, keepdims=True))
    softmax /= softmax.sum(axis=axis, keepdims=True)
    spread = lambda v: np.expand_dims(v, axis) if axis is not None else v  # noqa: E731
    oracles = {
        "sum": (x.sum(axis=axis), np.ones(shape)),
        "mean": (x.mean(axis=axis), np.ones(shape) / count),
        "logsumexp": (np.log(np.exp(x).sum(axis=axis)), softmax),
    }
    for name, (value, partial) in oracles.items():
        with Tape():
            a = VarArray(x)
            r = getattr(a, name)(axis=axis)
            values = r.values if isinstance(r, VarArray) else r.value
            np.testing.assert_allclose(values, value, rtol=1e-12)
            (r * w).sum().backward() if isinstance(r, VarArray) else (r * float(w)).backward()
            np.testing.assert_allclose(a.grad, spread(w) * partial, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("left, right", [("var", "var"), ("var", "const"), ("const", "var")])
def test_matmul_gradients_against_the_matrix_formulas(left, right):
    rng = np.random.default_rng(1)
    A, B, W = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    with Tape():
        a = VarArray(A) if left == "var" else A
        b = VarArray(B) if right == "var" else B
        y = a @ b
        np.testing.assert_allclose(y.values, A @ B, rtol=1e-12)
        (y * W).sum().backward()
        if left == "var":
            np.testing.assert_allclose(a.grad, W @ B.T, rtol=1e-12)
        if right == "var":
            np.testing.assert_allclose(b.grad, A.T @ W, rtol=1e-12)


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of an operand that was broadcast to g's shape: summed over the copies."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, n in enumerate(shape):
        if n == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((2, 3), ())])
def test_varray_powers_in_every_variant(shapes):
    rng = np.random.default_rng(2)
    A, B = rng.uniform(0.5, 2, shapes[0]), rng.uniform(-2, 2, shapes[1])
    W = rng.normal(size=np.broadcast_shapes(*shapes))
    da, db = B * A ** (B - 1), A**B * np.log(A)  # d(a^b)/da and d(a^b)/db
    for a_var, b_var in [(True, True), (True, False), (False, True)]:
        with Tape():
            a, b = (VarArray(A) if a_var else A), (VarArray(B) if b_var else B)
            y = a**b
            np.testing.assert_allclose(y.values, A**B, rtol=1e-12)
            (y * W).sum().backward()
            if a_var:
                np.testing.assert_allclose(a.grad, unbroadcast(W * da, A.shape), rtol=1e-10, atol=1e-12)
            if b_var:
                np.testing.assert_allclose(b.grad, unbroadcast(W * db, B.shape), rtol=1e-10, atol=1e-12)


# -- Jacobians, levels of forward mode, and the tape around the rules -------------------------------


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_jacobians_in_every_mode_with_scalar_and_vector_inputs(mode):
    x = np.array([0.7, -1.3])
    f = lambda v: [v[0] * v[1], tape.sin(v[0]), v[1] ** 2, tape.exp(v[0] - v[1])]  # noqa: E731
    expected = np.array([[x[1], x[0]], [math.cos(x[0]), 0.0], [0.0, 2 * x[1]],
                         [math.exp(x[0] - x[1]), -math.exp(x[0] - x[1])]])
    np.testing.assert_allclose(tape.jacobian(f, mode)(x), expected, rtol=1e-12)
    np.testing.assert_allclose(tape.trace(f, x).jacobian(mode=mode)(x), expected, rtol=1e-12)
    g = lambda s: [s**2, s, abs(s), tape.sin(s)]  # noqa: E731  (a scalar in, four out: 'auto' picks forward)
    np.testing.assert_allclose(tape.jacobian(g, mode)(1.5), [3.0, 1.0, 1.0, math.cos(1.5)], rtol=1e-12)
    np.testing.assert_allclose(tape.jacobian(g, mode)(np.array(1.5)), [3.0, 1.0, 1.0, math.cos(1.5)], rtol=1e-12)
    np.testing.assert_allclose(tape.jacobian(lambda v: tape.sum(v * v), mode)(x), 2 * x, rtol=1e-12)


def test_jvp_of_a_zero_dimensional_array():
    value, tangent = tape.jvp(lambda x: x**2, (np.array(1.5),), (np.array(1.0),))
    assert value == 2.25 and tangent == 3.0


def test_nested_derivatives_of_closures_do_not_mix_levels():
    # d/dx [x * d/dy (x * y)] = d/dx x^2 = 2x: without tagged levels, forward mode gave 3x.
    inner = lambda x: x * tape.jvp(lambda y: x * y, (x,), (1.0,))[1]  # noqa: E731
    assert tape.jvp(inner, (2.0,), (1.0,)) == (4.0, 4.0)
    assert tape.grad(lambda x: x * tape.grad(lambda y: x * y)(x))(3.0) == 6.0
    assert tape.grad(lambda x: tape.grad(lambda y: tape.sin(x * y))(1.0))(0.5) == pytest.approx(
        math.cos(0.5) - 0.5 * math.sin(0.5))  # d/dx [x cos(x y)] at y = 1


def test_a_rewound_node_leaves_no_adjoint_behind():
    with Tape() as t:
        x = Var(1.0)
        mark = t.mark()
        y = x * 3.0
        y.backward()
        assert y.grad == 1.0
        t.rewind(mark)
        z = x * 5.0  # recorded where y was
        assert z.node == y.node and z.grad == 0.0 and x.grad == 3.0


def test_check_grads_passes_the_engine_and_catches_a_wrong_partial(monkeypatch):
    f = lambda x, w: tape.sum(tape.tanh(x * w) + tape.log1p(tape.exp(x))) / tape.sqrt(w @ w)  # noqa: E731
    x, w = np.array([0.3, -1.2, 2.0]), np.array([1.5, -0.5, 0.25])
    tape.check_grads(f, x, w, order=2)
    from tape import _ops

    wrong = dict(_ops.PARTIALS)
    wrong[tape.op_code("tanh")] = lambda a, b, y: (1.0 + y * y,)  # the sign of a partial, flipped
    monkeypatch.setattr(_ops, "PARTIALS", wrong)  # forward mode reads the table's partials here
    with pytest.raises(tape.GradientCheckError, match="forward mode") as info:
        tape.check_grads(f, x, w)
    assert "central difference" in str(info.value) and "rtol=1e-05" in str(info.value)


# -- the house: one table, no import loop, no exec -------------------------------------------------


def tape_imports() -> dict[str, set[str]]:
    """Each module of tape/ and the modules of tape/ it imports (at the top or in a function)."""
    import ast
    from pathlib import Path

    package = Path(tape.__file__).parent
    graph = {}
    for path in package.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = imported - {"__init__"}
    return graph


def test_the_rule_table_is_a_leaf_and_tape_has_no_import_loop():
    graph = tape_imports()
    assert graph["_rules"] == set()  # imports nothing of tape/
    below = {}  # each module's imports, direct or not

    def visit(name, visiting=()):
        assert name not in visiting, f"import loop: {' -> '.join(visiting + (name,))}"
        if name not in below:
            below[name] = set().union(*[{dep} | visit(dep, visiting + (name,)) for dep in graph.get(name, ())])
        return below[name]

    for name in graph:
        visit(name)
    # everything rests on the table (the generator reads it by its path, to run while tape cannot),
    # but for the tables a notebook shows and the line before a compilation, which know nothing of
    # operations, and the table's rules on arrays, generated from it as numpy code that needs nothing
    # of tape at run time, and the compiled softmax of rows, which is arithmetic only
    assert graph["_display"] == set() and graph["_notice"] == set() and graph["_vectorized"] == set()
    assert graph["_rows"] == {"_notice"}
    assert all("_rules" in below[name] for name in graph
               if name not in ("_rules", "_codegen", "_display", "_notice", "_vectorized", "_rows"))


def test_the_generated_code_is_a_file_you_can_step_into_and_nothing_runs_exec():
    import inspect
    from pathlib import Path

    assert inspect.getsourcefile(Var.__mul__).endswith("_ops.py")
    assert inspect.getsourcefile(tape.sin).endswith("_ops.py")
    for path in Path(tape.__file__).parent.glob("*.py"):
        if path.name == "_tensor_trace.py":  # per-trace code (issue 29's design), not the rule table's: see its docstring
            continue
        text = path.read_text()
        assert "exec(" not in text and "compile(" not in text, path.name


def test_compiled_caches_are_dropped_when_a_source_they_inline_changes(tmp_path):
    """numba would keep a cached kernel whose inlined rules changed; tape drops such caches,
    and only those."""
    from tape import _kernels

    sources, cache = tmp_path / "tape", tmp_path / "cache"
    sources.mkdir()
    cache.mkdir()
    for name in {name for files in _kernels.COMPILED_INTO.values() for name in files}:
        (sources / name).write_text(f"# {name}\n")
    entries = {module: cache / f"{module}.f-1.py311.nbi" for module in _kernels.COMPILED_INTO}
    other = cache / "mlp_module.f-1.py311.nbi"

    def write_all():
        for entry in [*entries.values(), other]:
            entry.write_text("")

    def check():
        for module, files in _kernels.COMPILED_INTO.items():
            _kernels.forget_stale_caches(module, [sources / f for f in files], cache)

    write_all()
    check()  # no stamps yet: no cache can be trusted
    assert not any(e.exists() for e in entries.values()) and other.exists()
    write_all()
    check()  # nothing changed: all kept
    assert all(e.exists() for e in entries.values())
    (sources / "_replay.py").write_text("# the interpreter changed\n")
    check()
    assert not entries["_replay"].exists() and entries["kernels"].exists() and entries["_compiled"].exists()
    write_all()
    (sources / "_rules.py").write_text("# a rule changed\n")
    check()  # compiled into every module
    assert not any(e.exists() for e in entries.values()) and other.exists()


@pytest.mark.parametrize("op", [tape.relu, abs], ids=["relu", "abs"])
def test_the_slope_at_a_kink_is_zero_in_every_mode(op):
    """relu'(0) and abs'(0) are 0, as in PyTorch and JAX (a subgradient): in each mode."""
    assert tape.grad(op)(0.0) == 0.0
    assert tape.jvp(op, (0.0,), (1.0,))[1] == 0.0
    assert tape.trace(op, 1.0).grad()(0.0) == 0.0
    assert tape.grad(tape.grad(op))(0.0) == 0.0
    with Tape():
        a = VarArray([0.0, 2.0])
        op(a).sum().backward()
        assert a.grad[0] == 0.0 and a.grad[1] == 1.0


# -- partials at the bounds of float64 and float32: subnormal operands, saturation, overflow -------

TINY = 5e-324  # the smallest subnormal float64: 1 / TINY overflows


def first_in_every_mode(f, x: float) -> dict:
    """f'(x) by every scalar mode the rule table generates: a swept Var, a VarArray, forward
    mode, and the replay of a trace made at another point."""
    with Tape():
        v = Var(x)
        f(v).backward()
        swept = v.grad
    with Tape():
        a = VarArray([x])
        f(a).sum().backward()
        array = a.grad[0]
    return {"swept": swept, "grad": tape.grad(f)(x), "varray": array, "jvp": tape.jvp(f, (x,), (1.0,))[1],
            "traced": tape.trace(f, 0.75).grad()(x)}


def second_in_every_mode(f, x: float) -> dict:
    """f''(x) by every mode of second derivatives: reverse over forward, forward over forward, the
    Hessian, a Hessian-vector product and a traced Hessian (traced at another point)."""
    g = lambda v: f(v[0])  # noqa: E731
    return {"grad of grad": tape.grad(tape.grad(f))(x), "jvp of grad": tape.jvp(tape.grad(f), (x,), (1.0,))[1],
            "hessian": tape.hessian(g)(np.array([x]))[0, 0], "hvp": tape.hvp(g, np.array([x]), np.array([1.0]))[0],
            "traced hessian": tape.trace(g, np.array([0.75])).hessian()(np.array([x]))[0, 0]}


def agree(got: dict, expected: float, rel: float = 1e-12) -> None:
    wrong = {mode: d for mode, d in got.items() if not d == pytest.approx(expected, rel=rel, abs=0.0)}
    assert not wrong, f"expected {expected!r}, got {wrong}"


# (f, x, f'(x), f''(x)), the derivatives from calculus: x**b has slope b x**(b-1), 0 at b = 0
# whatever x is, where b * x**(b-1) would be 0 * inf at a subnormal x
POWERS_AT_TINY = {
    "x**0": (lambda v: v**0, TINY, 0.0, 0.0),
    "x**0.0 at -TINY": (lambda v: v**0.0, -TINY, 0.0, 0.0),
    "x**0.0 at 1e-310": (lambda v: v**0.0, 1e-310, 0.0, 0.0),
    "x**0.0 inside": (lambda v: tape.sin(v) ** 0.0 * v + v**0.0, TINY, 1.0, 0.0),
    "x**1": (lambda v: v**1.0, TINY, 1.0, 0.0),
    "x**2": (lambda v: v**2, TINY, 2 * TINY, 2.0),
    "x**0.5": (lambda v: v**0.5, TINY, 0.5 / math.sqrt(TINY), -math.inf),  # -x**-1.5 / 4 overflows
    "x**0.5 at 1e-200": (lambda v: v**0.5, 1e-200, 0.5e100, -0.25e300),
    "x**-1 at 1e-100": (lambda v: v**-1.0, 1e-100, -1e200, 2e300),
    "TINY**y at 0": (lambda v: TINY**v, 0.0, math.log(TINY), math.log(TINY) ** 2),  # y log(a) at y = 1
    "TINY**y at 2": (lambda v: TINY**v, 2.0, 0.0, 0.0),  # y = 0 (underflow): y log(a) is 0, not nan
}


# more rules at their bounds: (f, x, f'(x), f''(x) or None where a partial on Vars overflows, which
# second derivatives refuse); an infinite partial times a zero adjoint or tangent adds nothing
AT_BOUNDS = {
    "sqrt(relu(x)) at -1": (lambda v: tape.sqrt(tape.relu(v)), -1.0, 0.0, 0.0),
    "0 * sqrt(x) at 0": (lambda v: 0.0 * tape.sqrt(v), 0.0, 0.0, 0.0),
    "sqrt(x) * 0 at 0": (lambda v: tape.sqrt(v) * 0.0 + v, 0.0, 1.0, 0.0),
    "log(x) * 0 at TINY": (lambda v: tape.log(v) * 0.0 + v, TINY, 1.0, None),
    "log(x) at TINY": (lambda v: tape.log(v), TINY, math.inf, None),  # 1 / TINY overflows
    "1 / x at 1e-200": (lambda v: 1.0 / v, 1e-200, -math.inf, None),
    "log1p(x) at -1 + 2**-53": (lambda v: tape.log1p(v), -1 + 2**-53, 2.0**53, -(2.0**106)),
    "atan(x) at 1e200": (lambda v: tape.atan(v), 1e200, 0.0, 0.0),
    "exp(x) at -800": (lambda v: tape.exp(v), -800.0, 0.0, 0.0),
    "sigmoid(x) at -800": (lambda v: tape.sigmoid(v), -800.0, 0.0, 0.0),
    "sigmoid(x) at 800": (lambda v: tape.sigmoid(v), 800.0, 0.0, 0.0),  # y (1 - y) with y = 1.0: as PyTorch
    "tanh(x) at -400": (lambda v: tape.tanh(v), -400.0, 0.0, 0.0),
    "softplus(x) at 800": (lambda v: tape.softplus(v), 800.0, 1.0, 0.0),
    "softplus(x) at -800": (lambda v: tape.softplus(v), -800.0, 0.0, 0.0),
}


@pytest.mark.parametrize("case", sorted(AT_BOUNDS))
def test_rules_at_their_bounds_in_every_mode(case):
    f, x, first, second = AT_BOUNDS[case]
    agree(first_in_every_mode(f, x), first)
    if second is not None:
        agree(second_in_every_mode(f, x), second)


@pytest.mark.parametrize("case", sorted(POWERS_AT_TINY))
def test_powers_at_a_subnormal_base_in_every_mode(case):
    f, x, first, second = POWERS_AT_TINY[case]
    agree(first_in_every_mode(f, x), first)
    agree(second_in_every_mode(f, x), second)


def test_the_mixed_partials_of_a_power_at_exponent_zero():
    """d2/da db a**b = a**(b-1) (1 + b log a): 1/a at b = 0, which the partial 0 must keep."""
    power = lambda v: v[0] ** v[1]  # noqa: E731
    for a in (0.5, 3.0, TINY):
        expected = np.array([[0.0, 1 / a if a > TINY else math.inf], [1 / a if a > TINY else math.inf, math.log(a) ** 2]])
        np.testing.assert_allclose(tape.hessian(power)(np.array([a, 0.0])), expected, rtol=1e-12)
        np.testing.assert_allclose(tape.trace(power, np.array([0.5, 2.0])).hessian()(np.array([a, 0.0])), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_powers_of_matrix_nodes_at_the_smallest_subnormal(dtype):
    """The rule table on arrays, in the array's own precision, where 1 / x overflows sooner."""
    tiny = np.finfo(dtype).smallest_subnormal
    for exponent, slope in ((0, 0.0), (0.0, 0.0), (1.0, 1.0), (0.5, 0.5 / np.sqrt(tiny))):
        x = tape.Tensor(np.array([tiny, 0.25], dtype=dtype))
        cotangent = np.array([3.0, -2.0], dtype=dtype)
        ((x**exponent) * cotangent).sum().backward()
        expected = cotangent * np.array([slope, exponent * 0.25 ** (exponent - 1.0)])
        np.testing.assert_allclose(x.grad, expected.astype(dtype), rtol=1e-6)
        assert x.grad.dtype == dtype


def test_logsumexp_with_infinite_operands_in_every_mode():
    """log(e^x + e^-inf) is x: slope 1 and curvature 0 in every mode, whichever operands the
    engine folds together first; of -infs alone it is -inf, with a +inf it is inf."""
    f = lambda v: tape.logsumexp([v, -math.inf, -math.inf])  # noqa: E731
    for x in (0.0, -3.5, 700.0):
        assert tape.value_and_grad(f)(x) == (x, 1.0) and tape.jvp(f, (x,), (1.0,)) == (x, 1.0)
        assert tape.trace(f, 1.0).value_and_grad()(x) == (x, 1.0)
        agree(second_in_every_mode(f, x), 0.0)
    assert tape.logsumexp([-math.inf, -math.inf]) == -math.inf and tape.logsumexp([math.inf, 1.0]) == math.inf
    with Tape():
        a = VarArray([[0.5, -math.inf], [-math.inf, -math.inf]])
        y = a.logsumexp(axis=-1)
        assert y.values[0] == 0.5 and y.values[1] == -math.inf
        y[0].backward()
        np.testing.assert_array_equal(a.grad, [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("shift", [0.0, -3e9, 1e10, 1e15])
def test_the_softmax_of_large_logits_in_every_mode(shift):
    """d/dx log(e^x + e^(x+1)) is softmax([0, 1]) whatever the shift: 1/(1+e) and e/(1+e), to the
    last bits (exp(a - y) would carry y's rounding, ulp(1e10) = 2e-6, into the exponent)."""
    low, high = 1 / (1 + math.e), math.e / (1 + math.e)
    f = lambda v: tape.logsumexp([v[0], v[1] + 1.0])  # noqa: E731
    x = np.array([shift, shift])
    expected, curvature = np.array([low, high]), low * high * np.array([[1.0, -1.0], [-1.0, 1.0]])
    for got in (tape.grad(f)(x), tape.trace(f, np.array([0.5, -0.5])).grad()(x),
                np.array([tape.jvp(f, (x,), (np.eye(2)[i],))[1] for i in range(2)])):
        np.testing.assert_allclose(got, expected, rtol=1e-14)
    with Tape():
        a = VarArray([[shift, shift + 1.0], [shift + 1.0, shift]])
        weights = np.array([2.0, -3.0])
        (a.logsumexp(axis=-1) * weights).sum().backward()
        np.testing.assert_allclose(a.grad, [[2 * low, 2 * high], [-3 * high, -3 * low]], rtol=1e-14)
    for hessian in (tape.hessian(f)(x), tape.trace(f, np.array([0.5, -0.5])).hessian()(x), tape.jacobian(tape.grad(f))(x)):
        np.testing.assert_allclose(hessian, curvature, rtol=1e-13)
