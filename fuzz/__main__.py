"""python -m fuzz [--seed N] [--programs K]: random programs run by wengert and by PyTorch, compared.

Without --seed it runs the fixed seed 0 and a rotating seed (today's date, printed), then the
edge values. Program i of seed N is drawn from default_rng([N, i]), so `--seed N --program i`
replays one. Exits 1, reporting the first discrepancies (each shrunk to its shortest failing
prefix) and a count per kind, if any."""
from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings

import numpy as np

from .check import UNJUDGED, check, shrink
from .edges import edges
from .generate import draw

KINDS = (("tensor", "float64"), ("tensor", "float32"), ("array", "float64"), ("scalar", "float64"))
SHOWN = 6  # discrepancies reported in full


def programs(seed: int, count: int, only: int | None = None):
    for i in range(count) if only is None else [only]:
        rng = np.random.default_rng([seed, i])
        kind, dtype = KINDS[i % len(KINDS)]
        yield i, rng, draw(rng, kind, dtype, int(rng.integers(1, 7)))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, help="replay this seed only (no edge values)")
    parser.add_argument("--program", type=int, help="with --seed: only this program")
    parser.add_argument("--programs", type=int, default=1500, help="programs per seed (default 1500)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # numpy's and torch's overflow warnings are expected here
    today = int(datetime.date.today().strftime("%Y%m%d"))
    seeds = [args.seed] if args.seed is not None else [0, today]
    found, ran, start = [], 0, time.time()
    for seed in seeds:
        print(f"seed {seed}: {args.programs if args.program is None else 1} programs "
              f"(replay: python -m fuzz --seed {seed})", flush=True)
        for i, rng, program in programs(seed, args.programs, args.program):
            ran += 1
            for d in check(program, rng):
                d = shrink(d, [seed, i, 1])
                d.where = f"seed {seed} program {i}"
                found.append(d)
    if args.seed is None:
        print("edge values", flush=True)
        found += edges()
    print(f"{ran} programs in {time.time() - start:.0f} s, {len(found)} discrepancies")
    if UNJUDGED:
        print(f"{len(UNJUDGED)} quantities PyTorch could not compute, not judged; the first: {UNJUDGED[0]}")
    if not found:
        return 0
    kinds = {}
    for d in found:
        kinds.setdefault(d.signature, []).append(d)
    print(f"\n{len(kinds)} kinds of discrepancy (what, the program's last operation); the first {min(SHOWN, len(kinds))} in full:\n")
    for same in list(kinds.values())[:SHOWN]:
        print(f"[{same[0].where}] {same[0]}\n")
    print("every kind: how often, what, last operation, on which nodes, in which transforms, where first:")
    for (what, op), same in kinds.items():
        nodes = sorted({f"{d.program.kind} {d.program.dtype}" for d in same})
        quantities = sorted({d.quantity for d in same})
        print(f"  {len(same):4d}  {what:11s} {op:22s} {', '.join(nodes)}: {', '.join(quantities)}; first at {same[0].where}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
