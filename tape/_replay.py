"""The compiled interpreter that replays a traced Wengert list at new inputs (see tape.trace).

A program is per node an op code and its operands, `refs[start[i]:start[i + 1]]`; a ref below
`n` is a node, a ref n + j is the program's j-th constant. `val` holds every node's value and,
after them, the constants. One forward pass computes the values in order, each by the rule
table's compiled rules (tape/_compiled.py), and for the nodes that depend on a differentiated
input it writes their edges (a CSR tape, as `Tape` keeps it): the operands that are active too,
with the partial, unless the partial is 0. The tape's sweep (Algorithm 1) then runs on it.
Nothing here is compiled per trace: a trace is data.
"""
import math
import threading

import numba
import numpy as np
from numba import njit, prange, uint64

from ._compiled import DOT as DOT_CODE
from ._compiled import LOGSUMEXP as LOGSUMEXP_CODE
from ._compiled import evaluate, term, term_partials, total
from ._rules import CODE_BITS, CONSTANT_BITS, KINK_PARTIAL
from ._notice import announce_compiling
from .kernels import refused

announce_compiling(__name__, "tape.trace's replay kernels")

LEAF, UNARY, BINARY, BINARY_RIGHT, BINARY_LEFT, REDUCTION, DOT, KINK, CUSTOM = range(9)
COMPARE_LT, COMPARE_LE, COMPARE_GT, COMPARE_GE, COMPARE_EQ, COMPARE_NE = range(6)


@njit(cache=True)
def build(stream, n, kind, constant_is_partial):
    """(code, start, refs, val) of the records in `stream` (n nodes); `kind[code]` says how a
    record lists its operands. Returns a negative `start[0]` - 1 - i if node i is a custom op."""
    code = np.zeros(n, np.int64)
    start = np.zeros(n + 1, np.int64)
    refs = np.empty(stream.shape[0], np.int64)
    constants = np.empty(stream.shape[0])
    values = np.zeros(n)
    r, c, i, node = 0, 0, 0, 0
    while node < n:
        header = np.int64(stream[i])
        k = header >> (CODE_BITS + CONSTANT_BITS)
        nc = (header >> CODE_BITS) & ((1 << CONSTANT_BITS) - 1)
        op = header & ((1 << CODE_BITS) - 1)
        parents, partials, folded = i + 1, i + 1 + k, i + 1 + 2 * k
        code[node] = op
        how = kind[op]
        if how == LEAF:
            values[node] = stream[folded]
        elif how == KINK:  # its value is its constant, kept as a leaf's; its operands are nodes
            values[node] = stream[folded]
            for j in range(k):
                refs[r] = np.int64(stream[parents + j])
                r += 1
        elif how == UNARY or how == BINARY:
            for j in range(k):
                refs[r] = np.int64(stream[parents + j])
                r += 1
        elif how == BINARY_RIGHT or how == BINARY_LEFT:
            constants[c] = stream[partials] if constant_is_partial[op] else stream[folded]
            if how == BINARY_LEFT:
                refs[r], refs[r + 1] = n + c, np.int64(stream[parents])
            else:
                refs[r], refs[r + 1] = np.int64(stream[parents]), n + c
            r += 2
            c += 1
        elif how == REDUCTION:
            for j in range(k):
                refs[r] = np.int64(stream[parents + j])
                r += 1
            if nc == 1:
                constants[c] = stream[folded]
                refs[r] = n + c
                r += 1
                c += 1
        elif how == DOT:
            pairs = np.int64(stream[folded])
            for j in range(2 * pairs):
                refs[r] = np.int64(stream[parents + j])
                r += 1
            for j in range(2 * pairs, k):  # a node and its constant partner, which is its partial
                constants[c] = stream[partials + j]
                refs[r], refs[r + 1] = np.int64(stream[parents + j]), n + c
                r += 2
                c += 1
            if nc == 2:  # the constant pairs' sum, times 1
                constants[c], constants[c + 1] = stream[folded + 1], 1.0
                refs[r], refs[r + 1] = n + c, n + c + 1
                r += 2
                c += 2
        else:
            start[0] = -1 - node
            return code, start, refs[:0], values
        i = folded + nc
        node += 1
        start[node] = r
    val = np.empty(n + c)
    val[:n] = values
    val[n:] = constants[:c]
    return code, start, refs[:r].copy(), val


@njit(cache=True)
def runs(code, kind, start, refs, n, offsets):
    """For each dot node whose pairs are two runs of consecutive inputs, each within one
    argument (a layer's weights against a sample, say): the first of each run and the length;
    -1 elsewhere. Such a dot can skip the zero entries of a run without looking at them."""
    a0, b0, k = np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    for i in range(n):
        lo, hi = start[i], start[i + 1]
        if kind[code[i]] != DOT or hi == lo:
            continue
        pairs = (hi - lo) // 2
        consecutive = True
        for p in range(pairs):
            if refs[lo + 2 * p] != refs[lo] + p or refs[lo + 2 * p + 1] != refs[lo + 1] + p:
                consecutive = False
                break
        if consecutive and _within_one(refs[lo], pairs, offsets) and _within_one(refs[lo + 1], pairs, offsets):
            a0[i], b0[i], k[i] = refs[lo], refs[lo + 1], pairs
    return a0, b0, k


@njit(cache=True)
def _within_one(first, count, offsets):
    for a in range(offsets.shape[0] - 1):
        if offsets[a] <= first and first + count <= offsets[a + 1]:
            return True
    return False


@njit(cache=True)
def activity(code, kind, start, refs, n, size, seeds):
    """active[i]: node i depends on a seed (a differentiated input); constants never do."""
    active = np.zeros(size, np.bool_)
    for s in seeds:
        active[s] = True
    for i in range(n):
        if kind[code[i]] == LEAF:
            continue
        for p in range(start[i], start[i + 1]):
            if active[refs[p]]:
                active[i] = True
                break
    return active


@njit(cache=True, error_model="numpy")
def forward(code, kind, start, refs, val, first, n, active, estart, eparent, epartial, dot_runs, sparse, nz):
    """Values of nodes first..n-1 (inputs and constants already in `val`), and the edges of the
    active ones from estart[first] on. Returns the edge count, or -(i + 1) if node i's rule
    refuses its operands.

    Inputs marked `sparse` are undifferentiated and their non-zero ones are listed, in order, in
    `nz`: a dot over runs of inputs (see `runs`) takes only those pairs whose sparse entry is
    not 0 (the others add 0 and carry no gradient), as a sparse matrix would. Indices are cast
    to uint64 where they index (see tape._kernels)."""
    a0s, b0s, ks = dot_runs
    e = estart[first]
    for i in range(first, n):
        node = uint64(i)
        c = code[node]
        how = kind[uint64(c)]
        lo, hi = start[node], start[node + uint64(1)]
        if UNARY <= how <= BINARY_LEFT:
            two = hi - lo == 2
            ra = uint64(refs[uint64(lo)])
            rb = uint64(refs[uint64(lo + 1)]) if two else ra
            a = val[ra]
            b = val[rb] if two else 0.0
            y, da, db = evaluate(c, a, b)
            if refused(c, y, a, b):
                return -(i + 1)
            val[node] = y
            if active[node]:  # a zero partial's edge is written but not kept: no branch on data
                if active[ra]:
                    eparent[uint64(e)], epartial[uint64(e)] = ra, da
                    e += da != 0.0
                if two and active[rb]:
                    eparent[uint64(e)], epartial[uint64(e)] = rb, db
                    e += db != 0.0
        elif how == REDUCTION:
            if c == LOGSUMEXP_CODE:
                y, e = _reduce(LOGSUMEXP_CODE, refs, lo, hi, val, active[node], active, eparent, epartial, e)
            else:
                y, e = _reduce(c, refs, lo, hi, val, active[node], active, eparent, epartial, e)
            val[node] = y
        elif how == DOT:
            k = ks[node]
            if k > 0 and sparse[uint64(b0s[node])]:
                y, e = _sparse_dot(a0s[node], b0s[node], k, nz, val, active[node], active, eparent, epartial, e)
            elif k > 0 and sparse[uint64(a0s[node])]:
                y, e = _sparse_dot(b0s[node], a0s[node], k, nz, val, active[node], active, eparent, epartial, e)
            else:
                y, e = _dense_dot(refs, lo, hi, val, active[node], active, eparent, epartial, e)
            val[node] = y
        elif how == KINK and active[node]:  # its value stays; its partials say no derivative
            for p in range(lo, hi):
                r = uint64(refs[uint64(p)])
                if active[r]:
                    eparent[uint64(e)], epartial[uint64(e)] = r, KINK_PARTIAL
                    e += 1
        estart[node + uint64(1)] = e
    return e


@njit(cache=True)
def _reduce(c, refs, lo, hi, val, is_active, active, eparent, epartial, e):
    m = -math.inf
    for p in range(lo, hi):
        m = max(m, val[uint64(refs[uint64(p)])])
    s = 0.0
    for p in range(lo, hi):
        s += term(c, val[uint64(refs[uint64(p)])], 0.0, m)
    y = total(c, s, m)
    if is_active:
        for p in range(lo, hi):
            r = uint64(refs[uint64(p)])
            if active[r]:
                d = term_partials(c, val[r], 0.0, y, s, m)[0]
                eparent[uint64(e)], epartial[uint64(e)] = r, d
                e += d != 0.0
    return y, e


@njit(cache=True)
def _dense_dot(refs, lo, hi, val, is_active, active, eparent, epartial, e):
    s = 0.0
    for p in range(lo, hi, 2):
        s += term(DOT_CODE, val[uint64(refs[uint64(p)])], val[uint64(refs[uint64(p + 1)])], 0.0)
    if is_active:
        for p in range(lo, hi, 2):
            ra, rb = uint64(refs[uint64(p)]), uint64(refs[uint64(p + 1)])
            da, db = term_partials(DOT_CODE, val[ra], val[rb], 0.0, 0.0, 0.0)
            if active[ra]:
                eparent[uint64(e)], epartial[uint64(e)] = ra, da
                e += da != 0.0
            if active[rb]:
                eparent[uint64(e)], epartial[uint64(e)] = rb, db
                e += db != 0.0
    return total(DOT_CODE, s, 0.0), e


@njit(cache=True)
def _sparse_dot(dense0, sparse0, k, nz, val, is_active, active, eparent, epartial, e):
    """A dot of the run dense0.. against the run sparse0.. (sparse: undifferentiated), over
    the non-zero entries of the sparse run only."""
    s = 0.0
    first, last = np.searchsorted(nz, sparse0), np.searchsorted(nz, sparse0 + k)
    for q in range(first, last):
        rs = uint64(nz[q])
        rd = uint64(dense0 + nz[q] - sparse0)
        s += term(DOT_CODE, val[rd], val[rs], 0.0)
        if is_active and active[rd]:
            d = term_partials(DOT_CODE, val[rd], val[rs], 0.0, 0.0, 0.0)[0]
            eparent[uint64(e)], epartial[uint64(e)] = rd, d
            e += d != 0.0
    return total(DOT_CODE, s, 0.0), e


@njit(cache=True)
def sweep(estart, eparent, epartial, adjoint, top, bottom):
    """Algorithm 1 from node `top` down to node `bottom` over the edges `forward` wrote."""
    for i in range(top, bottom - 1, -1):
        a = adjoint[i]
        if a == 0.0:
            continue
        for e in range(uint64(estart[i]), uint64(estart[i + 1])):
            adjoint[uint64(eparent[e])] += epartial[e] * a


@njit(cache=True)
def tangents(estart, eparent, epartial, tangent, first, n):
    """Forward mode over the same edges: tangent[i] = sum(partial * tangent[parent]), a zero
    tangent adding nothing (as a sweep skips a zero adjoint: an infinite partial times 0 is not nan)."""
    for i in range(first, n):
        t = 0.0
        for e in range(estart[i], estart[i + 1]):
            p = tangent[eparent[e]]
            if p != 0.0:
                t += epartial[e] * p
        tangent[i] = t


@njit(cache=True)
def failed_guard(val, lhs, op, rhs, outcome, n, below):
    """The first guard whose comparison of the values in `val` now differs from its outcome
    when traced, or -1; only guards of nodes below `below` (constants are refs >= n)."""
    for g in range(lhs.shape[0]):
        if lhs[g] >= below or below <= rhs[g] < n:
            continue
        a, b = val[lhs[g]], val[rhs[g]]
        o = op[g]
        if o == COMPARE_LT:
            now = a < b
        elif o == COMPARE_LE:
            now = a <= b
        elif o == COMPARE_GT:
            now = a > b
        elif o == COMPARE_GE:
            now = a >= b
        elif o == COMPARE_EQ:
            now = a == b
        else:
            now = a != b
        if now != outcome[g]:
            return g
    return -1


@njit(cache=True, parallel=True)
def batch(code, kind, start, refs, first, n, active, dot_runs, guards, fixed, plan, rows, weight, chunk,
          workspace, grads):
    """Algorithm 3 over the rows of `rows` (a batch of samples). For each sample its row goes to
    the input nodes plan[0], the program runs forward and the sweep from node plan[2] (seeded
    with `weight`) lets the adjoints of the nodes plan[1] add up. The zeros of the inputs marked
    sparse (plan[4]; plan[5] marks none) are skipped (see `forward`) while every input is
    finite (zero times an infinity is not zero). Samples go in fixed chunks, summed in order
    within a chunk, the chunks' sums added in order: the result does not depend on how many
    threads run it. `fixed` is (nodes, values) of the inputs that are the same for every
    sample; `workspace` holds each thread's buffers (val, which keeps the program's constants,
    adjoint, estart, eparent, epartial, nz), `grads` each chunk's gradient. Returns (the sum of
    the output, each sample's aux values (the nodes plan[3]), the summed gradient, each
    sample's status: 0, or -(i + 1) for a refused node i, or g + 1 for a failed guard g)."""
    inputs, wrt, out, aux, sparse, dense = plan
    lhs, op, rhs, outcome = guards
    vals, adjoints, estarts, eparents, epartials, nzs = workspace
    samples = rows.shape[0]
    chunks = (samples + chunk - 1) // chunk
    workers = min(vals.shape[0], chunks)
    sums = np.zeros(chunks)
    aux_values = np.zeros((samples, aux.shape[0]))
    status = np.zeros(samples, np.int64)
    for worker in prange(workers):
        val, adjoint, estart, eparent, epartial, nz = vals[worker], adjoints[worker], estarts[worker], eparents[worker], epartials[worker], nzs[worker]
        fixed_finite = True  # the adjoints are all 0 between calls: each chunk clears what it used
        for j in range(fixed[0].shape[0]):
            val[fixed[0][j]] = fixed[1][j]
            fixed_finite = fixed_finite and np.isfinite(fixed[1][j])
        estart[first] = 0
        for c in range(worker, chunks, workers):
            for s in range(c * chunk, min(samples, (c + 1) * chunk)):
                count, finite = 0, fixed_finite
                for j in range(inputs.shape[0]):
                    x = rows[s, j]
                    val[inputs[j]] = x
                    finite = finite and np.isfinite(x)
                    if x != 0.0:  # the sample's non-zero inputs, in order
                        nz[count] = inputs[j]
                        count += 1
                e = forward(code, kind, start, refs, val, first, n, active, estart, eparent, epartial,
                            dot_runs, sparse if finite else dense, nz[:count])
                if e < 0:
                    status[s] = e
                    continue
                g = failed_guard(val, lhs, op, rhs, outcome, n, n)
                if g >= 0:
                    status[s] = g + 1
                    continue
                sums[c] += val[out]
                for j in range(aux.shape[0]):
                    aux_values[s, j] = val[aux[j]]
                if out < n:  # else the output is a constant: no gradient
                    adjoint[out] += weight
                    sweep(estart, eparent, epartial, adjoint, out, first)
                    adjoint[first:out + 1] = 0.0
            for j in range(wrt.shape[0]):
                grads[c, j] = adjoint[wrt[j]]
                adjoint[wrt[j]] = 0.0
            if out < n:
                adjoint[out] = 0.0  # an output that is an input not differentiated
    gradient = np.empty(wrt.shape[0])
    step = (wrt.shape[0] + workers - 1) // workers
    for worker in prange(workers):  # the chunks' sums, in order, each thread a stretch of them
        for j in range(worker * step, min(wrt.shape[0], (worker + 1) * step)):
            total = grads[0, j]
            for c in range(1, chunks):
                total += grads[c, j]
            gradient[j] = total
    total_value = 0.0
    for c in range(chunks):
        total_value += sums[c]
    return total_value, aux_values, gradient, status


THREAD_SAFE_LAYERS = ("omp", "tbb")
_one_at_a_time = threading.Lock()


def batch_from_any_thread(*args):
    """`batch(*args)`, never entered by two threads at once where numba's threading layer
    cannot take it: workqueue (numba's fallback without OpenMP or TBB) aborts the process on
    concurrent entry, so there, and until a first parallel call shows which layer numba chose,
    calls take turns. With OpenMP or TBB they run at once."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        layer = None
    if layer in THREAD_SAFE_LAYERS:
        return batch(*args)
    with _one_at_a_time:
        return batch(*args)
