"""Second derivatives on matrix nodes (issue 30), against one gradient of the same function and
against PyTorch's and JAX's, measured in the same run.

(a) `tape.hvp` of the MMiDS net's batch loss (784-32-10 sigmoid, batch 32, softmax cross-entropy,
    its weights one Tensor of 25,450 entries) beside one gradient of that loss (issue 30's
    target: hvp <= 3 gradients), `torch.func.jvp(grad(f))` on 2 threads, and JAX's jvp(grad(f))
    under jit if JAX is installed;
(b) `tape.hessian` of logistic regression's mean loss in 785 dimensions (784 pixels and a bias,
    1,000 samples) beside `torch.func.hessian` (target: within 2x), jax.hessian under jit, and
    the closed form XᵀDX/n in numpy (the floor); with `--before REV`, tape.hessian at REV too;
(c) the first-order step of the MMiDS net on matrix nodes, as the training program takes it
    (MatrixAccumulator: record the batch, one sweep) and as `tape.value_and_grad` of the loss,
    and with `--before REV` the same measured on tape/ and mlp/ as they were at REV (git
    archive into a temporary folder), to show the first-order sweep is no slower.

Every engine runs in a fresh process, the rounds interleaved; a process times its measures
interleaved too (a slow spell hits all of them) and reports each one's median (of fewer runs
than --repeats once 10 s have gone: a slow engine). A check column
compares each result with the first engine's (a projection onto a fixed random direction).

    python -m benchmarks.second_order [--rounds 3] [--repeats 7] [--before REV]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.common import have, machine, table

SIZES, BATCH, LOGISTIC_SAMPLES = (784, 32, 10), 32, 1000
ROOT = Path(__file__).resolve().parent.parent


# -- the data and the functions, the same in every process ----------------------------------------


def mmids_data(dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a batch of digits X, their labels, the net's weights as one flat vector, a direction)."""
    from benchmarks.mlp import digits

    x, labels, _ = digits(BATCH)
    rng = np.random.default_rng(0)
    n = sum(a * b + b for a, b in zip(SIZES, SIZES[1:]))
    return x.astype(dtype), labels.astype(np.int64), (rng.normal(size=n) * 0.1).astype(dtype), rng.normal(size=n).astype(dtype)


def unpack(theta, reshape: Callable) -> list:
    """[W1, b1, W2, b2] cut from the flat weights (slices of theta, reshaped)."""
    pieces, at = [], 0
    for a, b in zip(SIZES, SIZES[1:]):
        pieces += [reshape(theta[at : at + a * b], (a, b)), theta[at + a * b : at + a * b + b]]
        at += a * b + b
    return pieces


def logistic_data(dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(1,000 digits with a column of ones, whether each is a 0-4, weights of 785 entries)."""
    from benchmarks.mlp import digits

    x, labels, _ = digits(LOGISTIC_SAMPLES)
    x = np.hstack([x, np.ones((len(x), 1))])
    w = np.random.default_rng(1).normal(size=x.shape[1]) * 0.01
    return x.astype(dtype), (labels < 5).astype(dtype), w.astype(dtype)


def projection(result) -> float:
    """<result, r> for a fixed random r: one number to compare engines' results by."""
    result = np.asarray(result, dtype=np.float64).ravel()
    return float(result @ np.random.default_rng(2).normal(size=result.size))


def interleaved_medians(runs: dict[str, Callable], repeats: int, budget: float = 10.0) -> dict[str, float]:
    """name -> median seconds of runs[name](), the runs taken in turn, after one untimed call each;
    `repeats` turns, or fewer (at least one) once `budget` seconds have gone (a slow engine)."""
    for run in runs.values():
        run()
    times: dict[str, list] = {name: [] for name in runs}
    began = time.perf_counter()
    for turn in range(repeats):
        if turn and time.perf_counter() - began > budget:
            break
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measured(runs: dict[str, Callable], repeats: int) -> dict:
    """Each run's median seconds and the projection of its result."""
    out = {f"{name} check": projection(run()) for name, run in runs.items()}
    out.update(interleaved_medians(runs, repeats))
    return out


# -- the engines: each returns {measure: seconds, "measure check": projection} -----------------------


def wengert_mmids(dtype, repeats: int) -> dict:
    import tape

    x, labels, theta, v = mmids_data(dtype)

    def loss(theta):
        w1, b1, w2, b2 = unpack(theta, lambda t, shape: t.reshape(shape))
        return tape.softmax_cross_entropy(tape.sigmoid(x @ w1 + b1) @ w2 + b2, labels)

    grad = tape.grad(loss)
    return measured({"grad": lambda: grad(tape.Tensor(theta)),
                     "hvp": lambda: tape.hvp(loss, tape.Tensor(theta), v)}, repeats)


def torch_mmids(dtype, repeats: int) -> dict:
    import torch
    from torch.func import grad, jvp

    torch.set_num_threads(2)
    x, labels, theta, v = (torch.from_numpy(a) for a in mmids_data(dtype))

    def loss(theta):
        w1, b1, w2, b2 = unpack(theta, torch.reshape)
        return torch.nn.functional.cross_entropy(torch.sigmoid(x @ w1 + b1) @ w2 + b2, labels)

    return measured({"grad": lambda: grad(loss)(theta),
                     "hvp": lambda: jvp(grad(loss), (theta,), (v,))[1]}, repeats)


def jax_mmids(dtype, repeats: int) -> dict:
    import jax

    x, labels, theta, v = (jax.numpy.asarray(a) for a in mmids_data(dtype))

    def loss(theta):
        w1, b1, w2, b2 = unpack(theta, jax.numpy.reshape)
        z = jax.nn.sigmoid(x @ w1 + b1) @ w2 + b2
        return (jax.nn.logsumexp(z, axis=1) - z[jax.numpy.arange(len(labels)), labels]).mean()

    grad = jax.jit(jax.grad(loss))
    hvp = jax.jit(lambda theta, v: jax.jvp(jax.grad(loss), (theta,), (v,))[1])
    return measured({"grad": lambda: grad(theta).block_until_ready(),
                     "hvp": lambda: hvp(theta, v).block_until_ready()}, repeats)


def wengert_logistic(dtype, repeats: int) -> dict:
    import tape

    x, y, w = logistic_data(dtype)

    def loss(w):
        z = x @ w
        return (tape.softplus(z) - y * z).mean()

    return measured({"hessian": lambda: tape.hessian(loss)(tape.Tensor(w))}, repeats)


def torch_logistic(dtype, repeats: int) -> dict:
    import torch
    from torch.func import hessian

    torch.set_num_threads(2)
    x, y, w = (torch.from_numpy(a) for a in logistic_data(dtype))
    loss = lambda w: (torch.nn.functional.softplus(x @ w) - y * (x @ w)).mean()  # noqa: E731
    return measured({"hessian": lambda: hessian(loss)(w)}, repeats)


def jax_logistic(dtype, repeats: int) -> dict:
    import jax

    x, y, w = (jax.numpy.asarray(a) for a in logistic_data(dtype))
    hessian = jax.jit(jax.hessian(lambda w: (jax.nn.softplus(x @ w) - y * (x @ w)).mean()))
    return measured({"hessian": lambda: hessian(w).block_until_ready()}, repeats)


def numpy_logistic(dtype, repeats: int) -> dict:
    x, _, w = logistic_data(dtype)

    def closed_form():
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        return (x.T * (p * (1 - p))) @ x / len(x)

    return measured({"hessian": closed_form}, repeats)


def wengert_step(dtype, repeats: int) -> dict:
    """The MMiDS step on matrix nodes, first order only: the training program's MatrixAccumulator
    (record the batch, one sweep) and value_and_grad of the loss in one flat Tensor."""
    import tape
    from mlp.accumulate import MatrixAccumulator, InputRows
    from mlp.nn import MLP

    x, labels, theta, _ = mmids_data(dtype)

    def loss(theta):
        w1, b1, w2, b2 = unpack(theta, lambda t, shape: t.reshape(shape))
        return tape.softmax_cross_entropy(tape.sigmoid(x @ w1 + b1) @ w2 + b2, labels)

    value_and_grad = tape.value_and_grad(loss)
    with tape.Tape():
        model = MLP(list(SIZES), seed=0)
        accumulator, inputs, rows = MatrixAccumulator(model, dtype=dtype), InputRows(x), np.arange(BATCH)
        return measured({"MatrixAccumulator step": lambda: accumulator.accumulate(inputs, rows, labels, 1.0 / BATCH).loss,
                         "value_and_grad": lambda: value_and_grad(tape.Tensor(theta))[1]}, repeats)


ENGINES = {
    "mmids": {"wengert": wengert_mmids, "torch": torch_mmids, "jax": jax_mmids},
    "logistic": {"wengert": wengert_logistic, "torch": torch_logistic, "jax": jax_logistic, "numpy": numpy_logistic},
    "step": {"wengert": wengert_step},
}
LIBRARIES = {"wengert": None, "torch": "torch", "jax": "jax", "numpy": None}  # the module each needs


def one(case: str, engine: str, dtype: str, repeats: int) -> dict:
    """One process's measures (JAX in float64 needs x64 switched on before anything else)."""
    if engine == "jax" and dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    return ENGINES[case][engine](np.dtype(dtype), repeats)


def run_one(case: str, engine: str, dtype: str, repeats: int, where: Path) -> dict:
    """One fresh process with tape/ and mlp/ from `where` (this tree, or an older one), this
    tree's benchmarks."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-m", "benchmarks.second_order", "--repeats", str(repeats),
                          "--one", case, engine, dtype], cwd=where, env=env, capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def export(revision: str, folder: Path) -> None:
    """tape/ and mlp/ as they were at `revision`, written into `folder`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "tape", "mlp"], capture_output=True)
    if archive.returncode:
        raise SystemExit(f"--before {revision}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)


def medians(runs: list[dict], measure: str):
    """The median over rounds of a measure in seconds, or what the rounds said instead."""
    values = [r.get(measure, r.get("error", "missing")) for r in runs]
    numbers = [v for v in values if isinstance(v, float)]
    return statistics.median(numbers) if len(numbers) == len(values) else next(v for v in values if not isinstance(v, float))


def shown(seconds, unit: float = 1e3) -> str:
    return f"{seconds * unit:.2f}" if isinstance(seconds, float) else str(seconds)


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if isinstance(a, float) and isinstance(b, float) else "-"


def agreement(check, reference) -> str:
    """The relative difference between two results' projections."""
    if not (isinstance(check, float) and isinstance(reference, float)):
        return "-"
    return f"{abs(check - reference) / max(abs(reference), 1e-300):.0e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--before", metavar="REV", help="also measure (b)'s tape.hessian and (c) on tape/ and mlp/ as at this git revision")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # case engine dtype: one process's measures
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.repeats)))
        return
    available = [e for e, module in LIBRARIES.items() if module is None or have(module)]
    jobs = [(case, engine, dtype, ROOT, engine) for case in ("mmids", "logistic") for engine in ENGINES[case]
            if engine in available for dtype in ("float64", "float32")]
    jobs += [("step", "wengert", dtype, ROOT, "wengert (this tree)") for dtype in ("float64", "float32")]
    with tempfile.TemporaryDirectory() as before:
        if args.before:
            export(args.before, Path(before))
            jobs += [(case, "wengert", dtype, Path(before), f"wengert at {args.before}")
                     for case in ("logistic", "step") for dtype in ("float64", "float32")]
        runs: dict[tuple, list] = {(case, label, dtype): [] for case, _, dtype, _, label in jobs}
        for _ in range(args.rounds):
            for case, engine, dtype, where, label in jobs:
                runs[case, label, dtype].append(run_one(case, engine, dtype, args.repeats, where))
    print(f"# Second derivatives on matrix nodes on {machine()}; {args.rounds} rounds of fresh processes, "
          f"medians of {args.repeats} runs each\n")
    print_mmids(runs)
    print_logistic(runs, args.before)
    print_step(runs, args.before)


def print_mmids(runs: dict) -> None:
    rows = []
    for dtype in ("float64", "float32"):
        torch_hvp = medians(runs.get(("mmids", "torch", dtype), [{}]), "hvp")
        reference = medians(runs.get(("mmids", "torch", dtype), [{}]), "hvp check")
        for label in ("wengert", "torch", "jax"):
            if ("mmids", label, dtype) not in runs:
                continue
            r = runs["mmids", label, dtype]
            grad, hvp = medians(r, "grad"), medians(r, "hvp")
            rows.append([label, dtype, shown(grad), shown(hvp), ratio(hvp, grad), ratio(hvp, torch_hvp),
                         agreement(medians(r, "hvp check"), reference)])
    print("## (a) hvp of the MMiDS net's batch loss (784-32-10 sigmoid, batch 32, 25,450 weights)\n")
    print(table(["engine", "dtype", "grad (ms)", "hvp (ms)", "hvp / its grad", "hvp / torch.func's hvp",
                 "hvp vs torch's (relative)"], rows))
    print("\nTargets: wengert's hvp <= 3x its gradient, and faster than torch.func jvp(grad) on 2 threads "
          "(JAX: jit-compiled, its default threads).\n")


def print_logistic(runs: dict, before: str | None) -> None:
    rows = []
    for dtype in ("float64", "float32"):
        torch_seconds = medians(runs.get(("logistic", "torch", dtype), [{}]), "hessian")
        reference = medians(runs.get(("logistic", "numpy", dtype), [{}]), "hessian check")
        for label in ("wengert", f"wengert at {before}", "torch", "jax", "numpy"):
            if ("logistic", label, dtype) not in runs:
                continue
            r = runs["logistic", label, dtype]
            seconds = medians(r, "hessian")
            rows.append([label if label != "numpy" else "numpy closed form XᵀDX/n", dtype, shown(seconds),
                         ratio(seconds, torch_seconds), agreement(medians(r, "hessian check"), reference)])
    print(f"## (b) Hessian of logistic regression's mean loss in 785 dimensions ({LOGISTIC_SAMPLES:,} samples)\n")
    print(table(["engine", "dtype", "hessian (ms)", "/ torch.func.hessian", "vs closed form (relative)"], rows))
    print("\nTarget: wengert within 2x of torch.func.hessian.\n")


def print_step(runs: dict, before: str | None) -> None:
    rows = []
    labels = ["wengert (this tree)"] + ([f"wengert at {before}"] if before else [])
    for measure in ("MatrixAccumulator step", "value_and_grad"):
        for dtype in ("float64", "float32"):
            now = medians(runs["step", labels[0], dtype], measure)
            then = medians(runs["step", labels[-1], dtype], measure)
            rows.append([measure, dtype, shown(now, 1e6), shown(then, 1e6) if before else "-",
                         ratio(now, then) if before else "-"])
    print("## (c) The first-order step of the MMiDS net on matrix nodes (batch 32)\n")
    print(table(["measure", "dtype", "this tree (us)", f"at {before or '(no --before)'} (us)", "this / before"], rows))
    if not before:
        print("\nWith --before REV (say the commit before issue 30) the same is measured on that revision's tape/ and mlp/.")


if __name__ == "__main__":
    main()
