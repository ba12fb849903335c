"""The course's Table 1: f(x1, x2) = x2 * cos(x1) + e^x2 at (pi, 1) in forward mode.

One pass per input: each variable carries its value and its tangent (v' = dv/dx_i), seeded
with 1 on the input being differentiated. Run: python examples/forward_mode.py
"""
import math

import tape
from tape import Dual


def trace(seed1: float, seed2: float) -> list[tuple[str, Dual]]:
    v_1 = Dual(math.pi, seed1)  # v-1 = x1
    v0 = Dual(1.0, seed2)  # v0 = x2
    v1 = tape.cos(v_1)
    v2 = v0 * v1
    v3 = tape.exp(v0)
    v4 = v2 + v3
    return [("v-1 = x1", v_1), ("v0 = x2", v0), ("v1 = cos(v-1)", v1), ("v2 = v0 * v1", v2),
            ("v3 = exp(v0)", v3), ("v4 = v2 + v3", v4)]


d_x1, d_x2 = trace(1.0, 0.0), trace(0.0, 1.0)
print("Evaluation of f            d/dx1: v'          d/dx2: v'")
for (name, a), (_, b) in zip(d_x1, d_x2):
    print(f"{name:14s} = {a.value:+.6f}    {a.tangent:+.6f}          {b.tangent:+.6f}")
print(f"\ndf/dx1 = {d_x1[-1][1].tangent:.3g} (-sin(pi): 0 up to rounding), df/dx2 = {d_x2[-1][1].tangent:.12f} (e - 1)")
print("Every entry agrees with the course's Table 1: forward mode needed one pass per input.")
value, derivative = tape.jvp(lambda x1, x2: x2 * tape.cos(x1) + tape.exp(x2), (math.pi, 1.0), (0.0, 1.0))
print(f"tape.jvp gives the same in one call: f = {value:.6f}, df/dx2 = {derivative:.6f}")
