"""`tape.draw`: the computation graph of a Var, drawn as the course draws it (Figures 7 and 11)."""
from __future__ import annotations

import html
from itertools import zip_longest
from pathlib import Path

from ._ops import Var
from ._tape import _brief

FORMATS = ("svg", "png", "pdf", "dot")


def ancestors(y: Var) -> list[int]:
    """The nodes `y` depends on, itself included, in tape order (through scalar edges and matrix
    nodes' parents alike)."""
    t = y.tape
    start, parent, _ = t.arrays()
    seen, stack = {y.node}, [y.node]
    while stack:
        node = stack.pop()
        matrix = t._matrix.get(node)
        for p in matrix.parents if matrix else parent[start[node] : start[node + 1]].tolist():
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return sorted(seen)


class Drawing:
    """A graph `tape.draw` made: shown inline in a notebook (SVG), `save(path)` writes it to a file,
    `source` is Graphviz's text of it."""

    def __init__(self, graph) -> None:
        self.graph = graph

    @property
    def source(self) -> str:
        return self.graph.source

    def save(self, path: str | Path) -> Path:
        """Render to `path` (.svg, .png, .pdf, or .dot for the source); returns the path."""
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise ValueError(f"draw: expected a path ending in {', '.join('.' + f for f in FORMATS)}, got {path.name!r}")
        if fmt == "dot":
            path.write_text(self.source)
            return path
        import graphviz

        try:
            self.graph.render(outfile=path, format=fmt, cleanup=True)
        except graphviz.ExecutableNotFound:
            raise RuntimeError(NO_DOT) from None
        return path

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """SVG for a notebook; where Graphviz's dot is missing, a message saying so, and the source."""
        import graphviz

        try:
            return {"image/svg+xml": self.graph.pipe(format="svg").decode()}
        except graphviz.ExecutableNotFound:
            return {"text/html": f"<p>{html.escape(NO_DOT)}; the graph's source:</p><pre>{html.escape(self.source)}</pre>",
                    "text/plain": f"{NO_DOT}\n{self.source}"}


NO_DOT = "tape.draw needs Graphviz's dot program: apt-get install graphviz (or brew install graphviz)"


def draw(y: Var, path: str | Path | None = None, names: dict | None = None, max_nodes: int = 500) -> Path | Drawing:
    """The graph of every node `y` depends on, as the course draws it: a box per node with its
    index, op and, for `y` and the Vars named in `names` ({Var: "x1", ...}), its value; arrows
    labelled with the local partials; and each node's adjoint from the latest sweep. Rendered to
    `path` (.svg, .png, .pdf, or .dot for Graphviz's source) if given, which is returned; else
    returned as a `Drawing`, which a notebook shows inline. Needs the `graphviz` package, and
    Graphviz's `dot` to render."""
    if path is not None and Path(path).suffix.lstrip(".").lower() not in FORMATS:
        raise ValueError(f"draw: expected a path ending in {', '.join('.' + f for f in FORMATS)}, got {Path(path).name!r}")
    t = y.tape
    nodes = ancestors(y)
    if len(nodes) > max_nodes:
        raise ValueError(f"draw: the graph of {y!r} has {len(nodes):,} nodes, more than max_nodes={max_nodes}")
    labelled = {y: ""} | dict(names or {})
    label_of = {v.node: (name, v._value) for v, name in labelled.items() if isinstance(v, Var) and v.tape is t}
    label_of |= {v.node: (name, None) for v, name in labelled.items() if hasattr(v, "shape") and getattr(v, "node", -1) >= 0}
    try:
        import graphviz
    except ImportError:
        raise ImportError("tape.draw needs the graphviz package: pip install graphviz (or pip install 'wengert[draw]')") from None
    graph = graphviz.Digraph(graph_attr={"rankdir": "LR"}, node_attr={"shape": "box", "style": "rounded", "fontname": "Helvetica"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    for i in nodes:
        op, parents, partials = t.node(i)
        name, value = label_of.get(i, ("", None))
        lines = [f"{name or 'v'}{'' if name else i}  {op}"]
        if value is not None:
            lines.append(f"= {value:.6g}")
        matrix = t._matrix.get(i)
        if i < len(t.adjoint):
            shaped = matrix is not None and matrix.shape
            lines.append(f"adjoint {_brief(t.grads.get(i, 0.0)) if shaped else format(t.adjoint[i], '.6g')}")
        graph.node(str(i), "\n".join(lines), color="firebrick" if i == y.node else "black")
        for p, d in zip_longest(parents, partials):  # a matrix node has no partials: its edges carry its VJP
            graph.edge(str(p), str(i), label="" if d is None else f"{d:.4g}")
    drawing = Drawing(graph)
    return drawing if path is None else drawing.save(path)
