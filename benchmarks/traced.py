"""Traced functions (issue 12): the scalar workload's gradient at new data, traced once and
replayed, against recording it at every call, CasADi, JAX and a gradient written by hand in
numba (each anchor if installed); the time to trace; a traced function's first call in a
fresh process, with and without scipy (numba imports scipy when it is installed).

Every engine computes (y, dy/dw, dy/db) of y = sum(relu(x_i * w + b)) at the same new data,
and all of them are checked to agree before anything is timed.

    python -m benchmarks.traced [--terms 10000] [--repeats 7] [--plain-python .venv/bin/python] [--startup-only]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

import tape
from benchmarks.common import machine, median_seconds, table
from benchmarks.scalar import workload_data

W, B = 0.5, 0.1  # the workload's two parameters
D, H, K = 784, 32, 10  # the MMiDS net: pixels, sigmoid units, classes
REPO = Path(__file__).resolve().parents[1]
TRACED = "traced (tape.trace, then value_and_grad)"
RECORD = "record + backward (tape.value_and_grad)"
HAND = "hand-written numba gradient: the limit"
CASADI = "CasADi Function"


def scalar_loss(w, b, x):
    """The scalar workload: sum(relu(x_i * w + b)) over the data x."""
    return tape.sum([tape.relu(xi * w + b) for xi in x])


def mmids_loss(theta, x, y):
    """The MMiDS net's per-sample loss in scalar ops: softmax cross-entropy of a 784-32-10
    sigmoid MLP at sample x, one-hot label y; theta holds W1, b1, W2, b2 in turn, flat."""
    w1, b1, w2, b2 = np.split(theta, np.cumsum([H * D, H, K * H]))
    w1, w2 = w1.reshape(H, D), w2.reshape(K, H)
    h = [tape.sigmoid(tape.dot(w1[j], x) + b1[j]) for j in range(H)]
    z = [tape.dot(w2[k], h) + b2[k] for k in range(K)]
    return tape.logsumexp(z) - tape.dot(y, z)


def mmids_example(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta, x, y): PyTorch's uniform initialisation of each layer, random pixels in [0, 1), class 3."""
    rng = np.random.default_rng(seed)
    layers = [rng.uniform(-1, 1, (H * D + H)) / np.sqrt(D), rng.uniform(-1, 1, (K * H + K)) / np.sqrt(H)]
    return np.concatenate(layers), rng.random(D), np.eye(K)[3]


def hand_written() -> Callable:
    """(y, dy/dw, dy/db) in closed form, one compiled loop: no tape and no program."""
    from numba import njit

    @njit(cache=True)
    def value_and_grad(w, b, x):
        y = dw = db = 0.0
        for xi in x:
            z = xi * w + b
            if z > 0.0:
                y += z
                dw += xi
                db += 1.0
        return y, dw, db

    return value_and_grad


def casadi_engines(x_new: np.ndarray) -> dict:
    """CasADi's virtual machine on the scalar expression graph (SX) and on vector operations (MX),
    each a Function built once; the SX one also through Function.buffer, which reads the numpy
    array in place (a plain call converts it to a DM first)."""
    import casadi as ca

    def build(kind):
        w, b, x = kind.sym("w"), kind.sym("b"), kind.sym("x", len(x_new))
        y = ca.sum1(ca.fmax(x * w + b, 0))
        return ca.Function("f", [w, b, x], [y, ca.jacobian(y, ca.vertcat(w, b))])  # one reverse sweep for both

    sx, mx = build(ca.SX), build(ca.MX)
    buffer, evaluate = sx.buffer()
    args, results = [np.array([W]), np.array([B]), x_new], [np.zeros(1), np.zeros(2)]
    for i, r in enumerate(results):
        buffer.set_res(i, memoryview(r))

    def in_place():
        for i, a in enumerate(args):  # the arguments of this call, read where they lie
            buffer.set_arg(i, memoryview(a))
        evaluate()
        return results

    version = ca.__version__
    return {
        f"{CASADI} {version}: SX, numpy argument": lambda: sx(W, B, x_new),
        f"{CASADI} {version}: SX, Function.buffer (no conversion)": in_place,
        f"{CASADI} {version}: MX, numpy argument (vector ops)": lambda: mx(W, B, x_new),
    }


def jax_engines(x_new: np.ndarray) -> dict:
    """jit(value_and_grad) of the workload written with jnp arrays, float64; compiled at the check."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    value_and_grad = jax.jit(jax.value_and_grad(lambda w, b, x: jnp.sum(jnp.maximum(x * w + b, 0.0)), argnums=(0, 1)))
    return {f"JAX {jax.__version__} jit(value_and_grad), float64: vectorized, not scalar":
            lambda: jax.block_until_ready(value_and_grad(W, B, x_new))}


def engines(x_old: list[float], x_new: list[float]) -> tuple[dict, list[str]]:
    """name -> a call computing (y, dy/dw, dy/db) at x_new; and why anchors are missing."""
    new = np.array(x_new)
    recorded = tape.value_and_grad(scalar_loss, argnums=(0, 1))
    traced = tape.trace(scalar_loss, W, B, np.array(x_old)).value_and_grad((0, 1))
    hand = hand_written()
    runs = {RECORD: lambda: recorded(W, B, x_new), TRACED: lambda: traced(W, B, new)}
    skipped = []
    for name, anchor in (("CasADi", casadi_engines), ("JAX", jax_engines)):
        try:
            runs.update(anchor(new))
        except ImportError as e:
            skipped.append(f"{name} skipped: {e}")
    runs[HAND] = lambda: hand(W, B, new)
    return runs, skipped


def flat(result) -> np.ndarray:
    """Any engine's (y, dy/dw, dy/db), however nested or typed, as three floats."""
    if isinstance(result, (tuple, list)):
        return np.concatenate([flat(r) for r in result])
    return np.ravel(np.asarray(result, dtype=np.float64))


def repeated(run: Callable, calls: int) -> Callable:
    def many():
        for _ in range(calls):
            run()

    return many


def per_call_rounds(runs: dict, repeats: int, sample_seconds: float = 0.02) -> list[dict]:
    """Seconds per call of every engine in each of `repeats` rounds; a round runs each engine
    once, for as many calls as fill about `sample_seconds`, so a slow spell hits them all."""
    calls = {name: max(1, round(sample_seconds / median_seconds(run, 3))) for name, run in runs.items()}
    return [{name: median_seconds(repeated(run, calls[name]), repeats=1, warmup=0) / calls[name]
             for name, run in runs.items()} for _ in range(repeats)]


def ratio(rounds: list[dict], a: str, b: str) -> float:
    """The median of the rounds' ratios of a's time to b's."""
    return float(np.median([r[a] / r[b] for r in rounds]))


def workload(n: int, repeats: int) -> tuple[list, list[str], list[dict]]:
    """The per-call table's rows at n terms, notes on the run and its rounds."""
    runs, notes = engines(workload_data(n, seed=0), workload_data(n, seed=1))
    expected = flat(runs[RECORD]())
    for name, run in runs.items():
        got = flat(run())
        assert got.shape == (3,) and np.allclose(got, expected, rtol=1e-12, atol=0), f"{name}: {got} != {expected}"
    same = np.array_equal(flat(runs[TRACED]()), expected)
    notes.append(f"traced and record + backward agree {'bit for bit' if same else 'to 1e-12 but NOT bit for bit'}")
    rounds = per_call_rounds(runs, repeats)
    rows = [[name, f"{np.median([r[name] for r in rounds]) / n * 1e9:,.1f}", f"{ratio(rounds, name, TRACED):.2f}"]
            for name in runs]
    return rows, notes, rounds


def tracing(n: int, repeats: int) -> tuple[list, float]:
    """Time to trace the scalar workload and the MMiDS loss (median, after one warm-up trace),
    beside one record + backward of the same function and the size of its tape; and the MMiDS
    trace's seconds."""
    cases = [(f"scalar workload, {n:,} terms", scalar_loss, (W, B, np.array(workload_data(n)))),
             ("MMiDS per-sample loss, 784-32-10 sigmoid", mmids_loss, mmids_example())]
    rows = []
    for name, fn, args in cases:
        recorded = tape.value_and_grad(fn)
        assert tape.trace(fn, *args)(*args) == recorded(*args)[0], name
        seconds = median_seconds(lambda: tape.trace(fn, *args), repeats)
        record_seconds = median_seconds(lambda: recorded(*args), repeats)
        with tape.Tape() as t:
            fn(*[np.frompyfunc(tape.Var, 1, 1)(a) for a in args])  # every argument's entries leaves, as in a trace
            size = f"{len(t):,} / {t.num_edges:,}"
        rows.append([name, size, f"{seconds * 1e3:,.0f} ms", f"{record_seconds * 1e3:,.0f} ms",
                     f"{seconds / record_seconds:.1f}"])
    return rows, seconds  # the last case's: the MMiDS loss


# -- a fresh process: import tape, then trace and call (numba's cache cold, then warm) -------------

FIRST_CALL = "first call of a traced function (import tape, trace, value_and_grad)"
STARTUP = {
    FIRST_CALL: "f = tape.trace(lambda x: tape.sin(x) * x, 1.0); f.value_and_grad()(2.0)",
    "trace the MMiDS loss (import tape and this module included)":
        "from benchmarks.traced import mmids_example, mmids_loss; tape.trace(mmids_loss, *mmids_example())",
}
HIDE_SCIPY = "import sys; sys.modules['scipy'] = None; "  # `import scipy` then raises ImportError


def fresh_seconds(python: str, body: str, hide_scipy: bool, cache: str) -> float:
    timed = f"import time; s = time.perf_counter(); import tape; {body}; print(time.perf_counter() - s)"
    code = (HIDE_SCIPY if hide_scipy else "") + timed
    env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=cache)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's python keeps its bytecode: only the first run compiles it
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(f"{python} -c {code!r} failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1])


def has_scipy(python: str) -> bool:
    code = "import importlib.util; print(importlib.util.find_spec('scipy') is not None)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def interpreters(plain: str) -> tuple[list, list[str]]:
    """(label, python, hide scipy) for each way to run: this interpreter as it is and, if it
    has scipy, with scipy hidden; and `plain` (the project's .venv) if it is another one."""
    here, notes = sys.executable, []
    venv = Path(here).parent.parent.name
    runs = [(f"{venv}, scipy installed", here, False), (f"{venv}, scipy hidden", here, True)]
    if not has_scipy(here):
        runs = [(f"{venv}, no scipy", here, False)]
    if not Path(plain).exists():
        notes.append(f"{plain} skipped: no such interpreter")
    elif Path(plain).absolute() != Path(here).absolute():  # not resolved: a venv's python links to the system's
        scipy = "scipy installed" if has_scipy(plain) else "no scipy"
        runs.append((f"{Path(plain).parent.parent.name}, {scipy}", plain, False))
    if not any(label.endswith("scipy installed") for label, _, _ in runs):
        notes.append("no python here has scipy: the figures with scipy are missing")
    return runs, notes


def startup(repeats: int, plain: str) -> tuple[list, dict, list[str]]:
    """Each way to run gets its own empty numba cache: its first run measures it cold, one more
    run of each body warms it, then `repeats` interleaved rounds give the warm medians. Returns
    the table's rows, the warm medians by (what, way to run), and notes."""
    runs, notes = interpreters(plain)
    with tempfile.TemporaryDirectory() as root:
        caches = [os.path.join(root, str(i)) for i in range(len(runs))]
        cold = {label: fresh_seconds(python, STARTUP[FIRST_CALL], hide, cache)
                for (label, python, hide), cache in zip(runs, caches)}
        for (_, python, hide), cache in zip(runs, caches):
            for body in STARTUP.values():
                fresh_seconds(python, body, hide, cache)
        times: dict = {(what, label): [] for what in STARTUP for label, _, _ in runs}
        for _ in range(repeats):
            for (label, python, hide), cache in zip(runs, caches):
                for what, body in STARTUP.items():
                    times[what, label].append(fresh_seconds(python, body, hide, cache))
    warm = {key: float(np.median(seconds)) for key, seconds in times.items()}
    rows = [[what, label, f"{cold[label]:.2f} s" if what == FIRST_CALL else "", f"{seconds:.2f} s"]
            for (what, label), seconds in warm.items()]
    return rows, warm, notes


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def target_rows(n: int, rounds: list[dict], mmids_seconds: float, fresh: dict) -> list:
    """The issue's targets against this run's figures (`fresh`: the warm fresh-process medians)."""
    faster, to_limit = ratio(rounds, RECORD, TRACED), ratio(rounds, TRACED, HAND)
    rows = [[f"traced >= 100x faster than record + backward ({n:,} terms)", f"{faster:.0f}x", verdict(faster >= 100)]]
    casadi = {name.split(": ", 1)[1]: ratio(rounds, name, TRACED) for name in rounds[0] if name.startswith(CASADI)}
    if casadi:
        shown = "; ".join(f"{how}: {r:.2f}x traced's time" for how, r in casadi.items())
        rows.append(["traced faster than CasADi's Function", shown, verdict(min(casadi.values()) > 1)])
    rows.append(["traced within 5x of the hand-written numba gradient", f"{to_limit:.1f}x its time", verdict(to_limit <= 5)])
    in_fresh = "; ".join(f"{s:.2f} s ({label})" for (what, label), s in fresh.items() if what != FIRST_CALL)
    rows.append(["tracing the MMiDS per-sample loss <= 1 s",
                 f"{mmids_seconds:.3f} s in a running process; in a fresh process, import and numba's start-up "
                 f"included: {in_fresh}",
                 verdict(mmids_seconds <= 1)])
    rows += [[f"first call in a fresh process, numba cache warm, <= 1 s ({label})", f"{s:.2f} s", verdict(s <= 1)]
             for (what, label), s in fresh.items() if what == FIRST_CALL]
    return rows


def listed(notes: list[str]) -> str:
    """Notes as a Markdown list after a blank line (nothing if there are none)."""
    return "".join(["\n"] + [f"\n- {note}" for note in notes]) if notes else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--terms", type=int, default=10_000, help="the scalar workload's size")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (and fresh processes) per figure")
    parser.add_argument("--plain-python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="a second interpreter for the fresh-process rows (the project's .venv, without scipy)")
    parser.add_argument("--startup-only", action="store_true", help="only the fresh-process rows")
    args = parser.parse_args()

    startup_header = ["what", "python", "numba cache cold", f"cache warm (median of {args.repeats})"]
    if args.startup_only:
        rows, _, notes = startup(args.repeats, args.plain_python)
        print(table(startup_header, rows) + listed(notes))
        return
    print(f"# traced functions (issue 12) on {machine()}\n")
    rows, notes, rounds = workload(args.terms, args.repeats)
    print(f"(y, dy/dw, dy/db) of sum(relu(x_i * w + b)), {args.terms:,} terms, at new data, per call; "
          "medians of interleaved rounds:\n")
    print(table(["engine", "ns per term", "time / traced's time"], rows) + listed(notes))
    print(f"\nTracing (median of {args.repeats} after one warm-up) beside one record + backward of the same function:\n")
    tracing_rows, mmids_seconds = tracing(args.terms, args.repeats)
    print(table(["function", "nodes / edges", "trace", "record + backward", "trace / record"], tracing_rows))
    print("\nA fresh process (PYTHONPATH set to this repository; each python with a numba cache of its own):\n")
    startup_rows, fresh, startup_notes = startup(args.repeats, args.plain_python)
    print(table(startup_header, startup_rows) + listed(startup_notes))
    print("\nAgainst the targets:\n")
    print(table(["target", "measured", ""], target_rows(args.terms, rounds, mmids_seconds, fresh)))


if __name__ == "__main__":
    main()
