"""The Wengert list: per node its parents and local partials, as flat CSR arrays.

Node `i` has parents `parent[start[i]:start[i+1]]` with partials `partial[start[i]:start[i+1]]`
and an op code `op[i]` (used only to print the tape). No values are stored: the backward sweep
needs only partials and parent indices. Operations are first staged as numbers in a Python list
(one `list.extend` per op, the cheapest append Python has) and moved into the arrays in bulk by
a compiled kernel, at a sweep or every few thousand nodes. A small tape is moved and swept in
plain Python instead (tape/_small.py: faster than a call into compiled code, and numba, ~0.5 s
to load, is not imported until a tape is large enough to need it).
"""
from __future__ import annotations

import bisect
import contextvars
import os
import sys
import threading
from typing import Callable, Iterator

import numpy as np

from . import _small
from ._display import Rows, Table
from ._rules import CODES, FIRST_CUSTOM, LEAF, MAX_CODES, header

OP_NAMES: list[str] = [name for name, _, _ in CODES]  # by op code; `tape.record` adds names
INDEX_LIMIT = np.iinfo(np.int32).max  # parents and offsets are int32
BYTES_PER_NODE = 4 + 1 + 8  # start, op, and an adjoint during a sweep
BYTES_PER_EDGE = 4 + 8  # parent, partial
FLUSH_NODES = 1 << 13  # staged nodes before a bulk move into the arrays
FLUSH_ITEMS = 1 << 20  # staged numbers before a bulk move (n-ary nodes stage many)
INITIAL_CAPACITY = 256  # nodes and edges; the arrays double from there
CHECKED_GROWTH = 1 << 26  # growths above this many bytes first check the free memory
LEAF_HEADER = header(LEAF, 0, 1)  # a leaf's record: this header, then its value
# Until numba is loaded, tapes are moved and swept in plain Python (~0.28 us a staged number or
# an edge) up to this many numbers and edges in all: as long as loading numba's cached kernels
# takes (~0.4 s; `python -m benchmarks.scalar --startup-only`, see benchmarks/RESULTS.md). Past
# it, or once anything has loaded numba, the compiled kernels take over (~100x faster).
PYTHON_BUDGET = 1_400_000


def op_code(name: str) -> int:
    """The op code of operation `name` (a rule's, or a name given to `tape.record`)."""
    if name not in OP_NAMES:
        if len(OP_NAMES) == MAX_CODES:
            raise OverflowError(f"more than {MAX_CODES - FIRST_CUSTOM} custom operation names; cannot add {name!r}")
        OP_NAMES.append(name)
    return OP_NAMES.index(name)


_compiled = None
_python_left = PYTHON_BUDGET  # numbers and edges plain Python may still handle


def _kernels(work: int | None = None):
    """The kernels for `work` numbers or edges: tape/_small.py's while numba is not loaded and
    the budget allows, else the compiled ones, imported on first use (numba loads in ~0.5 s)."""
    global _compiled, _python_left
    if _compiled is None and "tape._kernels" in sys.modules:  # loaded by other means
        _compiled = sys.modules["tape._kernels"]
    if _compiled is None and work is not None and work <= _python_left:
        _python_left -= work
        return _small
    if _compiled is None:
        from . import _kernels as _compiled
    return _compiled


def sweep_nodes(start, parent, partial, adjoint: np.ndarray, lo: int, hi: int) -> None:
    """Algorithm 1 over nodes hi - 1 down to lo of CSR arrays, in place on `adjoint`; the same
    additions in the same order in plain Python and compiled. A stretch without edges (leaves,
    matrix nodes) passes nothing."""
    edges = int(start[hi] - start[lo])
    if edges:
        _kernels(edges).sweep(start, parent, partial, adjoint, lo, hi)


class StaleVarError(RuntimeError):
    """A `Var` whose node was dropped by `rewind()` or `reset()` was used."""


class _Segment:
    """The nodes recorded between two marks. Vars point to their segment: a rewind kills the
    segments above the mark, and `record` of a dead segment raises instead of appending, so the
    staleness check costs nothing on the hot path."""

    __slots__ = ("tape", "start", "record", "alive")

    def __init__(self, tape: Tape, start: int):
        self.tape = tape
        self.start = start
        self.record = tape._rec.extend
        self.alive = True

    def kill(self) -> None:
        def record(_):
            raise StaleVarError(
                f"this Var was recorded at or after node {self.start}, which rewind() or reset() "
                "has since dropped from its tape; record it again"
            )

        self.alive = False
        self.record = record


class TraceError(RuntimeError):
    """Something in a traced function that a trace cannot replay faithfully."""


class Tape:
    """A gradient tape. `with Tape() as t:` makes `t` the current tape of this thread.

    A tape records one thread's operations: a thread that enters a tape another thread is
    using, or records on it, gets a `RuntimeError` at once."""

    def __init__(self) -> None:
        self._rec: list[float] = []  # staged records, not yet in the arrays
        self._n = 0  # nodes recorded, staged included
        self._nodes = 0  # nodes moved into the arrays
        self._edges = 0
        self._flush_at = FLUSH_NODES
        self._start = np.zeros(INITIAL_CAPACITY + 1, np.int32)
        self._parent = np.zeros(INITIAL_CAPACITY, np.int32)
        self._partial = np.zeros(INITIAL_CAPACITY, np.float64)
        self._op = np.zeros(INITIAL_CAPACITY, np.uint8)
        self.adjoint = np.zeros(0)  # d(output)/d(node) from the latest sweep
        self.swept_from: int | None = None  # that sweep's output node (None: a seed vector, or no sweep)
        self.grads: dict[int, np.ndarray] = {}  # the latest sweep's adjoints of matrix nodes with axes
        self.owned: set[int] = set()  # those of them that are their node's own memory (see Tensor.grad)
        self._matrix: dict[int, object] = {}  # node -> what a matrix node's VJP needs (tape._tensor.Node)
        self._matrix_nodes: list[int] = []  # their indices, ascending
        self.recording = True
        self.program: list[np.ndarray] | None = None  # while tracing: every record, in order
        self.guards: list | None = None  # while tracing: the comparisons made (see tape.trace)
        self._owner: int | None = None  # the thread using the tape, while one is
        self._seg = _Segment(self, 0)
        self._segments = [self._seg]
        self._tokens: list[contextvars.Token] = []

    # -- recording --------------------------------------------------------------------------

    def leaf(self, value: float) -> int:
        """Record a node without parents and return its index."""
        self._rec += (LEAF_HEADER, value)
        return self._advance()

    def record_matrix(self, code: int, node, seg: _Segment | None = None) -> int:
        """Record a matrix node (tape._tensor): a record without scalar edges, and beside it
        `node`, whose `vjp` the sweep calls. `seg` is its first parent's segment (stale: refused)."""
        (seg or self._seg).record((code,))  # the header of a node of no scalar parents
        n = self._n
        self._n = n + 1
        if n >= self._flush_at:
            self.flush()
        self._matrix[n] = node
        self._matrix_nodes.append(n)
        return n

    def _advance(self) -> int:
        n = self._n
        self._n = n + 1
        if n >= self._flush_at or len(self._rec) >= FLUSH_ITEMS:
            self.flush()
        return n

    def flush(self) -> None:
        """Move the staged records into the CSR arrays."""
        if self._rec:
            stream = np.array(self._rec, dtype=np.float64)
            self._rec.clear()
            self._parse(stream, self._n)

    def extend(self, stream: np.ndarray, nodes: int) -> int:
        """Append `nodes` nodes given as records in an array (`tape.kernels` writes them, for
        VarArrays); returns the first one's index."""
        self.flush()
        first = self._n
        self._n += nodes
        self._parse(stream, self._n)
        return first

    def _parse(self, stream: np.ndarray, nodes: int) -> None:
        self._check_thread()
        self._reserve(nodes, self._edges + len(stream) // 2)
        if 2 * (nodes - self._nodes) == len(stream) and (stream[0::2] == LEAF_HEADER).all():
            # leaves only (a VarArray of numbers, a model's parameters): no edges, nothing to parse
            self._op[self._nodes : nodes] = LEAF
            self._start[self._nodes + 1 : nodes + 1] = edges = self._edges
        else:
            kernels = _kernels(len(stream))
            edges = kernels.parse(
                stream.tolist() if kernels is _small else stream,
                self._start, self._parent, self._partial, self._op, self._nodes, self._edges,
            )
        if edges < 0:
            raise RuntimeError(f"the staged records of {self!r} are inconsistent; the tape is unusable")
        if self.program is not None:
            self.program.append(stream)
        self._edges = edges
        self._nodes = self._n = nodes
        self._flush_at = nodes + FLUSH_NODES

    def _reserve(self, nodes: int, edges: int) -> None:
        """Grow the arrays (doubling) to hold `nodes` nodes and `edges` edges."""
        if nodes > INDEX_LIMIT or edges > INDEX_LIMIT:
            raise OverflowError(
                f"tape of {nodes:,} nodes and {edges:,} edges exceeds the int32 index range "
                f"({INDEX_LIMIT:,}); rewind or reset the tape, or record less per sweep"
            )
        node_cap, edge_cap = len(self._op), len(self._parent)
        if nodes <= node_cap and edges <= edge_cap:
            return
        node_cap = min(max(nodes, 2 * node_cap), INDEX_LIMIT)
        edge_cap = min(max(edges, 2 * edge_cap), INDEX_LIMIT)
        need = node_cap * BYTES_PER_NODE + edge_cap * BYTES_PER_EDGE
        free = _available_memory() if need > CHECKED_GROWTH else None
        if free is not None and need > free:
            raise MemoryError(
                f"tape of {nodes:,} nodes and {edges:,} edges needs {_size(need)} to grow, "
                f"but only {_size(free)} are available; rewind or reset the tape"
            )
        self._start = _grown(self._start, node_cap + 1, self._nodes + 1)
        self._op = _grown(self._op, node_cap, self._nodes)
        self._parent = _grown(self._parent, edge_cap, self._edges)
        self._partial = _grown(self._partial, edge_cap, self._edges)

    # -- marks --------------------------------------------------------------------------------

    def mark(self) -> int:
        """The current length; `rewind(mark)` later drops every node recorded after it."""
        self._check_thread()
        if self._seg.start != self._n:
            self._seg = _Segment(self, self._n)
            self._segments.append(self._seg)
        return self._n

    def rewind(self, mark: int) -> None:
        """Drop every node recorded after `mark` (from `mark()`, or 0). Vars of those nodes
        become stale: using them raises `StaleVarError`."""
        self._check_thread()
        if self.program is not None:
            raise TraceError("rewind() while tracing: a trace keeps every node it recorded")
        starts = [s.start for s in self._segments]
        if mark not in starts and mark != 0:
            raise ValueError(f"rewind({mark!r}): not a mark of this tape (its marks: {starts})")
        if mark > self._nodes:  # the mark falls among the staged records
            self.flush()
        self._rec.clear()
        while self._segments and self._segments[-1].start >= mark:
            self._segments.pop().kill()
        while self._matrix_nodes and self._matrix_nodes[-1] >= mark:
            del self._matrix[self._matrix_nodes.pop()]
        self._seg = _Segment(self, mark)
        self._segments.append(self._seg)
        self._n = self._nodes = mark
        self._edges = int(self._start[mark])
        self._flush_at = mark + FLUSH_NODES
        self.adjoint = self.adjoint[:mark]
        self.grads = {n: g for n, g in self.grads.items() if n < mark}
        self.owned = {n for n in self.owned if n < mark}

    def reset(self) -> None:
        """Drop every node, leaves included: all Vars of this tape become stale."""
        self.rewind(0)

    # -- sweeping -----------------------------------------------------------------------------

    def sweep(self, seed: np.ndarray, matrix_seed: dict[int, np.ndarray] | None = None,
              output: int | None = None) -> np.ndarray:
        """Algorithm 1 from any seed: `seed[i]` is the adjoint given to node i, `matrix_seed[i]`
        the array given to matrix node i. Returns the adjoints of all nodes below len(seed);
        they also become what `Var.grad` reads (and `grads`, what `Tensor.grad` reads) of every
        node of the tape, and `output` (the node seeded, if one was) what displays name them by."""
        self.flush()
        self._check_thread()
        adjoint = np.array(seed, dtype=np.float64)
        if adjoint.ndim != 1 or len(adjoint) > self._n:
            raise ValueError(
                f"sweep(seed): expected a 1-d seed of at most {self._n} adjoints (the tape's "
                f"length), got shape {adjoint.shape}"
            )
        self.grads, self.owned = {}, set()
        for n, g in (matrix_seed or {}).items():  # a matrix node without axes is a scalar node: its adjoint is a number
            if self._matrix[n].shape:
                self.grads[n] = g
            else:
                adjoint[n] += float(g)
        hi = self._sweep_matrix_nodes(adjoint, len(adjoint))
        sweep_nodes(self._start, self._parent, self._partial, adjoint, 0, hi)
        self.adjoint, self.swept_from = adjoint, output
        return adjoint

    def _sweep_matrix_nodes(self, adjoint: np.ndarray, hi: int) -> int:
        """The sweep down to the lowest matrix node below `hi`: each scalar stretch above a
        matrix node by the kernel, then the node's VJP, which adds its parents' adjoints (a
        number into `adjoint` for a scalar parent, an array into `grads`). Returns that node."""
        grads, nodes = self.grads, self._matrix_nodes
        for n in reversed(nodes[: bisect.bisect_left(nodes, hi)]):
            if hi > n + 1:
                sweep_nodes(self._start, self._parent, self._partial, adjoint, n + 1, hi)
            hi = n
            node = self._matrix[n]
            g = grads.get(n) if node.shape else node.dtype.type(adjoint[n]) or None  # a number of the node's dtype
            if g is None or not node.parents:
                continue
            for p, scalar, gp in zip(node.parents, node.scalar, node.vjp(g)):
                if scalar:
                    adjoint[p] += float(gp)
                else:
                    if gp.dtype != self._matrix[p].dtype:  # an operand's adjoint in its own dtype
                        gp = gp.astype(self._matrix[p].dtype)
                    grads[p] = gp if p not in grads else grads[p] + gp
        return hi

    def backward(self, node: int) -> np.ndarray:
        """Sweep from `node` with adjoint 1: d(node)/d(every node before it)."""
        seed = np.zeros(node + 1)
        seed[node] = 1.0
        return self.sweep(seed, output=node)

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def num_edges(self) -> int:
        self.flush()
        return self._edges

    @property
    def nbytes(self) -> int:
        """Bytes the recorded nodes and edges occupy in the arrays."""
        self.flush()
        return self._n * (BYTES_PER_NODE - 8) + 4 + self._edges * BYTES_PER_EDGE

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read-only views of (start, parent, partial) for the recorded nodes."""
        self.flush()
        views = (
            self._start[: self._n + 1],
            self._parent[: self._edges],
            self._partial[: self._edges],
        )
        for v in views:
            v.flags.writeable = False
        return views

    def node(self, i: int) -> tuple[str, list[int], list[float]]:
        """Node `i` as (op name, parent indices, partials)."""
        self.flush()
        if not 0 <= i < self._n:
            raise IndexError(f"node {i} is not on this tape of {self._n} nodes")
        matrix = self._matrix.get(i)
        if matrix is not None:  # its partials are its VJP's, not numbers
            return f"{OP_NAMES[self._op[i]]} {matrix.shape}", list(matrix.parents), []
        lo, hi = self._start[i], self._start[i + 1]
        return (
            OP_NAMES[self._op[i]],
            self._parent[lo:hi].tolist(),
            self._partial[lo:hi].tolist(),
        )

    def nodes(self) -> Iterator[tuple[int, str, list[int], list[float]]]:
        for i in range(len(self)):
            yield (i, *self.node(i))

    def show(self, names: dict | None = None, file=None) -> None:
        """Print the tape like the course's Figure 11, with the latest sweep's adjoints."""
        print(self.format(names), file=file)

    def format(self, names: dict | None = None) -> str:
        return self.table(names).text()

    def _named(self, names: dict, who: str) -> dict[int, str]:
        """{node: name} of `names` ({node: "v1"} or {Var or Tensor: "v1"}), each of this tape:
        a Var of another tape (a notebook's `t` reassigned since) is refused, by its name."""
        nodes = {}
        for key, name in names.items():
            if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
                node, tape = int(key), self
            elif getattr(key, "requires_grad", True) is False:
                raise ValueError(f"{who}: {name!r} names a constant Tensor, which is no node of a tape")
            elif hasattr(key, "node") and hasattr(key, "tape"):
                node, tape = key.node, key.tape
            else:
                raise TypeError(f"{who}: expected node numbers, Vars or Tensors as the keys of names, got "
                                f"{type(key).__name__} for {name!r}")
            if tape is not self:
                raise ValueError(f"{who}: {name!r} names {key!r}, node {node} of another tape ({tape!r}), not "
                                 f"of this one ({self!r}); show its own tape (that Var's .tape) or name this "
                                 "tape's nodes")
            if not 0 <= node < self._n:
                raise ValueError(f"{who}: {name!r} names node {node}, not on this tape of {self._n} nodes")
            nodes[node] = str(name)
        return nodes

    def sweep_name(self, label: Callable[[int], str] = lambda i: f"node {i}") -> str:
        """Which sweep the adjoints (every `.grad` of this tape) are of, as a display says it:
        "the sweep from node 5" (`label(node)` names the output), or "" before any sweep."""
        if not len(self.adjoint):
            return ""
        return "a sweep from a seed vector" if self.swept_from is None else f"the sweep from {label(self.swept_from)}"

    def table(self, names: dict | None = None) -> Table:
        """The tape as the course's Table 2: per node its op, parents, partials and the adjoint
        of the latest sweep (the caption says from which output). `names` names nodes ({node:
        "v1"} or {Var: "v1"}, each of this tape: another tape's is refused); with Vars, a value
        column holds their values (the tape itself stores none)."""
        names = names or {}
        values = {key.node: f"{key.value:.6g}" for key in names if hasattr(key, "value") and hasattr(key, "node")
                  and not hasattr(key, "shape")}  # of the Vars named
        names = self._named(names, "Tape.table(names)")
        label = lambda i: names.get(i, str(i))  # noqa: E731
        value_column = ("value",) if values else ()

        def row(i: int) -> tuple[str, ...]:
            op, parents, partials = self.node(i)
            value = (values.get(i, ""),) if values else ()
            matrix = self._matrix.get(i)
            return (label(i), op, ", ".join(map(label, parents)) or "-",
                    "(its VJP)" if matrix and parents else ", ".join(f"{d:.6g}" for d in partials) or "-", *value,
                    "" if i >= len(self.adjoint) else _brief(self.grads.get(i, 0.0)) if matrix and matrix.shape
                    else f"{self.adjoint[i]:.6g}")

        sweep = self.sweep_name(lambda i: names.get(i, f"node {i}"))
        swept = f"adjoints of {sweep}" if sweep else "not swept yet"
        return Table(("node", "op", "parents", "partials", *value_column, "adjoint"), Rows(len(self), row),
                     right=(0,), caption=f"Tape: {len(self):,} nodes, {swept}")

    def _repr_html_(self) -> str:
        return self.table().html()

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        """What IPython shows as text (a terminal, a text export): the table, its ends if long."""
        printer.text(repr(self.table()))

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"<Tape: {len(self)} nodes>"

    # -- the current tape ---------------------------------------------------------------------

    def __enter__(self) -> Tape:
        self._check_thread()
        self._owner = threading.get_ident()
        self._tokens.append(_current.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _current.reset(self._tokens.pop())
        if not self._tokens and self is not _thread_default.get(None):
            self._owner = None

    def _check_thread(self) -> None:
        if self._owner is not None and self._owner != threading.get_ident():
            raise RuntimeError(
                f"{self!r} is in use by another thread (thread id {self._owner}); a tape records "
                "one thread's operations: give each thread its own `with tape.Tape():`"
            )


def _brief(a) -> str:
    """An adjoint array on one short line."""
    return np.array2string(np.asarray(a), precision=4, threshold=6, edgeitems=1, max_line_width=10**9).replace("\n", "")


def _grown(a: np.ndarray, size: int, keep: int) -> np.ndarray:
    out = np.zeros(size, a.dtype)
    out[:keep] = a[:keep]
    return out


def _size(nbytes: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:,.0f} {unit}"
        nbytes /= 1024


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


_current: contextvars.ContextVar[Tape] = contextvars.ContextVar("wengert_tape")
_thread_default: contextvars.ContextVar[Tape] = contextvars.ContextVar("wengert_default_tape")


def current_tape() -> Tape:
    """The tape new leaves go on: the innermost `with Tape()`, else this thread's own default."""
    t = _current.get(None)
    if t is None:
        t = Tape()
        t._owner = threading.get_ident()
        _current.set(t)
        _thread_default.set(t)
    return t


if threading.current_thread() is threading.main_thread():
    current_tape()
