"""The notes' example: y = ln(x1) + x1 * x2 - sin(x2) at (2, 5), in reverse mode.

Prints the forward evaluation trace v1..v7 and the adjoints of the reverse trace.
Run: python examples/ln_sin_example.py
"""
import math

import tape

with tape.Tape() as t:
    v1, v2 = tape.Var(2.0), tape.Var(5.0)  # x1, x2
    v3 = tape.log(v1)
    v4 = v1 * v2
    v5 = tape.sin(v2)
    v6 = v3 + v4
    v7 = v6 - v5  # y
    v7.backward()

    rows = [
        ("v1 = x1", v1), ("v2 = x2", v2), ("v3 = ln v1", v3), ("v4 = v1 * v2", v4),
        ("v5 = sin v2", v5), ("v6 = v3 + v4", v6), ("v7 = v6 - v5", v7),
    ]
    print("forward trace               adjoint dy/dv")
    for name, v in rows:
        print(f"{name:13s} = {v.value:+9.4f}     {v.grad:+.4f}")
    print(f"\ndy/dx1 = 1/x1 + x2     = {1 / 2 + 5:.4f}")
    print(f"dy/dx2 = x1 - cos(x2)  = {2 - math.cos(5):.4f}")
    print()
    t.show(names={v.node: name.split(" =")[0] for name, v in rows})
