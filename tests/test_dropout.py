"""Dropout on every path of Algorithm 3 against backpropagation written here in numpy; units whose
output is exactly 0; the traced path's sums on any number of threads; the evaluation forward pass."""
import numba
import numpy as np
import pytest

import tape
from mlp import checkpoint
from mlp.accumulate import PATHS, MatrixAccumulator, InputRows, TracedAccumulator, accumulate
from mlp.nn import MLP
from tape import Tape

ACTIVATIONS = {
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, h: (z > 0) * 1.0),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, h: h * (1 - h)),
    "tanh": (np.tanh, lambda z, h: 1 - h * h),
}


def reference_gradient(model, X, y, masks):
    """The batch's mean cross-entropy gradient, laid out as the parameters (each layer's W row
    by row, then its b), with each hidden layer's outputs times its mask columns."""
    act, slope = ACTIVATIONS[model.activation]
    state = model.state_dict()
    layers = len(model.sizes) - 1
    Ws = [state[f"layers.{i}.weight"] for i in range(layers)]
    bs = [state.get(f"layers.{i}.bias", np.zeros(len(Ws[i]))) for i in range(layers)]
    hs, zs, column = [X], [], 0
    for i in range(layers - 1):
        z = hs[-1] @ Ws[i].T + bs[i]
        m = np.ones_like(z)
        if model.dropout[i]:
            m = masks[:, column : column + z.shape[1]]
            column += z.shape[1]
        zs.append((z, m))
        hs.append(act(z) * m)
    logits = hs[-1] @ Ws[-1].T + bs[-1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(logits.shape[1])[y]) / len(X)
    grads = []
    for i in range(layers - 1, -1, -1):
        grads.append((delta.T @ hs[i], delta.sum(0)))
        if i:
            z, m = zs[i - 1]
            delta = delta @ Ws[i] * m * slope(z, act(z))
    flat = []
    for dW, db in reversed(grads):
        flat += [dW.ravel()] + ([db] if model.bias else [])
    return np.concatenate(flat)


def sparse_batch(rng, n, inputs):
    return rng.random((n, inputs)) * (rng.random((n, inputs)) < 0.5), rng.integers(0, 4, n)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("bias, dropout", [(True, [0.5, 0.3]), (False, [0.0, 0.6]), (True, [0.0, 0.0])])
def test_every_path_gives_the_numpy_gradient_with_the_same_dropout(activation, bias, dropout):
    rng = np.random.default_rng(3)
    X, y = sparse_batch(rng, 19, 10)
    with Tape():
        model = MLP([10, 7, 6, 4], activation=activation, bias=bias, dropout=dropout, seed=2)
        masks = model.dropout_scales(np.random.default_rng(9), len(X))
        expected = reference_gradient(model, X, y, masks)
        for path in PATHS:
            model.zero_grad()
            accumulate(model, X, y, path=path, rng=np.random.default_rng(9))
            np.testing.assert_allclose(model.params.grad, expected, rtol=1e-10, atol=1e-13, err_msg=path)


def test_dropout_scales_drop_each_unit_with_its_layers_probability():
    with Tape():
        model = MLP([5, 40, 30, 20, 3], activation="relu", dropout=[0.25, 0.0, 0.5])
        assert model.dropout_units == 40 + 20
        scales = model.dropout_scales(np.random.default_rng(0), 4000)
    assert scales.shape == (4000, 60)
    first, last = scales[:, :40], scales[:, 40:]
    assert set(np.unique(first)) == {0.0, 1 / 0.75} and set(np.unique(last)) == {0.0, 2.0}
    assert abs((first == 0).mean() - 0.25) < 0.01 and abs((last == 0).mean() - 0.5) < 0.01
    assert abs(first.mean() - 1) < 0.01  # inverted dropout keeps the expected activation


def test_hidden_units_whose_output_is_exactly_0_pass_their_gradient_back():
    """Units 1 and 3 of the first hidden layer and unit 2 of the second have weights and bias 0,
    so their output is exactly 0 for every sample (tanh(0) = 0 with slope 1): their incoming
    weights still get the gradient their slope passes, the next layer's weights from them none."""
    rng = np.random.default_rng(12)
    X, y = sparse_batch(rng, 9, 8)
    with Tape():
        model = MLP([8, 5, 6, 4], activation="tanh", seed=3)
        state = model.state_dict()
        for layer, units in ((0, [1, 3]), (1, [2])):
            state[f"layers.{layer}.weight"][units] = 0.0
            state[f"layers.{layer}.bias"] = rng.normal(size=len(state[f"layers.{layer}.bias"]))
            state[f"layers.{layer}.bias"][units] = 0.0
        model.load_state_dict(state)
        expected = reference_gradient(model, X, y, None)
        assert np.abs(expected[: 5 * 8].reshape(5, 8)[[1, 3]]).max() > 1e-3
        for path in PATHS:
            model.zero_grad()
            accumulate(model, X, y, path=path)
            np.testing.assert_allclose(model.params.grad, expected, rtol=1e-10, atol=1e-14, err_msg=path)


@pytest.mark.parametrize("path", PATHS)
def test_saturated_sigmoid_units_pass_no_gradient_back_but_their_values_forward(path):
    """A sigmoid unit at z = 40 is exactly 1.0 in float64, so its slope y (1 - y) is 0: no
    gradient flows back through it, but the next layer's weights still see its value."""
    rng = np.random.default_rng(8)
    X, y = sparse_batch(rng, 6, 10)
    with Tape():
        model = MLP([10, 5, 4], activation="sigmoid", seed=1)
        state = model.state_dict()
        state["layers.0.bias"] = np.array([40.0, -2.0, 40.0, 0.5, 45.0])  # units 0, 2, 4 saturated
        model.load_state_dict(state)
        z = X @ state["layers.0.weight"].T + state["layers.0.bias"]
        assert (1 / (1 + np.exp(-z[:, [0, 2, 4]])) == 1.0).all()
        expected = reference_gradient(model, X, y, None)
        assert np.abs(expected[5 * 10 + 5 :].reshape(-1)[:20].reshape(4, 5)[:, [0, 2, 4]]).min() > 0
        model.zero_grad()
        accumulate(model, X, y, path=path)
        np.testing.assert_allclose(model.params.grad, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dropout", [[0.3, 0.2], 0.0])
def test_the_traced_paths_sums_are_bit_identical_on_any_number_of_threads(dropout):
    """Fixed chunks of samples, summed in order: with and without dropout."""
    rng = np.random.default_rng(7)
    X, y = sparse_batch(rng, 45, 30)
    results = []
    with Tape():
        model = MLP([30, 16, 8, 4], activation="relu", dropout=dropout, seed=3)
        keep = model.dropout_scales(rng, len(X)) if dropout else None
        traced = TracedAccumulator(model)
        before = numba.get_num_threads()
        try:
            for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
                numba.set_num_threads(threads)
                model.zero_grad()
                result = traced.accumulate(InputRows(X), np.arange(len(X)), y, 1 / len(X), keep)
                results.append((model.params.grad.copy(), result.loss, result.correct))
        finally:
            numba.set_num_threads(before)
    (grad, loss, correct), *others = results
    assert np.abs(grad).max() > 0 and (keep is None or (keep == 0).any())
    assert all(g.tobytes() == grad.tobytes() and (l, c) == (loss, correct) for g, l, c in others)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("bias", [True, False])
def test_each_paths_forward_pass_gives_the_models_logits_without_dropout(activation, bias):
    rng = np.random.default_rng(8)
    X, _ = sparse_batch(rng, 50, 20)
    X[3] = 0.0  # a blank input
    with Tape():
        model = MLP([20, 9, 7, 5], activation=activation, bias=bias, dropout=0.5, seed=6)
        model.params.values[:] = rng.normal(0, 3, len(model.params))  # large weights: saturated units too
        state = model.state_dict()
        act = ACTIVATIONS[activation][0]
        h = X
        for i in range(3):
            h = h @ state[f"layers.{i}.weight"].T + (state[f"layers.{i}.bias"] if bias else 0.0)
            h = act(h) if i < 2 else h
        for accumulator in (TracedAccumulator(model), MatrixAccumulator(model)):
            np.testing.assert_allclose(accumulator.logits(InputRows(X)), h, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(model.logits(X), h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dropout, words", [
    (1.0, "expected a probability in [0, 1)"),
    ([0.1], "one for each of the 2 hidden layers, got [0.1]"),
    (-0.5, "got -0.5"),
])
def test_bad_dropout_is_refused_naming_it(dropout, words):
    with Tape(), pytest.raises(ValueError, match=r"MLP\(dropout\)") as error:
        MLP([4, 3, 3, 2], dropout=dropout)
    assert words in str(error.value)


def test_scales_of_the_wrong_shape_are_refused():
    with Tape():
        model = MLP([4, 3, 2], dropout=0.5)
        with pytest.raises(ValueError, match=r"dropout scales of shape \(2, 3\).*got \(2, 4\)"):
            model(np.ones((2, 4)), np.ones((2, 4)))
        for accumulator in (TracedAccumulator(model), MatrixAccumulator(model)):
            with pytest.raises(ValueError, match=r"got \(5, 2\)|has shape \(5, 2\)"):
                accumulator.accumulate(InputRows(np.ones((5, 4))), np.arange(5), np.zeros(5, int), 0.2, np.ones((5, 2)))


def test_a_checkpoint_keeps_dropout_and_the_best_model(tmp_path):
    with Tape():
        model = MLP([6, 5, 3], activation="tanh", dropout=0.4, seed=1)
        best = MLP([6, 5, 3], activation="tanh", dropout=0.4, seed=2)
        checkpoint.save(tmp_path / "m.npz", checkpoint.Checkpoint(model, 7, best=checkpoint.Best(best, 4, "val_loss", 0.25)))
        saved = checkpoint.load(tmp_path / "m.npz")
    assert saved.model.dropout == [0.4] and saved.epoch == 7
    assert saved.best.epoch == 4 and saved.best.metric == "val_loss" and saved.best.value == 0.25
    np.testing.assert_array_equal(saved.kept.parameters().values, best.parameters().values)
    np.testing.assert_array_equal(saved.model.parameters().values, model.parameters().values)
