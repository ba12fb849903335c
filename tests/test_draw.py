"""tape.draw: the computation graph as the course draws it."""
import importlib.util
import math
import shutil

import pytest

import tape
from tape import Tape, Var

pytestmark = pytest.mark.skipif(importlib.util.find_spec("graphviz") is None or shutil.which("dot") is None,
                                reason="drawing needs the graphviz package and Graphviz's dot program")


def course_example():
    x1, x2 = Var(math.pi), Var(1.0)
    y = x2 * tape.cos(x1) + tape.exp(x2)
    y.backward()
    return x1, x2, y


def test_svg_and_png_of_the_worked_example(tmp_path):
    with Tape():
        x1, x2, y = course_example()
        svg = tape.draw(y, tmp_path / "graph.svg", names={x1: "x1", x2: "x2"})
        png = tape.draw(y, tmp_path / "graph.png")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    for word in ("x1", "x2", "cos", "mul", "exp", "add", "= 3.14159", "adjoint 1.71828", "2.718"):
        assert word in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_only_the_nodes_the_output_depends_on_are_drawn(tmp_path):
    with Tape():
        a, b = Var(2.0), Var(3.0)
        unrelated = b * 5.0  # noqa: F841
        y = a * a
        assert tape._draw.ancestors(y) == [a.node, y.node]
        source = tape.draw(y, tmp_path / "graph.dot").read_text()
    assert source.count("->") == 2 and "mul" in source and "leaf" in source


def test_bad_paths_sizes_and_a_missing_dot_are_clear_errors(tmp_path, monkeypatch):
    import graphviz

    with Tape():
        _, _, y = course_example()
        with pytest.raises(ValueError, match="expected a path ending in .svg"):
            tape.draw(y, tmp_path / "graph.jpg")
        with pytest.raises(ValueError, match="has 6 nodes, more than max_nodes=3"):
            tape.draw(y, tmp_path / "graph.svg", max_nodes=3)

        def no_dot(*args, **kwargs):
            raise graphviz.ExecutableNotFound(["dot"])

        monkeypatch.setattr(graphviz.Digraph, "render", no_dot)
        with pytest.raises(RuntimeError, match="needs Graphviz's dot program: apt-get install graphviz"):
            tape.draw(y, tmp_path / "graph.svg")


def test_matrix_nodes_are_drawn_with_their_ops_shapes_and_parents(tmp_path):
    import numpy as np

    with Tape():
        x, w = tape.Tensor(np.ones((2, 3))), tape.Tensor(np.ones((3, 4)))
        unrelated = x * 2.0  # noqa: F841
        y = tape.sigmoid(x @ w).sum()
        y.backward()
        assert tape._draw.ancestors(y) == [x.node, w.node, y.node - 2, y.node - 1, y.node]
        source = tape.draw(y, tmp_path / "graph.dot", names={w: "W"}).read_text()
    assert source.count("->") == 4 and "matmul (2, 4)" in source and "leaf (3, 4)" in source and "W" in source
    assert "adjoint [[" in source  # a matrix node's adjoint, in brief
