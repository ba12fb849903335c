"""The MLP on matrix nodes: its gradient against numpy backprop written here and against the
scalar-node MLP on the same weights; the training program's --nodes matrix and --dtype."""
import csv

import numpy as np
import pytest

import tape
from mlp import checkpoint, train
from mlp.accumulate import MatrixAccumulator, SparseRows, accumulate
from mlp.nn import MLP

SMALL = ["--limit", "400", "--hidden", "16", "--batch-size", "20", "--no-plots"]
on_digits = pytest.mark.usefixtures("digit_source")  # on the digits and on stand-ins (conftest)


def backprop(model: MLP, X: np.ndarray, y: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
    """The batch-mean cross-entropy's gradient by hand in numpy, laid out as parameters().values."""
    act, dact = {"sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda h: h * (1 - h)),
                 "relu": (lambda z: np.maximum(z, 0), lambda h: (h > 0).astype(float)),
                 "tanh": (np.tanh, lambda h: 1 - h ** 2)}[model.activation]
    Ws = [np.array(W.values) for W in (layer.weights for layer in model.layers)]
    bs = [np.array(layer.bias.values) for layer in model.layers]
    hs, keeps, h = [X], [], X
    column = 0
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = h @ W.T + b
        if i == len(Ws) - 1:
            h = z
            break
        h = act(z)
        keep = np.ones_like(h)
        if scales is not None and model.layers[i].dropout:
            keep = scales[:, column : column + h.shape[1]]
            column += h.shape[1]
        keeps.append(keep)
        h = h * keep
        hs.append(h)
    p = np.exp(h - h.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(h.shape[1])[y]) / len(X)
    grads = []
    for i in range(len(Ws) - 1, -1, -1):
        grads = [delta.T @ hs[i], delta.sum(0)] + grads
        if i:
            unscaled = hs[i] / np.where(keeps[i - 1] == 0, 1, keeps[i - 1])
            delta = (delta @ Ws[i]) * keeps[i - 1] * dact(unscaled)
    return np.concatenate([g.ravel() for g in grads])


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_the_matrix_node_gradient_is_backprop_and_the_scalar_nodes_one(activation, dropout):
    rng = np.random.default_rng(3)
    X, y = rng.random((9, 12)), rng.integers(0, 4, 9)
    grads = {}
    for path in ("matrix", "batch", "fused"):
        with tape.Tape():
            model = MLP([12, 7, 5, 4], activation=activation, dropout=dropout, seed=1)
            accumulate(model, X, y, path=path, rng=np.random.default_rng(8))
            grads[path] = model.parameters().grad.copy()
    scales = model.dropout_scales(np.random.default_rng(8), len(X)) if dropout else None
    np.testing.assert_allclose(grads["matrix"], backprop(model, X, y, scales), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads["matrix"], grads["batch"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["matrix"], grads["fused"], rtol=0, atol=1e-12)


def test_float32_matrix_nodes_agree_with_float64_to_float32s_precision():
    rng = np.random.default_rng(0)
    X, y = rng.random((16, 20)), rng.integers(0, 3, 16)
    grads, losses = {}, {}
    for dtype in ("float32", "float64"):
        with tape.Tape():
            model = MLP([20, 8, 3], activation="relu", seed=0)
            result = MatrixAccumulator(model, dtype=dtype).accumulate(SparseRows(X), np.arange(16), y, 1 / 16)
            grads[dtype], losses[dtype] = model.parameters().grad.copy(), result.loss
            assert model.parameters().grad.dtype == np.float64  # the accumulator stays float64
    np.testing.assert_allclose(grads["float32"], grads["float64"], rtol=1e-4, atol=1e-6)
    assert grads["float32"].tolist() != grads["float64"].tolist()  # it did compute in float32
    np.testing.assert_allclose(losses["float32"], losses["float64"], rtol=1e-6)


def test_matrix_leaves_follow_the_values_changed_in_place_and_survive_rewinds():
    with tape.Tape():
        model = MLP([3, 2], seed=0)
        t = model.tape  # its own tape
        W32, _ = model.layers[0].tensors(np.float32)
        np.testing.assert_allclose(W32.value, model.layers[0].weights.values.astype(np.float32))
        model.parameters().values[:] += 1.0  # as an optimizer does, nothing else told
        W32_again, _ = model.layers[0].tensors(np.float32)
        assert W32_again is W32
        np.testing.assert_array_equal(W32.value, model.layers[0].weights.values.astype(np.float32))
        W64, _ = model.layers[0].tensors(np.float64)
        model.parameters().values[:] -= 0.5
        np.testing.assert_array_equal(model.layers[0].tensors(np.float64)[0].value, model.layers[0].weights.values)
        mark = t.mark()
        logits = model(tape.Tensor(np.ones((2, 3)), requires_grad=False))
        assert isinstance(logits, tape.Tensor) and logits.shape == (2, 2)
        t.rewind(mark)
        assert model.layers[0].tensors(np.float64)[0] is W64


def metrics(out) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@on_digits
def test_the_training_program_on_matrix_nodes_follows_the_scalar_one(tmp_path):
    assert train.main([*SMALL, "--epochs", "2", "--dropout", "0.2", "--clip", "1", "--out", str(tmp_path / "scalar")]) == 0
    assert train.main([*SMALL, "--epochs", "2", "--dropout", "0.2", "--clip", "1", "--nodes", "matrix",
                       "--out", str(tmp_path / "matrix")]) == 0
    for scalar, matrix in zip(metrics(tmp_path / "scalar"), metrics(tmp_path / "matrix")):
        for column in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            np.testing.assert_allclose(float(matrix[column]), float(scalar[column]), rtol=1e-9)
    weights = [checkpoint.load(tmp_path / name / "model.npz").model.parameters().values for name in ("scalar", "matrix")]
    np.testing.assert_allclose(weights[1], weights[0], rtol=0, atol=1e-10)
    # a checkpoint of either kind resumes with the other, in float32 too
    assert train.main([*SMALL, "--epochs", "3", "--dropout", "0.2", "--clip", "1", "--nodes", "matrix", "--dtype", "float32",
                       "--out", str(tmp_path / "scalar"), "--resume"]) == 0
    assert train.main([*SMALL, "--epochs", "3", "--dropout", "0.2", "--clip", "1", "--out", str(tmp_path / "matrix"), "--resume"]) == 0
    last = [metrics(tmp_path / name)[-1] for name in ("scalar", "matrix")]
    np.testing.assert_allclose(float(last[0]["train_loss"]), float(last[1]["train_loss"]), rtol=1e-4)


@on_digits
def test_float32_training_learns_and_dtype_needs_matrix_nodes(tmp_path, capsys):
    assert train.main([*SMALL, "--epochs", "3", "--nodes", "matrix", "--dtype", "float32", "--augment",
                       "--out", str(tmp_path / "run")]) == 0
    rows = metrics(tmp_path / "run")
    assert float(rows[-1]["test_accuracy"]) > max(0.4, float(rows[0]["test_accuracy"]))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert checkpoint.load(tmp_path / "run" / "model.npz").model.parameters().values.dtype == np.float64
    with pytest.raises(SystemExit):
        train.main([*SMALL, "--dtype", "float32", "--out", str(tmp_path / "refused")])
    assert "--dtype float32 needs --nodes matrix" in capsys.readouterr().err


@on_digits
def test_fit_takes_the_nodes_too(tmp_path):
    import mlp

    history = mlp.fit(MLP([784, 8, 10], seed=0), "mnist-5k", limit=400, epochs=2, lr=0.01, nodes="matrix", dtype="float32",
                      out=tmp_path / "fit", plots=False)
    assert len(history.rows) == 2 and history.test_accuracy > 0.5


def test_evaluation_in_chunks_gives_every_row_its_logits():
    rng = np.random.default_rng(5)
    X = rng.random((10, 6))
    with tape.Tape():
        model = MLP([6, 4, 3], seed=2)
        accumulator = MatrixAccumulator(model)
        accumulator.EVALUATION_ROWS = 3  # 10 rows in four chunks
        np.testing.assert_allclose(accumulator.logits(SparseRows(X)), model.logits(X), rtol=1e-12)
