"""The scalar workload: many relu(w * x + b) terms summed, then one backward.

Compares wengert's tape with micrograd and PyTorch 0-dim tensors (each if installed) in the
same run, and measures the sweep against a bare numba loop, the tape's bytes per edge, the
import time and a fresh process's first gradient (numba cache cold and warm).

    python -m benchmarks.scalar [--sizes 1000 10000 100000] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

import tape
from benchmarks.common import have, machine, median_seconds, table

OPS_PER_TERM = 3  # w * x, + b, relu (the sum is one n-ary node for wengert)


def workload_data(n: int, seed: int = 0):
    rnd = random.Random(seed)
    return [rnd.uniform(-1, 1) for _ in range(n)], [rnd.uniform(-1, 1) for _ in range(n)]


def run_wengert(xs, ws):
    with tape.Tape():
        w_vars, b = [tape.Var(w) for w in ws], tape.Var(0.1)
        y = tape.sum([tape.relu(w * x + b) for w, x in zip(w_vars, xs)])
        y.backward()
        return w_vars[0].grad


def run_floats(xs, ws):
    b = 0.1
    return sum([max(w * x + b, 0.0) for w, x in zip(ws, xs)])


def run_micrograd(xs, ws):
    from micrograd.engine import Value

    w_vals, b = [Value(w) for w in ws], Value(0.1)
    terms = [(w * x + b).relu() for w, x in zip(w_vals, xs)]
    while len(terms) > 1:  # a balanced sum: micrograd's recursive sort cannot take a long chain
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    terms[0].backward()
    return w_vals[0].grad


def run_torch(xs, ws):
    import torch

    w_ts = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in ws]
    b = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    y = torch.stack([torch.relu(w * x + b) for w, x in zip(w_ts, xs)]).sum()
    y.backward()
    return w_ts[0].grad


def split_record_and_sweep(xs, ws):
    """wengert's time in recording and in backward (the flush of the staged tail and the sweep)."""
    import time

    with tape.Tape():
        w_vars, b = [tape.Var(w) for w in ws], tape.Var(0.1)
        start = time.perf_counter()
        y = tape.sum([tape.relu(w * x + b) for w, x in zip(w_vars, xs)])
        recorded = time.perf_counter()
        y.backward()
        return recorded - start, time.perf_counter() - recorded


class Floor:
    """The least any operator-overloading engine does per op: dispatch a dunder, compute the
    value and create one slotted object (no tape, no derivatives). Its speed bounds the tape's."""

    __slots__ = ("value", "node", "tape")

    def __init__(self, value):
        self.value, self.node, self.tape = value, 0, None

    def _make(self, value):
        r = _new(Floor)
        r.value, r.node, r.tape = value, 0, None
        return r

    def __mul__(self, other):
        return self._make(self.value * other)

    def __add__(self, other):
        return self._make(self.value + other.value)

    def relu(self):
        return self._make(self.value if self.value > 0.0 else 0.0)


_new = object.__new__


def run_floor(xs, ws):
    w_vals, b = [Floor(w) for w in ws], Floor(0.1)
    return sum([(w * x + b).relu().value for w, x in zip(w_vals, xs)])


def workload_rows(sizes: list[int], repeats: int) -> tuple[list, list]:
    """Each round runs every engine once, so a slow spell of this shared machine hits them
    all; ratios are medians of the rounds' ratios."""
    engines = {"wengert": run_wengert, "floor: one object per op, no tape": run_floor,
               "plain floats (no derivatives)": run_floats}
    if have("micrograd"):
        engines["micrograd 0.1.0"] = run_micrograd
    if have("torch"):
        import torch

        torch.set_num_threads(2)
        engines[f"PyTorch {torch.__version__} 0-dim float64"] = run_torch
    rows, split = [], []
    for n in sizes:
        xs, ws = workload_data(n)
        rounds = []
        for _ in range(repeats):
            rounds.append({name: median_seconds(lambda: run(xs, ws), repeats=1, warmup=0)
                           for name, run in engines.items()})
        for name in engines:
            seconds = np.median([r[name] for r in rounds])
            ratio = np.median([r[name] / r["wengert"] for r in rounds])
            rows.append([f"{n:,}", name, f"{seconds / n * 1e9:,.0f}", f"{ratio:.2f}"])
        record, sweep = np.median([split_record_and_sweep(xs, ws) for _ in range(repeats)], axis=0)
        split.append([f"{n:,}", f"{record / (OPS_PER_TERM * n) * 1e9:.0f}", f"{sweep / (OPS_PER_TERM * n) * 1e9:.0f}"])
    return rows, split


def sweep_rows(n_terms: int, repeats: int) -> list:
    """The sweep's edges/s against the bare Algorithm 1 loop in numba over the same arrays."""
    from numba import njit

    from tape import _kernels

    @njit(cache=True)
    def bare_sweep(start, parent, partial, adjoint):
        # Algorithm 1 at its barest: the same CSR loop without skipping zero adjoints.
        for i in range(adjoint.shape[0] - 1, -1, -1):
            for e in range(start[i], start[i + 1]):
                adjoint[parent[e]] += partial[e] * adjoint[i]

    xs, ws = workload_data(n_terms)
    with tape.Tape() as t:
        w_vars, b = [tape.Var(w) for w in ws], tape.Var(0.1)
        y = tape.sum([tape.relu(w * x + b) for w, x in zip(w_vars, xs)])
        start, parent, partial = t.arrays()
        seed = np.zeros(y.node + 1)
        seed[-1] = 1.0
        edges = t.num_edges
        bytes_per_edge = t.nbytes / edges

        copy_s = median_seconds(seed.copy, repeats, warmup=2)  # both sweeps start from a copy
        ours_s = median_seconds(lambda: _kernels.sweep(start, parent, partial, seed.copy()), repeats, warmup=2)
        bare_s = median_seconds(lambda: bare_sweep(start, parent, partial, seed.copy()), repeats, warmup=2)
    ours_s, bare_s = ours_s - copy_s, bare_s - copy_s
    return [
        [f"{edges:,}", f"{edges / ours_s / 1e6:,.0f}", f"{edges / bare_s / 1e6:,.0f}",
         f"{bare_s / ours_s:.2f}", f"{bytes_per_edge:.1f}"]
    ]


def fresh_process_seconds(code: str, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def startup_rows(repeats: int) -> list:
    import_code = "import time; s = time.perf_counter(); import tape; print(time.perf_counter() - s)"
    first_grad = (
        "import time; s = time.perf_counter(); import tape; "
        "tape.grad(lambda x: tape.sin(x) * x)(1.0); print(time.perf_counter() - s)"
    )
    env = dict(os.environ)
    rows = [["import tape", f"{np.median([fresh_process_seconds(import_code, env) for _ in range(repeats)]):.3f} s"]]
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        cold = fresh_process_seconds(first_grad, env)
        warm = np.median([fresh_process_seconds(first_grad, env) for _ in range(repeats)])
    rows.append(["first gradient, fresh process, numba cache cold", f"{cold:.2f} s"])
    rows.append(["first gradient, fresh process, numba cache warm", f"{warm:.2f} s"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweep-terms", type=int, default=1_000_000)
    args = parser.parse_args()

    print(f"# scalar workload on {machine()}\n")
    rows, ratios = workload_rows(args.sizes, args.repeats)
    print("Record + backward per term (relu(w*x + b), then the sum); medians of interleaved rounds:\n")
    print(table(["terms", "engine", "ns per term", "time / wengert's time"], rows))
    print("\nwengert's time per op (3 ops a term) in recording and in backward (flush + sweep):\n")
    print(table(["terms", "record ns/op", "backward ns/op"], ratios))
    print("\nThe sweep on the workload's tape (median):\n")
    print(table(["edges", "sweep M edges/s", "bare numba loop M edges/s", "sweep / bare", "bytes per edge"],
                sweep_rows(args.sweep_terms, args.repeats)))
    print("\nStart-up:\n")
    print(table(["what", "median"], startup_rows(args.repeats)))


if __name__ == "__main__":
    main()
