"""tape.trace: a program recorded once and replayed at new inputs equals a fresh recording
there, bit for bit; its transforms against closed forms and central differences; batches
against a few lines of numpy; guards, domain errors and bad calls; threads; show()."""
import math
import operator
import os
import threading

import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tape
from tape import Var

finite = dict(allow_nan=False, allow_infinity=False)
ARITHMETIC = (ArithmeticError, ValueError)  # what a rule raises outside its domain


def central_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def same(a, b) -> bool:
    """Bit for bit (== on floats, np.array_equal on arrays; nan is nan), through tuples."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) and all(map(same, a, b))
    if np.ndim(a) or np.ndim(b):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    return float(a) == float(b) or math.isnan(a) and math.isnan(b)


def leaves(x):
    """A Var for a number, an object array of Vars for an array, on the current tape."""
    if np.ndim(x) == 0:
        return Var(float(x))
    return np.array([Var(float(v)) for v in np.ravel(x)], dtype=object).reshape(np.shape(x))


def recorded_jvp(fn, primals, tangents) -> tuple[np.ndarray, np.ndarray]:
    """(values, derivative along `tangents`) of a fresh recording of fn at primals: the
    tangents pushed forward over its edges in their order, here in Python (flat)."""
    with tape.Tape() as t:
        inputs = [leaves(p) for p in primals]
        out = np.asarray(fn(*inputs), dtype=object).ravel()
        start, parent, partial = t.arrays()
    first = sum(np.size(p) for p in primals)
    tangent = np.zeros(len(start) - 1)
    tangent[:first] = np.concatenate([np.ravel(d) for d in tangents])
    for i in range(first, len(tangent)):
        s = 0.0
        for e in range(start[i], start[i + 1]):
            s += float(partial[e]) * float(tangent[parent[e]])
        tangent[i] = s
    values = np.array([o.value if isinstance(o, Var) else float(o) for o in out])
    return values, np.array([tangent[o.node] if isinstance(o, Var) else 0.0 for o in out])


# -- random programs: replay at x1 of a trace made at x0 == a fresh recording at x1 -------------
# Every step stays in its domain wherever it is evaluated (log and sqrt of squares + 1 or of
# exp(...), a division by a square + 1, a power of a positive base or an integer one) and makes
# no comparison of Vars, so a trace holds at every point.

CONSTANTS = [-2.5, -1.0, 0.0, 0.5, 3.0]
UNARY = {
    "sin": tape.sin,
    "cos": tape.cos,
    "tanh": tape.tanh,
    "exp": lambda a: tape.exp(tape.sin(a)),
    "log": lambda a: tape.log(a * a + 1.0),
    "log_exp": lambda a: tape.log(tape.exp(tape.tanh(a))),
    "sqrt": lambda a: tape.sqrt(a * a + 1.0),
    "sqrt_exp": lambda a: tape.sqrt(tape.exp(tape.cos(a))),
    "sigmoid": tape.sigmoid,
    "softplus": tape.softplus,
    "relu": tape.relu,
    "abs": abs,
    "neg": lambda a: -a,
}
BINARY = {  # (both operands values, constant on the right, constant on the left)
    "add": (lambda a, b: a + b, lambda a, c: a + c, lambda a, c: c + a),
    "sub": (lambda a, b: a - b, lambda a, c: a - c, lambda a, c: c - a),
    "mul": (lambda a, b: a * b, lambda a, c: a * c, lambda a, c: c * a),
    "div": (lambda a, b: a / (b * b + 1.0), lambda a, c: a / (c or 4.0), lambda a, c: c / (a * a + 1.0)),
    "pow": (  # integer powers of any base, any power of a positive base, 0 to a positive power
        lambda a, b: (a * a + 0.5) ** tape.sin(b),
        lambda a, c: a ** int(c) if c in (0.0, 3.0) else (a * a + 1.0) ** c,
        lambda a, c: (abs(c) + 0.5) ** a if c != 0.0 else c ** (a * a + 1.0),
    ),
}
REDUCTIONS = {"sum": tape.sum, "logsumexp": tape.logsumexp}


@st.composite
def operands(draw, available: int):
    """Values by index, or constants: a reduction's operands (at least one value)."""
    picks = draw(st.lists(st.one_of(st.integers(0, available - 1), st.sampled_from(CONSTANTS).map(lambda c: ("c", c))),
                          min_size=1, max_size=5))
    return picks + [draw(st.integers(0, available - 1))]


@st.composite
def programs(draw):
    """(vector size, steps): a DAG over the entries of a vector argument and a scalar one."""
    size = draw(st.integers(1, 3))
    steps = []
    for k in range(draw(st.integers(1, 12))):
        available = size + 1 + k
        kind = draw(st.sampled_from(["unary", "binary", "reduction", "dot"]))
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(sorted(UNARY))), draw(st.integers(0, available - 1))))
        elif kind == "binary":
            name, side = draw(st.sampled_from(sorted(BINARY))), draw(st.integers(0, 2))
            i, j = draw(st.integers(0, available - 1)), draw(st.integers(0, available - 1))
            steps.append(("binary", name, side, i, j, draw(st.sampled_from(CONSTANTS))))
        elif kind == "reduction":
            steps.append(("reduction", draw(st.sampled_from(sorted(REDUCTIONS))), draw(operands(available))))
        else:
            ws = draw(operands(available))
            xs = draw(st.lists(st.one_of(st.integers(0, available - 1), st.sampled_from(CONSTANTS).map(lambda c: ("c", c))),
                               min_size=len(ws), max_size=len(ws)))
            steps.append(("dot", ws, xs))
    return size, steps


def run(steps, v, y) -> list:
    """The values of every step, from the vector v and the scalar y."""
    values = list(v) + [y]

    def pick(p):
        return p[1] if isinstance(p, tuple) else values[p]

    for step in steps:
        if step[0] == "unary":
            values.append(UNARY[step[1]](values[step[2]]))
        elif step[0] == "binary":
            _, name, side, i, j, c = step
            f = BINARY[name][side]
            values.append(f(values[i], values[j] if side == 0 else c))
        elif step[0] == "reduction":
            values.append(REDUCTIONS[step[1]]([pick(p) for p in step[2]]))
        else:
            values.append(tape.dot([pick(p) for p in step[1]], [pick(p) for p in step[2]]))
    return values[len(v) + 1 :]


points = st.one_of(st.just(0.0), st.floats(-3, 3, **finite))


@settings(max_examples=50, deadline=None)
@given(programs(), st.lists(points, min_size=4, max_size=4), st.lists(points, min_size=4, max_size=4), st.integers(0, 2**32 - 1))
def test_random_programs_replay_as_a_fresh_recording_bit_for_bit(program, p0, p1, seed):
    size, steps = program
    x0, y0, x1, y1 = np.array(p0[:size]), p0[3], np.array(p1[:size]), p1[3]

    def scalar(v, y):
        return tape.sum(run(steps, v, y)) * 0.5

    def vector(v, y):
        return np.array(run(steps, v, y), dtype=object)

    try:
        fresh = [tape.value_and_grad(scalar, argnums=(0, 1))(x, y) for x, y in ((x0, y0), (x1, y1))]
    except ARITHMETIC:  # a power or a product too large for a float
        assume(False)
    assume(all(np.isfinite(v) and np.isfinite(gx).all() and np.isfinite(gy) for v, (gx, gy) in fresh))
    value, (gx, gy) = fresh[1]

    traced = tape.trace(scalar, x0, y0)
    assert traced.program.guards == []
    assert same(traced(x1, y1), value)
    assert same(traced.value_and_grad((0, 1))(x1, y1), (value, (gx, gy)))
    assert same(traced.value_and_grad((1, 0))(x1, y1), (value, (gy, gx)))
    assert same(traced.grad(0)(x1, y1), gx) and same(traced.grad(1)(x1, y1), gy)
    assert same(traced.value_and_grad(0, batch_argnums=1)(x1, np.array([y1])), (value, gx))  # a batch of one

    traced_vector = tape.trace(vector, x0, y0)
    rng = np.random.default_rng(seed)
    tangents = (rng.normal(size=size), float(rng.normal()))
    cotangent = rng.normal(size=len(steps))
    out, tangent = traced_vector.jvp((x1, y1), tangents)
    assert same((out, tangent), recorded_jvp(vector, (x1, y1), tangents))
    forward = tape.jvp(vector, (x1, y1), tangents)  # forward mode: the same numbers, added in another order
    assert np.allclose(out, forward[0], rtol=1e-12, atol=1e-12) and np.allclose(tangent, forward[1], rtol=1e-9, atol=1e-9)
    fresh_out, fresh_vjp = tape.vjp(vector, (x1, y1))
    out, vjp_fn = traced_vector.vjp(x1, y1)
    assert same(out, fresh_out)
    assert same(vjp_fn(cotangent), fresh_vjp(cotangent))


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_dots_over_runs_of_inputs_with_zeros_replay_as_a_fresh_recording(data):
    """A dot of a run of weights against a run of sample inputs (which a replay may skip the
    zeros of), with zeros, signed zeros and infinities among them."""
    size = data.draw(st.integers(1, 6))
    entries = st.one_of(st.sampled_from([0.0, -0.0, 0.0, 1.5, -2.0, math.inf]), st.floats(-3, 3, **finite))
    w, x = (np.array(data.draw(st.lists(entries, min_size=size, max_size=size))) for _ in range(2))
    lo = data.draw(st.integers(0, size - 1))
    hi = data.draw(st.integers(lo + 1, size))

    def f(w, x):
        return tape.tanh(tape.dot(w[lo:hi], x[lo:hi])) + tape.dot(w, x) * 0.5 - tape.dot(x[::-1], w)

    value, (gw, gx) = tape.value_and_grad(f, (0, 1))(w, x)
    traced = tape.trace(f, np.ones(size), np.ones(size))
    assert same(traced.value_and_grad(0)(w, x), (value, gw))
    assert same(traced.value_and_grad(1)(w, x), (value, gx))
    assert same(traced.value_and_grad(0, batch_argnums=1)(w, x[None]), (value, gw))  # a batch of one
    X = np.array([x, np.where(x == 0.0, 1.0, 0.0), x[::-1]])
    total = 0.0
    for row in X:  # three samples, added in order
        total += tape.value_and_grad(f, (0, 1))(w, row)[0]
    assert same(traced.value_and_grad(0, batch_argnums=1, reduction="sum")(w, X)[0], total)


@pytest.mark.parametrize("order", [[0, 2, 1, 3], [0, 1, 3, 2], [1, 0, 2, 3], [0, 1, 1, 2], [0, 0, 1, 2], [3, 2, 1, 0]])
def test_a_dot_over_almost_a_run_pairs_each_entry_with_its_own(order):
    """Operands that are consecutive but for one swap or repeat, on either side: no run, each
    pair as written (a run's sparse dot would pair w[i] with x[order[0] + i]). Against numpy."""
    w, x = np.array([1.5, -2.0, 0.5, 4.0]), np.array([0.0, 3.0, -1.0, 0.25])  # a zero, which a run would skip

    def f(w, x):
        return tape.dot(w, x[order]) + 2.0 * tape.dot(x[order], w)

    traced = tape.trace(f, np.ones(4), np.ones(4))
    expected_x = np.zeros(4)
    np.add.at(expected_x, order, 3.0 * w)
    value, gw = traced.value_and_grad(0)(w, x)
    assert value == pytest.approx(3.0 * w @ x[order], rel=1e-15) and np.allclose(gw, 3.0 * x[order], rtol=1e-15)
    assert np.allclose(traced.grad(1)(w, x), expected_x, rtol=1e-15)
    X = np.stack([x, x[::-1], np.zeros(4)])
    value, gw = traced.value_and_grad(0, batch_argnums=1, reduction="sum")(w, X)
    assert value == pytest.approx(3.0 * (X[:, order] @ w).sum(), rel=1e-14)
    assert np.allclose(gw, 3.0 * X[:, order].sum(0), rtol=1e-14)


def test_a_run_of_consecutive_nodes_across_two_arguments_is_not_a_run_of_one():
    """x's last entries and z's first are consecutive input nodes; z differentiated, x not: a
    run within one argument would skip z's entries as if they were x's zeros. Against numpy."""
    w, x, z = np.array([1.5, -2.0, 0.5]), np.array([0.0, 3.0, 0.0]), np.array([2.0, -1.0])

    def f(w, x, z):
        return tape.dot(w, [x[1], x[2], z[0]])

    traced = tape.trace(f, np.ones(3), np.ones(3), np.ones(2))
    value, (gw, gz) = traced.value_and_grad((0, 2))(w, x, z)
    assert value == w[0] * 3.0 + w[2] * 2.0
    assert list(gw) == [3.0, 0.0, 2.0] and list(gz) == [0.5, 0.0]
    value, gw = traced.value_and_grad(0, batch_argnums=1, reduction="sum")(w, np.stack([x, x]), z)
    assert value == 2 * (w[0] * 3.0 + w[2] * 2.0) and list(gw) == [6.0, 0.0, 4.0]


# -- every kind of output --------------------------------------------------------------------------


def recorded_values(fn, *args):
    """fn's outputs on a fresh recording at args, each Var read as its value (a list or an array
    as a float array), in fn's structure."""
    def read(o):
        if isinstance(o, tuple):
            return tuple(read(p) for p in o)
        if isinstance(o, tape.VarArray):
            return o.values.copy()
        if isinstance(o, (list, np.ndarray)):
            return np.array([read(p) for p in np.asarray(o, dtype=object).flat]).reshape(np.shape(o))
        return o.value if isinstance(o, Var) else float(o)

    with tape.Tape():
        return read(fn(*[leaves(a) for a in args]))


def every_kind(x, v):
    """A scalar, a list with a constant and an input, a VarArray, an array with a constant, a
    constant, the vector input itself, a nested tuple."""
    return (x * 2.0, [x, 3.0, v[0] * x], tape.VarArray(v) * x + 1.0, np.array([tape.sin(v[1]), 0.5]), 7.0, v, (tape.exp(x),))


def every_kind_jacobians(x, v):
    """d every_kind / dx (12,) and d every_kind / dv (12, 2), written out."""
    jx = np.array([2.0, 1.0, 0.0, v[0], v[0], v[1], 0.0, 0.0, 0.0, 0.0, 0.0, math.exp(x)])
    jv = np.zeros((12, 2))
    jv[3, 0] = x
    jv[4, 0] = jv[5, 1] = x
    jv[6, 1] = math.cos(v[1])
    jv[9, 0] = jv[10, 1] = 1.0
    return jx, jv


def test_every_output_kind_replays_as_a_fresh_recording():
    traced = tape.trace(every_kind, 0.5, np.array([1.0, 2.0]))
    x, v = -1.25, np.array([0.75, -3.0])
    out = traced(x, v)
    expected = recorded_values(every_kind, x, v)
    assert same(out, expected)
    assert [type(o) for o in out] == [float, np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, tuple]
    assert out[1].tolist() == [x, 3.0, v[0] * x] and out[4] == 7.0 and same(out[5], v)


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_jacobian_of_every_output_kind_in_every_mode(mode):
    traced = tape.trace(every_kind, 0.5, np.array([1.0, 2.0]))
    x, v = -1.25, np.array([0.75, -3.0])
    jx, jv = every_kind_jacobians(x, v)
    got_x = traced.jacobian(0, mode=mode)(x, v)
    got_v = traced.jacobian(1, mode=mode)(x, v)
    assert got_x.shape == (12,) and got_v.shape == (12, 2)
    np.testing.assert_allclose(got_x, jx, rtol=1e-15, atol=0)
    np.testing.assert_allclose(got_v, jv, rtol=1e-15, atol=0)


def test_jvp_and_vjp_of_every_output_kind_against_the_jacobians():
    traced = tape.trace(every_kind, 0.5, np.array([1.0, 2.0]))
    x, v = -1.25, np.array([0.75, -3.0])
    jx, jv = every_kind_jacobians(x, v)
    dx, dv = 0.5, np.array([-2.0, 1.5])
    value, tangent = traced.jvp((x, v), (dx, dv))
    assert same(value, traced(x, v))
    flat = np.concatenate([np.ravel(t) for t in tangent[:6]] + [np.ravel(tangent[6][0])])
    np.testing.assert_allclose(flat, jx * dx + jv @ dv, rtol=1e-15)
    assert tangent[1][1] == 0.0 and tangent[4] == 0.0  # constants

    cotangent = np.arange(1.0, 13.0)
    value, vjp_fn = traced.vjp(x, v)
    assert same(value, traced(x, v))
    gx, gv = vjp_fn(cotangent)
    np.testing.assert_allclose(gx, cotangent @ jx, rtol=1e-15)
    np.testing.assert_allclose(gv, cotangent @ jv, rtol=1e-15)
    structured = (1.0, [2.0, 3.0, 4.0], np.array([5.0, 6.0]), [7.0, 8.0], 9.0, np.array([10.0, 11.0]), (12.0,))
    assert same(vjp_fn(structured), (gx, gv))  # a cotangent shaped like the output, or flat
    with pytest.raises(ValueError, match="11 entries, the output 12"):
        vjp_fn(np.ones(11))


@pytest.mark.parametrize(
    "fn, example, at, value, grad",
    [
        (lambda x: x, 1.0, 4.0, 4.0, 1.0),  # an input is the output
        (lambda x: 3.0, 1.0, 4.0, 3.0, 0.0),  # a constant
        (lambda x: np.float32(2.5), 1.0, 4.0, 2.5, 0.0),
        (lambda x: x * x + 1, 1.0, -3.0, 10.0, -6.0),
        (lambda v: v[1], np.zeros(3), np.array([1.0, 2.0, 3.0]), 2.0, np.array([0.0, 1.0, 0.0])),
        (lambda v: tape.VarArray(v).sum(), np.zeros(3), np.array([1.0, 2.0, 3.0]), 6.0, np.ones(3)),
        (lambda v: np.array([tape.dot(v, v)]), np.zeros(2), np.array([3.0, 4.0]), 25.0, np.array([6.0, 8.0])),  # one entry
        (lambda v: tape.VarArray(v).mean(axis=0), np.zeros((2, 1)), np.array([[1.0], [3.0]]), 2.0, np.array([[0.5], [0.5]])),
    ],
    ids=["input", "constant", "numpy-constant", "polynomial", "entry", "vararray-sum", "one-entry-array", "mean-along-an-axis"],
)
def test_scalar_outputs_of_every_kind_differentiate(fn, example, at, value, grad):
    traced = tape.trace(fn, example)
    v, g = traced.value_and_grad()(at)
    assert v == value and type(v) is float
    assert same(g, grad) and np.shape(g) == np.shape(at)
    assert same((v, g), tape.value_and_grad(fn)(at))


def test_a_var_of_another_tape_returned_is_a_constant_of_the_trace():
    with tape.Tape():
        other = Var(5.0)
    traced = tape.trace(lambda x: (x * 2.0, other), 1.0)
    assert traced(3.0) == (6.0, 5.0)
    assert traced.jacobian()(3.0).tolist() == [2.0, 0.0]


def test_arguments_may_be_ints_lists_and_0_d_arrays():
    traced = tape.trace(lambda x, v: x * tape.sum(v), 2, [1, 2])
    assert traced(np.array(3.0), [4, 5]) == 27.0
    assert same(traced.grad((0, 1))(3, [4.0, 5.0]), (9.0, np.array([3.0, 3.0])))


# -- VarArray code ---------------------------------------------------------------------------------


def array_model(W, b, X):
    """Elementwise operations with arrays and constants on both sides, matmuls, reductions
    along each axis: (a scalar loss, a matrix)."""
    W, X = tape.VarArray(W), tape.VarArray(X)
    Z = tape.tanh(X @ W.T + b)  # (5, 3)
    G = tape.sigmoid(Z) * 2.0 - 1.0 / (1.0 + Z * Z) + abs(-Z) ** 2 + tape.relu(Z - 0.1) + np.array([0.5, -1.0, 2.0])
    Q = np.arange(6.0).reshape(2, 3) @ G.T  # a constant matrix on the left
    loss = (G.sum(axis=0).logsumexp() + G.mean(axis=1).sum() + Q.logsumexp(axis=-1).mean()
            + tape.exp(-G).mean() + tape.log(G * G + 1.0).sum(axis=None) / tape.sqrt(Z * Z + 4.0).sum())
    return loss, tape.softplus(G.T @ Z)


@pytest.mark.parametrize("seed", [0, 1])
def test_vararray_code_replays_as_a_fresh_recording(seed):
    rng = np.random.default_rng(seed)
    W, b, X = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(5, 4))
    traced = tape.trace(array_model, np.ones((3, 4)), np.zeros(3), np.ones((5, 4)))
    assert same(traced(W, b, X), recorded_values(array_model, W, b, X))

    def loss(W, b, X):
        return array_model(W, b, X)[0]

    traced_loss = tape.trace(loss, np.ones((3, 4)), np.zeros(3), np.ones((5, 4)))
    value, grads = traced_loss.value_and_grad((0, 1, 2))(W, b, X)
    assert same((value, grads), tape.value_and_grad(loss, (0, 1, 2))(W, b, X))
    assert grads[0].shape == (3, 4) and grads[2].shape == (5, 4)
    f = lambda w: recorded_values(loss, W + w * np.eye(3, 4), b, X)  # noqa: E731 - one direction, by central differences
    assert np.sum(grads[0] * np.eye(3, 4)) == pytest.approx(central_difference(f, 0.0), rel=1e-6)

    def matrix(W, b, X):  # the (3, 3) output, entry by entry
        return np.array(list(array_model(W, b, X)[1].reshape(-1)), dtype=object)

    traced_matrix = tape.trace(matrix, np.ones((3, 4)), np.zeros(3), np.ones((5, 4)))
    tangents = (rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(5, 4)))
    assert same(traced_matrix.jvp((W, b, X), tangents), recorded_jvp(matrix, (W, b, X), tangents))
    cotangent = rng.normal(size=9)
    assert same(traced_matrix.vjp(W, b, X)[1](cotangent), tape.vjp(matrix, (W, b, X))[1](cotangent))


# -- grad, value_and_grad, jacobian, hessian, jvp, vjp against closed forms ------------------------


def three(x, y, z):
    return x * y * y + tape.exp(z) * x


def test_grad_and_value_and_grad_with_int_and_tuple_argnums():
    traced = tape.trace(three, 1.0, 1.0, 1.0)
    x, y, z = 1.5, -2.5, 0.5
    value = x * y * y + math.exp(z) * x
    dx, dy, dz = y * y + math.exp(z), 2 * x * y, math.exp(z) * x
    assert traced(x, y, z) == pytest.approx(value, rel=1e-15)
    assert traced.grad()(x, y, z) == pytest.approx(dx, rel=1e-15)
    assert traced.grad(1)(x, y, z) == pytest.approx(dy, rel=1e-15)
    v, (gz, gx) = traced.value_and_grad((2, 0))(x, y, z)
    assert v == pytest.approx(value, rel=1e-15) and gz == pytest.approx(dz, rel=1e-15) and gx == pytest.approx(dx, rel=1e-15)
    assert traced.grad((1,))(x, y, z) == pytest.approx((dy,), rel=1e-15) and isinstance(traced.grad((1,))(x, y, z), tuple)
    for argnums in (0, 1, 2, (0, 1, 2), (2, 1), (1,)):
        assert same(traced.value_and_grad(argnums)(x, y, z), tape.value_and_grad(three, argnums)(x, y, z))


@pytest.mark.parametrize("mode", ["forward", "reverse", "auto"])
def test_jacobian_with_scalar_and_vector_inputs_and_outputs(mode):
    def polar(v):  # R^2 -> R^3
        return [v[0] * v[1], tape.sin(v[0]), v[1] ** 2 / v[0]]

    a, b = 0.7, -1.3
    expected = np.array([[b, a], [math.cos(a), 0.0], [-(b**2) / a**2, 2 * b / a]])
    np.testing.assert_allclose(tape.trace(polar, np.ones(2)).jacobian(mode=mode)(np.array([a, b])), expected, rtol=1e-15)

    curve = tape.trace(lambda t: [tape.cos(t), tape.sin(t), t * t], 0.0)  # R -> R^3
    np.testing.assert_allclose(curve.jacobian(mode=mode)(a), [-math.sin(a), math.cos(a), 2 * a], rtol=1e-15)
    assert curve.jacobian(mode=mode)(a).shape == (3,)

    norm = tape.trace(lambda v: tape.sqrt(tape.dot(v, v)), np.ones(3))  # R^3 -> R
    v = np.array([1.0, -2.0, 2.0])
    np.testing.assert_allclose(norm.jacobian(mode=mode)(v), v / 3.0, rtol=1e-15)

    scalar = tape.trace(lambda x: x * tape.exp(x), 0.0)  # R -> R
    assert float(scalar.jacobian(mode=mode)(a)) == pytest.approx((1 + a) * math.exp(a), rel=1e-15)

    matrix = tape.trace(lambda M: tape.VarArray(M) * tape.VarArray(M).T, np.ones((2, 2)))  # R^(2x2) -> R^(2x2)
    M = np.array([[1.0, 2.0], [3.0, 4.0]])
    J = matrix.jacobian(mode=mode)(M)
    assert J.shape == (2, 2, 2, 2)
    assert J[0, 1, 0, 1] == M[1, 0] and J[0, 1, 1, 0] == M[0, 1] and J[0, 0, 0, 0] == 2 * M[0, 0] and J[0, 1, 1, 1] == 0.0


def rosenbrock(v):
    return (1.0 - v[0]) ** 2 + 100.0 * (v[1] - v[0] ** 2) ** 2


def test_hessians_against_closed_forms():
    a, b = 1.3, 0.7
    expected = np.array([[2 - 400 * (b - 3 * a * a), -400 * a], [-400 * a, 200.0]])
    np.testing.assert_allclose(tape.trace(rosenbrock, np.zeros(2)).hessian()(np.array([a, b])), expected, rtol=1e-13)

    A = np.array([[2.0, 1.0, 0.0], [-1.0, 3.0, 0.5], [0.0, 4.0, 1.0]])
    quadratic = tape.trace(lambda v: tape.VarArray(v) @ (A @ tape.VarArray(v)), np.zeros(3))
    np.testing.assert_allclose(quadratic.hessian()(np.array([0.3, -1.0, 2.0])), A + A.T, rtol=1e-15)

    v = np.array([0.1, -0.5, 2.0])
    p = np.exp(v) / np.exp(v).sum()
    lse = tape.trace(tape.logsumexp, np.zeros(3))
    np.testing.assert_allclose(lse.hessian()(v), np.diag(p) - np.outer(p, p), rtol=1e-12, atol=1e-15)

    two = tape.trace(lambda c, w: c * tape.sum(w ** 3) + tape.sin(c), 1.0, np.ones(2))  # the second argument's
    w = np.array([0.5, -2.0])
    np.testing.assert_allclose(two.hessian(1)(3.0, w), np.diag(18.0 * w), rtol=1e-15)
    assert float(two.hessian(0)(3.0, w)) == pytest.approx(-math.sin(3.0), rel=1e-15)


@pytest.mark.parametrize("fn, x", [(rosenbrock, np.array([-0.4, 1.9])), (tape.logsumexp, np.array([1.0, -2.0, 0.5])),
                                   (lambda v: tape.sigmoid(v[0] * v[1]) / (1.0 + v[2] ** 2), np.array([0.3, -1.2, 2.0]))],
                         ids=["rosenbrock", "logsumexp", "sigmoid-ratio"])
def test_hessian_agrees_with_tape_hessian(fn, x):
    traced = tape.trace(fn, np.ones_like(x))
    np.testing.assert_allclose(traced.hessian()(x), tape.hessian(fn)(x), rtol=1e-12, atol=1e-14)


def kinked(v):
    """abs, relu, sqrt and powers, whose partials compare their operands."""
    return v[0] * abs(v[1]) + tape.relu(v[0]) ** 3.0 + tape.sqrt(abs(v[1])) + v[1] ** 3.0


def kinked_hessian(x, y):
    s = math.copysign(1.0, y)
    return [[6.0 * max(x, 0.0), s], [s, -0.25 * abs(y) ** -1.5 + 6.0 * y]]


QUADRANTS = [(1.5, 0.5), (-1.5, 0.5), (1.5, -0.5), (-1.5, -0.5)]


@pytest.mark.parametrize("retrace", [False, True])
@pytest.mark.parametrize("at", QUADRANTS)
def test_a_hessian_across_the_kinks_of_the_rules_partials(at, retrace):
    traced = tape.trace(kinked, np.array(at), retrace=retrace)
    hessian = traced.hessian()
    for point in [*QUADRANTS, at]:
        np.testing.assert_allclose(hessian(np.array(point)), kinked_hessian(*point), rtol=1e-12)
    assert len(traced.programs) == 1  # kinked has no branch of its own: one trace of it


def test_a_kink_in_a_trace_replays_as_nan():
    """The slope of sqrt traced at 0: inf, whose derivatives do not exist there (nan)."""
    slope = tape.trace(tape.grad(tape.sqrt), 0.0, retrace=True)
    assert slope(0.0) == math.inf and "kink" in slope.program.format()
    assert math.isnan(slope.grad()(0.0)) and math.isnan(slope.jvp((0.0,), (1.0,))[1])
    assert math.isnan(slope.hessian()(0.0))
    assert slope(4.0) == 0.25 and slope.grad()(4.0) == -1 / 32 and slope.hessian()(4.0) == pytest.approx(3 / 256, rel=1e-15)
    assert math.isnan(slope.grad()(0.0)) and math.isnan(tape.grad(slope)(0.0))  # the trace at 0, kept


def test_jvp_and_vjp_against_closed_forms():
    def f(x, v):  # (x v0 v1, exp(x) + v1) : R x R^2 -> R^2
        return [x * v[0] * v[1], tape.exp(x) + v[1]]

    traced = tape.trace(f, 0.0, np.ones(2))
    x, v, dx, dv = 0.5, np.array([2.0, -3.0]), 1.5, np.array([0.25, -1.0])
    value, tangent = traced.jvp((x, v), (dx, dv))
    np.testing.assert_allclose(value, [x * v[0] * v[1], math.exp(x) + v[1]], rtol=1e-15)
    expected = [v[0] * v[1] * dx + x * v[1] * dv[0] + x * v[0] * dv[1], math.exp(x) * dx + dv[1]]
    np.testing.assert_allclose(tangent, expected, rtol=1e-15)
    value, vjp_fn = traced.vjp(x, v)
    c = np.array([2.0, -1.0])
    gx, gv = vjp_fn(c)
    assert gx == pytest.approx(c[0] * v[0] * v[1] + c[1] * math.exp(x), rel=1e-15)
    np.testing.assert_allclose(gv, [c[0] * x * v[1], c[0] * x * v[0] + c[1]], rtol=1e-15)
    assert same(vjp_fn(np.array([0.0, 1.0])), (math.exp(x), np.array([0.0, 1.0])))  # vjp_fn can be called again
    with pytest.raises(ValueError, match="2 primals but 1 tangents"):
        traced.jvp((x, v), (dx,))


# -- batches (Algorithm 3) ---------------------------------------------------------------------------

D, H, K = 3, 4, 3  # inputs, hidden units, classes


def unpack(p):
    return p[: H * D].reshape(H, D), p[H * D : H * D + H], p[H * D + H :].reshape(K, H)


def loss_and_logits(p, x, y):
    """The softmax cross-entropy of a one-hidden-layer network with parameters p at one sample
    (x, one-hot y), and the logits."""
    W1, b1, W2 = unpack(p)
    h = [tape.sigmoid(tape.dot(W1[j], x) + b1[j]) for j in range(H)]
    logits = [tape.dot(W2[k], h) for k in range(K)]
    return tape.logsumexp(logits) - tape.dot(logits, y), logits


def sample_loss(p, x, y):
    return loss_and_logits(p, x, y)[0]


def numpy_loss_and_gradient(p, X, Y):
    """Per-sample losses, logits and the gradient of their mean, by hand."""
    W1, b1, W2 = unpack(p)
    hidden = 1.0 / (1.0 + np.exp(-(X @ W1.T + b1)))
    logits = hidden @ W2.T
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    losses = lse - (logits * Y).sum(axis=1)
    d_logits = (np.exp(logits - lse[:, None]) - Y) / len(X)
    d_z = (d_logits @ W2) * hidden * (1.0 - hidden)
    gradient = np.concatenate([(d_z.T @ X).ravel(), d_z.sum(axis=0), (d_logits.T @ hidden).ravel()])
    return losses, logits, gradient


def data(n, seed=0, zeros=0.0):
    """Parameters, n samples (a fraction `zeros` of their entries 0, as in a sparse input) and
    one-hot labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    X[rng.random(X.shape) < zeros] = 0.0
    return rng.normal(size=H * D + H + K * H), X, np.eye(K)[rng.integers(0, K, n)]


@pytest.fixture(scope="module")
def traced_loss():
    return tape.trace(sample_loss, np.zeros(H * D + H + K * H), np.zeros(D), np.eye(K)[0])


@pytest.mark.parametrize("n", [1, 37])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("zeros", [0.0, 0.6])
def test_batch_mean_and_sum_of_loss_and_gradient_against_numpy(traced_loss, n, reduction, zeros):
    p, X, Y = data(n, zeros=zeros)
    value, gradient = traced_loss.value_and_grad(0, batch_argnums=(1, 2), reduction=reduction)(p, X, Y)
    losses, _, expected = numpy_loss_and_gradient(p, X, Y)
    scale = 1.0 if reduction == "mean" else n
    assert value == pytest.approx(losses.mean() * scale, rel=1e-13)
    assert gradient.shape == p.shape
    np.testing.assert_allclose(gradient, expected * scale, rtol=1e-11, atol=1e-14)
    assert same(traced_loss.grad(0, batch_argnums=(1, 2), reduction=reduction)(p, X, Y), gradient)


@pytest.mark.parametrize("zeros", [0.0, 0.6])
def test_a_batch_of_one_is_the_fresh_recording_of_that_sample(traced_loss, zeros):
    p, X, Y = data(1, seed=3, zeros=zeros)
    value, grads = tape.value_and_grad(sample_loss, (0, 1, 2))(p, X[0], Y[0])  # every argument a Var, as traced
    assert same(traced_loss.value_and_grad(0, batch_argnums=(1, 2))(p, X, Y), (value, grads[0]))


def test_batch_with_has_aux_gives_per_sample_outputs():
    traced = tape.trace(loss_and_logits, np.zeros(H * D + H + K * H), np.zeros(D), np.eye(K)[0])
    p, X, Y = data(21, seed=1)
    losses, logits, expected = numpy_loss_and_gradient(p, X, Y)
    (value, aux), gradient = traced.value_and_grad(0, batch_argnums=(1, 2), has_aux=True)(p, X, Y)
    assert value == pytest.approx(losses.mean(), rel=1e-13)
    assert aux.shape == (21, K)
    np.testing.assert_allclose(aux, logits, rtol=1e-13)
    np.testing.assert_allclose(gradient, expected, rtol=1e-11, atol=1e-14)
    g, aux_again = traced.grad(0, batch_argnums=(1, 2), has_aux=True)(p, X, Y)
    assert same(g, gradient) and same(aux_again, aux)


def test_batch_with_tuple_argnums_and_a_scalar_batched_argument():
    traced = tape.trace(lambda a, b, x: (a * x - b) ** 2, 1.0, 0.0, 1.0)
    X = np.array([0.5, 1.0, -2.0, 3.0])
    value, (da, db) = traced.value_and_grad((0, 1), batch_argnums=2)(2.0, 1.0, X)
    r = 2.0 * X - 1.0
    assert value == pytest.approx(np.mean(r**2), rel=1e-15)
    assert da == pytest.approx(np.mean(2 * r * X), rel=1e-15) and db == pytest.approx(np.mean(-2 * r), rel=1e-15)
    assert type(da) is float


def test_batch_gradient_is_bit_identical_whatever_the_thread_count(traced_loss):
    p, X, Y = data(203, seed=2)
    run = traced_loss.value_and_grad(0, batch_argnums=(1, 2))
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run(p, X, Y)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = run(p, X, Y)
    finally:
        numba.set_num_threads(threads)
    assert same(one, two)


def test_batch_errors(traced_loss):
    p, X, Y = data(5)
    run = traced_loss.value_and_grad(0, batch_argnums=(1, 2))
    with pytest.raises(ValueError, match=r"batched arguments \(1, 2\) have different batch sizes \[4, 5\]"):
        run(p, X, Y[:4])
    with pytest.raises(ValueError, match=r"argument 1 has shape \(3,\), the trace expects \(batch, \*\(3,\)\)"):
        run(p, X[0], Y)
    with pytest.raises(ValueError, match="overlap"):
        traced_loss.value_and_grad((0, 1), batch_argnums=(1, 2))
    with pytest.raises(ValueError, match="reduction"):
        traced_loss.value_and_grad(0, batch_argnums=1, reduction="max")


def test_an_empty_batch_is_a_clear_error(traced_loss):
    p, X, Y = data(5)
    with pytest.raises(ValueError, match="empty batch"):
        traced_loss.value_and_grad(0, batch_argnums=(1, 2))(p, X[:0], Y[:0])


def test_batched_aux_keeps_the_structure_of_a_tuple():
    traced = tape.trace(lambda w, x: (w * x, (x * 2.0, np.array([w, x]))), 1.0, 1.0)
    X = np.array([1.0, 2.0, 3.0])
    (value, aux), grad = traced.value_and_grad(0, batch_argnums=1, has_aux=True)(2.0, X)
    assert value == 4.0 and grad == 2.0
    assert isinstance(aux, tuple) and len(aux) == 2
    assert same(aux[0], 2.0 * X) and same(aux[1], np.stack([np.full(3, 2.0), X], axis=1))


def test_batched_aux_of_a_loss_that_is_a_constant():
    traced = tape.trace(lambda w, x: (2.0, x * 3.0), 1.0, 1.0)
    (value, aux), grad = traced.value_and_grad(0, batch_argnums=1, has_aux=True)(1.0, np.array([1.0, 2.0, 3.0]))
    assert value == 2.0 and grad == 0.0
    assert same(aux, np.array([3.0, 6.0, 9.0]))


# -- guards -------------------------------------------------------------------------------------------


def branchy(x):
    if x > 0:
        return x * x * x
    return -x * x


BRANCH_LINE = branchy.__code__.co_firstlineno + 1
WHERE = f"{__file__}:{BRANCH_LINE} in branchy"


def test_replay_on_the_traced_side_of_a_branch():
    traced = tape.trace(branchy, 1.0)
    assert traced(2.0) == 8.0 and traced.grad()(2.0) == 12.0
    assert len(traced.program.guards) == 1


@pytest.mark.parametrize("call", [
    lambda t: t(-2.0), lambda t: t.grad()(-2.0), lambda t: t.value_and_grad()(-2.0), lambda t: t.vjp(-2.0),
    lambda t: t.jvp((-2.0,), (1.0,)), lambda t: t.jacobian()(-2.0), lambda t: t.hessian()(-2.0),
], ids=["call", "grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian"])
def test_the_other_side_of_a_branch_raises_guard_error_naming_the_comparison_and_the_line(call):
    traced = tape.trace(branchy, 1.0)
    with pytest.raises(tape.GuardError) as info:
        call(traced)
    message = str(info.value)
    assert "argument 0 > 0.0" in message and WHERE in message
    assert "was True when traced and is False here" in message and "(-2.0 > 0.0)" in message
    assert isinstance(info.value, tape.TraceError)


def test_retrace_gives_each_side_its_value_and_derivatives_and_keeps_the_traces():
    traced = tape.trace(branchy, 1.0, retrace=True)
    for x in (2.0, -2.0, 3.0, -0.5, 0.0):
        cube = x > 0
        assert traced(x) == (x**3 if cube else -x * x)
        assert traced.grad()(x) == (3 * x * x if cube else -2 * x)
        assert traced.hessian()(x) == (6 * x if cube else -2.0)
        assert traced.jacobian(mode="forward")(x) == (3 * x * x if cube else -2 * x)
        assert traced.jvp((x,), (2.0,))[1] == 2.0 * (3 * x * x if cube else -2 * x)
        assert traced.vjp(x)[1](1.0) == (3 * x * x if cube else -2 * x,)
    assert len(traced.programs) == 2 and traced.program is traced.programs[0]
    assert [p.guards[0].outcome for p in traced.programs] == [False, True]  # newest first


def staircase(x):
    """x * (k + 1) on [k, k + 1): one branch per step, up to 12."""
    k = 0
    while x >= k + 1.0 and k < 11:
        k += 1
    return x * (k + 1.0)


def test_retrace_keeps_at_most_8_traces_and_stays_right():
    traced = tape.trace(staircase, 0.5, retrace=True)
    for _ in range(2):
        for k in range(12):
            assert traced(k + 0.5) == (k + 0.5) * (k + 1.0)
            assert traced.grad()(k + 0.25) == k + 1.0
    assert len(traced.programs) == 8


@pytest.mark.parametrize(
    "fn, example, same_side, other_side, words",
    [
        (lambda x, y: max(x, y) * 2.0, (1.0, 2.0), (0.0, 5.0), (5.0, 0.0), ["argument 1 > argument 0", "(0.0 > 5.0)"]),
        (lambda x, y: x * 3.0 if x else y, (1.0, 2.0), (-4.0, 0.0), (0.0, 1.0), ["argument 0 != 0.0", "(0.0 != 0.0)"]),
        (lambda x, y: x * y if x == y else x + y, (1.0, 1.0), (2.0, 2.0), (2.0, 1.0), ["argument 0 == argument 1"]),
        (lambda x, y: x if x >= 0 else -x, (-1.0, 0.0), (-3.0, 0.0), (3.0, 0.0), ["argument 0 >= 0", "was False when traced"]),
        (lambda x, y: x if tape.sin(x) < 0.5 else y, (0.0, 0.0), (0.1, 0.0), (1.0, 0.0), ["v2 (sin) < 0.5"]),
        (lambda x, y: x if x <= y + 1.0 else y, (0.0, 0.0), (1.0, 0.0), (1.5, 0.0), ["argument 0 <= v2 (add)"]),
    ],
    ids=["max", "bool", "equal", "abs-like", "on-a-node", "with-a-node"],
)
def test_every_kind_of_comparison_is_a_guard(fn, example, same_side, other_side, words):
    traced = tape.trace(fn, *example)
    assert traced(*same_side) == recorded_values(fn, *same_side)
    with pytest.raises(tape.GuardError) as info:
        traced(*other_side)
    for w in words:
        assert w in str(info.value)
    assert f"{__file__}:" in str(info.value)
    assert tape.trace(fn, *example, retrace=True)(*other_side) == recorded_values(fn, *other_side)


COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}


@pytest.mark.parametrize("op", sorted(COMPARE))
def test_each_comparison_holds_or_flips_at_its_boundary(op):
    compare = COMPARE[op]

    def fn(w, x):
        return w * x if compare(x, 1.0) else w - x

    traced = tape.trace(fn, 2.0, 0.0)
    X = np.array([0.0, 0.5, 1.0, 2.0])
    flips = [s for s, x in enumerate(X) if compare(x, 1.0) != compare(0.0, 1.0)]
    for x in X:
        if compare(x, 1.0) == compare(0.0, 1.0):
            assert traced(2.0, x) == fn(2.0, x)
        else:
            with pytest.raises(tape.GuardError, match=f"argument 1 {op} 1.0"):
                traced(2.0, x)
    batch = traced.value_and_grad(0, batch_argnums=1)
    with pytest.raises(tape.GuardError, match=f"sample {flips[0]} of the batch"):
        batch(2.0, X)
    kept = X[[s for s in range(len(X)) if s not in flips]]
    assert batch(2.0, kept)[0] == pytest.approx(np.mean([fn(2.0, x) for x in kept]), rel=1e-15)


def test_a_flipped_guard_in_a_batch_names_the_sample():
    traced = tape.trace(lambda w, x: w * x if x > 0 else -w * x, 1.0, 1.0)
    with pytest.raises(tape.GuardError, match=r"argument 1 > 0.0.*sample 3 of the batch.*\(-4.0 > 0.0\)"):
        traced.value_and_grad(0, batch_argnums=1)(1.0, np.array([1.0, 2.0, 3.0, -4.0, 5.0]))


def test_retrace_covers_derivatives_taken_through_the_traced_function():
    traced = tape.trace(branchy, 1.0, retrace=True)
    assert tape.grad(traced)(-1.5) == 3.0  # the other side of the traced one
    traced(-1.0)  # now two traces, the newest for x <= 0
    assert tape.grad(traced)(2.0) == 12.0


# -- what a trace cannot replay ---------------------------------------------------------------------


def custom_double(x):
    return tape.record(2.0, [x], [2.0]) + x  # 2 x at the traced x = 1 (x.value is refused too)


def rewinding(x):
    m = tape.mark()
    x * 2.0
    tape.rewind(m)
    return x


def without_grad(x):
    with tape.no_grad():
        return x * 2.0


@pytest.mark.parametrize("fn, words", [
    (lambda x: float(x) * x, "float()"),
    (lambda x: math.sqrt(x) * x, "float()"),
    (lambda x: x.item() + x, "float()"),
    (without_grad, "no_grad"),
    (rewinding, "rewind"),
    (custom_double, "custom operation"),
], ids=["float", "math.sqrt", "item", "no_grad", "rewind", "custom-op"])
def test_what_a_trace_cannot_replay_raises_trace_error(fn, words):
    before = tape.current_tape()
    with pytest.raises(tape.TraceError, match=words.replace("(", r"\(").replace(")", r"\)")):
        tape.trace(fn, 1.0)
    assert tape.current_tape() is before and before.guards is None  # the trace's tape is gone
    assert tape.grad(lambda x: x * 3.0)(1.0) == 3.0


@pytest.mark.parametrize("op", ["mul", "kink"])
def test_a_custom_operation_named_as_one_of_the_table_is_refused(op):
    """A trace would replay it by the table's rule (a product, a kink), not by your partials."""
    with pytest.raises(ValueError, match=f"record: op '{op}' names an operation of the rule table"):
        tape.trace(lambda x: tape.record(2.0, [x, x], [1.0, 1.0], op), 1.0)


@pytest.mark.parametrize("fn", [lambda x: x * x.value, lambda x: x * 2.0 if x.value > 0 else -x],
                         ids=["product", "branch"])
def test_reading_value_while_tracing_is_a_trace_error_and_the_engine_reads_values_freely(fn):
    with pytest.raises(tape.TraceError, match=r"Var\(1.0\)\.value while tracing.*compare x > 0, which the trace keeps"):
        tape.trace(fn, 1.0)
    with pytest.raises(tape.TraceError, match=r"setting Var\(1.0\)\.value while tracing"):
        tape.trace(lambda x: setattr(x, "value", 2.0), 1.0)
    seen = []

    def engine(v):  # every operation reads its operands' values, and so do repr, format and comparisons
        seen.append(v[0])
        assert repr(v[0]) == "Var(2.0)" and f"{v[1]:.1f}" == "-1.0"
        return tape.sum(list(v)) + tape.dot(v, v) * tape.logsumexp(v) + max(v[0], v[1]) * abs(v[1])

    traced = tape.trace(engine, np.array([2.0, -1.0]))
    a, b = 3.0, -0.5
    assert traced(np.array([a, b])) == pytest.approx(a + b + (a * a + b * b) * math.log(math.exp(a) + math.exp(b)) - a * b)
    assert seen[0].value == 2.0  # a Var kept from a finished trace is a number again
    with tape.Tape():
        x = Var(2.0)
        x.value = 3.0  # outside a trace a Var's value reads and sets (mlp's Parameters set them)
        assert x.value == 3.0 and (x * x).value == 9.0


# -- domain errors at replay -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, good, bad",
    [
        (tape.log, 1.0, -1.0),
        (lambda x: tape.sqrt(x) + 1.0, 1.0, -1.0),
        (lambda x: tape.exp(x * 2.0), 1.0, 400.0),
        (lambda x: 1.0 / x, 1.0, 0.0),
        (lambda x: x / (x - 1.0), 2.0, 1.0),
        (lambda x: x ** 0.5, 1.0, -2.0),
        (lambda x: x ** -1.0, 1.0, 0.0),
        (lambda x: tape.log1p(x), 1.0, -2.0),
    ],
    ids=["log", "sqrt", "exp", "constant-over-x", "x-over-x-minus-1", "x-to-the-0.5", "x-to-the-minus-1", "log1p"],
)
def test_a_domain_error_at_replay_is_the_scalar_paths_error_saying_replaying(fn, good, bad):
    with tape.Tape(), pytest.raises(ARITHMETIC) as fresh:
        fn(Var(bad))
    traced = tape.trace(fn, good)
    with pytest.raises(type(fresh.value)) as replay:
        traced.grad()(bad)
    message = str(replay.value)
    assert str(fresh.value) in message and f"replaying {fn.__name__} at node" in message


@pytest.mark.parametrize("fn", [
    lambda x: x * 2.0 if tape.log(x) > 0.5 else x,  # a guard on the refused node
    lambda x: x * 2.0 if x > tape.log(x) else x,  # a guard comparing with it
    lambda x: x * 2.0 if tape.exp(tape.log(x)) < 10.0 else x,  # a guard on a node after it
], ids=["lhs", "rhs", "later"])
def test_a_domain_error_at_replay_comes_before_the_guards_that_depend_on_it(fn):
    traced = tape.trace(fn, 3.0)
    with pytest.raises(ValueError, match=r"log\(-1.0\)"):
        traced(-1.0)


def test_log_of_a_negative_at_replay_names_the_value():
    traced = tape.trace(lambda x: tape.log(x) * 2.0, 1.0)
    for call in (lambda: traced(-1.0), lambda: traced.value_and_grad()(-1.0), lambda: traced.jacobian()(-1.0)):
        with pytest.raises(ValueError, match=r"log\(-1.0\).*replaying <lambda> at node 1"):
            call()


def test_a_domain_error_in_a_batch_names_the_sample():
    traced = tape.trace(lambda w, x: tape.log(x * w), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"log\(-3.0\).*replaying <lambda> at node \d+ \(sample 2 of the batch\)"):
        traced.value_and_grad(0, batch_argnums=1)(1.0, np.array([1.0, 2.0, -3.0, 4.0]))


# -- bad calls --------------------------------------------------------------------------------------


def scale_sum(x, v):
    return x * tape.sum(v)


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda t: t(1.0), TypeError, ["scale_sum was traced with 2 arguments, called with 1"]),
        (lambda t: t(1.0, np.ones(3), 2.0), TypeError, ["traced with 2 arguments, called with 3"]),
        (lambda t: t(1.0, np.ones(4)), ValueError, ["argument 1 has shape (4,)", "the trace expects (3,)"]),
        (lambda t: t(np.ones(2), np.ones(3)), ValueError, ["argument 0 has shape (2,)", "expects ()"]),
        (lambda t: t.grad(1)(1.0, np.ones((3, 1))), ValueError, ["argument 1 has shape (3, 1)", "expects (3,)"]),
        (lambda t: t("a", np.ones(3)), TypeError, ["argument 0", "number or an array of numbers", "str"]),
        (lambda t: t(1.0, ["a", "b", "c"]), TypeError, ["argument 1", "list"]),
        (lambda t: t(None, np.ones(3)), TypeError, ["argument 0", "NoneType"]),
        (lambda t: t.grad(2)(1.0, np.ones(3)), TypeError, ["called with 2 arguments", "argument 2"]),
        (lambda t: t.grad((0, 0)), ValueError, ["argnums (0, 0) names an argument twice"]),
        (lambda t: t.grad(-1), TypeError, ["argnums", "-1"]),
        (lambda t: t.grad("x"), TypeError, ["argnums", "'x'"]),
        (lambda t: t.grad(()), TypeError, ["argnums", "()"]),
        (lambda t: t.jacobian((0, 1)), TypeError, ["argnums must be one int"]),
        (lambda t: t.jacobian(5)(1.0, np.ones(3)), (TypeError, ValueError), ["argnums", "5"]),
        (lambda t: t.hessian(5)(1.0, np.ones(3)), (TypeError, ValueError), ["argnums", "5"]),
        (lambda t: t.jacobian(0, mode="sideways"), ValueError, ["mode", "'sideways'"]),
        (lambda t: t.jvp((1.0, np.ones(3)), (1.0, np.ones(2))), ValueError, ["shape (2,)", "(3,)"]),
        (lambda t: t.value_and_grad(0, batch_argnums=3)(1.0, np.ones((2, 3))), TypeError, ["argument 3"]),
        (lambda t: t.grad(0, has_aux=True)(1.0, np.ones(3)), TypeError, ["has_aux", "(value, aux)"]),
    ],
    ids=["too-few", "too-many", "shape", "scalar-shape", "extra-axis", "str", "list-of-str", "None", "argnums-range",
         "argnums-twice", "argnums-negative", "argnums-str", "argnums-empty", "jacobian-tuple", "jacobian-range",
         "hessian-range", "mode", "tangent-shape", "batch-range", "has-aux-without-aux"],
)
def test_bad_calls_are_clear_errors(call, error, words):
    traced = tape.trace(scale_sum, 1.0, np.ones(3))
    with pytest.raises(error) as info:
        call(traced)
    for w in words:
        assert w in str(info.value)


def test_argnums_of_any_integer_type_and_anything_else_a_type_error_naming_it():
    traced = tape.trace(three, 1.0, 1.0, 1.0)
    x, y, z = 1.5, -2.5, 0.5
    dx, dy = y * y + math.exp(z), 2 * x * y
    assert traced.grad(np.int64(1))(x, y, z) == pytest.approx(dy, rel=1e-15)
    assert same(traced.value_and_grad([np.int32(1), 0])(x, y, z), tape.value_and_grad(three, (1, 0))(x, y, z))
    assert traced.jacobian(np.int64(0))(x, y, z) == pytest.approx(dx, rel=1e-15)
    assert traced.hessian(np.int64(1))(x, y, z) == pytest.approx(2 * x, rel=1e-15)
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert same(traced.value_and_grad(np.int64(0), batch_argnums=[np.int64(1), 2])(x, X[:, 0], X[:, 1]),
                traced.value_and_grad(0, batch_argnums=(1, 2))(x, X[:, 0], X[:, 1]))
    for bad, what in [(1.0, "got 1.0 (a float)"), (True, "got True (a bool)"), ((0, 1.5), "got (0, 1.5) (entry 1.5 is a float)"),
                      ([0, False], "(entry False is a bool)"), (None, "(a NoneType)"), ({0}, "(a set)")]:
        for call in (lambda: traced.grad(bad), lambda: tape.grad(three, argnums=bad)):
            with pytest.raises(TypeError) as info:
                call()
            assert "argnums must be a non-negative integer or a sequence of them" in str(info.value) and what in str(info.value)
    with pytest.raises(TypeError, match=r"batch_argnums must be a non-negative integer or a sequence of them, got 1.0 \(a float\)"):
        traced.value_and_grad(0, batch_argnums=1.0)


@pytest.mark.parametrize("fn, words", [
    (lambda x: tape.VarArray(x) * 2.0, "must return a scalar to be differentiated (it returns 3 numbers)"),
    (lambda x: (x[0], x[1]), "(it returns 2 numbers)"),
], ids=["vararray", "tuple"])
def test_differentiating_a_non_scalar_output_is_a_type_error(fn, words):
    traced = tape.trace(fn, np.ones(3))
    for call in (traced.grad(), traced.value_and_grad(), traced.hessian()):
        with pytest.raises(TypeError) as info:
            call(np.ones(3))
        assert words in str(info.value)


@pytest.mark.parametrize("args, words", [
    (("a",), "argument 0 must be a number or an array of numbers, got str"),
    ((None,), "argument 0 must be a number or an array of numbers, got NoneType"),
    (({"x": [1.0, "s"]},), "argument 0 at ['x'][1] is a str"),
], ids=["str", "None", "a dict holding a str"])
def test_tracing_at_non_numbers_is_a_type_error(args, words):
    with pytest.raises(TypeError) as info:
        tape.trace(lambda x: x * 2.0, *args)
    assert words in str(info.value)


def test_tracing_a_function_returning_a_non_number_is_a_type_error():
    for returned in ("s", None, [1.0, "s"]):
        with pytest.raises(TypeError, match="returned a"):
            tape.trace(lambda x: returned, 1.0)


# -- threads ------------------------------------------------------------------------------------------


def run_in_threads(work, count=4):
    """Run work(k) in `count` threads at once; return what they raised."""
    errors = []

    def guarded(k):
        try:
            work(k)
        except Exception as e:  # reported by the caller, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_several_threads_calling_one_traced_function_get_the_sequential_results():
    traced = tape.trace(lambda w, x: tape.sigmoid(tape.dot(w, x)) * tape.log(tape.dot(w, w) + 1.0), np.ones(4), np.ones(4))
    run = traced.value_and_grad((0, 1))
    rng = np.random.default_rng(0)
    points = [(rng.normal(size=4), rng.normal(size=4)) for _ in range(40)]
    expected = [tape.value_and_grad(traced.fn, (0, 1))(w, x) for w, x in points]
    results = {}

    def work(k):
        for _ in range(30):
            for i in range(k, len(points), 4):
                value, (gw, gx) = run(*points[i])
                results[k, i] = (value, (gw.copy(), gx.copy()))  # copied at once: see test_results_are_not_overwritten_...
                assert same(traced(*points[i]), value)

    assert run_in_threads(work) == []
    assert all(same(results[i % 4, i], expected[i]) for i in range(len(points)))


def test_threads_retracing_at_once():
    traced = tape.trace(lambda w, x: w * x * x if x > 0 else w - x, 1.0, 1.0, retrace=True)

    def work(k):
        for i in range(300):
            x = (i % 7) - 3.0 + 0.5 * k
            assert traced(2.0, x) == (2.0 * x * x if x > 0 else 2.0 - x)
            assert traced.grad(1)(2.0, x) == (4.0 * x if x > 0 else -1.0)

    assert run_in_threads(work) == []
    assert 2 <= len(traced.programs) <= 8


def test_threads_batching_at_once(traced_loss):
    p, X, Y = data(53, seed=4)
    run = traced_loss.value_and_grad(0, batch_argnums=(1, 2))
    expected = run(p, X, Y)
    results = []

    def work(k):
        for _ in range(10):
            results.append(run(p, X, Y))

    assert run_in_threads(work) == []
    assert len(results) == 40 and all(same(r, expected) for r in results)


def test_retrace_covers_a_batch_on_the_side_of_an_older_trace():
    traced = tape.trace(lambda w, x: w * x * x if x > 0 else w - x, 1.0, 1.0, retrace=True)
    X = np.array([0.5, 1.0, 2.0])
    assert traced(2.0, -1.0) == 3.0  # a second trace, for x <= 0, is now the newest
    value, grad = traced.value_and_grad(0, batch_argnums=1)(2.0, X)
    assert value == pytest.approx(np.mean(2.0 * X * X), rel=1e-15) and grad == pytest.approx(np.mean(X * X), rel=1e-15)


# -- results are the caller's ----------------------------------------------------------------------


def test_results_are_not_overwritten_by_the_next_call():
    traced = tape.trace(lambda w: (tape.sum(w * w), w * 3.0), np.ones(3))
    a, b = np.array([1.0, 2.0, 3.0]), np.array([5.0, 6.0, 7.0])
    out = traced(a)
    jacobian = traced.jacobian()(a)
    tangent = traced.jvp((a,), (np.ones(3),))[1]
    cotangent = traced.vjp(a)[1](np.ones(4))
    traced(b), traced.jacobian()(b), traced.jvp((b,), (np.ones(3),)), traced.vjp(b)[1](np.ones(4))
    assert out[0] == 14.0 and out[1].tolist() == [3.0, 6.0, 9.0]
    assert jacobian[0].tolist() == [2.0, 4.0, 6.0] and tangent[0] == 12.0 and cotangent[0].tolist() == [5.0, 7.0, 9.0]

    square = tape.trace(lambda w: tape.sum(w * w), np.ones(3))
    first = square.grad()(a)
    value, second = square.value_and_grad()(b)
    assert first.tolist() == [2.0, 4.0, 6.0] and second.tolist() == [10.0, 12.0, 14.0]


# -- show, repr, composing ------------------------------------------------------------------------


def tiny(x, y):
    """A docstring kept."""
    z = tape.sin(x * y) + 0.25 * x
    if z > 0:
        return z
    return -z


def test_show_prints_the_program(capsys):
    traced = tape.trace(tiny, 1.5, 2.0)
    traced.show()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["node", "op", "operands", "value"]
    assert lines[1].split() == ["v0", "input", "-", "1.5"]
    assert lines[2].split() == ["v1", "input", "-", "2"]
    assert lines[3].split() == ["v2", "mul", "v0,", "v1"]
    assert lines[4].split() == ["v3", "sin", "v2"]
    assert lines[5].split() == ["v4", "mul", "0.25,", "v0"]
    assert lines[6].split() == ["v5", "add", "v3,", "v4"]
    assert lines[7] == "outputs: v5"
    assert lines[8] == f"guard: v5 (add) > 0.0 was True (at {__file__}:{tiny.__code__.co_firstlineno + 3} in tiny)"
    assert len(lines) == 9
    assert repr(traced) == "<traced tiny: 6 nodes, 7 operands, 1 guards>"
    assert traced.__name__ == "tiny" and traced.__doc__ == "A docstring kept."


def test_a_traced_function_composes_with_the_transforms():
    square_sine = tape.trace(lambda x: tape.sin(x) * x, 1.0)
    x = 0.7
    assert tape.grad(lambda x: square_sine(x) * x)(x) == pytest.approx(2 * x * math.sin(x) + x * x * math.cos(x), rel=1e-15)
    assert tape.grad(tape.grad(square_sine))(x) == pytest.approx(2 * math.cos(x) - x * math.sin(x), rel=1e-15)
    value, tangent = tape.jvp(square_sine, (x,), (2.0,))
    assert value == x * math.sin(x) and tangent == pytest.approx(2.0 * (math.sin(x) + x * math.cos(x)), rel=1e-15)
    hessian = tape.hessian(lambda v: square_sine(v[0]) * v[1])(np.array([x, 2.0]))
    np.testing.assert_allclose(hessian, [[2.0 * (2 * math.cos(x) - x * math.sin(x)), math.sin(x) + x * math.cos(x)],
                                   [math.sin(x) + x * math.cos(x), 0.0]], rtol=1e-14)
    with tape.Tape():
        v = Var(x)
        out = square_sine(v) + v
        out.backward()
        assert isinstance(out, Var) and v.grad == pytest.approx(math.sin(x) + x * math.cos(x) + 1.0, rel=1e-15)


def test_a_traced_function_inside_a_trace_keeps_its_guards():
    inner = tape.trace(branchy, 1.0)
    outer = tape.trace(lambda x: inner(x) * 2.0, 1.0)
    assert outer(3.0) == 54.0 and outer.grad()(3.0) == 54.0
    with pytest.raises(tape.GuardError):
        outer(-3.0)
    with pytest.raises(tape.GuardError, match="argument 0 > 0.0"):
        tape.grad(inner)(-3.0)


def three_guards(x, y):
    """Three comparisons, all read at the node s: one with a constant, two with s itself on
    the right, made after their left operands (inputs)."""
    s = x * y
    out = s
    if s > 1.0:
        out = out * 2.0
    if x < s:
        out = out + x
    if y < s:
        out = out - y
    return out


@pytest.mark.parametrize("at, flipped", [((-0.5, -0.5), "> 1.0"), ((2.0, 0.9), r"argument 0 < v\d+ \("), ((0.9, 2.0), r"argument 1 < v\d+ \(")])
def test_an_outer_trace_keeps_every_guard_of_an_inner_trace(at, flipped):
    """Traced at (2, 3), where all three hold; at each point one of them flips: the outer trace
    refuses it, naming that comparison, and retraced gives the function's own numbers there."""
    inner = tape.trace(three_guards, 2.0, 3.0)
    outer = tape.trace(lambda x, y: inner(x, y) * 1.5, 2.0, 3.0)
    assert outer(2.0, 3.0) == 1.5 * 11.0 and outer(1.5, 4.0) == 1.5 * (12.0 + 1.5 - 4.0)  # the traced side
    with pytest.raises(tape.GuardError, match=flipped):
        outer(*at)
    inner = tape.trace(three_guards, 2.0, 3.0, retrace=True)
    retraced = tape.trace(lambda x, y: inner(x, y) * 1.5, 2.0, 3.0, retrace=True)
    assert retraced(*at) == 1.5 * three_guards(*at)
    x, y = at
    s = x * y
    expected = 1.5 * np.array([y * (1 + (s > 1.0)) + (x < s), x * (1 + (s > 1.0)) - (y < s)])
    assert np.allclose(retraced.grad((0, 1))(*at), expected, rtol=1e-15)


def product_if_above(x, y):
    """Three comparisons read at the last node."""
    s = x * y
    return s if s > 1.0 and x < s and y < s else -s


@pytest.mark.parametrize("at", [(-0.5, -0.5), (2.0, 0.9), (0.9, 2.0)])
def test_an_outer_trace_keeps_every_guard_of_an_inner_trace_made_at_its_last_node(at):
    inner = tape.trace(product_if_above, 2.0, 3.0)
    outer = tape.trace(lambda x, y: inner(x, y) + 0.0, 2.0, 3.0)
    assert outer(1.5, 4.0) == 6.0
    with pytest.raises(tape.GuardError):
        outer(*at)


def test_an_outer_trace_keeps_the_guard_of_an_inner_trace_that_records_no_operation():
    inner = tape.trace(lambda x: x if x > 0.0 else 0.0, 1.0)  # traced where it returns its input
    outer = tape.trace(lambda x: inner(x) * 3.0, 1.0)
    assert outer(2.0) == 6.0
    with pytest.raises(tape.GuardError, match="argument 0 > 0.0"):
        outer(-2.0)


def test_a_comparison_with_a_var_of_another_tape_on_the_left_is_guarded():
    """c < x, max(x, c) and min(x, c), c a Var made outside the traced function: each keeps a
    guard (mirrored: c < x is kept as x > c), so a call on the other side raises GuardError, or
    with retrace=True traces again and gives the other branch's numbers."""
    c = tape.Var(1.0)
    cases = [
        (lambda x: x * 2.0 if c < x else x * 3.0, 2.0, 0.5, 1.5),
        (lambda x: max(x, c) * 1.0, 2.0, 0.5, 1.0),
        (lambda x: min(x, c) + 0.0, 0.5, 2.0, 1.0),
        (lambda x: x * 2.0 if c >= x else x * 3.0, 0.5, 2.0, 6.0),
    ]
    for f, traced_at, other_side, expected in cases:
        with pytest.raises(tape.GuardError):
            tape.trace(f, traced_at)(other_side)
        assert tape.trace(f, traced_at, retrace=True)(other_side) == expected
    with pytest.raises(tape.GuardError):  # at x == c, c < x is False: the guard x > c, not x >= c
        tape.trace(cases[0][0], 2.0)(1.0)


@pytest.mark.parametrize("kind", [np.float32, np.float16])
def test_a_comparison_with_a_low_precision_scalar_is_made_and_replayed_in_float64(kind):
    """0.1 < float32(0.1) is True exactly (float32(0.1) = 0.10000000149...), False when numpy
    rounds 0.1 to float32 first (float16(0.1) is below 0.1 either way): tracing and replaying
    compare the same way, exactly, so the traced point replays its own branch and a point
    across the threshold fails its guard."""
    threshold = kind(0.1)
    f = lambda x: x * 2.0 if x < threshold else x * 3.0  # noqa: E731
    exact = 0.1 < float(threshold)
    traced = tape.trace(f, 0.1)
    assert traced(0.1) == (0.2 if exact else 0.1 * 3.0) == f(tape.Var(0.1)).value
    across = float(threshold) + (1e-9 if exact else -1e-9)  # the other branch's side
    with pytest.raises(tape.GuardError):
        traced(across)
    assert tape.trace(f, 0.1, retrace=True)(across) == across * (3.0 if exact else 2.0)
    reflected = tape.trace(lambda x: x * 2.0 if threshold > x else x * 3.0, 0.1)
    assert reflected(0.1) == (0.2 if exact else 0.1 * 3.0)


def test_reading_a_vararrays_values_while_tracing_is_refused():
    with pytest.raises(tape.TraceError, match=r"\.values while tracing"):
        tape.trace(lambda x: tape.VarArray([x, x]).values[0] * x, 1.0)
    assert tape.grad(lambda x: tape.VarArray([x, x]).values[0] * x)(2.0) == 2.0  # outside a trace: a number


def test_the_hessian_of_an_output_constant_in_the_traced_branch_is_zero():
    """A hinge's flat side: 1 - x if x < 1 else 0, traced at 2: the output is the constant 0."""
    traced = tape.trace(lambda x: 1.0 - x if x < 1.0 else 0.0, 2.0)
    assert traced.hessian()(3.0) == 0.0
    assert traced.grad()(3.0) == 0.0
    np.testing.assert_array_equal(tape.trace(lambda x: 0.0 * x[0] if x[0] > 5.0 else 2.0, np.array([1.0, 2.0])).hessian()(np.array([0.0, 1.0])), np.zeros((2, 2)))


def test_batches_called_from_four_threads_under_numbas_workqueue_layer_do_not_abort():
    """numba's workqueue layer (its fallback without OpenMP or TBB) aborts the process when two
    threads enter a parallel function at once: batches take turns there, and give the numbers
    a single thread gives."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import threading, numpy as np, numba, tape
        f = tape.trace(lambda w, x: tape.sin(w * x[0]) + w * x[1], 0.5, np.array([1.0, 2.0]))
        value_and_grad = f.value_and_grad(0, batch_argnums=1)
        X = np.random.default_rng(0).random((500, 2))
        expected = value_and_grad(0.5, X)
        results = []
        def work():
            for _ in range(20):
                results.append(value_and_grad(0.5, X))
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(numba.threading_layer(), len(results), all(r == expected for r in results))
    """)
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["workqueue", "80", "True"]
