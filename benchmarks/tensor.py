"""What recording a matrix node costs in Python (issue 19's target: <= 5 us a node).

Each operation runs on small arrays (4x4, where numpy's own work is a few hundred ns) two ways in
the same process, interleaved: on Tensors, recorded on a tape that is rewound every 1,000 nodes,
and as the bare numpy it computes (the value and the partials, or the rule's value). The
difference is the recording: checking the operands, the node beside the tape, its record, the
result's Tensor. Medians of the repeats; the anchors (the bare numpy, and a scalar Var product,
which says how fast the machine is running) are measured in the same run.

    python -m benchmarks.tensor [--repeats 21]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import tape
from benchmarks.common import machine, table
from tape import Tensor
from tape import _tensor, _vectorized

NODES = 1000  # recorded per timed run, then rewound


def operations(a: Tensor, b: Tensor, row: Tensor) -> dict:
    """name -> (the operation on Tensors, the bare numpy it computes)."""
    x, y, r = a.value, b.value, row.value
    matmul, total = _tensor.STRUCTURAL["matmul"], _tensor.STRUCTURAL["sum"]
    return {
        "a + b": (lambda: a + b, lambda: _vectorized.add(x, y)),
        "a * b": (lambda: a * b, lambda: _vectorized.mul(x, y)),
        "a + row (broadcast)": (lambda: a + row, lambda: _vectorized.add(x, r)),
        "a * 2.0 (a constant)": (lambda: a * 2.0, lambda: _vectorized.mul(x, 2.0)),
        "tape.sigmoid(a)": (lambda: tape.sigmoid(a), lambda: _vectorized.sigmoid(x)),
        "tape.relu(a)": (lambda: tape.relu(a), lambda: _vectorized.relu(x)),
        "a @ b": (lambda: a @ b, lambda: matmul.value(x, y)),
        "a.T": (lambda: a.T, lambda: x.transpose()),
        "a.sum(axis=1)": (lambda: a.sum(axis=1), lambda: total.value(x, axis=1, keepdims=False)),
        "a[1:3]": (lambda: a[1:3], lambda: x[1:3]),
    }


def per_call(fn, t: tape.Tape, mark: int, repeats: int) -> float:
    """Median seconds of one call of fn, NODES calls a run, the tape rewound after each run."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(NODES):
            fn()
        times.append((time.perf_counter() - start) / NODES)
        t.rewind(mark)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tape.Tape() as t:
        a, b, row = Tensor(rng.random((4, 4))), Tensor(rng.random((4, 4))), Tensor(rng.random(4))
        u, v = tape.Var(1.5), tape.Var(2.5)
        mark = t.mark()
        for name, (recorded, bare) in operations(a, b, row).items():
            recorded_times, bare_times = [], []
            for _ in range(args.repeats):  # interleaved: a slow spell hits both
                recorded_times.append(per_call(recorded, t, mark, 1))
                bare_times.append(per_call(bare, t, mark, 1))
            on_tape, numpy_alone = np.median(recorded_times), np.median(bare_times)
            rows.append([name, f"{on_tape * 1e6:.2f}", f"{numpy_alone * 1e6:.2f}", f"{(on_tape - numpy_alone) * 1e6:.2f}"])
        scalar = np.median([per_call(lambda: u * v, t, mark, 1) for _ in range(args.repeats)])
    print(f"# Recording a matrix node (4x4 operands) on {machine()}\n")
    print(table(["operation", "on Tensors (us)", "bare numpy (us)", "recording (us)"], rows))
    print(f"\nAnchor in the same run: a scalar Var product (x * y, recorded) takes {scalar * 1e6:.2f} us.")


if __name__ == "__main__":
    main()
