"""tape.trace of functions of Tensors (issue 29): a trace against recording anew (the engine),
against a few lines of numpy written here, and against central differences; guards, retraces,
threads, the out= path, vjp, displays."""
import re
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tape
from tape import GuardError, Tensor

# -- random programs of Tensor operations, run by one interpreter on Tensors or on numpy arrays ----------


class Numpy:
    """The operations as a few lines of numpy (the oracle: no code of the engine)."""
    tanh, sin, exp = np.tanh, np.sin, np.exp

    @staticmethod
    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    @staticmethod
    def relu(x):
        return np.maximum(x, 0.0)

    @staticmethod
    def softmax_cross_entropy(z, labels):
        z = z - z.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels])

    @staticmethod
    def mse(a, b):
        return np.mean((a - b) ** 2)


UNARY = ["tanh", "sin", "sigmoid", "exp", "neg"]
BINARY = ["add", "sub", "mul"]


def run(ops, args, lib, number):
    """The program `ops` on args (Tensors with lib=tape, arrays with lib=Numpy); `number` a Var or a float."""
    pool = list(args)
    for op in ops:
        kind = op[0]
        if kind == "unary":
            x = pool[op[2]]
            pool.append(-x if op[1] == "neg" else getattr(lib, op[1])(x * 0.5))
        elif kind == "binary":
            a, b = pool[op[2]], pool[op[3]]
            pool.append(a + b if op[1] == "add" else a - b if op[1] == "sub" else a * b)
        elif kind == "reduce":
            x = pool[op[2]]
            pool.append(getattr(x, op[1])(axis=op[3], keepdims=op[4]))
        elif kind == "reshape":
            pool.append(pool[op[1]].reshape(op[2]))
        elif kind == "transpose":
            pool.append(pool[op[1]].T)
        elif kind == "index":
            pool.append(pool[op[1]][np.array(op[2])])
        elif kind == "matmul":
            pool.append(pool[op[1]] @ pool[op[2]])
        elif kind == "scale":
            pool.append(pool[op[1]] * number)
    total = number * number
    for k in range(len(args), len(pool)):
        x = pool[k]
        total = total + (x.sum() if hasattr(x, "sum") else x) * (0.1 * (k % 3 + 1))
    return total


SHAPES = [(3, 4), (4,), (1, 4), (3, 1), (), (2, 3, 4), (0, 4)]


@st.composite
def programs(draw, allow_empty=True):
    shapes = [draw(st.sampled_from(SHAPES if allow_empty else SHAPES[:-1])) for _ in range(draw(st.integers(1, 3)))]
    pool = [np.ones(s) for s in shapes]
    ops = []
    for _ in range(draw(st.integers(1, 7))):
        kind = draw(st.sampled_from(["unary", "binary", "reduce", "reshape", "transpose", "index", "matmul", "scale"]))
        i = draw(st.integers(0, len(pool) - 1))
        x = pool[i]
        op = None
        if kind == "unary":
            op = ("unary", draw(st.sampled_from(UNARY)), i)
        elif kind == "binary":
            fits = [j for j, y in enumerate(pool) if _broadcasts(x.shape, y.shape)]
            op = ("binary", draw(st.sampled_from(BINARY)), i, draw(st.sampled_from(fits)))
        elif kind == "reduce" and x.ndim:
            axes = [None, *range(-x.ndim, x.ndim)] + ([(0, -1)] if x.ndim >= 2 else [])
            how = draw(st.sampled_from(["sum", "mean"])) if x.size else "sum"
            op = ("reduce", how, i, draw(st.sampled_from(axes)), draw(st.booleans()))
        elif kind == "reshape" and x.ndim:
            op = ("reshape", i, draw(st.sampled_from([(-1,), tuple(reversed(x.shape))])))
        elif kind == "transpose" and x.ndim:
            op = ("transpose", i)
        elif kind == "index" and x.ndim and x.shape[0]:
            op = ("index", i, draw(st.lists(st.integers(-x.shape[0], x.shape[0] - 1), min_size=1, max_size=4)))
        elif kind == "matmul" and x.ndim in (1, 2):
            fits = [j for j, y in enumerate(pool) if y.ndim in (1, 2) and y.shape[0] == x.shape[-1]]
            if fits:
                op = ("matmul", i, draw(st.sampled_from(fits)))
        elif kind == "scale":
            op = ("scale", i)
        if op is not None:
            run([op], pool, Numpy, 1.0)
            ops.append(op)
    return shapes, ops


def _broadcasts(a, b) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


def _values(shapes, seed, dtype):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(dtype) for s in shapes], float(rng.normal())


def _recorded(ops, arrays, number, argnums):
    """value and gradients by recording anew (tape.value_and_grad: the engine, untraced)."""
    fn = lambda *a: run(ops, a[:-1], tape, a[-1])  # noqa: E731
    return tape.value_and_grad(fn, argnums)(*map(Tensor, arrays), number)


@settings(max_examples=30, deadline=None)
@given(programs(), st.sampled_from([np.float64, np.float32]), st.integers(0, 10**6))
def test_random_programs_trace_as_a_fresh_recording_bit_for_bit(program, dtype, seed):
    shapes, ops = program
    arrays, number = _values(shapes, seed, dtype)
    fn = lambda *a: run(ops, a[:-1], tape, a[-1])  # noqa: E731
    traced = tape.trace(fn, *map(Tensor, arrays), number)
    argnums = tuple(range(len(arrays) + 1))
    for at in (seed + 1, seed + 2):  # new arguments of the traced shapes: nothing recorded
        new, x = _values(shapes, at, dtype)
        value, grads = traced.value_and_grad(argnums)(*new, x)
        expected, expected_grads = _recorded(ops, new, x, argnums)
        assert value == float(expected)
        for g, e, a in zip(grads, expected_grads, new + [x]):
            assert np.shape(g) == np.shape(a) and np.asarray(g).dtype == np.asarray(e).dtype
            assert np.array_equal(g, e)
        assert traced(*new, x) == value


@settings(max_examples=20, deadline=None)
@given(programs(), st.integers(0, 10**6))
def test_random_programs_against_numpy_and_central_differences(program, seed):
    shapes, ops = program
    arrays, number = _values(shapes, seed, np.float64)
    traced = tape.trace(lambda *a: run(ops, a[:-1], tape, a[-1]), *map(Tensor, arrays), number)
    new, x = _values(shapes, seed + 1, np.float64)
    value, grads = traced.value_and_grad(tuple(range(len(new) + 1)))(*new, x)
    oracle = lambda arrays, x: float(run(ops, arrays, Numpy, x))  # noqa: E731
    assert value == pytest.approx(oracle(new, x), rel=1e-12, abs=1e-12)
    h = 1e-6
    for k, a in enumerate(new):
        for j in np.ndindex(a.shape):
            up, down = [b.copy() for b in new], [b.copy() for b in new]
            up[k][j] += h
            down[k][j] -= h
            assert grads[k][j] == pytest.approx((oracle(up, x) - oracle(down, x)) / (2 * h), rel=1e-5, abs=1e-6)
    assert grads[-1] == pytest.approx((oracle(new, x + h) - oracle(new, x - h)) / (2 * h), rel=1e-5, abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(programs(allow_empty=False), st.sampled_from([np.float64, np.float32]), st.integers(0, 10**6))
def test_random_programs_values_in_float32_against_numpy(program, dtype, seed):
    shapes, ops = program
    arrays, number = _values(shapes, seed, dtype)
    traced = tape.trace(lambda *a: run(ops, a[:-1], tape, a[-1]), *map(Tensor, arrays), number)
    new, x = _values(shapes, seed + 3, dtype)
    expected = run(ops, [a.astype(np.float64) for a in new], Numpy, x)
    assert traced(*new, x) == pytest.approx(expected, rel=1e-4 if dtype == np.float32 else 1e-12, abs=1e-4)


# -- the MLP step ------------------------------------------------------------------------------------


def mlp_step(params, X, keep, labels, scale, activation="sigmoid"):
    (W1, b1), (W2, b2) = params
    h = getattr(tape, activation)(X @ W1.T + b1) * keep
    z = h @ W2.T + b2
    return tape.softmax_cross_entropy(z, labels) * scale, z


def numpy_step(params, X, keep, labels, scale, activation):
    """The step's loss, logits and gradients by hand (the course's equations)."""
    (W1, b1), (W2, b2) = params
    z1 = X @ W1.T + b1
    a = 1 / (1 + np.exp(-z1)) if activation == "sigmoid" else np.maximum(z1, 0)
    h = a * keep
    z = h @ W2.T + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    loss = np.mean(-np.log(p[np.arange(len(labels)), labels])) * scale
    dz = (p - np.eye(z.shape[1])[labels]) * (scale / len(labels))
    dh = dz @ W2
    dz1 = dh * keep * (a * (1 - a) if activation == "sigmoid" else (z1 > 0))
    return loss, z, ((dz1.T @ X, dz1.sum(0)), (dz.T @ h, dz.sum(0)))


def _mlp(dtype, seed, batch=8, sizes=(12, 6, 4)):
    rng = np.random.default_rng(seed)
    params = tuple((rng.normal(size=(o, i)).astype(dtype) * 0.3, rng.normal(size=o).astype(dtype) * 0.1)
                   for i, o in zip(sizes, sizes[1:]))
    X = rng.normal(size=(batch, sizes[0])).astype(dtype)
    keep = ((rng.random((batch, sizes[1])) > 0.2) / 0.8).astype(dtype)
    return params, X, keep, rng.integers(0, sizes[-1], batch)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_step_against_recording_and_numpy_by_hand(activation, dtype):
    params, X, keep, labels = _mlp(dtype, 0)
    step = lambda p, X, keep, labels, scale: mlp_step(p, X, keep, labels, scale, activation)  # noqa: E731
    as_tensors = tuple((Tensor(W), Tensor(b)) for W, b in params)
    traced = tape.trace(step, as_tensors, Tensor(X), keep, labels, 2.0)
    vg = traced.value_and_grad(0, has_aux=True)
    for seed in (1, 2):
        params, X, keep, labels = _mlp(dtype, seed)
        (loss, logits), grads = vg(params, X, keep, labels, 2.0)
        with tape.Tape():
            leaves = tuple((Tensor(W), Tensor(b)) for W, b in params)
            l, z = step(leaves, Tensor(X, requires_grad=False), keep, labels, 2.0)
            recorded = tape.gradient(l, [t for pair in leaves for t in pair])
        assert loss == l.value and np.array_equal(logits, z.value) and logits.dtype == dtype
        for g, r in zip([g for pair in grads for g in pair], recorded):
            assert g.dtype == dtype and np.array_equal(g, r)
        hand = numpy_step([(W.astype(float), b.astype(float)) for W, b in params], X.astype(float),
                          keep.astype(float), labels, 2.0, activation)
        tol = 1e-4 if dtype == np.float32 else 1e-10
        assert loss == pytest.approx(hand[0], rel=tol)
        np.testing.assert_allclose(logits, hand[1], rtol=tol, atol=tol)
        for g, e in zip([g for pair in grads for g in pair], [e for pair in hand[2] for e in pair]):
            np.testing.assert_allclose(g, e, rtol=tol, atol=tol)


def test_labels_are_read_anew_and_checked_at_each_call():
    params, X, keep, labels = _mlp(np.float64, 0)
    traced = tape.trace(lambda p, X, labels: mlp_step(p, X, 1.0, labels, 1.0)[0], params and
                        tuple((Tensor(W), Tensor(b)) for W, b in params), X, labels)
    other = (labels + 1) % 4
    expected = numpy_step([(W, b) for W, b in params], X, 1.0, other, 1.0, "sigmoid")[0]
    assert traced(params, X, other) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="label 4 at position 0"):
        traced(params, X, np.full_like(labels, 4))


def test_an_index_array_argument_with_repeats_is_read_anew():
    x = np.arange(5.0)
    traced = tape.trace(lambda t, idx: (t[idx] * t[idx]).sum(), Tensor(x), np.array([0, 0, 3]))
    grad = traced.grad(0)(x, np.array([4, 4, 4]))
    np.testing.assert_array_equal(grad, [0, 0, 0, 0, 3 * 2 * 4.0])
    assert traced(x, np.array([1, 2, 2])) == 1 + 4 + 4


def test_an_integer_array_read_as_numbers_is_a_guard():
    traced = tape.trace(lambda t, n: (t * n).sum(), Tensor(np.ones(3)), np.array([1, 2, 3]))
    assert traced(np.ones(3), np.array([1, 2, 3])) == 6.0
    with pytest.raises(GuardError, match="argument 1"):
        traced(np.ones(3), np.array([1, 2, 4]))


# -- guards and retraces -----------------------------------------------------------------------------


def branchy(x):
    s = x.sum()
    if s > 0:
        return (x * x).sum()
    return (x * 3.0).sum()


def masked(x):
    return (x * (x > 0)).sum()


def test_a_comparison_of_vars_is_a_guard_and_retrace_takes_the_other_branch():
    traced = tape.trace(branchy, Tensor(np.ones(3)))
    with pytest.raises(GuardError, match=r"v\d+ > 0.0.*True when traced"):
        traced(-np.ones(3))
    again = tape.trace(branchy, Tensor(np.ones(3)), retrace=True)
    assert again(-np.ones(3)) == -9.0
    np.testing.assert_array_equal(again.grad(0)(-np.ones(3)), [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(again.grad(0)(np.ones(3)), [2.0, 2.0, 2.0])
    assert len(again.programs) == 2


def test_a_comparison_of_tensors_is_a_guard_on_every_entry():
    traced = tape.trace(masked, Tensor(np.array([1.0, -1.0, 2.0])))
    assert traced(np.array([5.0, -3.0, 1.0])) == 6.0
    with pytest.raises(GuardError, match=r"entry \(1,\)"):
        traced(np.array([5.0, 3.0, 1.0]))
    again = tape.trace(masked, Tensor(np.array([1.0, -1.0, 2.0])), retrace=True)
    assert again(np.array([5.0, 3.0, 1.0])) == 9.0


@pytest.mark.parametrize("other, what", [(np.ones(4), r"shape \(3,\) float64, got shape \(4,\) float64"),
                                         (np.ones(3, np.float32), r"shape \(3,\) float64, got shape \(3,\) float32")])
def test_a_shape_or_dtype_that_differs_is_refused_naming_the_argument(other, what):
    traced = tape.trace(lambda a, b: (a * b).sum(), Tensor(np.ones(3)), Tensor(np.ones(3)))
    with pytest.raises(GuardError, match="argument 1 was traced with " + what):
        traced(np.ones(3), other)
    again = tape.trace(lambda a, b: (a * b).sum(), Tensor(np.ones(3)), Tensor(np.ones(3)), retrace=True)
    assert again(np.ones(3), np.full(3, 2.0)) == 6.0
    assert again(np.ones(4), np.full(4, 2.0)) == 8.0


# -- threads, out=, vjp, displays --------------------------------------------------------------------


def test_two_threads_calling_one_trace_get_their_own_numbers():
    params, X, keep, labels = _mlp(np.float64, 0)
    traced = tape.trace(lambda p, X: mlp_step(p, X, 1.0, labels, 1.0)[0],
                        tuple((Tensor(W), Tensor(b)) for W, b in params), X)
    vg = traced.value_and_grad(0)
    inputs = [np.random.default_rng(s).normal(size=X.shape) for s in range(2)]
    expected = [vg(params, x) for x in inputs]
    failures = []

    def work(k):
        for _ in range(200):
            value, grads = vg(params, inputs[k])
            if value != expected[k][0] or not np.array_equal(grads[0][0], expected[k][1][0][0]):
                failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_out_receives_the_gradients_and_results_are_fresh_by_default():
    x = np.arange(6.0).reshape(2, 3)
    traced = tape.trace(lambda a, b: (a * b).sum(), Tensor(x), Tensor(x))
    grad = traced.grad((0, 1))
    first, second = grad(x, 2 * x), grad(x, 2 * x)
    assert not np.shares_memory(first[0], second[0]) and not np.shares_memory(first[0], x)
    out = (np.empty((2, 3)), np.empty((2, 3)))
    written = grad(x, 2 * x, out=out)
    assert written[0] is out[0] and written[1] is out[1]
    np.testing.assert_array_equal(out[0], 2 * x)
    np.testing.assert_array_equal(out[1], x)
    with pytest.raises(ValueError, match="out="):
        grad(x, x, out=(np.empty((2, 3), np.float32), np.empty((2, 3))))


def test_vjp_with_a_cotangent_other_than_ones():
    rng = np.random.default_rng(3)
    A, x, c = rng.normal(size=(4, 3)), rng.normal(size=3), rng.normal(size=4)
    traced = tape.trace(lambda A, x: tape.tanh(A @ x), Tensor(A), Tensor(x))
    value, vjp_fn = traced.vjp(A, x)
    np.testing.assert_allclose(value, np.tanh(A @ x), rtol=1e-14)
    dA, dx = vjp_fn(c)
    d = c * (1 - np.tanh(A @ x) ** 2)
    np.testing.assert_allclose(dx, A.T @ d, rtol=1e-12)
    np.testing.assert_allclose(dA, np.outer(d, x), rtol=1e-12)


def test_a_traced_output_that_is_an_argument_is_a_copy():
    x = np.ones(3)
    traced = tape.trace(lambda a: (a, a.sum()), Tensor(x))
    out, total = traced(x)
    assert total == 3.0 and not np.shares_memory(out, x)


def test_show_lists_nodes_shapes_dtypes_and_guards(capsys):
    traced = tape.trace(masked, Tensor(np.ones(3, np.float32)))
    traced.show()
    text = capsys.readouterr().out
    assert "x0:tensor[3] float32" in text and "v1:f64[3] = mul v0, const[3]" in text and "guard: v0 > 0" in text
    assert "test_tensor_trace.py" in text
    assert repr(traced) == "<traced masked: 3 nodes (1 input), 1 guard>"
    html = traced._repr_html_()
    assert "mul" in html and "3 nodes (1 input), 1 guard" in html


def test_scalar_arguments_keep_the_scalar_trace():
    traced = tape.trace(lambda x: x * x, 3.0)
    assert type(traced) is tape.Traced and traced(2.0) == 4.0


def test_a_tensor_made_inside_the_function_is_refused():
    with pytest.raises(tape.TraceError, match="made inside the function"):
        tape.trace(lambda x: (x * Tensor(np.ones(3))).sum(), Tensor(np.ones(3)))


def test_a_checked_rule_refuses_as_recording_does():
    traced = tape.trace(lambda x: tape.log(x).sum(), Tensor(np.ones(2)))
    with pytest.raises(ValueError, match="entry \\(1,\\) of log"):
        traced(np.array([1.0, -1.0]))


def test_an_argument_of_another_structure_is_refused_naming_it():
    traced = tape.trace(lambda p: (p["w"] * p["b"]).sum(), {"w": Tensor(np.ones(2)), "b": Tensor(np.ones(2))})
    assert traced({"w": np.ones(2), "b": np.full(2, 3.0)}) == 6.0
    with pytest.raises(GuardError, match=r"argument 0 is not of the traced structure \({'w': leaf, 'b': leaf}\)"):
        traced({"w": np.ones(2), "c": np.ones(2)})


def test_gradients_given_out_share_memory_with_no_other_nor_with_a_cotangent():
    x = np.arange(3.0)
    traced = tape.trace(lambda a, b, c: ((a + b) * 2.0).sum() + c.sum(), Tensor(x), Tensor(x), Tensor(x))
    grads = traced.grad((0, 1, 2))(x, x, x)
    for i in range(3):
        for j in range(i):
            assert not np.shares_memory(grads[i], grads[j])
        assert grads[i].flags.writeable
    np.testing.assert_array_equal(grads, [[2.0] * 3, [2.0] * 3, [1.0] * 3])
    identity = tape.trace(lambda a: a * 1.0, Tensor(x))
    cotangent = np.ones(3)
    (g,) = identity.vjp(x)[1](cotangent)
    assert not np.shares_memory(g, cotangent)


def test_has_aux_needs_a_pair():
    traced = tape.trace(lambda a: a.sum(), Tensor(np.ones(2)))
    with pytest.raises(TypeError, match=r"with has_aux it must return \(value, aux\), it returns leaf"):
        traced.value_and_grad(0, has_aux=True)(np.ones(2))
    assert traced.grad(0)(np.ones(2)).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("read", [lambda t: t.detach(), lambda t: t.numpy(),
                                  lambda t: t[:1].item()])
def test_reading_a_nodes_numbers_while_tracing_is_refused(read):
    with pytest.raises(tape.TraceError, match="while tracing"):
        tape.trace(lambda t: (t * read(t)).sum(), Tensor(np.ones(2)))


def test_stop_gradient_keeps_a_value_without_its_gradient():
    traced = tape.trace(lambda t: (t * tape.stop_gradient(t)).sum(), Tensor(np.ones(2)))
    assert traced(np.array([2.0, 3.0])) == 13.0
    np.testing.assert_array_equal(traced.grad(0)(np.array([2.0, 3.0])), [2.0, 3.0])


# -- the cross-entropy's VJP taking its value's softmax (a residual) -----------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_traced_cross_entropy_vjp_of_extreme_logits_and_a_cotangent(dtype):
    """Rows far beyond exp's range, a row of one class, a cotangent that is not one: against the
    closed form (softmax - one-hot) / rows, the softmax written here."""
    logits = np.array([[1e16, 1e16, -1e16], [0.0, 3e4, 3e4], [-5.0, 2.0, 1.0]], dtype)
    labels = np.array([0, 1, 2])
    traced = tape.trace(lambda z, y: tape.softmax_cross_entropy(z, y) * 1.0, Tensor(logits), labels)
    value, vjp_fn = traced.vjp(logits, labels)
    g = -2.5
    (adjoint, _) = vjp_fn(g)
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    softmax = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = (softmax - np.eye(3)[labels]) * g / 3
    assert adjoint.dtype == dtype
    np.testing.assert_allclose(adjoint, expected, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(value, Numpy.softmax_cross_entropy(z, labels), rtol=1e-6)


@pytest.mark.parametrize("row", [[1.0, -2.0, 0.5], [-1.0, -2.0, -0.5]], ids=["+inf and -inf", "only -inf"])
def test_traced_cross_entropy_refuses_its_gradient_at_infinite_logits_but_gives_its_value(row):
    with np.errstate(all="ignore"):  # the loss is nan or inf there, as recording gives it
        traced = tape.trace(lambda z, y: tape.softmax_cross_entropy(z * 1e308 * 10.0, y), Tensor(np.ones((2, 3))),
                            np.array([0, 1]))
        x = np.array([row, [0.0, 0.0, 0.0]])  # row 0 overflows
        with pytest.raises(ValueError, match="softmax_cross_entropy: no derivative at a slice of only -inf or one "
                                             "holding \\+inf"):
            traced.grad()(x, np.array([0, 1]))
        assert not np.isfinite(traced(x, np.array([0, 1])))
        # the label at -inf beside a +inf: log(inf) - (-inf - 0) = +inf; with only -inf, -inf + inf = nan
        for rows in (x, x[::-1]):  # that row first, and last
            loss = traced(rows, np.array([1, 1]))
            assert loss == np.inf if row[0] > 0 else np.isnan(loss)
        assert traced.grad()(np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]]) * 1e-308, np.array([0, 1])).shape == (2, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [-1, 3, 2**40])
def test_traced_cross_entropy_refuses_a_label_outside_the_classes_by_name(bad, dtype):
    """Labels are inputs of a trace, checked at every call: 0 and 2 (the bounds) are taken; one
    outside [0, 3) is refused, naming it and its place, for the value and for the gradient."""
    traced = tape.trace(lambda z, y: tape.softmax_cross_entropy(z, y), Tensor(np.ones((3, 3), dtype)), np.array([0, 1, 2]))
    x = np.array([[0.5, 1.0, -1.0], [2.0, 0.0, 0.0], [1.0, 1.0, 3.0]], dtype)
    z = x.astype(np.float64) - x.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(3), [2, 0, 2]])
    np.testing.assert_allclose(traced(x, np.array([2, 0, 2])), expected, rtol=1e-6)
    for call in (traced, traced.value_and_grad()):
        with pytest.raises(ValueError, match=re.escape(f"softmax_cross_entropy: label {bad} at position 1 is outside [0, 3)")):
            call(x, np.array([0, bad, 2]))


def test_traced_cross_entropy_of_a_nan_logit_is_nan_in_its_row_not_refused():
    """nan in, nan out: neither a total of 0 nor an infinite one, so not refused; the other row's
    gradient is the closed form's, (softmax - one-hot) / rows."""
    traced = tape.trace(lambda z, y: tape.softmax_cross_entropy(z, y), Tensor(np.ones((2, 3))), np.array([0, 1]))
    x = np.array([[0.5, np.nan, 1.0], [0.0, 1.0, 2.0]])
    with np.errstate(invalid="ignore"):
        value, grad = traced.value_and_grad()(x, np.array([0, 1]))
    softmax = np.exp(x[1]) / np.exp(x[1]).sum()
    assert np.isnan(value) and np.isnan(grad[0]).all()
    np.testing.assert_allclose(grad[1], (softmax - [0.0, 1.0, 0.0]) / 2, rtol=1e-12)


def test_traced_logsumexp_refuses_its_gradient_at_a_row_of_only_minus_infinity():
    """Its gradient is the softmax, 0/0 in that row: refused by name; the value is -inf there."""
    traced = tape.trace(lambda z: (z.logsumexp(axis=1) * 1.0).sum(), Tensor(np.zeros((2, 2))))
    x = np.array([[-np.inf, -np.inf], [0.0, np.log(3.0)]])
    with pytest.raises(ValueError, match="logsumexp: no derivative at a slice of only -inf or one holding \\+inf"):
        traced.grad()(x)
    with np.errstate(divide="ignore"):
        assert traced(x) == -np.inf
    np.testing.assert_allclose(traced.grad()(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])), [[0.5, 0.5], [0.25, 0.75]])


# -- operations of many operands, negative argnums, scalar nodes among matrix nodes ------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_traced_vjp_of_concatenate_and_stack_in_each_operand(dtype):
    """Each operand's adjoint is its own block of the cotangent (numpy slicing written here)."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(3, 2)).astype(dtype), rng.normal(size=(3, 4)).astype(dtype)
    traced = tape.trace(lambda a, b: (tape.concatenate([a, b], axis=1), tape.stack([a, a * 2.0], axis=-1)),
                        Tensor(a), Tensor(b))
    (joined, stacked), vjp_fn = traced.vjp(a, b)
    np.testing.assert_array_equal(joined, np.concatenate([a, b], axis=1))
    np.testing.assert_array_equal(stacked, np.stack([a, a * 2], axis=-1))
    c1, c2 = rng.normal(size=(3, 6)).astype(dtype), rng.normal(size=(3, 2, 2)).astype(dtype)
    da, db = vjp_fn((c1, c2))
    np.testing.assert_allclose(da, c1[:, :2] + c2[..., 0] + 2 * c2[..., 1], rtol=1e-6)
    np.testing.assert_allclose(db, c1[:, 2:], rtol=1e-6)
    assert da.dtype == dtype and db.dtype == dtype


def test_negative_argnums_count_from_the_last_argument_and_one_too_far_is_refused():
    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    traced = tape.trace(lambda a, b: (a * b).sum(), Tensor(a), Tensor(b))
    _, first = traced.value_and_grad(-2)(a, b)
    _, last = traced.value_and_grad(-1)(a, b)
    assert first.tolist() == b.tolist() and last.tolist() == a.tolist()
    with pytest.raises(TypeError, match="takes 2 arguments; argnums names argument -3"):
        traced.value_and_grad(-3)(a, b)


def test_scalar_nodes_and_a_constant_made_inside_among_matrix_nodes():
    """A Var made inside fn is a constant of the trace; a number argument is a Var; the sum a
    0-d node that scalar code goes on from: values and gradients in both arguments."""
    def f(x, s):
        return (x * s).sum() * s + tape.Var(2.0) * s

    x = np.array([1.0, -2.0, 4.0])
    traced = tape.trace(f, Tensor(x), 3.0)
    for s in (3.0, -0.5):
        value, (dx, ds) = traced.value_and_grad((0, 1))(x, s)
        assert value == pytest.approx(x.sum() * s * s + 2 * s, rel=1e-14)
        np.testing.assert_allclose(dx, np.full(3, s * s), rtol=1e-14)
        assert ds == pytest.approx(2 * s * x.sum() + 2.0, rel=1e-14)
    text = format_of(traced)
    assert "= mul v" in text and "= add v" in text


def format_of(traced) -> str:
    import io

    out = io.StringIO()
    traced.show(file=out)
    return out.getvalue()


def test_a_custom_operation_inside_is_refused_naming_its_node():
    def f(x):
        total = x.sum()
        return tape.record(6.0, [total], [2.0])  # its value of the example: a replay could not know it

    with pytest.raises(tape.TraceError, match="node 2 is a custom operation"):
        tape.trace(f, Tensor(np.ones(3)))


def test_a_broadcast_operand_with_a_kept_axis_of_one_behind_a_leading_one():
    """b (3, 1) against a (1, 3, 4): its adjoint is the cotangent summed over the added leading
    axis and over the last, kept (numpy in the test)."""
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=(1, 3, 4)), rng.normal(size=(3, 1))
    traced = tape.trace(lambda a, b: tape.tanh(a) * b, Tensor(a), Tensor(b))
    value, vjp_fn = traced.vjp(a, b)
    c = rng.normal(size=(1, 3, 4))
    da, db = vjp_fn(c)
    np.testing.assert_allclose(db, (c * np.tanh(a)).sum(axis=0).sum(axis=1, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(da, c * b * (1 - np.tanh(a) ** 2), rtol=1e-13)


def test_an_output_of_shape_one_is_differentiated_with_the_arguments_shapes():
    x = np.array([1.5, -2.0, 0.5])
    traced = tape.trace(lambda x: (x * x).sum(axis=0, keepdims=True), Tensor(x))
    value, dx = traced.value_and_grad()(x)
    assert value == pytest.approx(6.5) and dx.shape == (3,)
    np.testing.assert_allclose(dx, 2 * x, rtol=1e-15)


def test_a_constant_output_of_many_entries_is_refused_as_not_a_scalar():
    traced = tape.trace(lambda x: np.ones(3), Tensor(np.ones(2)))
    with pytest.raises(TypeError, match="must be a scalar, got shape \\(3,\\)"):
        traced.value_and_grad()(np.ones(2))


def test_a_dot_of_number_arguments_beside_matrix_nodes():
    """tape.dot of Vars (a scalar reduction node) times a Tensor's sum: gradients in closed form."""
    def f(x, a, b):
        return x.sum() * tape.dot([a, b], [b, 3.0])

    x = np.array([1.0, 2.0, -4.0])
    traced = tape.trace(f, Tensor(x), 2.0, 5.0)
    for a, b in ((2.0, 5.0), (-1.5, 0.25)):
        value, (dx, da, db) = traced.value_and_grad((0, 1, 2))(x, a, b)
        inner, total = a * b + 3.0 * b, x.sum()
        assert value == pytest.approx(total * inner, rel=1e-14)
        np.testing.assert_allclose(dx, np.full(3, inner), rtol=1e-14)
        assert (da, db) == (pytest.approx(total * b, rel=1e-14), pytest.approx(total * (a + 3.0), rel=1e-14))
