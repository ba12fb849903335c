"""Compiled building blocks: recording arrays of nodes, and the sweep, for numba code.

The `record_*` kernels write nodes as records (the format of `tape._rules.header`) into a
float64 `stream`, which `Tape.extend` moves into the tape; they return how many numbers they
wrote, or -(i + 1) if entry i's value is refused (a non-finite value of finite operands, for an
operation where Python's math refuses it). Node arrays hold -1 for constant entries. Values and
partials come from the rule table (`tape._compiled`), as in the scalar path, and in its order.

Importing this module imports numba; `import tape` does not.
"""
import numpy as np
from numba import njit, uint64

from ._compiled import CHECKED, DIVIDES, evaluate, refused_value, term, term_partials, total
from ._kernels import COMPILED_INTO, HERE, KERNELS, forget_stale_caches, parse, sweep
from ._notice import announce_compiling
from ._rules import BOTH, CODE_BITS, CONSTANT_BITS, LEFT_CONSTANT, RIGHT_CONSTANT

announce_compiling(__name__, KERNELS)
SOURCES = [HERE / f for f in COMPILED_INTO["kernels"]]  # what a module compiling these kernels into its own is made of too

__all__ = [
    "SOURCES", "evaluate", "forget_stale_caches", "parse", "record_binary", "record_dot", "record_matmul", "record_reduction",
    "record_rows", "record_unary", "refused", "sweep", "sweep_window",
]


@njit(cache=True)
def _header(code, parents, constants):
    return float((parents << (CODE_BITS + CONSTANT_BITS)) | (constants << CODE_BITS) | code)


@njit(cache=True, inline="always")
def refused(code, y, a, b):
    """Whether operation `code` refuses its operands (tape._rules.refused: the scalar path's
    rule); one comparison when y is finite and b is no divisor."""
    return CHECKED[code] and (not np.isfinite(y) or DIVIDES[code] and b == 0.0) and refused_value(y, a, b, DIVIDES[code])


@njit(cache=True, error_model="numpy")
def record_unary(code, values, nodes, out, stream):
    """out[i] = f(values[i]) for the unary operation `code`, one node each with the edge to
    nodes[i]."""
    w = 0
    for i in range(values.shape[0]):
        a = values[i]
        y, d, _ = evaluate(code, a, 0.0)
        if refused(code, y, a, 0.0):
            return -(i + 1)
        out[i] = y
        stream[w] = _header(code, 1, 0)
        stream[w + 1] = nodes[i]
        stream[w + 2] = d
        w += 3
    return w


@njit(cache=True, error_model="numpy")
def record_binary(code, a_values, a_nodes, b_values, b_nodes, out, stream):
    """out[i] = a_values[i] <op> b_values[i] for the binary operation `code` (its both-nodes
    code); an operand whose node is -1 is a constant, kept in the record."""
    w = 0
    for i in range(a_values.shape[0]):
        a, b = a_values[i], b_values[i]
        y, da, db = evaluate(code, a, b)
        if refused(code, y, a, b):
            return -(i + 1)
        out[i] = y
        if a_nodes[i] >= 0 and b_nodes[i] >= 0:
            stream[w] = _header(code + BOTH, 2, 0)
            stream[w + 1], stream[w + 2], stream[w + 3], stream[w + 4] = a_nodes[i], b_nodes[i], da, db
            w += 5
        elif a_nodes[i] >= 0:
            stream[w] = _header(code + RIGHT_CONSTANT, 1, 1)
            stream[w + 1], stream[w + 2], stream[w + 3] = a_nodes[i], da, b
            w += 4
        else:
            stream[w] = _header(code + LEFT_CONSTANT, 1, 1)
            stream[w + 1], stream[w + 2], stream[w + 3] = b_nodes[i], db, a
            w += 4
    return w


@njit(cache=True)
def record_dot(code, a, a_nodes, b, b_nodes, stream, w):
    """One dot node of the pairs (a[j], b[j]) at stream[w:] (as tape.dot records it: pairs of
    two nodes, then nodes with a constant); returns (y, new w). One side of each pair is a node
    (a VarArray's entries all are; node -1 marks the constant side of a plain array)."""
    pairs = 0
    for j in range(a.shape[0]):
        if a_nodes[j] >= 0 and b_nodes[j] >= 0:
            pairs += 1
    k = pairs + a.shape[0]  # 2 edges a pair of nodes, 1 for a node with a constant
    stream[w] = _header(code, k, 1)
    p, s = w + 1, 0.0
    for j in range(a.shape[0]):
        if a_nodes[j] >= 0 and b_nodes[j] >= 0:
            s += term(code, a[j], b[j], 0.0)
            da, db = term_partials(code, a[j], b[j], 0.0, 0.0, 0.0)
            stream[p], stream[p + 1], stream[p + k], stream[p + k + 1] = a_nodes[j], b_nodes[j], da, db
            p += 2
    for j in range(a.shape[0]):
        if (a_nodes[j] >= 0) != (b_nodes[j] >= 0):
            node, x, c = (a_nodes[j], a[j], b[j]) if a_nodes[j] >= 0 else (b_nodes[j], b[j], a[j])
            s += term(code, x, c, 0.0)
            stream[p], stream[p + k] = node, term_partials(code, x, c, 0.0, 0.0, 0.0)[0]
            p += 1
    stream[w + 1 + 2 * k] = pairs
    return total(code, s, 0.0), w + 2 + 2 * k


@njit(cache=True)
def record_matmul(code, a, a_nodes, b_t, b_t_nodes, out, stream):
    """out = a @ b for a (m, n) and b (n, p), given as its transpose b_t (p, n): one dot node
    per entry, whose pairs are a row of a and a column of b."""
    w = 0
    for i in range(a.shape[0]):
        for k in range(b_t.shape[0]):
            out[i, k], w = record_dot(code, a[i], a_nodes[i], b_t[k], b_t_nodes[k], stream, w)
    return w


@njit(cache=True, error_model="numpy")
def record_reduction(code, values, nodes, out, stream):
    """out[r] = the reduction `code` (sum, logsumexp) of row r, one node each."""
    w = 0
    for r in range(values.shape[0]):
        m = values[r].max()
        s = 0.0
        for j in range(values.shape[1]):
            s += term(code, values[r, j], 0.0, m)
        y = total(code, s, m)
        out[r] = y
        k = values.shape[1]
        stream[w] = _header(code, k, 0)
        for j in range(k):
            stream[w + 1 + j] = nodes[r, j]
            stream[w + 1 + k + j] = term_partials(code, values[r, j], 0.0, y, s, m)[0]
        w += 1 + 2 * k
    return w


@njit(cache=True)
def record_rows(code, parents, partials, stream):
    """A custom node per row r (tape.record_array): parents[r, :], partials[r, :]."""
    w = 0
    k = parents.shape[1]
    for r in range(parents.shape[0]):
        stream[w] = _header(code, k, 0)
        for j in range(k):
            stream[w + 1 + j] = parents[r, j]
            stream[w + 1 + k + j] = partials[r, j]
        w += 1 + 2 * k
    return w


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
