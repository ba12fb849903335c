"""The parse and the sweep of tape/_kernels.py in plain Python, for small tapes.

A tape of a few dozen nodes is swept faster by Python than by a call into compiled code, and
without importing numba at all (~0.5 s in a fresh process). Each function does the same
arithmetic in the same order as its compiled twin, so the numbers agree to the last bit.
"""
from ._rules import CODE_BITS, CONSTANT_BITS

CODE_MASK = (1 << CODE_BITS) - 1
CONSTANT_MASK = (1 << CONSTANT_BITS) - 1


def parse(stream, start, parent, partial, op, node: int, edge: int) -> int:
    """`_kernels.parse` for a list of records: append them after node `node`, edge `edge`;
    return the new edge count, or -1 if the records do not fit the arrays or are inconsistent."""
    i, end = 0, len(stream)
    while i < end:
        head = int(stream[i])
        k = head >> (CODE_BITS + CONSTANT_BITS)
        c = (head >> CODE_BITS) & CONSTANT_MASK
        if node >= len(op) or i + 1 + 2 * k + c > end:
            return -1
        op[node] = head & CODE_MASK
        for j in range(k):
            d = stream[i + 1 + k + j]
            if d != 0.0:
                p = int(stream[i + 1 + j])
                if edge >= len(parent) or not 0 <= p < node:
                    return -1
                parent[edge] = p
                partial[edge] = d
                edge += 1
        i += 1 + 2 * k + c
        node += 1
        start[node] = edge
    return edge


def sweep(start, parent, partial, adjoint, lo: int, hi: int) -> None:
    """`_kernels.sweep`: Algorithm 1 over nodes hi - 1 down to lo, in place on `adjoint`. Only
    the stretch's own numbers become lists; a parent below lo takes its additions one by one
    from its adjoint, in the compiled sweep's order."""
    starts = start[lo : hi + 1].tolist()
    first = starts[0]
    parents, partials = parent[first : starts[-1]].tolist(), partial[first : starts[-1]].tolist()
    adj = adjoint[lo:hi].tolist()
    below: dict[int, float] = {}
    for i in range(hi - lo - 1, -1, -1):
        a = adj[i]
        if a == 0.0:
            continue
        for e in range(starts[i] - first, starts[i + 1] - first):
            p = parents[e] - lo
            if p >= 0:
                adj[p] += partials[e] * a
            else:
                below[p + lo] = below.get(p + lo, float(adjoint[p + lo])) + partials[e] * a
    adjoint[lo:hi] = adj
    for p, a in below.items():
        adjoint[p] = a
