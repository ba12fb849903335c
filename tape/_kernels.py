"""The compiled kernels: moving staged records into the CSR arrays, and the backward sweep.

Imported on first use (numba takes ~0.3 s to import), never by `import tape`.

Indices that numba cannot prove non-negative are cast to uint64 in the hot loops: a signed
index costs a check for negative (wrap-around) indexing at every access, which measured as half
the sweep's time.
"""
import hashlib
from pathlib import Path

import numpy as np
from numba import njit, uint64

from ._notice import announce_compiling
from ._rules import CODE_BITS, CONSTANT_BITS

KERNELS = "tape's kernels for VarArrays and long tapes"  # what a first use says it compiles
announce_compiling(__name__, KERNELS)

# numba checks a cached function against its own file only, not against the files of the
# functions compiled into it (the rule table's, inlined everywhere): after an edit or an update,
# a cached kernel could go on running old rules. So each compiled module's caches are dropped
# whenever a file compiled into it changed (see forget_stale_caches).
HERE = Path(__file__).parent
COMPILED_INTO = {  # module -> the files of tape/ its compiled functions are made of
    "_compiled": ["_rules.py", "_compiled.py"],
    "_kernels": ["_rules.py", "_kernels.py"],
    "kernels": ["_rules.py", "_compiled.py", "_kernels.py", "kernels.py"],
    "_replay": ["_rules.py", "_compiled.py", "kernels.py", "_replay.py"],
}


@njit(cache=True)
def parse(stream, start, parent, partial, op, node, edge):
    """Append the records in `stream` after node `node`, edge `edge`; return the new edge count,
    or -1 (writing nothing out of bounds) if the records do not fit the arrays.

    A record is `header, p_1..p_k, d_1..d_k, c_1..c_c` (parents, their partials, constants; see
    `tape._rules.header`). An edge whose partial is exactly 0 carries no gradient, so it is not
    stored; the constants are for replays and are skipped here.
    """
    i = 0
    while i < stream.shape[0]:
        header = np.int64(stream[i])
        k = header >> (CODE_BITS + CONSTANT_BITS)
        c = (header >> CODE_BITS) & ((1 << CONSTANT_BITS) - 1)
        if node >= op.shape[0] or i + 1 + 2 * k + c > stream.shape[0]:
            return -1
        op[node] = header & ((1 << CODE_BITS) - 1)
        for j in range(k):
            d = stream[i + 1 + k + j]
            if d != 0.0:
                p = np.int64(stream[i + 1 + j])
                if edge >= parent.shape[0] or not 0 <= p < node:
                    return -1
                parent[uint64(edge)] = p
                partial[uint64(edge)] = d
                edge += 1
        i += 1 + 2 * k + c
        node += 1
        start[node] = edge
    return edge


@njit(cache=True)
def sweep(start, parent, partial, adjoint, lo, hi):
    """Algorithm 1 over nodes hi - 1 down to lo: pass each node's adjoint to its parents.

    `adjoint` arrives seeded (1 at the output for a gradient, any vector for a vjp) and leaves
    holding d(seeded output)/d(node) for every node; nodes with a zero adjoint are skipped.
    """
    for i in range(hi - 1, lo - 1, -1):
        a = adjoint[i]
        if a == 0.0:
            continue
        for e in range(uint64(start[i]), uint64(start[i + 1])):
            adjoint[uint64(parent[e])] += partial[e] * a


def forget_stale_caches(module: str, files: list[Path], cache: Path) -> None:
    """Drop the numba caches of `module` in the folder `cache` if the files compiled into it
    changed since they were written: a stamp beside them keeps the files' digest. Any module of
    compiled functions that calls another module's can keep itself fresh so."""
    try:
        digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in files)).hexdigest()
        stamp = cache / f"{module}.wengert-sources"
        if stamp.exists() and stamp.read_text() == digest:
            return
        for entry in cache.glob(f"{module}.*.nb[ic]"):
            entry.unlink(missing_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
    except OSError:  # no cache to keep fresh
        pass


for _module, _files in COMPILED_INTO.items():
    forget_stale_caches(_module, [HERE / f for f in _files], Path(sweep._cache._cache_path))
