"""The MLP on matrix nodes: its gradient against numpy backprop written here and against the
scalar-node MLP on the same weights; the training program's --nodes matrix and --dtype. Its
traced training step (mlp.accumulate.MatrixStep) against a numpy step written here: forward,
mean cross-entropy, backprop, clipping and each optimizer's update (weight decay too), over
batches of two sizes (the short last batch is a trace of its own), with dropout and a learning
rate that changes each step; and the training program traced against untraced."""
import csv

import numpy as np
import pytest

import tape
from mlp import checkpoint, train
from mlp.accumulate import MatrixAccumulator, MatrixStep, InputRows, accumulate
from mlp.nn import MLP
from mlp.optim import OPTIMIZERS

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
    for path in ("matrix", "batch", "traced"):
        with tape.Tape():
            model = MLP([12, 7, 5, 4], activation=activation, dropout=dropout, seed=1)
            accumulate(model, X, y, path=path, rng=np.random.default_rng(8))
            grads[path] = model.parameters().grad.copy()
    scales = model.dropout_scales(np.random.default_rng(8), len(X)) if dropout else None
    np.testing.assert_allclose(grads["matrix"], backprop(model, X, y, scales), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(grads["matrix"], grads["batch"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(grads["matrix"], grads["traced"], rtol=0, atol=1e-12)


def test_float32_matrix_nodes_agree_with_float64_to_float32s_precision():
    rng = np.random.default_rng(0)
    X, y = rng.random((16, 20)), rng.integers(0, 3, 16)
    grads, losses = {}, {}
    for dtype in ("float32", "float64"):
        with tape.Tape():
            model = MLP([20, 8, 3], activation="relu", seed=0)
            result = MatrixAccumulator(model, dtype=dtype).accumulate(InputRows(X), np.arange(16), y, 1 / 16)
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
        train.main([*SMALL, "--nodes", "scalar", "--dtype", "float32", "--out", str(tmp_path / "refused")])
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
        np.testing.assert_allclose(accumulator.logits(InputRows(X)), model.logits(X), rtol=1e-12)


# -- the traced step ------------------------------------------------------------------------------

SIZES, ROWS, BATCH = [6, 5, 4, 3], 10, 4  # batches of 4, 4 and 2 rows
ACT = {"tanh": (np.tanh, lambda h: 1 - h**2), "relu": (lambda z: np.maximum(z, 0), lambda h: (h > 0).astype(float))}
OPTIONS = {"sgd": {}, "momentum": dict(beta=0.8), "unbiased_momentum": dict(beta=0.8), "nesterov": dict(beta=0.8),
           "rmsprop": dict(beta=0.9, eps=1e-8), "adam": dict(beta1=0.9, beta2=0.99, eps=1e-8)}


def numpy_gradient(Ws, bs, activation, x, labels, keeps):
    """The batch-mean softmax cross-entropy and its gradient (W and b per layer) by hand."""
    act, slope = ACT[activation]
    hs, h = [x], x
    for i, (W, b) in enumerate(zip(Ws, bs)):
        h = h @ W.T + b
        if i < len(Ws) - 1:
            h = act(h) * keeps[i]
            hs.append(h)
    shifted = h - h.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    delta = (np.exp(log_p) - np.eye(h.shape[1])[labels]) / len(x)
    gWs, gbs = [None] * len(Ws), [None] * len(Ws)
    for i in range(len(Ws) - 1, -1, -1):
        gWs[i], gbs[i] = delta.T @ hs[i], delta.sum(0)
        if i:
            keep = keeps[i - 1]
            delta = (delta @ Ws[i]) * keep * slope(hs[i] / np.where(keep == 0, 1, keep))
    return -log_p[np.arange(len(x)), labels].mean(), gWs, gbs


class NumpyOptimizer:
    """The notes' rules on a list of arrays, written from their formulas (Nesterov as theta and
    v, its look-ahead phi = theta - lr v being what the model holds)."""

    def __init__(self, name, weight_decay, **options):
        self.name, self.wd, self.o, self.t, self.state = name, weight_decay, options, 0, None

    def step(self, params, grads, lr):
        self.t += 1
        if self.state is None:
            self.state = [[np.zeros_like(p) for p in params] for _ in range(2)]
        for p, g, a, b in zip(params, grads, *self.state):
            g = g + self.wd * p
            if self.name == "sgd":
                p -= lr * g
            elif self.name in ("momentum", "unbiased_momentum"):
                a[...] = self.o["beta"] * a + (1 - self.o["beta"]) * g
                p -= lr * a / (1 - self.o["beta"] ** self.t if self.name == "unbiased_momentum" else 1)
            elif self.name == "nesterov":
                theta = p + lr * a  # lr of the previous step: constant within this test's Nesterov runs
                a[...] = self.o["beta"] * a + (1 - self.o["beta"]) * g
                p[...] = theta - 2 * lr * a
            elif self.name == "rmsprop":
                a[...] = self.o["beta"] * a + (1 - self.o["beta"]) * g * g
                p -= lr * g / (np.sqrt(a) + self.o["eps"])
            else:
                a[...] = self.o["beta1"] * a + (1 - self.o["beta1"]) * g
                b[...] = self.o["beta2"] * b + (1 - self.o["beta2"]) * g * g
                m_hat, v_hat = a / (1 - self.o["beta1"] ** self.t), b / (1 - self.o["beta2"] ** self.t)
                p -= lr * m_hat / (np.sqrt(v_hat) + self.o["eps"])


def layer_arrays(flat, sizes):
    """W and b of each layer, copies, from a flat vector laid out as the parameters."""
    Ws, bs, at = [], [], 0
    for n_in, n_out in zip(sizes, sizes[1:]):
        Ws.append(flat[at : at + n_in * n_out].reshape(n_out, n_in).copy())
        bs.append(flat[at + n_in * n_out : at + n_in * n_out + n_out].copy())
        at += n_in * n_out + n_out
    return Ws, bs


def steps_both_ways(name, dtype, weight_decay=0.0, clip=None, activation="tanh", dropout=(0.3, 0.0), epochs=2):
    """Train the same model by MatrixStep and by the numpy step here, batch by batch; returns both
    final flat weights, the losses of each, and the step."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(ROWS, SIZES[0])), rng.integers(0, SIZES[-1], ROWS)
    with tape.Tape():
        model = MLP(SIZES, activation=activation, dropout=dropout, seed=2)
    lr = lambda k: 0.05 if name == "nesterov" else 0.05 * (1 + k % 3)  # noqa: E731 - changes each step
    optimizer = OPTIMIZERS[name](model.parameters(), lr=lr(0), weight_decay=weight_decay, **OPTIONS[name])
    step = MatrixStep(model, optimizer, dtype, clip)
    Ws, bs = layer_arrays(model.parameters().values, SIZES)
    oracle = NumpyOptimizer(name, weight_decay, **OPTIONS[name])
    inputs, draws, k, losses = InputRows(X), np.random.default_rng(9), 0, ([], [])
    for _ in range(epochs):
        order = draws.permutation(ROWS)
        for first in range(0, ROWS, BATCH):
            rows = order[first : first + BATCH]
            keep = model.dropout_scales(draws, len(rows))
            result = step(inputs, rows, y, keep, lr(k))
            keeps = [keep[:, :5], np.ones((len(rows), 4))]  # the first hidden layer's 5 units drop, the second's none
            loss, gWs, gbs = numpy_gradient(Ws, bs, activation, X[rows], y[rows], keeps)
            grads = [g for pair in zip(gWs, gbs) for g in pair]
            if clip:
                norm = np.sqrt(sum((g**2).sum() for g in grads))
                grads = [g * min(1.0, clip / norm) for g in grads]
            params = [p for pair in zip(Ws, bs) for p in pair]
            oracle.step(params, grads, lr(k))
            losses[0].append(float(result.loss))
            losses[1].append(loss)
            assert result.nonfinite == 0
            k += 1
    flat = np.concatenate([a.ravel() for pair in zip(Ws, bs) for a in pair])
    return model.parameters().values.copy(), flat, losses, step


TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_traced_step_is_the_numpy_step_for_every_optimizer(name, dtype):
    traced, oracle, losses, step = steps_both_ways(name, dtype)
    np.testing.assert_allclose(traced, oracle, **TOLERANCE[dtype])
    np.testing.assert_allclose(losses[0], losses[1], **TOLERANCE[dtype])
    assert sorted(step.steps) == [2, 4]  # the short last batch: a trace of its own
    if dtype == "float32":
        assert traced.tolist() != oracle.tolist()  # it did compute in float32


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_weight_decay_and_clipping_in_the_traced_step(name, dtype):
    traced, oracle, _, _ = steps_both_ways(name, dtype, weight_decay=0.05, clip=0.1, activation="relu")
    np.testing.assert_allclose(traced, oracle, **TOLERANCE[dtype])
    plain, _, _, _ = steps_both_ways(name, dtype, activation="relu")
    assert np.abs(plain - traced).max() > 1e-3  # decay and clipping changed the run


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_traced_step_computes_in_its_dtype_and_accumulates_in_float64(dtype):
    """A float32 step's gradient is of float32 numbers (computed in float64, most entries would
    not be), converted into the float64 accumulator."""
    traced, oracle, _, step = steps_both_ways("sgd", dtype, epochs=1)
    grad = step.params.grad
    assert grad.dtype == np.float64 and np.count_nonzero(grad) > len(grad) // 2
    in_float32 = grad.astype(np.float32).astype(np.float64) == grad
    assert in_float32.all() if dtype == "float32" else in_float32.mean() < 0.01


def traced_run(out, *flags):
    assert train.main(["--limit", "300", "--hidden", "16", "8", "--batch-size", "32", "--epochs", "3", "--no-plots",
                       "--nodes", "matrix", "--val", "0.1", "--out", str(out), *flags]) == 0  # 270 rows: a short batch
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return rows, checkpoint.load(out / "model.npz").model.parameters().values


@pytest.mark.usefixtures("digit_source")
@pytest.mark.parametrize("flags", [
    [],
    ["--dtype", "float32"],
    ["--dtype", "float32", "--dropout", "0.3", "--optimizer", "nesterov", "--weight-decay", "1e-3", "--clip", "0.5",
     "--schedule", "cosine", "--activation", "sigmoid"],
], ids=["float64", "float32", "float32-dropout-nesterov-decay-clip-cosine"])
def test_the_training_program_traced_is_the_program_untraced(tmp_path, flags):
    traced, weights = traced_run(tmp_path / "traced", *flags)
    untraced, reference = traced_run(tmp_path / "untraced", *flags, "--no-trace")
    tolerance = dict(rtol=1e-4, atol=1e-6) if flags else dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weights, reference, **tolerance)
    for column in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "lr"):
        np.testing.assert_allclose([float(r[column]) for r in traced], [float(r[column]) for r in untraced],
                                   rtol=1e-3 if flags else 1e-5, err_msg=column)
    assert [r["epoch"] for r in traced] == ["1", "2", "3"]


def test_evaluation_runs_traced_per_number_of_rows():
    with tape.Tape():
        model = MLP([6, 5, 3], activation="relu", seed=1)
    optimizer = OPTIMIZERS["sgd"](model.parameters(), lr=0.1)
    X = np.random.default_rng(2).normal(size=(7, 6))
    for dtype in ("float64", "float32"):
        step = MatrixStep(model, optimizer, dtype)
        step.EVALUATION_ROWS = 3  # 3 + 3 + 1 rows: two traces
        logits = step.logits(InputRows(X))
        h = np.maximum(X @ model.layers[0].weights.values.T + model.layers[0].bias.values, 0)
        expected = h @ model.layers[1].weights.values.T + model.layers[1].bias.values
        np.testing.assert_allclose(logits, expected, **TOLERANCE[dtype])
        assert logits.dtype == np.float64 and sorted(step.forwards) == [1, 3]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_evaluation_converts_each_inputs_once_and_new_inputs_anew(dtype):
    """Each inputs' rows in dtype are made once and kept with them (training, validation and test
    sets take turns in a run): other inputs give their own logits."""
    with tape.Tape():
        model = MLP([6, 5, 3], activation="relu", seed=1)
    W0, b0, W1, b1 = (a.values for layer in model.layers for a in (layer.weights, layer.bias))
    first, second = (InputRows(np.random.default_rng(seed).normal(size=(4, 6))) for seed in (2, 3))
    for evaluator in (MatrixStep(model, OPTIMIZERS["sgd"](model.parameters(), lr=0.1), dtype),
                      MatrixAccumulator(model, dtype=dtype)):
        for inputs in (first, first, second, first):
            expected = np.maximum(inputs.dense @ W0.T + b0, 0) @ W1.T + b1
            np.testing.assert_allclose(evaluator.logits(inputs), expected, **TOLERANCE[dtype])
    converted = first.astype(dtype)
    assert converted is first.astype(dtype) and converted.dtype == dtype and converted.flags.c_contiguous
    np.testing.assert_array_equal(converted, first.dense.astype(dtype))


def test_the_traced_step_follows_parameters_recorded_anew_and_labels_of_any_integer_dtype():
    """model.attach() gives the parameters new storage: the step takes it (else it would train a
    stale copy); uint8 labels give the numbers int64 ones do."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(8, 6)), rng.integers(0, 3, 8)
    results = []
    for labels, attach in ((y, False), (y.astype(np.uint8), True)):
        with tape.Tape():
            model = MLP([6, 4, 3], activation="tanh", seed=0)
        step = MatrixStep(model, OPTIMIZERS["sgd"](model.parameters(), lr=0.5), "float64")
        step(InputRows(X), np.arange(8), labels, None, 0.5)
        if attach:
            model.attach()
        model.parameters().values[...] *= 0.5  # in the storage the parameters have now
        step(InputRows(X), np.arange(8), labels, None, 0.5)
        results.append(model.parameters().values.copy())
    np.testing.assert_array_equal(results[0], results[1])
