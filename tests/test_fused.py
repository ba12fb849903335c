"""The fused path's sums do not depend on how many threads run them."""
import numpy as np
import pytest
from tape import Tape

from mlp.accumulate import FusedAccumulator, SparseRows
from mlp.nn import MLP


@pytest.mark.parametrize("samples", [40, 7])
def test_the_gradient_is_bit_identical_on_any_number_of_threads(samples):
    rng = np.random.default_rng(4)
    X = rng.random((samples, 60)) * (rng.random((samples, 60)) < 0.4)  # sparse, like digits
    y = rng.integers(0, 10, samples)
    results = []
    with Tape():
        model = MLP([60, 24, 10], activation="relu", seed=1)
        for threads in (1, 2, 3):
            model.zero_grad()
            result = FusedAccumulator(model, threads).accumulate(SparseRows(X), np.arange(samples), y, 1 / samples)
            results.append((model.params.grad.copy(), result.loss, result.correct))
    (grad1, loss1, correct1), *others = results
    assert np.abs(grad1).max() > 0
    for grad, loss, correct in others:
        assert grad.tobytes() == grad1.tobytes() and loss == loss1 and correct == correct1


def numpy_gradient(Ws, bs, X, y, act, slope):
    """The batch's mean cross-entropy gradient by backpropagation written here: [dW1, db1, ...]."""
    hs, zs = [X], []
    for W, b in zip(Ws[:-1], bs[:-1]):
        zs.append(hs[-1] @ W.T + b)
        hs.append(act(zs[-1]))
    logits = hs[-1] @ Ws[-1].T + bs[-1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    delta = (p - np.eye(logits.shape[1])[y]) / len(X)
    grads = []
    for i in range(len(Ws) - 1, -1, -1):
        grads = [(delta.T @ hs[i]).ravel(), delta.sum(axis=0)] + grads
        if i:
            delta = delta @ Ws[i] * slope(zs[i - 1])
    return np.concatenate(grads), logits


@pytest.mark.parametrize("activation, act, slope", [
    ("tanh", np.tanh, lambda z: 1.0 - np.tanh(z) ** 2),  # tanh(0) = 0 with slope 1: no value, a gradient
    ("relu", lambda z: np.maximum(z, 0.0), lambda z: (z > 0.0) * 1.0),  # relu(0) = 0 with slope 0: neither
])
def test_hidden_units_whose_output_is_exactly_0_pass_their_gradient_back(activation, act, slope):
    """Units 1 and 3 of the first hidden layer and unit 2 of the second have weights and bias 0,
    so their output is exactly 0 for every sample: their incoming weights still get the
    gradient their slope passes, the next layer's weights from them none."""
    rng = np.random.default_rng(12)
    X = rng.random((9, 8)) * (rng.random((9, 8)) < 0.6)
    y = rng.integers(0, 4, 9)
    with Tape():
        model = MLP([8, 5, 6, 4], activation=activation, seed=3)
        state = model.state_dict()
        for layer, units in ((0, [1, 3]), (1, [2])):
            state[f"layers.{layer}.weight"][units] = 0.0
            state[f"layers.{layer}.bias"] = rng.normal(size=len(state[f"layers.{layer}.bias"]))
            state[f"layers.{layer}.bias"][units] = 0.0
        model.load_state_dict(state)
        Ws = [state[f"layers.{k}.weight"] for k in range(3)]
        bs = [state[f"layers.{k}.bias"] for k in range(3)]
        expected, logits = numpy_gradient(Ws, bs, X, y, act, slope)
        if activation == "tanh":  # the units' incoming weights do get a gradient
            assert np.abs(expected[: 5 * 8].reshape(5, 8)[[1, 3]]).max() > 1e-3
        fused = FusedAccumulator(model)
        for threads in (1, 2):
            model.zero_grad()
            result = FusedAccumulator(model, threads).accumulate(SparseRows(X), np.arange(len(X)), y, 1 / len(X))
            np.testing.assert_allclose(model.params.grad, expected, rtol=1e-10, atol=1e-14)
            assert result.correct == (logits.argmax(axis=1) == y).sum()
        np.testing.assert_allclose(fused.logits(SparseRows(X)), logits, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_a_dense_sample_records_exactly_the_nodes_and_edges_each_thread_reserves(bias, dropout):
    """Each thread's window of the scratch arrays holds one sample: a sample with no zero input and no zero
    partial (tanh) fills it exactly, so a window one edge short would overlap the next thread's."""
    with Tape():
        model = MLP([5, 4, 3, 2], activation="tanh", bias=bias, dropout=dropout, seed=1)
        t = model.tape  # its own tape
        fused = FusedAccumulator(model, 1)
        nodes, edges = len(t), t.num_edges
        fused.record(np.linspace(0.1, 0.9, 5), 1)
        assert (len(t) - nodes, t.num_edges - edges) == (fused.nodes_per_sample, fused.edges_per_sample)
