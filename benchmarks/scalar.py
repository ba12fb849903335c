"""The scalar workload: many terms relu(x_i * w + b) summed, then one backward (dy/dw, dy/db).

Compares wengert's tape, in the same run, with micrograd and PyTorch 0-dim tensors (each if
installed), with the "easy version" of a tape (five Python lists copied to numpy at the
backward) and with a floor (one object per op and no tape at all: what operator overloading
costs in CPython before any recording). Also measures the sweep against the bare Algorithm 1
loop, the tape's bytes per edge, the import time and a fresh process's first gradient (numba
cache cold and warm).

    python -m benchmarks.scalar [--sizes 1000 10000 100000] [--repeats 7]
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

import tape
from benchmarks.common import have, machine, median_seconds, table

OPS_PER_TERM = 3  # x * w, + b, relu (the sum is one n-ary node for wengert)


def workload_data(n: int, seed: int = 0) -> list[float]:
    """The data x_i of the terms relu(x_i * w + b); w and b are the two shared parameters."""
    rnd = random.Random(seed)
    return [rnd.uniform(-1, 1) for _ in range(n)]


def run_wengert(xs):
    with tape.Tape():
        w, b = tape.Var(0.5), tape.Var(0.1)
        y = tape.sum([tape.relu(x * w + b) for x in xs])
        y.backward()
        return w.grad


def run_floats(xs):
    w, b = 0.5, 0.1
    return sum([max(x * w + b, 0.0) for x in xs])


def run_micrograd(xs):
    from micrograd.engine import Value

    w, b = Value(0.5), Value(0.1)
    terms = [(x * w + b).relu() for x in xs]
    while len(terms) > 1:  # a balanced sum: micrograd's recursive sort cannot take a long chain
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    terms[0].backward()
    return w.grad


def run_torch(xs):
    import torch

    w = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    y = torch.stack([torch.relu(x * w + b) for x in xs]).sum()
    y.backward()
    return float(w.grad)


class ListTape:
    """The easy version the issue names as the anchor to beat: five Python lists, copied to
    numpy at the backward, swept by the same numba loop."""

    def __init__(self):
        self.start, self.parent, self.partial, self.values, self.ops = [0], [], [], [], []

    def node(self, value, op, parents=(), partials=()):
        self.parent.extend(parents)
        self.partial.extend(partials)
        self.start.append(len(self.parent))
        self.values.append(value)
        self.ops.append(op)
        return ListVar(self, value, len(self.values) - 1)


class ListVar:
    __slots__ = ("tape", "value", "index")

    def __init__(self, t, value, index):
        self.tape, self.value, self.index = t, value, index

    def __rmul__(self, c):
        return self.tape.node(self.value * c, "mul", (self.index,), (c,))

    def __add__(self, other):
        return self.tape.node(self.value + other.value, "add", (self.index, other.index), (1.0, 1.0))

    def relu(self):
        return self.tape.node(max(self.value, 0.0), "relu", (self.index,), (float(self.value > 0.0),))


def run_list_tape(xs):
    from tape import _kernels

    t = ListTape()
    w, b = t.node(0.5, "leaf"), t.node(0.1, "leaf")
    terms = [(x * w + b).relu() for x in xs]
    y = t.node(sum(v.value for v in terms), "sum", [v.index for v in terms], [1.0] * len(terms))
    adjoint = np.zeros(len(t.values))
    adjoint[y.index] = 1.0
    _kernels.sweep(np.array(t.start, np.int32), np.array(t.parent, np.int32), np.array(t.partial), adjoint, 0, len(adjoint))
    return adjoint[w.index]


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

    def __rmul__(self, c):
        return self._make(self.value * c)

    def __add__(self, other):
        return self._make(self.value + other.value)

    def relu(self):
        return self._make(self.value if self.value > 0.0 else 0.0)


_new = object.__new__


def run_floor(xs):
    w, b = Floor(0.5), Floor(0.1)
    return sum([(x * w + b).relu().value for x in xs])


def split_record_and_sweep(xs):
    """wengert's time in recording and in backward (the flush of the staged tail and the sweep)."""
    with tape.Tape():
        w, b = tape.Var(0.5), tape.Var(0.1)
        start = time.perf_counter()
        y = tape.sum([tape.relu(x * w + b) for x in xs])
        recorded = time.perf_counter()
        y.backward()
        return recorded - start, time.perf_counter() - recorded


ENGINES_WITH_GRADIENTS = ("wengert", "easy version", "micrograd", "PyTorch")


def workload_rows(sizes: list[int], repeats: int) -> tuple[list, list]:
    """Each round runs every engine once, so a slow spell of this shared machine hits them
    all; ratios are medians of the rounds' ratios."""
    engines = {
        "wengert": run_wengert,
        "easy version: five lists, copied to numpy at the backward": run_list_tape,
        "floor: one object per op, no tape": run_floor,
        "plain floats (no derivatives)": run_floats,
    }
    if have("micrograd"):
        engines["micrograd 0.1.0"] = run_micrograd
    if have("torch"):
        import torch

        torch.set_num_threads(2)
        engines[f"PyTorch {torch.__version__} 0-dim float64"] = run_torch
    rows, split = [], []
    for n in sizes:
        xs = workload_data(n)
        expected = run_wengert(xs)
        for name, run in engines.items():  # every engine that differentiates gets the same dy/dw
            if name.startswith(ENGINES_WITH_GRADIENTS):
                assert abs(float(run(xs)) - expected) <= 1e-9 * n, name
        rounds = [{name: median_seconds(lambda: run(xs), repeats=1, warmup=0) for name, run in engines.items()}
                  for _ in range(repeats)]
        for name in engines:
            seconds = np.median([r[name] for r in rounds])
            ratio = np.median([r[name] / r["wengert"] for r in rounds])
            rows.append([f"{n:,}", name, f"{seconds / n * 1e9:,.0f}", f"{ratio:.2f}"])
        record, sweep = np.median([split_record_and_sweep(xs) for _ in range(repeats)], axis=0)
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

    xs = workload_data(n_terms)
    with tape.Tape() as t:
        w, b = tape.Var(0.5), tape.Var(0.1)
        y = tape.sum([tape.relu(x * w + b) for x in xs])
        start, parent, partial = t.arrays()
        seed = np.zeros(y.node + 1)
        seed[-1] = 1.0
        edges = t.num_edges
        bytes_per_edge = t.nbytes / edges

        copy_s = median_seconds(seed.copy, repeats, warmup=2)  # both sweeps start from a copy
        ours_s = median_seconds(lambda: _kernels.sweep(start, parent, partial, seed.copy(), 0, len(seed)), repeats, warmup=2)
        bare_s = median_seconds(lambda: bare_sweep(start, parent, partial, seed.copy()), repeats, warmup=2)
    ours_s, bare_s = ours_s - copy_s, bare_s - copy_s
    return [
        [f"{edges:,}", f"{edges / ours_s / 1e6:,.0f}", f"{edges / bare_s / 1e6:,.0f}",
         f"{bare_s / ours_s:.2f}", f"{bytes_per_edge:.1f}"]
    ]


def fresh_process_seconds(code: str, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


README_EXAMPLE = """
import math
import tape

x1, x2 = tape.Var(math.pi), tape.Var(1.0)
y = x2 * tape.cos(x1) + tape.exp(x2)
y.backward()
print(y.value, x1.grad, x2.grad)
tape.current_tape().show()
"""


def timed(code: str) -> str:
    """Python code that times `code` and prints the seconds last."""
    return f"import time\n_s = time.perf_counter()\n{code}\nprint(time.perf_counter() - _s)"


def startup_rows(repeats: int) -> list:
    """Fresh processes, medians: import tape, the first gradients (plain Python for a small tape,
    and with the compiled kernels forced, as before they were spared), and what loading numba
    costs against what plain Python pays a number or an edge (PYTHON_BUDGET in tape/_tape.py)."""
    first_grad = "import tape\ntape.grad(lambda x: tape.sin(x) * x)(1.0)"
    load_kernels = "import tape._kernels as k, numpy as np\nk.sweep(np.zeros(2, np.int32), np.zeros(1, np.int32), np.zeros(1), np.zeros(1), 0, 1)"
    env = dict(os.environ)
    median = lambda code: np.median([fresh_process_seconds(code, env) for _ in range(repeats)])  # noqa: E731
    rows = [
        ["import tape", f"{median(timed('import tape')):.3f} s"],
        ["import numba (anchor)", f"{median(timed('import numba')):.3f} s"],
        ["README's first example, import to printed tape (plain-Python sweep)", f"{median(timed(README_EXAMPLE)):.3f} s"],
        ["README's first example with the compiled kernels forced (as before)",
         f"{median(timed('import tape._kernels' + README_EXAMPLE)):.3f} s"],
        ["loading numba's cached kernels: import tape._kernels and a first sweep", f"{median(timed(load_kernels)):.3f} s"],
    ]
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        cold = fresh_process_seconds(timed("import tape._kernels\n" + first_grad), env)
        warm = median(timed("import tape._kernels\n" + first_grad))
    rows.append(["first gradient, compiled kernels forced, numba cache cold", f"{cold:.2f} s"])
    rows.append(["first gradient, compiled kernels forced, numba cache warm", f"{warm:.2f} s"])
    rows.append(["first gradient, plain-Python sweep", f"{median(timed(first_grad)):.3f} s"])
    unit = python_seconds_per_unit(repeats)
    rows.append(["plain Python, a staged number parsed or an edge swept (100,000 edges)", f"{unit * 1e9:.0f} ns"])
    budget = (median(timed(load_kernels)) - median(timed("import tape"))) / unit
    rows.append(["budget: numbers and edges plain Python handles in numba's load time", f"{budget:,.0f}"])
    return rows


def python_seconds_per_unit(repeats: int, edges: int = 100_000) -> float:
    """What tape/_small.py pays a unit of work: a staged number parsed or an edge swept."""
    from tape import _small
    from tape._rules import header

    nodes = edges // 2 + 1  # a leaf, then nodes of two parents: the one before, and the leaf
    stream = [header(0, 0, 1), 1.0]
    for i in range(1, nodes):
        stream += [header(tape.op_code("mul"), 2), i - 1, 0, 1.0001, 0.5]
    stream = np.array(stream)

    def parse_and_sweep():
        start, parent = np.zeros(nodes + 1, np.int32), np.zeros(len(stream), np.int32)
        partial, op = np.zeros(len(stream)), np.zeros(nodes, np.uint8)
        n_edges = _small.parse(stream.tolist(), start, parent, partial, op, 0, 0)
        adjoint = np.zeros(nodes)
        adjoint[-1] = 1.0
        _small.sweep(start, parent, partial, adjoint, 0, nodes)
        return len(stream) + n_edges

    return median_seconds(parse_and_sweep, repeats) / parse_and_sweep()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweep-terms", type=int, default=1_000_000)
    parser.add_argument("--startup-only", action="store_true", help="only the import and first-gradient times")
    args = parser.parse_args()

    if args.startup_only:
        print(table(["what", "median"], startup_rows(args.repeats)))
        return
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
