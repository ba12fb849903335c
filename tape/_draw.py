"""`tape.draw`: the computation graph of a Var, drawn as the course draws it (Figures 7 and 11)."""
from __future__ import annotations

import html
from itertools import count, zip_longest
from pathlib import Path
from typing import Iterator

from ._ops import Var
from ._tape import _brief

FORMATS = ("svg", "png", "pdf", "dot")
FIT_WIDTH = 570.0  # points (760 pixels): a notebook's output area of 850 pixels, less its prompt and margins
LEFT_TO_RIGHT = 5  # the most nodes in a row of arrows drawn left to right (about 800 pixels); more go top to bottom


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

    def __init__(self, graph, about: str = "") -> None:
        self.graph, self.about = graph, about

    def __repr__(self) -> str:
        """What a terminal or a text export shows in place of the picture."""
        return f"<Drawing: {self.about}; .save('graph.svg') writes it>"

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
        """SVG for a notebook, fitted to its output area; where Graphviz's dot is missing,
        a message saying so, and the source."""
        import graphviz

        try:
            return {"image/svg+xml": self.fitted()}
        except graphviz.ExecutableNotFound:
            return {"text/html": f"<p>{html.escape(NO_DOT)}; the graph's source:</p><pre>{html.escape(self.source)}</pre>",
                    "text/plain": f"{NO_DOT}\n{self.source}"}

    def fitted(self, width: float = FIT_WIDTH) -> str:
        """The SVG, scaled down to at most `width` points if it is wider (one layout by dot)."""
        self.graph.graph_attr["size"] = f"{width / 72:.3f},1000"  # inches; dot only scales down to it
        try:
            return self.graph.pipe(format="svg").decode()
        finally:
            del self.graph.graph_attr["size"]  # the source and a saved file keep their own size


NO_DOT = "tape.draw needs Graphviz's dot program: apt-get install graphviz (or brew install graphviz)"


def draw(y: Var, path: str | Path | None = None, names: dict | None = None, max_nodes: int = 500) -> Path | Drawing:
    """The graph of every node `y` depends on, as the course draws it: a box per node with its
    label, op and, for `y` and the Vars named in `names` ({Var: "x1", ...}, each of y's tape),
    its value; arrows labelled with the local partials; and each node's adjoint from the latest
    sweep, which a line above the graph names. A node named in `names` shows its name; the others
    are v1, v2, ... in tape order among the nodes drawn (so a small graph at the end of a long
    tape reads v1..v8, not v50905), and show their index on the tape as a tooltip. Drawn left to
    right as the course does, or top to bottom where a path has more than LEFT_TO_RIGHT nodes;
    a notebook shows it scaled down to fit 760 pixels if wider. Rendered to
    `path` (.svg, .png, .pdf, or .dot for Graphviz's source) if given, which is returned; else
    returned as a `Drawing`, which a notebook shows inline. Needs the `graphviz` package, and
    Graphviz's `dot` to render."""
    if path is not None and Path(path).suffix.lstrip(".").lower() not in FORMATS:
        raise ValueError(f"draw: expected a path ending in {', '.join('.' + f for f in FORMATS)}, got {Path(path).name!r}")
    t = y.tape
    nodes = ancestors(y)
    if len(nodes) > max_nodes:
        raise ValueError(f"draw: the graph of {y!r} has {len(nodes):,} nodes, more than max_nodes={max_nodes}")
    named = t._named(names or {}, "draw(names)")
    values = {v.node: v._value for v in [y, *(names or {})] if isinstance(v, Var)}
    label = dict(zip((i for i in nodes if i not in named), _free_names(set(named.values())))) | named
    try:
        import graphviz
    except ImportError:
        raise ImportError("tape.draw needs the graphviz package: pip install graphviz (or pip install 'wengert[draw]')") from None
    sweep = t.sweep_name(lambda i: label.get(i, f"node {i} (not drawn)"))
    graph = graphviz.Digraph(graph_attr={"label": f"adjoints of {sweep}" if sweep else "not swept yet",
                                         "labelloc": "t", "labeljust": "l", "fontname": "Helvetica", "fontsize": "11"},
                             node_attr={"shape": "box", "style": "rounded", "fontname": "Helvetica"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    row = {}  # the most nodes on a path of arrows ending at each node
    for i in nodes:
        op, parents, partials = t.node(i)
        row[i] = 1 + max((row[p] for p in parents), default=0)
        lines = [f"{label[i]}  {op}"]
        if values.get(i) is not None:
            lines.append(f"= {values[i]:.6g}")
        matrix = t._matrix.get(i)
        if i < len(t.adjoint):
            shaped = matrix is not None and matrix.shape
            lines.append(f"adjoint {_brief(t.grads.get(i, 0.0)) if shaped else format(t.adjoint[i], '.6g')}")
        graph.node(str(i), "\n".join(lines), color="firebrick" if i == y.node else "black", tooltip=f"node {i} of the tape")
        for p, d in zip_longest(parents, partials):  # a matrix node has no partials: its edges carry its VJP
            graph.edge(str(p), str(i), label="" if d is None else f"{d:.4g}")
    graph.graph_attr["rankdir"] = "LR" if max(row.values()) <= LEFT_TO_RIGHT else "TB"
    drawing = Drawing(graph, f"the graph of {label[y.node]}, {len(nodes)} nodes, {graph.graph_attr['label']}")
    return drawing if path is None else drawing.save(path)


def _free_names(taken: set[str]) -> Iterator[str]:
    """v1, v2, ... skipping the names a user gave."""
    return (name for name in (f"v{k}" for k in count(1)) if name not in taken)
