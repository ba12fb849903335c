"""`tape.draw`: the computation graph of a Var, drawn as the course draws it (Figures 7 and 11)."""
from __future__ import annotations

from pathlib import Path

from ._ops import Var

FORMATS = ("svg", "png", "pdf", "dot")


def ancestors(y: Var) -> list[int]:
    """The nodes `y` depends on, itself included, in tape order."""
    start, parent, _ = y.tape.arrays()
    seen, stack = {y.node}, [y.node]
    while stack:
        node = stack.pop()
        for p in parent[start[node] : start[node + 1]].tolist():
            if p not in seen:
                seen.add(p)
                stack.append(p)
    return sorted(seen)


def draw(y: Var, path: str | Path, names: dict | None = None, max_nodes: int = 500) -> Path:
    """Render the graph of every node `y` depends on to `path` (.svg, .png, .pdf, or .dot for
    Graphviz's source): a box per node with its index, op and, for `y` and the Vars named in
    `names` ({Var: "x1", ...}), its value; arrows labelled with the local partials; and each
    node's adjoint from the latest sweep. Needs the `graphviz` package and Graphviz's `dot`."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"draw: expected a path ending in {', '.join('.' + f for f in FORMATS)}, got {path.name!r}")
    t = y.tape
    nodes = ancestors(y)
    if len(nodes) > max_nodes:
        raise ValueError(f"draw: the graph of {y!r} has {len(nodes):,} nodes, more than max_nodes={max_nodes}")
    labelled = {y: ""} | dict(names or {})
    label_of = {v.node: (name, v._value) for v, name in labelled.items() if isinstance(v, Var) and v.tape is t}
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
        if i < len(t.adjoint):
            lines.append(f"adjoint {t.adjoint[i]:.6g}")
        graph.node(str(i), "\n".join(lines), color="firebrick" if i == y.node else "black")
        for p, d in zip(parents, partials):
            graph.edge(str(p), str(i), label=f"{d:.4g}")
    if fmt == "dot":
        path.write_text(graph.source)
        return path
    try:
        graph.render(outfile=path, format=fmt, cleanup=True)
    except graphviz.ExecutableNotFound:
        raise RuntimeError("tape.draw needs Graphviz's dot program: apt-get install graphviz (or brew install graphviz)") from None
    return path

