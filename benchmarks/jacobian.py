"""Jacobians of tall (n >> m) and wide (n << m) maps f: R^m -> R^n in forward mode (m passes),
reverse mode (n sweeps of one recorded tape) and `auto` (the course's rule), median of runs.

    python -m benchmarks.jacobian [--repeats 7]
"""
from __future__ import annotations

import argparse

import numpy as np

import tape
from benchmarks.common import machine, median_seconds, table


def tall(x, n=2000):
    """R^2 -> R^n."""
    return [tape.sin(x[0] * (k + 1)) + x[1] * tape.tanh(x[0] + k) for k in range(n)]


def wide(x):
    """R^m -> R^2."""
    return [tape.sum([tape.sin(v) * v for v in x]), tape.dot(list(x), list(x))]


def square(x):
    """R^m -> R^m, as many outputs as inputs."""
    return [tape.exp(v) * x[0] for v in x]


CASES = [("tall: R^2 -> R^2000", tall, 2), ("wide: R^400 -> R^2", wide, 400), ("square: R^60 -> R^60", square, 60)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    for name, fn, m in CASES:
        x = np.linspace(0.1, 1.0, m)
        reference = tape.jacobian(fn, "reverse")(x)
        seconds = {}
        for mode in ("forward", "reverse", "auto"):
            jac = tape.jacobian(fn, mode)
            np.testing.assert_allclose(jac(x), reference, rtol=1e-10, atol=1e-12)
            seconds[mode] = median_seconds(lambda: jac(x), args.repeats)
        winner = min(("forward", "reverse"), key=seconds.get)
        rows.append([name, *(f"{seconds[m] * 1e3:.1f} ms" for m in ("forward", "reverse", "auto")),
                     winner, f"{seconds['auto'] / seconds[winner]:.2f}"])
    print(f"# Jacobians on {machine()}\n")
    print(table(["map", "forward", "reverse", "auto", "faster mode", "auto / faster"], rows))


if __name__ == "__main__":
    main()
