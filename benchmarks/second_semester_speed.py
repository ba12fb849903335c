"""Training throughput on the second semester's net (issue 19's target): 784-256-256-10 ReLU,
dropout 0.2, batch 128, Adam, on the 4,000 mnist-5k training digits (no augmentation, which
costs both engines the same). Each engine runs in a fresh process for each round, the rounds
interleaved: wengert's training program as a user runs it, on matrix nodes in float32 (its step
traced, and --no-trace) and on scalar nodes (the median samples/s its metrics.csv reports for
epochs 2 on), and the same loop in PyTorch (float32, 2 threads: nn.Linear, nn.Dropout, Adam, the
median epoch after the first) and in JAX (the whole step under one jit); beside them, the same
loop written by hand in numpy (buffers reused), and a step's eight matrix products alone, the
floor of any step on numpy's BLAS.

    python -m benchmarks.second_semester_speed [--rounds 3] [--epochs 5]
"""
from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import have, machine, softmax_adjoint_in_place, table

FLAGS = ["--hidden", "256", "256", "--activation", "relu", "--dropout", "0.2", "--batch-size", "128", "--optimizer", "adam",
         "--lr", "1e-3", "--no-plots"]
ENGINES = {
    "wengert training program --nodes matrix --dtype float32 (metrics.csv)": ["--nodes", "matrix", "--dtype", "float32"],
    "wengert training program --nodes matrix --dtype float32 --no-trace (metrics.csv)": ["--nodes", "matrix", "--dtype",
                                                                                       "float32", "--no-trace"],
    "wengert training program --nodes scalar (metrics.csv)": ["--nodes", "scalar"],
}
PYTORCH = "PyTorch 2.13 CPU float32, 2 threads (the same loop)"
JAX = "JAX, the whole step under jit (float32)"
BY_HAND = "numpy by hand, float32, buffers reused"
PRODUCTS = "numpy's matrix products alone (float32, 2 threads): the floor of a step on numpy's BLAS"


def wengert(flags: list[str], epochs: int) -> float:
    import csv
    import tempfile

    from mlp import train

    with tempfile.TemporaryDirectory() as out:
        if train.main([*FLAGS, *flags, "--epochs", str(epochs), "--out", f"{out}/run"]) != 0:
            raise SystemExit("the training program failed")
        with open(f"{out}/run/metrics.csv", newline="") as f:
            return float(np.median([float(r["samples_per_s"]) for r in list(csv.DictReader(f))[1:]]))


def pytorch(epochs: int) -> float:
    import torch

    from mlp.data import load

    torch.set_num_threads(2)
    torch.manual_seed(0)
    data = load("mnist-5k")
    X, y = torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(256, 10))
    opt, loss_fn, speeds = torch.optim.Adam(model.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss(), []
    for _ in range(epochs):
        start, order = time.perf_counter(), torch.randperm(len(X))
        for first in range(0, len(X), 128):
            rows = order[first : first + 128]
            opt.zero_grad()
            loss_fn(model(X[rows]), y[rows]).backward()
            opt.step()
        speeds.append(len(X) / (time.perf_counter() - start))
    return float(np.median(speeds[1:]))


def jax_step(epochs: int) -> float:
    """The same loop with the whole step (the batch's rows, dropout, gradient, Adam) under one
    jax.jit, float32, the training set held as JAX arrays; the median epoch after the first."""
    import jax
    import jax.numpy as jnp

    from mlp.data import load

    data = load("mnist-5k")
    X, y = jnp.asarray(data.x_train, jnp.float32), jnp.asarray(data.y_train)
    rng = np.random.default_rng(0)
    sizes = [784, 256, 256, 10]
    params = [(jnp.asarray(rng.uniform(-1, 1, (o, i)) / np.sqrt(i), jnp.float32), jnp.zeros(o, jnp.float32))
              for i, o in zip(sizes, sizes[1:])]
    state = (params, jax.tree_util.tree_map(jnp.zeros_like, params), jax.tree_util.tree_map(jnp.zeros_like, params), 0)

    def loss(params, x, labels, key):
        for i, (W, b) in enumerate(params):
            x = x @ W.T + b
            if i < len(params) - 1:
                key, sub = jax.random.split(key)
                x = jax.nn.relu(x) * jax.random.bernoulli(sub, 0.8, x.shape) / 0.8
        return (jax.nn.logsumexp(x, axis=1) - jnp.take_along_axis(x, labels[:, None], axis=1)[:, 0]).mean()

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, rows, key):
        params, m, v, t = state
        g = jax.grad(loss)(params, X[rows], y[rows], key)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        params = jax.tree_util.tree_map(lambda p, m, v: p - 1e-3 * (m / (1 - 0.9**t)) / (jnp.sqrt(v / (1 - 0.999**t)) + 1e-8),
                                        params, m, v)
        return params, m, v, t

    key, speeds, n = jax.random.PRNGKey(0), [], len(data.x_train) // 128 * 128  # whole batches: one trace
    for _ in range(epochs):
        start, order = time.perf_counter(), rng.permutation(len(data.x_train))
        for first in range(0, n, 128):
            key, sub = jax.random.split(key)
            state = step(state, order[first : first + 128], sub)
        jax.block_until_ready(state)
        speeds.append(n / (time.perf_counter() - start))
    return float(np.median(speeds[1:]))


def numpy_by_hand(epochs: int) -> float:
    """The same loop written by hand in numpy, float32, every intermediate in a buffer reused
    batch after batch (out=): the batch's rows, dropout scales drawn, forward, softmax
    cross-entropy's gradient, backward and Adam; the median epoch after the first. The limit
    a plan of numpy calls can approach."""
    from mlp.data import load

    data = load("mnist-5k")
    X, y = data.x_train.astype(np.float32), data.y_train
    rng, sizes, B = np.random.default_rng(0), [784, 256, 256, 10], 128
    Ws = [(rng.uniform(-1, 1, (o, i)) / np.sqrt(i)).astype(np.float32) for i, o in zip(sizes, sizes[1:])]
    bs = [np.zeros(o, np.float32) for o in sizes[1:]]
    params = [p for pair in zip(Ws, bs) for p in pair]
    grads, ms, vs = ([np.zeros_like(p) for p in params] for _ in range(3))
    scratch = [np.empty_like(p) for p in params]
    x, eye = np.empty((B, 784), np.float32), np.eye(10, dtype=np.float32)
    zs = [np.empty((B, o), np.float32) for o in sizes[1:]]  # pre-activations, then their adjoints
    hs = [np.empty((B, o), np.float32) for o in sizes[1:-1]]  # hidden outputs (relu, then dropped)
    slopes = [np.empty((B, o), np.float32) for o in sizes[1:-1]]  # d h / d z: the scale where z > 0, else 0
    uniform, t, zmax, total = np.empty((B, 256), np.float32), np.empty((B, 10), np.float32), np.empty((B, 1), np.float32), \
        np.empty((B, 1), np.float32)
    lr, beta1, beta2, eps, step, speeds = 1e-3, 0.9, 0.999, 1e-8, 0, []
    n = len(X) // B * B
    for _ in range(epochs):
        start, order = time.perf_counter(), rng.permutation(len(X))
        for first in range(0, n, B):
            rows = order[first : first + B]
            np.take(X, rows, axis=0, out=x)
            np.take(eye, y[rows], axis=0, out=t)
            inputs = [x, *hs]
            for i, (W, b, z) in enumerate(zip(Ws, bs, zs)):
                np.matmul(inputs[i], W.T, out=z)
                z += b
                if i < len(hs):
                    rng.random(dtype=np.float32, out=uniform)
                    np.multiply(uniform < 0.8, np.float32(1 / 0.8), out=slopes[i])
                    slopes[i] *= z > 0
                    np.multiply(z, slopes[i], out=hs[i])
            softmax_adjoint_in_place(zs[-1], t, np.float32(1 / B), zmax, total)  # logits -> their adjoint
            for i in reversed(range(len(Ws))):
                np.matmul(zs[i].T, inputs[i], out=grads[2 * i])
                np.sum(zs[i], axis=0, out=grads[2 * i + 1])
                if i:
                    np.matmul(zs[i], Ws[i], out=zs[i - 1])
                    zs[i - 1] *= slopes[i - 1]
            step += 1
            for p, g, m, v, s in zip(params, grads, ms, vs, scratch):
                np.multiply(g, 1 - beta1, out=s)
                m *= beta1
                m += s
                np.multiply(g, g, out=s)
                v *= beta2
                s *= 1 - beta2
                v += s
                np.multiply(v, 1 / (1 - beta2**step), out=s)
                np.sqrt(s, out=s)
                s += eps
                np.divide(m, s, out=s)
                s *= lr / (1 - beta1**step)
                p -= s
        speeds.append(n / (time.perf_counter() - start))
    return float(np.median(speeds[1:]))


def products_alone(epochs: int) -> float:
    """A step's eight matrix products alone, as numpy computes them (out=, float32): the three
    of the forward pass, the three weights' gradients and the two hidden layers' adjoints. No
    step that calls numpy's BLAS for them can be faster; the median epoch after the first."""
    sizes, B, speeds, n = [784, 256, 256, 10], 128, [], 4000 // 128 * 128
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((o, i), np.float32) for i, o in zip(sizes, sizes[1:])]
    xs = [rng.standard_normal((B, size), np.float32) for size in sizes]  # each layer's input, and the logits
    adjoints = [np.empty((B, size), np.float32) for size in sizes]
    grads = [np.empty_like(W) for W in Ws]
    for _ in range(epochs):
        start = time.perf_counter()
        for _ in range(0, n, B):
            for i, W in enumerate(Ws):
                np.matmul(xs[i], W.T, out=xs[i + 1])
            for i in reversed(range(len(Ws))):
                np.matmul(xs[i + 1].T, xs[i], out=grads[i])
                if i:
                    np.matmul(xs[i + 1], Ws[i], out=adjoints[i])
        speeds.append(n / (time.perf_counter() - start))
    return float(np.median(speeds[1:]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--engine", help="run one engine and print its samples/s (used by the rounds)")
    args = p.parse_args()
    if args.engine:
        print(pytorch(args.epochs) if args.engine == PYTORCH else jax_step(args.epochs) if args.engine == JAX else
              numpy_by_hand(args.epochs) if args.engine == BY_HAND else products_alone(args.epochs) if args.engine == PRODUCTS
              else wengert(ENGINES[args.engine], args.epochs))
        return
    names = [*ENGINES, BY_HAND, PRODUCTS, *([PYTORCH] if have("torch") else []), *([JAX] if have("jax") else [])]
    speeds = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            out = subprocess.run([sys.executable, "-m", "benchmarks.second_semester_speed", "--engine", name, "--epochs",
                                  str(args.epochs)], capture_output=True, text=True, check=True)
            speeds[name].append(float(out.stdout.strip().splitlines()[-1]))
    print(f"# The second semester's net, samples/s, on {machine()}\n")
    anchors = [a for a in (PYTORCH, JAX) if a in speeds]
    rows = [[name, f"{np.median(v):,.0f}", ", ".join(f"{x:,.0f}" for x in v),
             *(f"{np.median([a / b for a, b in zip(v, speeds[anchor])]):.2f}" for anchor in anchors)] for name, v in speeds.items()]
    print(table(["engine", "samples/s (median)", "rounds", *(f"vs {a} (median of rounds)" for a in anchors)], rows))
    print("\nissue 29's targets for --nodes matrix --dtype float32: 1.5x PyTorch, 1.0x JAX.")


if __name__ == "__main__":
    main()
