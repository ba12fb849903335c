"""Traced matrix programs (issue 29): `tape.trace` of a function of Tensors against recording it
at every call, numpy by hand, PyTorch (fp32, 2 threads) and JAX's jit (each anchor if installed).

Measured: the cost of tracing the MMiDS step (784-32-10 sigmoid, batch 32: forward, softmax
cross-entropy, gradient in W1, b1, W2, b2, logits as aux) in a fresh process and again in a warm
one; a traced 4x4 program's call and value_and_grad; the step's value_and_grad per batch,
float32 and float64. Each engine runs in a fresh process per round, the rounds interleaved, and
the tables give medians over rounds; every engine's loss is checked against numpy's first.

    python -m benchmarks.tensor_trace [--rounds 5] [--calls 300]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import have, machine, table

D, H, K, BATCH = 784, 32, 10, 32
REPO = Path(__file__).resolve().parents[1]


def data(dtype, seed: int = 0):
    """(W1, b1, W2, b2), X (MNIST-like: 80% zeros), labels."""
    rng = np.random.default_rng(seed)
    params = (rng.uniform(-1, 1, (H, D)) / np.sqrt(D), rng.uniform(-1, 1, H) / np.sqrt(D),
              rng.uniform(-1, 1, (K, H)) / np.sqrt(H), rng.uniform(-1, 1, K) / np.sqrt(H))
    X = rng.random((BATCH, D)) * (rng.random((BATCH, D)) > 0.8)
    return tuple(p.astype(dtype) for p in params), X.astype(dtype), rng.integers(0, K, BATCH)


def step(params, X, labels):
    """The MMiDS step on Tensors: the loss, and the logits as aux."""
    import tape

    W1, b1, W2, b2 = params
    h = tape.sigmoid(X @ W1.T + b1)
    z = h @ W2.T + b2
    return tape.softmax_cross_entropy(z, labels), z


def by_hand(params, X, labels):
    """The same step in numpy, written out (the limit for numpy's operations)."""
    W1, b1, W2, b2 = params
    h = X @ W1.T
    h += b1
    np.negative(h, out=h)
    np.exp(h, out=h)
    h += 1
    np.reciprocal(h, out=h)
    z = h @ W2.T
    z += b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = float(np.mean(np.log(s[:, 0]) - np.log(e[rows, labels])))
    e /= s
    e[rows, labels] -= 1
    e /= len(labels)
    dh = e @ W2
    dh *= h
    dh *= 1 - h
    return (loss, z), (dh.T @ X, dh.sum(0), e.T @ h, e.sum(0))


def engine(name: str, dtype):
    """A function of (params, X, labels) -> (loss, logits), grads, for engine `name`."""
    import tape

    params, X, labels = data(dtype)
    if name == "traced":
        traced = tape.trace(step, tuple(map(tape.Tensor, params)), tape.Tensor(X), labels)
        return traced.value_and_grad(0, has_aux=True)
    if name == "traced out=":
        traced = tape.trace(step, tuple(map(tape.Tensor, params)), tape.Tensor(X), labels)
        vg, out = traced.value_and_grad(0, has_aux=True), tuple(np.empty_like(p) for p in params)
        return lambda params, X, labels: vg(params, X, labels, out=out)
    if name == "recorded":
        def recorded(params, X, labels):
            with tape.Tape():
                leaves = tuple(map(tape.Tensor, params))
                loss, z = step(leaves, tape.as_tensor(X, requires_grad=False), labels)
                return (loss.value, z.value), tape.gradient(loss, list(leaves))
        return recorded
    if name == "numpy by hand":
        return by_hand
    if name.startswith("torch"):
        import torch

        torch.set_num_threads(2 if "2 threads" in name else 1)

        def torch_step(params, X, labels):
            ps = [torch.from_numpy(p).requires_grad_() for p in params]
            z = torch.sigmoid(torch.from_numpy(X) @ ps[0].T + ps[1]) @ ps[2].T + ps[3]
            loss = torch.nn.functional.cross_entropy(z, torch.from_numpy(labels))
            grads = torch.autograd.grad(loss, ps)
            return (float(loss.detach()), z.detach().numpy()), [g.numpy() for g in grads]
        return torch_step
    if name == "jax jit":
        import jax
        import jax.numpy as jnp

        if dtype == np.float64:
            jax.config.update("jax_enable_x64", True)

        def loss(params, X, labels):
            W1, b1, W2, b2 = params
            z = jax.nn.sigmoid(X @ W1.T + b1) @ W2.T + b2
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - z[jnp.arange(len(labels)), labels]), z

        jitted = jax.jit(jax.value_and_grad(loss, has_aux=True))

        def jax_step(params, X, labels):
            (value, z), grads = jitted(params, X, labels)
            jax.block_until_ready(grads)
            return (float(value), z), grads
        return jax_step
    raise ValueError(f"unknown engine {name!r}")


def worker(args) -> dict:
    """One engine's figures in this (fresh) process."""
    dtype = np.dtype(args.dtype)
    if args.worker == "trace":
        import tape

        params, X, labels = data(dtype)
        times = []
        for _ in range(2):  # the first in a fresh process, the second warm
            start = time.perf_counter()
            traced = tape.trace(step, tuple(map(tape.Tensor, params)), tape.Tensor(X), labels)
            traced.value_and_grad(0, has_aux=True)(params, X, labels)
            times.append(time.perf_counter() - start)
        return {"fresh": times[0], "warm": times[1]}
    if args.worker == "4x4":
        import tape

        rng = np.random.default_rng(0)
        A, B = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
        traced = tape.trace(lambda a, b: tape.tanh(a @ b + a).sum(), tape.Tensor(A), tape.Tensor(B))
        vg = traced.value_and_grad((0, 1))
        return {"call": _per_call(lambda: traced(A, B), args.calls * 10),
                "value_and_grad": _per_call(lambda: vg(A, B), args.calls * 10)}
    fn = engine(args.worker, dtype)
    params, X, labels = data(dtype)
    (value, _), _ = fn(params, X, labels)
    expected = by_hand(*data(np.float64))[0][0]
    if abs(value - expected) > 1e-4 * abs(expected):
        raise AssertionError(f"{args.worker}: loss {value} against numpy's {expected}")
    return {"us": _per_call(lambda: fn(params, X, labels), args.calls)}


def _per_call(run, calls: int) -> float:
    """Median over 5 loops of `calls` calls, in microseconds per call."""
    run()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def _fresh(worker_args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-m", "benchmarks.tensor_trace", *worker_args], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float64", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    engines = ["traced", "traced out=", "recorded", "numpy by hand"]
    engines += ["torch fp32, 2 threads", "torch fp32, 1 thread"] * have("torch") + ["jax jit"] * have("jax")
    jobs = [("trace", "float32"), ("4x4", "float64")]
    jobs += [(e, d) for e in engines for d in ("float32", "float64") if not (e.startswith("torch") and d == "float64")]
    results: dict = {job: [] for job in jobs}
    for _ in range(args.rounds):  # interleaved: every engine once per round, each in a fresh process
        for job in jobs:
            results[job].append(_fresh(["--worker", job[0], "--dtype", job[1], "--calls", str(args.calls)]))
    med = lambda job, key: statistics.median(r[key] for r in results[job])  # noqa: E731
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds, medians\n")
    print(table(["what", "median"], [
        ["tracing the MMiDS step + its first value_and_grad, fresh process (s)", f"{med(jobs[0], 'fresh'):.3f}"],
        ["the same, a second trace in that process (s)", f"{med(jobs[0], 'warm'):.3f}"],
        ["traced 4x4 program `tanh(a @ b + a).sum()`: a call (us)", f"{med(jobs[1], 'call'):.1f}"],
        ["the same: value_and_grad in both (us)", f"{med(jobs[1], 'value_and_grad'):.1f}"],
    ]))
    hand = {d: med(("numpy by hand", d), "us") for d in ("float32", "float64")}
    rows = []
    for e in engines:
        cells = [e]
        for d in ("float32", "float64"):
            if (e, d) in results:
                us = med((e, d), "us")
                cells.append(f"{us:.0f} us ({hand[d] / us:.2f}x numpy by hand)")
            else:
                cells.append("-")
        rows.append(cells)
    print()
    print(table(["MMiDS step (784-32-10 sigmoid, batch 32): value_and_grad per batch", "float32", "float64"], rows))


if __name__ == "__main__":
    main()
