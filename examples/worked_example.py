"""The course's worked example: f(x1, x2) = x2 * cos(x1) + e^x2 at (pi, 1), in backward mode.

Prints the evaluation trace and the adjoints like the course's Table 2, then the tape itself
(the Wengert list of Figure 11). Run: python examples/worked_example.py [--draw graph.svg]
(--draw needs `pip install graphviz` and Graphviz's dot program).
"""
import argparse
import math

import tape

parser = argparse.ArgumentParser(description="The course's worked example, in backward mode.")
parser.add_argument("--draw", metavar="FILE", nargs="?", const="worked_example.svg",
                    help="also draw the computation graph (.svg, .png or .pdf); default worked_example.svg")
args = parser.parse_args()

with tape.Tape() as t:
    x1, x2 = tape.Var(math.pi), tape.Var(1.0)  # v-1, v0
    v1 = tape.cos(x1)
    v2 = x2 * v1
    v3 = tape.exp(x2)
    v4 = v2 + v3  # f
    v4.backward()

    trace = [
        ("v-1 = x1", x1),
        ("v0 = x2", x2),
        ("v1 = cos(v-1)", v1),
        ("v2 = v0 * v1", v2),
        ("v3 = exp(v0)", v3),
        ("v4 = v2 + v3", v4),
    ]
    print("Evaluation of f              adjoint d f / d v")
    for name, v in trace:
        print(f"{name:15s} = {v.value:+.6f}     {v.grad:+.6f}")

    print(f"\nf(pi, 1) = {v4.value:.12f}   (e - 1 = {math.e - 1:.12f})")
    print(f"df/dx1   = {x1.grad:.3g}   (-sin(pi): 0 up to rounding)")
    print(f"df/dx2   = {x2.grad:.12f}   (cos(pi) + e = e - 1)")

    print("\nThe tape (Figure 11): each node's parents and local partials, and the adjoints")
    t.show(names={v.node: name.split(" =")[0] for name, v in trace})
    if args.draw:
        print(f"\nthe graph: {tape.draw(v4, args.draw, names={v: name.split(' =')[0] for name, v in trace})}")

print(
    """
A note on the course's Table 2: it gives the adjoints of v1, v2 and v3 as -1, -1 and e. The
chain rule gives 1 for all three: v4 = v2 + v3 passes its adjoint 1 unchanged to v2 and v3
(dv4/dv2 = dv4/dv3 = 1), and v2 = v0 * v1 passes v0 = 1 times that to v1. The table's -1, -1 and e
are the values of v1, v2 and v3 themselves. Its results, df/dx1 = 0 and df/dx2 = e - 1, are
right: the tape above gives the same (df/dx1 = -sin(pi) is 0 up to rounding)."""
)
