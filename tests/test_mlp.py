"""The MLP on tape leaves: gradients against finite differences, the paths of Algorithm 3
against each other, the optimizers against the notes' formulas, and bad input."""
import math
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tape
from mlp import init, losses
from mlp.accumulate import PATHS, MatrixAccumulator, InputRows, TracedAccumulator, accumulate
from mlp.nn import MLP
from mlp.optim import OPTIMIZERS, SGD, Adam, Momentum, Nesterov, RMSProp, UnbiasedMomentum
from tape import Tape


def batch(rng, n, n_in, classes, sparsity=0.5):
    X = rng.random((n, n_in)) * (rng.random((n, n_in)) > sparsity)
    return X, rng.integers(0, classes, n)


def mean_loss(model, X, y, theta):
    """The batch's mean cross-entropy at parameters theta, by plain numpy (no tape)."""
    saved = model.params.values.copy()
    model.params.values[:] = theta
    log_p = losses.log_softmax(model.logits(X))
    model.params.values[:] = saved
    return -log_p[np.arange(len(y)), y].mean()


def at_a_kink(model, X, h=1e-5):
    """Whether a ReLU's input is within h of 0 for some sample (a dead unit feeding the next
    layer's zero bias, say), where central differences average the two one-sided slopes."""
    x = X
    for layer in model.layers[:-1]:
        z = x @ layer.weights.values.T + (layer.bias.values if layer.has_bias else 0.0)
        if np.any(np.abs(z) < h):
            return True
        x = np.maximum(z, 0.0)
    return False


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=2),
    st.sampled_from(["sigmoid", "tanh", "relu"]),
    st.integers(1, 6),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_every_path_gives_the_finite_difference_gradient(hidden, activation, n, bias, seed):
    rng = np.random.default_rng(seed)
    with Tape():
        model = MLP([5, *hidden, 3], activation=activation, bias=bias, seed=seed)
        X, y = batch(rng, n, 5, 3)
        assume(activation != "relu" or not at_a_kink(model, X))  # finite differences fail there
        theta = model.params.values.copy()
        expected = np.array([
            (mean_loss(model, X, y, theta + h) - mean_loss(model, X, y, theta - h)) / 2e-6
            for h in np.eye(len(theta)) * 1e-6
        ])
        for path in PATHS:
            model.zero_grad()
            result = accumulate(model, X, y, path=path)
            np.testing.assert_allclose(model.params.grad, expected, rtol=1e-4, atol=1e-7, err_msg=path)
            assert result.loss == pytest.approx(mean_loss(model, X, y, theta))


def structure(t: Tape, first: int) -> Counter:
    """The nodes from `first` on, each as (op, its parents' structures with partials), so that
    two recordings compare equal whatever order they put independent nodes in."""
    keys = {}
    for i, op, parents, partials in t.nodes():
        if i >= first:
            keys[i] = (op, tuple(sorted((keys.get(p, ("leaf", p)), round(d, 10)) for p, d in zip(parents, partials))))
    return Counter(keys.values())


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
def test_scalar_and_vector_paths_record_the_same_nodes(activation):
    """The issue's invariant, for a whole net: nodes, parents and partials, up to order."""
    rng = np.random.default_rng(7)
    x = np.where(rng.random(12) < 0.5, 0.0, rng.random(12))
    with Tape():
        model = MLP([12, 5, 4, 3], activation=activation, seed=1)
        t = model.tape  # its own tape
        recordings = {}
        for path in ("scalar", "vector"):
            mark = t.mark()
            logits = model(x if path == "scalar" else x[None])
            losses.softmax_cross_entropy(logits, 2 if path == "scalar" else [2])
            recordings[path] = (structure(t, mark), len(t) - mark, t.num_edges)
            t.rewind(mark)
    assert recordings["scalar"] == recordings["vector"]


def test_the_traced_path_replays_the_scalar_model():
    """The trace is the scalar path's recording, replayed: the same loss and gradient, sample
    by sample, as the course's loop; the mean over a batch as the scalar path's."""
    rng = np.random.default_rng(8)
    X, y = batch(rng, 21, 9, 4)  # 21: two chunks of 16, the second short
    with Tape():
        model = MLP([9, 6, 4], activation="tanh", seed=4)
        traced = TracedAccumulator(model)
        for x, label in zip(X[:3], y[:3]):
            with Tape():
                v = [tape.Var(w) for w in model.parameters().values]
                loss = losses.softmax_cross_entropy(model.apply(v, list(x)), int(label))
                loss.backward()
                expected = np.array([w.grad for w in v])
            model.zero_grad()
            result = traced.accumulate(InputRows(x[None]), [0], label[None], 1.0)
            assert result.loss == loss.value
            np.testing.assert_array_equal(model.params.grad, expected)
        model.zero_grad()
        accumulate(model, X, y, path="scalar")
        expected = model.params.grad.copy()
        model.zero_grad()
        result = traced.accumulate(InputRows(X), np.arange(len(X)), y, 1 / len(X))
        np.testing.assert_allclose(model.params.grad, expected, rtol=1e-12, atol=1e-15)
        assert result.correct == int((model.predict(X) == y).sum())


def test_sum_reduction_is_algorithm_3s_plain_sum():
    rng = np.random.default_rng(2)
    X, y = batch(rng, 5, 6, 3)
    with Tape():
        model = MLP([6, 4, 3])
        accumulate(model, X, y, path="vector")
        mean = model.params.grad.copy()
        for path in PATHS:
            model.zero_grad()
            accumulate(model, X, y, path=path, reduction="sum")
            np.testing.assert_allclose(model.params.grad, 5 * mean, rtol=1e-12, err_msg=path)


def test_squared_error_on_every_path():
    rng = np.random.default_rng(4)
    X, y = batch(rng, 4, 5, 3)
    with Tape():
        model = MLP([5, 3, 3], seed=3)
        grads = {}
        for path in PATHS:
            model.zero_grad()
            accumulate(model, X, y, loss="squared_error", path=path)
            grads[path] = model.params.grad.copy()
        for path in PATHS:
            np.testing.assert_allclose(grads["scalar"], grads[path], rtol=1e-12, err_msg=path)


def test_parameters_are_leaves_below_every_mark():
    with Tape():
        model = MLP([3, 2, 2])
        t = model.tape  # its own tape
        params = model.parameters()
        assert len(params) == 3 * 2 + 2 + 2 * 2 + 2
        assert list(params.nodes) == list(range(len(params)))
        assert all(t.node(i)[0] == "leaf" for i in params.nodes)
        mark = t.mark()
        for _ in range(3):
            accumulate(model, np.ones((2, 3)), np.array([0, 1]), path="scalar")
            assert len(t) == mark
        p = list(params)[0]
        assert isinstance(p, tape.Var) and p.value == params.values[0]


def test_parameter_vars_follow_optimizer_steps():
    with Tape():
        model = MLP([3, 2])
        opt = SGD(model.parameters(), lr=0.5)
        model.params.grad[:] = 1.0
        opt.step()
        assert [v.value for v in model.parameters()] == pytest.approx(model.params.values.tolist())


def test_reset_makes_the_model_stale_until_attached_again():
    with Tape():
        model = MLP([4, 3, 2])
        t = model.tape  # its own tape
        x = np.ones(4)
        before = model.predict(x)
        t.reset()
        with pytest.raises(tape.StaleVarError, match=r"model.tape.reset\(\).*model.attach\(\)"):
            model(x)
        with pytest.raises(tape.StaleVarError):
            accumulate(model, x[None], np.array([1]))
        model.attach()
        assert model.predict(x) == before and model.tape is not t and len(model.tape) == len(model.parameters())
        accumulate(model, x[None], np.array([1]), path="scalar")


def test_a_model_keeps_its_weights_on_a_tape_of_its_own_and_the_users_tape_stays_empty():
    """Building, running and training a model records nothing on the tape the user computes on;
    resetting the user's tape leaves the model working."""
    user = tape.Tape()
    with user:
        model = MLP([4, 3, 2], seed=1)
        other = MLP([4, 3, 2], seed=1)
        assert len(user) == 0 and model.tape is not user and model.tape is not other.tape
        assert len(model.tape) == len(model.parameters()) == 4 * 3 + 3 + 3 * 2 + 2
        z = model([1.0, 0.0, -1.0, 2.0])
        losses.softmax_cross_entropy(z, 1).backward()
        accumulate(model, np.ones((3, 4)), np.array([0, 1, 1]))
        model.predict(np.ones((2, 4)))
        assert len(user) == 0 and z[0].tape is model.tape
        user.reset()
        np.testing.assert_array_equal(model.predict(np.eye(4)), other.predict(np.eye(4)))


def test_state_dict_round_trip_and_shape_errors():
    with Tape():
        a, b = MLP([4, 3, 2], seed=1), MLP([4, 3, 2], seed=2)
        b.load_state_dict(a.state_dict())
        np.testing.assert_array_equal(a.params.values, b.params.values)
        state = a.state_dict()
        state["layers.0.weight"] = np.zeros((3, 5))
        with pytest.raises(ValueError, match=r"layers.0.weight has shape \(3, 5\), the model expects \(3, 4\)"):
            b.load_state_dict(state)
        with pytest.raises(KeyError, match="missing keys"):
            b.load_state_dict({})


@pytest.mark.parametrize("bias", [True, False])
def test_each_layers_views_are_its_block_of_the_flat_layout_written_out_here(bias):
    """[3, 2, 4]: W0 (2, 3), b0 (2,), W1 (4, 2), b1 (4,) one after the other (without biases: W0, W1)."""
    with Tape():
        model = MLP([3, 2, 4], bias=bias)
    flat = np.arange(len(model.parameters()), dtype=float)
    blocks = [(0, 6), (6, 8), (8, 16), (16, 20)] if bias else [(0, 6), None, (6, 14), None]
    shapes = [(2, 3), (2,), (4, 2), (4,)]
    for i, layer in enumerate(model.layers):
        for view, block, shape in zip(layer.views(flat), blocks[2 * i : 2 * i + 2], shapes[2 * i : 2 * i + 2]):
            if block is None:
                assert view is None
            else:
                np.testing.assert_array_equal(view, np.arange(*block, dtype=float).reshape(shape))
                assert view.base is flat  # a view: writing it writes the flat vector
        np.testing.assert_array_equal(layer.weights.values, layer.views(model.parameters().values)[0])


def test_bad_input_names_what_was_expected_and_what_came():
    with Tape():
        model = MLP([4, 3, 2])
        with pytest.raises(ValueError, match=r"one sample of 4 inputs or a batch of shape \(n, 4\), got shape \(5,\)"):
            model(np.ones(5))
        with pytest.raises(ValueError, match=r"batch X of shape \(n, 4\), got \(2, 3\)"):
            accumulate(model, np.ones((2, 3)), np.array([0, 1]))
        with pytest.raises(ValueError, match="label 7 at position 1 is outside"):
            accumulate(model, np.ones((2, 4)), np.array([0, 7]))
        with pytest.raises(ValueError, match="integer labels"):
            accumulate(model, np.ones((2, 4)), np.array([0.0, 1.0]))
        with pytest.raises(ValueError, match="unknown path"):
            accumulate(model, np.ones((2, 4)), np.array([0, 1]), path="magic")
        with pytest.raises(ValueError, match="expected 1 integer labels"):
            losses.softmax_cross_entropy(model(np.ones((1, 4))), [0, 1])
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        MLP([2, 2], activation="gelu")
    with pytest.raises(ValueError, match="at least two positive layer sizes"):
        MLP([4])
    with pytest.raises(ValueError, match="unknown initialiser"):
        MLP([2, 2], init="ones")
    with Tape():
        x = tape.VarArray(np.ones((1, 4)))
    with Tape():
        with pytest.raises(ValueError, match="two tapes"):
            MLP([4, 2])(x)


# -- losses ----------------------------------------------------------------------------------------


def test_cross_entropy_gives_the_logits_adjoints_p_minus_y_and_is_stable():
    with Tape() as t:
        logits = [tape.Var(v) for v in (1000.0, -1000.0, 0.0)]
        loss = losses.softmax_cross_entropy(logits, 1)
        assert loss.value == pytest.approx(2000.0)  # log(e^1000 + ...) - (-1000), without overflow
        loss.backward()
        assert [z.grad for z in logits] == pytest.approx([1.0, -1.0, 0.0])  # p - y
        assert t.node(loss.node)[0] == "sub" and t.node(loss.node - 1)[0] == "logsumexp"
    z = np.array([0.5, -1.0, 2.0, 0.0])
    p = np.exp(z) / np.exp(z).sum()
    for target in (2, np.eye(4)[2], np.array([0.1, 0.2, 0.3, 0.4])):
        y = np.eye(4)[2] if np.ndim(target) == 0 else target
        with Tape():
            logits = [tape.Var(v) for v in z]
            loss = losses.softmax_cross_entropy(logits, target)
            loss.backward()
            assert loss.value == pytest.approx(-(y * np.log(p)).sum())
            np.testing.assert_allclose([v.grad for v in logits], p - y, rtol=1e-12, atol=1e-15)
        with Tape():  # a batch of two, labels or target rows
            logits = tape.VarArray(np.stack([z, z[::-1]]))
            labels = [2, 1] if np.ndim(target) == 0 else np.stack([y, y[::-1]])
            loss = losses.softmax_cross_entropy(logits, labels)
            loss.sum().backward()
            np.testing.assert_allclose(logits.grad[0], p - y, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(loss.values, [-(y * np.log(p)).sum()] * 2, rtol=1e-12)


def test_log_softmax_of_rows_of_very_different_scales():
    """Each row is shifted by its own largest logit: rows 1000 apart give the same log p."""
    row = np.array([0.0, 1.0, -1.0])
    expected = row - math.log(math.exp(0.0) + math.exp(1.0) + math.exp(-1.0))
    logits = np.stack([row + 1000.0, row, row - 1000.0, 2 * row - 700.0])
    log_p = losses.log_softmax(logits)
    np.testing.assert_allclose(log_p[:3], np.tile(expected, (3, 1)), rtol=1e-13)
    np.testing.assert_allclose(log_p[3], 2 * row - math.log(math.exp(0.0) + math.exp(2.0) + math.exp(-2.0)), rtol=1e-13)
    np.testing.assert_allclose(losses.softmax(logits).sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(losses.log_softmax(row + 1000.0), expected, rtol=1e-13)  # one sample: its last axis


def test_squared_error_is_the_courses_cost():
    with Tape():
        out = [tape.Var(0.2), tape.Var(0.9)]
        c = losses.squared_error(out, 1)
        assert c.value == pytest.approx(0.2**2 + 0.1**2)
        c.backward()
        assert [o.grad for o in out] == pytest.approx([0.4, -0.2])


# -- initialisers, as the notes give them -----------------------------------------------------------


@pytest.mark.parametrize(
    "name, bound, std",
    [
        ("xavier_uniform", math.sqrt(6 / (400 + 100)), None),
        ("xavier_normal", None, math.sqrt(2 / (400 + 100))),
        ("kaiming_uniform", math.sqrt(2) * math.sqrt(3 / 400), None),
        ("kaiming_normal", None, math.sqrt(2) / math.sqrt(400)),
        ("lecun_uniform", 1 / math.sqrt(400), None),
    ],
)
def test_initialisers_follow_the_notes_formulas(name, bound, std):
    w = init.INITIALISERS[name](400, 100, np.random.default_rng(0))
    assert w.shape == (100, 400)
    if bound is not None:
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
        assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    else:
        assert w.std() == pytest.approx(std, rel=0.02) and abs(w.mean()) < 0.01 * std * 10
    np.testing.assert_array_equal(w, init.INITIALISERS[name](400, 100, np.random.default_rng(0)))


def test_model_init_is_seeded_and_pytorch_default_draws_biases():
    with Tape():
        assert np.array_equal(MLP([5, 4], seed=3).params.values, MLP([5, 4], seed=3).params.values)
        assert not np.array_equal(MLP([5, 4], seed=3).params.values, MLP([5, 4], seed=4).params.values)
        assert np.all(MLP([5, 4]).layers[0].bias.values == 0.0)
        b = MLP([4, 3], init="lecun_uniform").layers[0].bias.values
        assert np.all(np.abs(b) <= 0.5) and np.any(b != 0.0)


# -- optimizers, step by step against the notes' formulas on a quadratic ---------------------------


A = np.array([1.0, 4.0, 0.5])  # f(theta) = 1/2 sum A theta^2, grad = A theta
THETA0 = np.array([1.0, -2.0, 3.0])


def run(optimizer_class, steps=5, **options):
    """theta after each step of `optimizer_class` on the quadratic (the gradient at the
    parameters the optimizer leaves; for Nesterov those are its look-ahead point)."""
    with Tape():
        model = MLP([3, 1], bias=False)
        params = model.parameters()
        params.values[:] = THETA0
        opt = optimizer_class(params, **options)
        seen = []
        for _ in range(steps):
            opt.zero_grad()
            params.grad[:] = A * params.values
            opt.step()
            seen.append(params.values.copy() if optimizer_class is not Nesterov else params.values + opt.lr * opt.v)
        return seen


def test_sgd():
    theta, lr = THETA0.copy(), 0.1
    for seen in run(SGD, lr=lr):
        theta = theta - lr * A * theta
        np.testing.assert_allclose(seen, theta)


@pytest.mark.parametrize("cls", [Momentum, UnbiasedMomentum])
def test_momentum_and_unbiased_momentum(cls):
    theta, v, lr, beta = THETA0.copy(), np.zeros(3), 0.1, 0.8
    for t, seen in enumerate(run(cls, lr=lr, beta=beta)):
        v = beta * v + (1 - beta) * A * theta
        theta = theta - lr * (v / (1 - beta ** (t + 1)) if cls is UnbiasedMomentum else v)
        np.testing.assert_allclose(seen, theta, rtol=1e-12)


def test_nesterov_takes_the_gradient_at_the_look_ahead_point():
    theta, v, lr, beta = THETA0.copy(), np.zeros(3), 0.1, 0.8
    for seen in run(Nesterov, lr=lr, beta=beta):
        v = beta * v + (1 - beta) * A * (theta - lr * v)
        theta = theta - lr * v
        np.testing.assert_allclose(seen, theta, rtol=1e-12)


def test_rmsprop():
    theta, s, lr, beta, eps = THETA0.copy(), np.zeros(3), 0.01, 0.9, 1e-8
    for seen in run(RMSProp, lr=lr, beta=beta, eps=eps):
        g = A * theta
        s = beta * s + (1 - beta) * g**2
        theta = theta - lr * g / (np.sqrt(s) + eps)
        np.testing.assert_allclose(seen, theta, rtol=1e-12)


def test_adam():
    theta, m, v, lr, b1, b2, eps = THETA0.copy(), np.zeros(3), np.zeros(3), 0.05, 0.9, 0.999, 1e-8
    for t, seen in enumerate(run(Adam, lr=lr, beta1=b1, beta2=b2, eps=eps), start=1):
        g = A * theta
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(seen, theta, rtol=1e-12)


def test_weight_decay_adds_lambda_theta_to_the_gradient():
    theta, lr, wd = THETA0.copy(), 0.1, 0.01
    for seen in run(SGD, lr=lr, weight_decay=wd):
        theta = theta - lr * (A * theta + wd * theta)
        np.testing.assert_allclose(seen, theta)

    theta, m, v, lr, wd = THETA0.copy(), np.zeros(3), np.zeros(3), 0.05, 0.1
    for t, seen in enumerate(run(Adam, lr=lr, weight_decay=wd), start=1):  # the decay enters m and v too
        g = A * theta + wd * theta
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
        theta = theta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(seen, theta, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_step_leaves_the_gradient_accumulator_as_it_was(name):
    """With weight decay too: the decay is added to a copy, not to params.grad, which the
    training loop clips and reads after the step."""
    with Tape():
        model = MLP([3, 2])
        params = model.parameters()
        opt = OPTIMIZERS[name](params, lr=0.1, weight_decay=0.5)
        grad = np.arange(1.0, len(params) + 1)
        params.grad[:] = grad
        before = params.values.copy()
        opt.step()
        np.testing.assert_array_equal(params.grad, grad)
        assert not np.array_equal(params.values, before)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_a_step_from_a_gradient_given_times_a_scale_is_the_step_from_that_gradient_kept(name, dtype, scale):
    """step(grad, scale) steps as step() would from scale * grad in float64 in the accumulator,
    and leaves that there (the float64 gradient clipped), whatever grad's dtype; the one given
    is not changed. Two steps, so that the optimizers' state takes the gradient too."""
    with Tape():
        model = MLP([3, 2])
        twin = MLP([3, 2])
    given, oracle = OPTIMIZERS[name](model.parameters(), lr=0.1, weight_decay=0.2), \
        OPTIMIZERS[name](twin.parameters(), lr=0.1, weight_decay=0.2)
    rng = np.random.default_rng(1)
    for _ in range(2):
        grad = rng.normal(size=len(model.parameters())).astype(dtype)
        before = grad.copy()
        twin.parameters().grad[:] = scale * grad.astype(np.float64)
        given.step(grad, scale)
        oracle.step()
        np.testing.assert_array_equal(grad, before)
        np.testing.assert_array_equal(model.parameters().grad, scale * grad.astype(np.float64))
        np.testing.assert_array_equal(model.parameters().values, twin.parameters().values)


@pytest.mark.parametrize("grad, words", [(np.zeros(4), "expected floats of shape (9,), got float64 of shape (4,)"),
                                         (np.zeros(9, np.int64), "expected floats of shape (9,), got int64 of shape (9,)")])
def test_a_step_refuses_a_gradient_of_another_shape_or_of_integers(grad, words):
    with Tape():
        model = MLP([2, 3])
    opt = SGD(model.parameters(), lr=0.1)
    before = model.parameters().values.copy()
    with pytest.raises(ValueError, match=re.escape(f"step(grad=...): {words}")):
        opt.step(grad)
    assert opt.steps == 0 and np.array_equal(model.parameters().values, before)


@pytest.mark.parametrize("norm, max_norm", [(0.6, 0.5), (0.4, 0.5), (3.0, 4.0), (1.5, 1.0), (0.9, 1.0), (5.0, 5.0)])
def test_clipping_scales_a_longer_gradient_down_to_the_norm_and_leaves_a_shorter_one(norm, max_norm):
    """Near 1 and on either side of it: a norm's square and the norm order differently there."""
    from mlp._updates import clip_scale

    direction = np.array([3.0, -4.0, 0.0, 12.0]) / 13.0
    for dtype in (np.float64, np.float32):
        g = (norm * direction).astype(dtype)
        scale = clip_scale(g, max_norm)
        assert scale == 1.0 if norm < max_norm else scale <= 1.0
        np.testing.assert_allclose(scale * g.astype(np.float64), min(norm, max_norm) * direction,
                                   rtol=1e-15 if dtype == np.float64 else 1e-7)


def test_clipping_measures_the_gradient_it_is_given_and_no_entry_past_it():
    """A view ending before a huge number: the norm is the view's alone (numba checks no bounds)."""
    from mlp._updates import clip_scale

    for dtype in (np.float64, np.float32):
        memory = np.array([3.0, 4.0, 1e30], dtype)
        assert clip_scale(memory[:2], 10.0) == 1.0 and clip_scale(memory[:2], 2.5) == 0.5


def test_optimizer_state_round_trip_and_argument_checks():
    with Tape():
        model = MLP([3, 2])
        opt = Adam(model.parameters())
        model.params.grad[:] = 1.0
        opt.step()
        other = Adam(model.parameters())
        other.load_state_dict(opt.state_dict())
        assert other.steps == 1 and np.array_equal(other.m, opt.m) and np.array_equal(other.v, opt.v)
        for cls, options, word in [
            (SGD, {"lr": -1.0}, "lr"), (Momentum, {"beta": 1.0}, "beta"), (Adam, {"eps": 0.0}, "eps"),
            (Adam, {"beta2": -0.1}, "beta2"), (SGD, {"lr": 0.1, "weight_decay": -1}, "weight_decay"),
        ]:
            with pytest.raises(ValueError, match=f"^{word}: expected"):
                cls(model.parameters(), **options)
    assert set(OPTIMIZERS) == {"sgd", "momentum", "unbiased_momentum", "nesterov", "rmsprop", "adam"}


def test_a_loss_of_the_named_parameters_has_backpropagations_gradient_by_name():
    """tape.grad of a loss written as a function of the parameter dict gives a dict of the same
    names and shapes, equal to backpropagation written here in numpy (tanh hidden layer,
    softmax cross-entropy)."""
    rng = np.random.default_rng(3)
    x, label = rng.standard_normal(4), 2
    with Tape():
        model = MLP([4, 3, 3], activation="tanh", seed=5)
        names = [name for name, _ in model.named_parameters()]
        assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
        assert [leaves.shape for _, leaves in model.named_parameters()] == [(3, 4), (3,), (3, 3), (3,)]
        params = model.state_dict()

        def loss(p):
            return losses.softmax_cross_entropy(model.apply(p, x), label)

        g = tape.grad(loss)(params)

    W0, b0, W1, b1 = (params[n] for n in names)
    h = np.tanh(W0 @ x + b0)
    z = W1 @ h + b1
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    dz = p - np.eye(3)[label]
    dh = (W1.T @ dz) * (1 - h**2)
    expected = {"layers.0.weight": np.outer(dh, x), "layers.0.bias": dh, "layers.1.weight": np.outer(dz, h), "layers.1.bias": dz}
    assert list(g) == names
    for name in names:
        np.testing.assert_allclose(g[name], expected[name], rtol=1e-10, atol=1e-12)
    with pytest.raises(KeyError, match=r"apply: missing keys \['layers.1.bias'\]"):
        model.apply({n: params[n] for n in names[:3]}, x)


def numpy_logits_and_grad(theta, X, y, sizes=(5, 4, 3), bias=True):
    """Logits of a sigmoid net of `sizes` laid out as parameters().values (each layer's weights
    (out, in), then its biases), and the batch-mean cross-entropy's gradient, by hand in numpy."""
    layers, at = [], 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = theta[at : at + n_in * n_out].reshape(n_out, n_in)
        at += n_in * n_out
        b = theta[at : at + n_out] if bias else np.zeros(n_out)
        at += n_out * bias
        layers.append((W, b))
    hs = [X]
    for i, (W, b) in enumerate(layers):
        z = hs[-1] @ W.T + b
        hs.append(z if i == len(layers) - 1 else 1 / (1 + np.exp(-z)))
    z = hs[-1]
    dz = np.exp(z - z.max(1, keepdims=True))
    dz = (dz / dz.sum(1, keepdims=True) - np.eye(sizes[-1])[y]) / len(y)
    grads = []
    for i in range(len(layers) - 1, -1, -1):
        grads = [(dz.T @ hs[i]).ravel(), *([dz.sum(0)] if bias else []), *grads]
        if i:
            dz = dz @ layers[i][0] * hs[i] * (1 - hs[i])
    return z, np.concatenate(grads)


def test_values_changed_in_place_are_seen_by_every_path_and_by_one_sample():
    """parameters().values is the one source of truth: an in-place change (as an optimizer, or
    a user, makes it, telling nobody) reaches the scalar Vars and the matrix leaves alike,
    though each was made (and cached) before the change."""
    rng = np.random.default_rng(3)
    X, y = rng.random((6, 5)), rng.integers(0, 3, 6)
    with Tape():
        model = MLP([5, 4, 3], seed=0)
        for path in PATHS:  # every path's Vars, leaves and kernels made at the old values
            accumulate(model, X, y, path=path)
        model(list(X[0]))
        model.params.values[:] = rng.normal(0, 1, len(model.params))
        logits, expected = numpy_logits_and_grad(model.params.values.copy(), X, y)
        np.testing.assert_allclose([z.value for z in model(list(X[0]))], logits[0], rtol=1e-12)
        np.testing.assert_allclose(model(X).values, logits, rtol=1e-12)
        for path in PATHS:
            model.zero_grad()
            accumulate(model, X, y, path=path)
            np.testing.assert_allclose(model.params.grad, expected, rtol=1e-9, atol=1e-14, err_msg=path)


@pytest.mark.parametrize("bias", [True, False])
def test_each_path_called_twice_without_zeroing_adds_both_gradients(bias):
    """Algorithm 3's accumulator adds: two calls on one batch hold twice its gradient (a path that
    set the accumulator instead would hold it once)."""
    rng = np.random.default_rng(4)
    X, y = rng.random((5, 5)), rng.integers(0, 3, 5)
    with Tape():
        model = MLP([5, 4, 3], bias=bias, seed=2)
        _, expected = numpy_logits_and_grad(model.params.values.copy(), X, y, bias=bias)
        for path in PATHS:
            model.zero_grad()
            accumulate(model, X, y, path=path)
            accumulate(model, X, y, path=path)
            np.testing.assert_allclose(model.params.grad, 2 * expected, rtol=1e-9, atol=1e-14, err_msg=path)
        for accumulator in (MatrixAccumulator(model), TracedAccumulator(model)):
            model.zero_grad()
            inputs = InputRows(X)
            accumulator.accumulate(inputs, np.arange(5), y, 1 / 5)
            accumulator.accumulate(inputs, np.arange(5), y, 1 / 5)
            np.testing.assert_allclose(model.params.grad, 2 * expected, rtol=1e-9, atol=1e-14, err_msg=type(accumulator).__name__)


@pytest.mark.parametrize("sizes, n", [((5, 1, 3), 4), ((1, 1, 2), 3), ((5, 2, 1, 3), 1), ((1, 2), 2)])
def test_sizes_at_their_bound_one_unit_one_input_one_sample(sizes, n):
    """A hidden layer of one unit, one input, a batch of one sample: every path's gradient as numpy's."""
    rng = np.random.default_rng(5)
    X, y = rng.random((n, sizes[0])), rng.integers(0, sizes[-1], n)
    with Tape():
        model = MLP(list(sizes), seed=3)
        logits, expected = numpy_logits_and_grad(model.params.values.copy(), X, y, sizes=sizes)
        np.testing.assert_allclose(model.logits(X), logits, rtol=1e-12)
        for path in PATHS:
            model.zero_grad()
            accumulate(model, X, y, path=path)
            np.testing.assert_allclose(model.params.grad, expected, rtol=1e-9, atol=1e-14, err_msg=path)


def test_a_model_without_biases_saves_and_loads_with_the_same_predictions(tmp_path):
    rng = np.random.default_rng(6)
    X = rng.random((7, 6))
    with Tape():
        model = MLP([6, 4, 3], bias=False, seed=5)
        model.params.values[:] = rng.normal(0, 1, len(model.params))
        model.save(tmp_path / "m.npz")
        back = MLP.load(tmp_path / "m.npz")
        assert back.bias is False and len(back.parameters()) == 6 * 4 + 4 * 3
        logits, _ = numpy_logits_and_grad(model.params.values.copy(), X, np.zeros(7, dtype=int), sizes=(6, 4, 3), bias=False)
        np.testing.assert_allclose(back.logits(X), logits, rtol=1e-12)
        np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_the_first_label_outside_the_classes_is_named_with_its_position():
    """A label below 0 after one whose square (not itself) is past the last class: the position is the negative one's."""
    with Tape():
        model = MLP([4, 5])
        with pytest.raises(ValueError, match=r"label -1 at position 2 is outside \[0, 5\)"):
            accumulate(model, np.ones((3, 4)), np.array([4, 0, -1]))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_step_returns_how_many_parameters_it_left_not_finite(name):
    """0 after a step of finite numbers; an infinite gradient entry and a nan one leave their two
    parameters not finite, and the step counts them (the training loop's divergence check)."""
    with Tape():
        model = MLP([3, 1], bias=False)
    params = model.parameters()
    params.values[:] = THETA0
    opt = OPTIMIZERS[name](params, lr=0.1)
    params.grad[:] = A * params.values
    assert opt.step() == 0
    params.grad[:] = [np.inf, np.nan, 1.0]
    assert opt.step() == 2
