"""The second semester's recipes against their PyTorch twins, in one session: each round runs
`python examples/second_semester.py --dataset D` (wengert's training program) and
`python -m benchmarks.second_semester_torch --dataset D` (the same recipe in PyTorch) as fresh
processes, one after the other, and times each whole command (start-up, data, compilation or
its cache, training, evaluation, figures). Reports each one's test accuracy (of the model the
recipe keeps: its best validation epoch's, or the last), the medians of the wall times and their
ratio, and each round's ratio (a round's two commands run minutes apart at most, so its ratio is
the least shaken by a shared machine's changing speed) with their median.

    python -m benchmarks.second_semester [--datasets mnist-5k fashion-mnist] [--rounds 3] [--seeds 0]
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.common import have, machine, table


def timed(command: list[str]) -> tuple[float, float]:
    """(seconds, test accuracy in %) of one command, which prints `test accuracy: NN.NN%` last."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    found = re.search(r"test accuracy: ([0-9.]+)%\s*$", done.stdout)
    if done.returncode or not found:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, float(found.group(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["mnist-5k", "fashion-mnist"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seeds", nargs="+", default=["0"])
    p.add_argument("--threads", type=int, default=2, help="PyTorch's threads (wengert uses all cores)")
    args = p.parse_args()
    print(f"# {machine()}; PyTorch {'installed' if have('torch') else 'missing: wengert only'}\n")
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            times = {"wengert": [], "pytorch": []}
            accuracy = {}
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory() as out:
                    seconds, accuracy["wengert"] = timed([sys.executable, "examples/second_semester.py", "--dataset", dataset,
                                                          "--seed", seed, "--out", f"{out}/run"])
                times["wengert"].append(seconds)
                if have("torch"):
                    seconds, accuracy["pytorch"] = timed([sys.executable, "-m", "benchmarks.second_semester_torch",
                                                          "--dataset", dataset, "--seed", seed, "--threads", str(args.threads)])
                    times["pytorch"].append(seconds)
                print(dataset, seed, {k: [round(t, 1) for t in v] for k, v in times.items()}, accuracy, flush=True)
            median = {k: statistics.median(v) for k, v in times.items() if v}
            ratio = f"{median['wengert'] / median['pytorch']:.2f}" if "pytorch" in median else "-"
            each = [w / t for w, t in zip(times["wengert"], times["pytorch"])]
            rounds = f"{statistics.median(each):.2f} ({', '.join(f'{r:.2f}' for r in each)})" if each else "-"
            rows.append([dataset, seed, f"{accuracy['wengert']:.2f}%", f"{median['wengert']:.1f} s",
                         f"{accuracy.get('pytorch', float('nan')):.2f}%", f"{median.get('pytorch', float('nan')):.1f} s", ratio,
                         rounds])
    print()
    print(table(["data set", "seed", "wengert: test accuracy", "wengert: wall time", "PyTorch twin: test accuracy",
                 f"PyTorch twin ({args.threads} threads): wall time", "time / PyTorch's (medians)",
                 "time / PyTorch's, the median of the rounds' (each round's)"], rows))


if __name__ == "__main__":
    main()
