"""Memory of the matrix path's training step (issue 29: a warm traced step allocates nothing new
per batch). With tracemalloc, for the MMiDS net (784-32-10 sigmoid, batch 32, SGD) and the second
semester's (784-256-256-10 ReLU, dropout 0.2, batch 128, Adam, float32): the step (mlp.accumulate.
MatrixStep) traced and warmed by a few batches, then a few hundred batches measured: the memory
held after them (and a garbage collection) against before (a leak per batch would grow it), and the peak
during them above what was held (the temporaries a step makes and frees), beside the untraced
step (recorded anew each batch) and the bytes of one batch's input rows for scale.

    python -m benchmarks.step_memory [--batches 200]
"""
from __future__ import annotations

import argparse
import gc
import tracemalloc

import numpy as np

import tape
from benchmarks.common import machine, table
from mlp.accumulate import AccumulatorStep, MatrixAccumulator, MatrixStep, InputRows
from mlp.nn import MLP
from mlp.optim import OPTIMIZERS

NETS = {
    "MMiDS 784-32-10 sigmoid, batch 32, SGD": dict(sizes=[784, 32, 10], activation="sigmoid", dropout=0.0, batch=32,
                                                   optimizer="sgd", lr=0.01),
    "second semester 784-256-256-10 ReLU, dropout 0.2, batch 128, Adam": dict(
        sizes=[784, 256, 256, 10], activation="relu", dropout=0.2, batch=128, optimizer="adam", lr=1e-3),
}


def measure(net: dict, dtype: str, traced: bool, batches: int) -> tuple[int, int]:
    """(bytes held after `batches` warm steps minus before, peak during them above before)."""
    rng = np.random.default_rng(0)
    n = 4 * net["batch"]
    X, y = rng.random((n, 784)) * (rng.random((n, 784)) < 0.19), rng.integers(0, 10, n)
    with tape.Tape():
        model = MLP(net["sizes"], activation=net["activation"], dropout=net["dropout"], seed=0)
    optimizer = OPTIMIZERS[net["optimizer"]](model.parameters(), lr=net["lr"])
    step = MatrixStep(model, optimizer, dtype) if traced else AccumulatorStep(MatrixAccumulator(model, dtype=dtype), optimizer)
    inputs, order, draws = InputRows(X), rng.permutation(n), np.random.default_rng(1)

    def steps(count: int) -> None:
        for k in range(count):
            rows = order[(k % 4) * net["batch"] : (k % 4 + 1) * net["batch"]]
            keep = model.dropout_scales(draws, len(rows)) if model.dropout_units else None
            step(inputs, rows, y, keep, net["lr"])

    steps(5)  # traced, buffers made, caches warm
    tracemalloc.start()
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    steps(batches)
    peak = tracemalloc.get_traced_memory()[1]
    gc.collect()  # reference cycles a call leaves are garbage, not memory kept
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, peak - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    rows = []
    for name, net in NETS.items():
        for dtype in ("float64", "float32"):
            for traced in (True, False):
                held, peak = measure(net, dtype, traced, args.batches)
                rows.append([name, dtype, "traced" if traced else "untraced (--no-trace)", f"{held:,}", f"{peak:,}",
                             f"{net['batch'] * 784 * np.dtype(dtype).itemsize:,}"])
    print(f"# The matrix path's step under tracemalloc, {args.batches} warm batches, on {machine()}\n")
    print(table(["net", "dtype", "step", "bytes held after - before", "peak above before (bytes)",
                 "one batch's input rows (bytes)"], rows))


if __name__ == "__main__":
    main()
