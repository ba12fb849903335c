"""Trace once, evaluate compiled: the same fit by gradient descent, recorded every step and
traced once.

A damped oscillation y = a e^(-b t) sin(c t) is fitted to 400 noisy samples, the loss written
with scalar operations, one term per sample. `tape.value_and_grad` records the loss on a tape at
every step; `tape.trace` records it once and each step replays that Wengert list at the new
parameters in compiled code. Both take the same steps to the same numbers; the trace is faster.
Run: python examples/traced_fit.py
"""
import time

import numpy as np

import tape


def loss(theta, ts, ys):
    """The mean squared residual of y = a e^(-b t) sin(c t), term by term."""
    a, b, c = theta
    return tape.sum([(a * tape.exp(-b * t) * tape.sin(c * t) - y) ** 2 for t, y in zip(ts, ys)]) / len(ts)


rng = np.random.default_rng(0)
ts = np.linspace(0.0, 6.0, 400)
ys = 1.5 * np.exp(-0.3 * ts) * np.sin(3.0 * ts) + rng.normal(0.0, 0.05, ts.size)
start, lr, steps = np.array([1.0, 0.5, 2.9]), 0.3, 300


def fit(value_and_grad):
    theta = start.copy()
    for _ in range(steps):
        value, gradient = value_and_grad(theta, ts, ys)
        theta = theta - lr * gradient
    return value, theta


began = time.perf_counter()
recorded = fit(tape.value_and_grad(loss))  # every step records the loss on a tape
recording = time.perf_counter() - began

began = time.perf_counter()
traced_loss = tape.trace(loss, start, ts, ys)  # once: the loss's Wengert list as a program
tracing = time.perf_counter() - began
began = time.perf_counter()
replayed = fit(traced_loss.value_and_grad())  # every step replays it, compiled
replaying = time.perf_counter() - began

print(f"{traced_loss}")
for name, (value, theta) in (("recorded every step", recorded), ("traced once", replayed)):
    print(f"{name:20s} loss {value:.6f}  a = {theta[0]:.4f}, b = {theta[1]:.4f}, c = {theta[2]:.4f}")
print(f"the same numbers, bit for bit: {recorded[0] == replayed[0] and np.array_equal(recorded[1], replayed[1])}")
print(f"{steps} steps: recorded {recording:.2f} s; traced {tracing:.2f} s to trace + {replaying:.3f} s to replay "
      f"({recording / replaying:.0f}x faster per step)")
