"""The engine's overhead in a recipe search (issue 22): `python -m mlp.sweep` on the embedded
Dask cluster, timed as a whole process, against the trials' own seconds (each measured on its
worker) divided by the number of workers.

    python -m benchmarks.sweep [--spec examples/sweep.toml] [--repeats 3] [--epochs 1 3]

The trials' own time of a worker's first trial includes its imports and the loading of numba's
cached kernels; the table shows first and later trials apart, to see that start-up is paid once
per worker.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, table

REPO = Path(__file__).resolve().parents[1]


def one_sweep(spec: Path, workers: int) -> tuple[float, list[dict]]:
    """(wall seconds of the whole command, trials.csv's rows) of one sweep in a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlp.sweep", str(spec), "--out", f"{tmp}/sweep", "--workers", str(workers)],
                       check=True, capture_output=True, cwd=REPO)
        wall = time.perf_counter() - began
        with open(f"{tmp}/sweep/trials.csv", newline="") as f:
            return wall, list(csv.DictReader(f))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=REPO / "examples" / "sweep.toml")
    parser.add_argument("--repeats", type=int, default=3, help="sweeps per figure (medians)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3], help="the trials' length, one row each")
    args = parser.parse_args()
    workers = os.cpu_count() or 1
    print(f"# a 4-trial sweep on the embedded Dask cluster ({workers} workers) on {machine()}\n")
    rows = []
    for epochs in args.epochs:
        spec = Path(tempfile.mkdtemp()) / "sweep.toml"
        spec.write_text(args.spec.read_text().replace("epochs = 1", f"epochs = {epochs}"))
        walls, ideals, firsts, laters = [], [], [], []
        for _ in range(args.repeats):
            wall, trials = one_sweep(spec, workers)
            seconds = [float(t["seconds"]) for t in trials]
            walls.append(wall)
            ideals.append(sum(seconds) / workers)
            seen = set()
            for t in sorted(trials, key=lambda t: int(t["trial"])):
                (laters if t["worker"] in seen else firsts).append(float(t["seconds"]))
                seen.add(t["worker"])
        wall, ideal = statistics.median(walls), statistics.median(ideals)
        rows.append([epochs, f"{wall:.2f} s", f"{ideal:.2f} s", f"{wall / ideal:.2f}x",
                     f"{statistics.median(firsts):.2f} s", f"{statistics.median(laters):.2f} s" if laters else "-"])
    print(table(["epochs a trial", "sweep, whole command", "sum of trials / workers", "ratio",
                 "a worker's first trial", "its later trials"], rows))


if __name__ == "__main__":
    main()
