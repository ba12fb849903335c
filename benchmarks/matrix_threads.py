"""What --threads gives matrix nodes (issue 29): the training program on matrix nodes in float32
with --threads 1 and 2 (numpy's BLAS on that many threads), each in a fresh process, the rounds
interleaved, on the MMiDS net (784-32-10 sigmoid, SGD, batch 32) and the second semester's
(784-256-256-10 ReLU, dropout 0.2, Adam, batch 128), on the 4,000 mnist-5k training digits:
the median samples/s of metrics.csv's epochs after the first, and whether the weights after the
run are the same to the bit (OpenBLAS's threaded products may sum in another order).

    python -m benchmarks.matrix_threads [--rounds 3] [--epochs 4]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile

from benchmarks.common import machine, table

NETS = {
    "MMiDS 784-32-10 sigmoid, SGD, batch 32": ["--hidden", "32", "--activation", "sigmoid", "--optimizer", "sgd",
                                               "--lr", "0.1", "--batch-size", "32"],
    "second semester 784-256-256-10 ReLU, dropout 0.2, Adam, batch 128": [
        "--hidden", "256", "256", "--activation", "relu", "--dropout", "0.2", "--optimizer", "adam", "--lr", "1e-3",
        "--batch-size", "128"],
}


def one(net: str, threads: int, epochs: int) -> dict:
    """One process's run of the training program: its median samples/s and a hash of its weights."""
    from mlp import checkpoint, train

    with tempfile.TemporaryDirectory() as out:
        flags = [*NETS[net], "--nodes", "matrix", "--dtype", "float32", "--threads", str(threads), "--epochs", str(epochs),
                 "--no-plots", "--out", f"{out}/run"]
        if train.main(flags) != 0:
            raise SystemExit("the training program failed")
        with open(f"{out}/run/metrics.csv", newline="") as f:
            speeds = [float(row["samples_per_s"]) for row in csv.DictReader(f)][1:]
        weights = checkpoint.load(f"{out}/run/model.npz").model.parameters().values
    return {"speed": statistics.median(speeds), "weights": hashlib.sha256(weights.tobytes()).hexdigest()[:12]}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.matrix_threads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # net threads: one process's measure
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.epochs)))
        return
    print(f"{machine()}; the training program, --nodes matrix --dtype float32, {args.epochs} epochs, {args.rounds} rounds")
    rows = []
    for net in NETS:
        runs = {1: [], 2: []}
        for _ in range(args.rounds):
            for threads in runs:
                out = subprocess.run([sys.executable, "-m", "benchmarks.matrix_threads", "--epochs", str(args.epochs),
                                      "--one", net, str(threads)], capture_output=True, text=True, check=True)
                runs[threads].append(json.loads(out.stdout.strip().splitlines()[-1]))
        speed = {k: [r["speed"] for r in v] for k, v in runs.items()}
        ratio = statistics.median(b / a for a, b in zip(speed[1], speed[2]))
        rows.append([net, f"{statistics.median(speed[1]):,.0f}", f"{statistics.median(speed[2]):,.0f}", f"{ratio:.2f}",
                     "yes" if runs[1][0]["weights"] == runs[2][0]["weights"] else "no"])
    print(table(["net", "--threads 1 (samples/s)", "--threads 2 (samples/s)", "2 / 1 (median of rounds)",
                 "weights the same"], rows))


if __name__ == "__main__":
    main()
