"""What one BLAS thread costs matrix nodes (issue 9): the training program's epoch on matrix nodes
(tape.Tensor, numpy's BLAS) with BLAS limited to 1 thread against 2, each in a fresh process, the
rounds interleaved; and whether the weights after its three epochs are the same to the bit. The program
computes on one BLAS thread because OpenBLAS's threaded products sum in another order (weights
differ in the last bits between --threads 1 and 2).

    python -m benchmarks.matrix_threads [--rounds 5] [--samples 3200]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import machine, table
from benchmarks.mlp import BATCH, digits


def one(hidden: int, dtype: str, blas: int, samples: int) -> dict:
    """One process's measure: samples/s of two epochs' median (Adam, batch 32, 784-hidden-10 relu)
    and of the test set's logits, with BLAS limited to `blas` threads; a hash of the weights."""
    import numba
    from threadpoolctl import threadpool_limits

    import tape
    from mlp.accumulate import MatrixAccumulator, InputRows
    from mlp.nn import MLP
    from mlp.optim import Adam

    numba.set_num_threads(1)
    X, y, _ = digits(samples)
    with tape.Tape(), threadpool_limits(blas, user_api="blas"):
        model = MLP([784, hidden, 10], activation="relu", seed=0)
        opt, acc, inputs = Adam(model.parameters()), MatrixAccumulator(model, dtype=dtype), InputRows(X)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for first in range(0, samples, BATCH):
                opt.zero_grad()
                acc.accumulate(inputs, np.arange(first, min(first + BATCH, samples)), y, 1.0 / BATCH)
                opt.step()
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        acc.logits(inputs)
        evaluation = time.perf_counter() - start
    return {"train": samples / statistics.median(times[1:]), "evaluate": samples / evaluation,
            "weights": hashlib.sha256(model.parameters().values.tobytes()).hexdigest()[:12]}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.matrix_threads")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--samples", type=int, default=3200)
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # hidden dtype blas: one process's measure
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], int(args.one[2]), args.samples)))
        return
    print(f"{machine()}; {digits(1)[2]}, {args.samples} samples, batch {BATCH}, {args.rounds} rounds")
    rows = []
    for hidden in (32, 128):
        for dtype in ("float64", "float32"):
            runs = {1: [], 2: []}
            for _ in range(args.rounds):
                for blas in (1, 2):
                    out = subprocess.run([sys.executable, "-m", "benchmarks.matrix_threads", "--samples", str(args.samples),
                                          "--one", str(hidden), dtype, str(blas)], capture_output=True, text=True, check=True)
                    runs[blas].append(json.loads(out.stdout))
            train = {b: statistics.median(r["train"] for r in runs[b]) for b in runs}
            evaluate = {b: statistics.median(r["evaluate"] for r in runs[b]) for b in runs}
            same = runs[1][0]["weights"] == runs[2][0]["weights"]
            rows.append([f"784-{hidden}-10", dtype, f"{train[1]:,.0f}", f"{train[2]:,.0f}", f"{train[2] / train[1]:.2f}",
                         f"{evaluate[1]:,.0f}", f"{evaluate[2]:,.0f}", f"{evaluate[2] / evaluate[1]:.2f}",
                         "yes" if same else "no"])
    print(table(["net", "dtype", "train 1 BLAS thread (samples/s)", "train 2 (samples/s)", "2 / 1",
                 "evaluate 1 (samples/s)", "evaluate 2 (samples/s)", "2 / 1", "weights the same"], rows))


if __name__ == "__main__":
    main()
