"""Compiled building blocks for recording on a tape in bulk, for numba code outside `tape`.

A kernel appends nodes after the tape's end: `Tape.record_bulk(nodes, max_edges, kernel, ...)`
hands it the CSR arrays (`start`, `parent`, `partial`, `op`) and the first free `node` and
`edge`, and the kernel returns the new edge count. Node arrays hold -1 for constant entries; an
edge to a constant, or with a zero partial, is not stored, as in the scalar path. Edges are
written in the loops themselves: a helper taking the arrays would cost ten times the store
(numba reference-counts array arguments even when it inlines the call).

Importing this module imports numba; `import tape` does not.
"""
import numpy as np
from numba import njit, uint64

from ._elementwise import value_and_partial
from ._kernels import parse, sweep

__all__ = [
    "apply_rule", "parse", "record_binary", "record_leaves", "record_matmul",
    "record_rows", "record_unary", "sweep", "sweep_window", "value_and_partial",
]


@njit(cache=True)
def record_leaves(count, code, start, parent, partial, op, node, edge):
    """`count` nodes without parents."""
    for i in range(count):
        op[node + i] = code
        start[node + i + 1] = edge
    return edge


@njit(cache=True)
def record_unary(rule, code, values, nodes, out, start, parent, partial, op, node, edge):
    """out[i] = f(values[i]) for the elementary function RULES[rule]; node + i gets the edge
    to nodes[i]. Returns the new edge count, or -(i + 1) if f(values[i]) is not finite for a
    finite values[i] (the caller names the error)."""
    for i in range(values.shape[0]):
        a = values[i]
        y, d = value_and_partial(rule, a)
        if np.isfinite(a) and not np.isfinite(y):
            return -(i + 1)
        out[i] = y
        if nodes[i] >= 0 and d != 0.0:
            parent[edge] = nodes[i]
            partial[edge] = d
            edge += 1
        op[node + i] = code
        start[node + i + 1] = edge
    return edge


@njit(cache=True)
def apply_rule(rule, values, out):
    """out[i] = f(values[i]) for the elementary function RULES[rule], recording nothing.
    Returns -(i + 1) if f(values[i]) is not finite for a finite values[i], else 0."""
    for i in range(values.shape[0]):
        y, _ = value_and_partial(rule, values[i])
        if np.isfinite(values[i]) and not np.isfinite(y):
            return -(i + 1)
        out[i] = y
    return 0


@njit(cache=True)
def record_binary(code, a_nodes, b_nodes, da, db, start, parent, partial, op, node, edge):
    """Node + i has the edges to a_nodes[i] (partial da[i]) and b_nodes[i] (partial db[i])."""
    for i in range(a_nodes.shape[0]):
        if a_nodes[i] >= 0 and da[i] != 0.0:
            parent[edge] = a_nodes[i]
            partial[edge] = da[i]
            edge += 1
        if b_nodes[i] >= 0 and db[i] != 0.0:
            parent[edge] = b_nodes[i]
            partial[edge] = db[i]
            edge += 1
        op[node + i] = code
        start[node + i + 1] = edge
    return edge


@njit(cache=True)
def record_matmul(a, a_nodes, b, b_nodes, out, code, start, parent, partial, op, node, edge):
    """out = a @ b for a (m, n) and b (n, p), one node per entry: node + i * p + k has the
    edges to a_nodes[i, j] (partial b[j, k]) and to b_nodes[j, k] (partial a[i, j])."""
    m, n = a.shape
    p = b.shape[1]
    for i in range(m):
        for k in range(p):
            total = 0.0
            for j in range(n):
                total += a[i, j] * b[j, k]
                if a_nodes[i, j] >= 0 and b[j, k] != 0.0:
                    parent[uint64(edge)] = a_nodes[i, j]  # uint64: see tape._kernels
                    partial[uint64(edge)] = b[j, k]
                    edge += 1
                if b_nodes[j, k] >= 0 and a[i, j] != 0.0:
                    parent[uint64(edge)] = b_nodes[j, k]
                    partial[uint64(edge)] = a[i, j]
                    edge += 1
            out[i, k] = total
            op[node + i * p + k] = code
            start[node + i * p + k + 1] = edge
    return edge


@njit(cache=True)
def record_rows(parents, partials, code, start, parent, partial, op, node, edge):
    """One node per row r: node + r has the edges to parents[r, :] with partials[r, :]."""
    for r in range(parents.shape[0]):
        for j in range(parents.shape[1]):
            if parents[r, j] >= 0 and partials[r, j] != 0.0:
                parent[edge] = parents[r, j]
                partial[edge] = partials[r, j]
                edge += 1
        op[node + r] = code
        start[node + r + 1] = edge
    return edge


@njit(cache=True)
def sweep_window(start, parent, partial, adjoint, offset, bottom):
    """Algorithm 1 on a window of the tape: adjoint[i] belongs to node offset + i, and the
    nodes from offset + len(adjoint) - 1 down to `bottom` pass their adjoints to their parents
    (which must lie in the window: for speed, this is not checked). In Algorithm 3 the window
    is the parameters and one sample above them: the sample's nodes are swept, the parameters'
    adjoints add up."""
    for node in range(offset + adjoint.shape[0] - 1, bottom - 1, -1):
        a = adjoint[node - offset]
        if a == 0.0:
            continue
        for e in range(uint64(start[node]), uint64(start[node + 1])):  # uint64: see tape._kernels
            adjoint[uint64(parent[e] - offset)] += partial[e] * a
