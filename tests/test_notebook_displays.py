"""What a student meets in a notebook (issue 32, the tape's side): a line before numba compiles,
names of another tape refused, displays that say which sweep their adjoints are of, and displays
that fit an 850-pixel output area with a useful plain-text form."""
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

import tape
from test_display import Parsed, worked_example

ROOT = Path(__file__).resolve().parents[1]
COMPILING = "with numba (first use only: cached for later runs) ..."

drawing = pytest.mark.skipif(importlib.util.find_spec("graphviz") is None or shutil.which("dot") is None,
                             reason="drawing needs the graphviz package and Graphviz's dot program")


def python(code: str, **env) -> subprocess.CompletedProcess:
    """`code` run in a fresh Python on this worktree's packages."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


# -- a line before a first compilation ------------------------------------------------------------

def test_a_first_use_says_it_compiles_once_and_a_run_on_the_cache_says_nothing(tmp_path):
    code = ("import numpy as np, tape\n"
            "a = tape.VarArray(np.ones(3))\n"
            "print('product', (a * a).sum().value)\n"
            "print('again', (a * a * a).sum().value)")
    first, second = (python(code, NUMBA_CACHE_DIR=str(tmp_path)) for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    notice = f"compiling tape's kernels for VarArrays and long tapes {COMPILING}"
    assert first.stdout.splitlines() == [notice, "product 3.0", "again 3.0"]  # before, on stdout, once
    assert second.stdout.splitlines() == ["product 3.0", "again 3.0"] and notice not in second.stderr


def test_a_users_module_announces_its_own_kernels_and_others_stay_silent(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import tape\nfrom numba import njit\nimport helpers\n"
        "tape.announce_compiling(__name__, 'my kernels')\n"
        "@njit(cache=True)\ndef twice(x):\n    return 2 * helpers.same(x)\n"  # compiles helpers.same inside it
        "@njit(cache=True)\ndef thrice(x):\n    return 3 * x\n")
    (tmp_path / "helpers.py").write_text("import tape\nfrom numba import njit\ntape.announce_compiling(__name__, 'helpers')\n"
                                         "@njit(cache=True)\ndef same(x):\n    return x\n")
    (tmp_path / "theirs.py").write_text("from numba import njit\n@njit(cache=True)\ndef half(x):\n    return x / 2\n")
    code = "import mine, theirs\nprint(theirs.half(4.0), mine.twice(1.0), mine.thrice(1.0), mine.twice(2))"
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    first, second = (python(code, **env) for _ in range(2))
    assert first.stdout.splitlines() == [f"compiling my kernels {COMPILING}", "2.0 2.0 3.0 4"], first.stderr
    assert second.stdout.splitlines() == ["2.0 2.0 3.0 4"], second.stderr


# -- names of another tape ------------------------------------------------------------------------

def test_a_table_refuses_the_names_of_another_tapes_vars_by_name():
    t, x1, x2, y = worked_example()
    names = {x1: "v-1", x2: "v0", y: "f"}
    assert [row[0] for row in Parsed(t.table(names).html()).rows[1:]] == ["v-1", "v0", "2", "3", "4", "f"]
    with tape.Tape() as t:  # the notebook's `t`, reassigned by a later cell
        tape.Tensor(np.ones((2, 2))) * 2.0
    with pytest.raises(ValueError, match=r"Tape.table\(names\): 'v-1' names Var\(3.14159.*\), node 0 of another tape "
                                         r"\(<Tape: 6 nodes>\), not of this one \(<Tape: 2 nodes>\)"):
        t.table(names)
    assert [row[0] for row in Parsed(x1.tape.table(names).html()).rows[1:]] == ["v-1", "v0", "2", "3", "4", "f"]


def test_a_table_refuses_names_of_no_node():
    t, x1, x2, y = worked_example()
    with pytest.raises(ValueError, match=r"'w' names node 6, not on this tape of 6 nodes"):
        t.table({6: "w"})
    with pytest.raises(ValueError, match=r"'c' names a constant Tensor"):
        t.table({tape.Tensor([1.0], requires_grad=False): "c"})
    with pytest.raises(TypeError, match=r"expected node numbers, Vars or Tensors .* got str for 'x'"):
        t.table({"x1": "x"})
    with t:
        mark = t.mark()
        late = tape.Var(2.0)
        t.rewind(mark)
    with pytest.raises(tape.StaleVarError):
        t.table({late: "late"})


@drawing
def test_a_drawing_refuses_the_names_of_another_tapes_vars():
    t, x1, x2, y = worked_example()
    with tape.Tape():
        other = tape.Var(1.0)
    with pytest.raises(ValueError, match=r"draw\(names\): 'z' names Var\(1.0\), node 0 of another tape"):
        tape.draw(y, names={x1: "x1", other: "z"})


# -- which sweep the adjoints are of ---------------------------------------------------------------

def two_unrelated_sweeps():
    with tape.Tape() as t:
        x = tape.Var(2.0)
        y = x * x
        y.backward()
        assert x.grad == 4.0
        z = tape.Var(3.0)
        w = tape.exp(z)
        w.backward()
    return t, x, y, z, w


def test_every_sweep_replaces_the_grads_of_its_whole_tape_and_the_displays_say_which_sweep():
    t, x, y, z, w = two_unrelated_sweeps()
    assert x.grad == 0.0 and z.grad == math.exp(3.0)  # d(w)/dx: the latest sweep's, as documented
    assert t.swept_from == w.node
    assert Parsed(t._repr_html_()).caption == f"Tape: 4 nodes, adjoints of the sweep from node {w.node}"
    assert repr(t.table({w: "w"})).splitlines()[0] == "Tape: 4 nodes, adjoints of the sweep from w"
    assert "(node 0, grad 0.0 of the sweep from node 3)" in "".join(Parsed(x._repr_html_()).text)
    y.backward()
    assert x.grad == 4.0 and z.grad == 0.0 and t.swept_from == y.node
    assert "grad 4.0 of the sweep from node 1" in x._repr_html_()
    t.sweep(np.array([0.0, 1.0, 0.0, 2.0]))  # a vjp's sweep: no one output
    assert t.swept_from is None and Parsed(t._repr_html_()).caption == "Tape: 4 nodes, adjoints of a sweep from a seed vector"
    assert Parsed(tape.Tape()._repr_html_()).caption == "Tape: 0 nodes, not swept yet"


def test_a_tensors_grad_follows_the_latest_sweep_and_its_display_names_it():
    with tape.Tape() as t:
        a = tape.Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]))
        (a * a).sum().backward()
        np.testing.assert_array_equal(a.grad, [[2.0, 4.0], [6.0, 8.0]])
        b = tape.Tensor([5.0])
        out = b * 2.0  # a Tensor of one element
        out.backward()
    np.testing.assert_array_equal(a.grad, np.zeros((2, 2)))
    assert repr(a).endswith(f"grad=[[0., 0.],\n             [0., 0.]] of the sweep from node {out.node})")
    assert f"grad of the sweep from node {out.node}" in a._repr_html_() and t.swept_from == out.node


@drawing
def test_a_drawing_says_which_sweep_its_adjoints_are_of():
    t, x, y, z, w = two_unrelated_sweeps()
    label = lambda d: ElementTree.fromstring(svg_of(d)).find(".//{*}g/{*}text").text  # noqa: E731  the graph's
    assert label(tape.draw(y)) == f"adjoints of the sweep from node {w.node} (not drawn)"
    y.backward()
    assert label(tape.draw(y)) == "adjoints of the sweep from v2"
    assert repr(tape.draw(y)) == "<Drawing: the graph of v2, 2 nodes, adjoints of the sweep from v2; .save('graph.svg') writes it>"
    assert label(tape.draw(y, names={y: "y"})) == "adjoints of the sweep from y"
    with tape.Tape():
        assert label(tape.draw(tape.Var(1.0) * 2.0)) == "not swept yet"


# -- displays that fit 850 pixels ------------------------------------------------------------------

def svg_of(drawing) -> str:
    svg = drawing._repr_mimebundle_()["image/svg+xml"]
    return svg[svg.index("<svg"):]


def texts_of(root) -> list[str]:
    """The texts of an SVG, Graphviz's non-breaking spaces as spaces."""
    return [(el.text or "").replace("\xa0", " ") for el in root.iter() if el.tag.endswith("text")]


def width_in_pixels(svg: str) -> float:
    return float(re.search(r'<svg[^>]*\swidth="([0-9.]+)pt"', svg).group(1)) * 4 / 3


@drawing
@pytest.mark.parametrize("depth", [1, 2, 12])
def test_a_drawing_fits_an_850_pixel_output_area(depth):
    with tape.Tape():
        x, w = tape.Var(0.5), tape.Var(2.0)
        y = x
        for _ in range(depth):
            y = tape.tanh(y * w + x)
        y.backward()
        drawing = tape.draw(y, names={x: "x", w: "w"})
    svg = svg_of(drawing)
    assert width_in_pixels(svg) <= 760
    texts = texts_of(ElementTree.fromstring(svg))
    assert f"v{3 * depth}  tanh" in texts  # the output is drawn, and named
    assert f"rankdir={'LR' if 1 + 3 * depth <= 5 else 'TB'}" in drawing.source  # left to right while a path has 5 nodes


@drawing
def test_the_worked_example_is_drawn_left_to_right_scaled_to_fit():
    t, x1, x2, y = worked_example()
    with t:
        y.backward()
        drawing = tape.draw(y, names={x1: "x1", x2: "x2"})
    natural = drawing.graph.pipe(format="svg").decode()
    assert "rankdir=LR" in drawing.source and width_in_pixels(natural) > 760  # the course's layout is too wide
    assert 700 < width_in_pixels(svg_of(drawing)) <= 760  # so it is shown scaled, by less than a tenth or so


@drawing
def test_a_small_graph_at_the_end_of_a_long_tape_is_labelled_v1_v2_and_keeps_its_indices_as_tooltips():
    with tape.Tape():
        z = tape.Var(0.1)
        for _ in range(999):
            z = tape.sin(z)
        a, b = tape.Var(2.0), tape.Var(3.0)
        y = tape.exp(a * b) + b
        svg = svg_of(tape.draw(y, names={b: "v2"}))  # a user's name v2: the numbering skips it
    root = ElementTree.fromstring(svg)
    texts = texts_of(root)
    assert {"v1  leaf", "v2  leaf", "v3  mul", "v4  exp", "v5  add"} <= set(texts)
    assert not any(re.search(r"v\d{3,}", text or "") for text in texts)
    tooltips = {el.get("{http://www.w3.org/1999/xlink}title") for el in root.iter() if el.tag.endswith("}a")}
    assert {"node 1000 of the tape", "node 1004 of the tape"} <= tooltips


def test_table_captions_stay_on_one_line_and_tables_at_the_left():
    t, *_ = worked_example()
    html = t._repr_html_()
    assert '<caption style="white-space: nowrap; text-align: left; contain: inline-size">' in html
    assert '<table style="font-family: monospace; margin-left: 0">' in html


def test_a_tables_plain_text_is_a_text_table_with_its_caption_and_its_ends():
    t, x1, x2, y = worked_example()
    with t:
        y.backward()
    lines = repr(t.table({x1: "x1", x2: "x2"})).splitlines()
    assert lines[0] == "Tape: 6 nodes, adjoints of the sweep from node 5"
    assert lines[1].split() == ["node", "op", "parents", "partials", "value", "adjoint"]
    assert lines[2].split() == ["x1", "leaf", "-", "-", f"{math.pi:.6g}", f"{-math.sin(math.pi):.6g}"]
    assert len(lines) == 8 and "object at" not in repr(t.table())
    with tape.Tape() as long:
        v = tape.Var(0.5)
        for _ in range(99):
            v = tape.sin(v)
    lines = repr(long.table()).splitlines()
    assert lines[0] == "Tape: 100 nodes, not swept yet" and len(lines) == 1 + 1 + 20 + 1 + 20
    assert lines[22] == "... 60 rows left out" and lines[21].split()[0] == "19" and lines[23].split()[0] == "80"
    assert len(str(long.table()).splitlines()) == 101  # str keeps every row


def test_a_tensor_shows_its_shape_dtype_node_and_grad_not_numpys_array():
    with tape.Tape() as t:
        a = tape.Tensor(np.array([[1.0, -2.0], [0.5, 4.0]], np.float32))
        constant = tape.Tensor([1.0, 2.0], requires_grad=False)
        assert repr(a) == "Tensor([[ 1. , -2. ],\n        [ 0.5,  4. ]], shape=(2, 2), dtype=float32, node=0)"
        assert repr(constant) == "Tensor([1., 2.], shape=(2,), dtype=float64, constant)"
        html = a._repr_html_()
        assert "shape (2, 2), float32, node 0" in html and "grad" not in html and "array(" not in html
        assert "constant" in constant._repr_html_() and "node -1" not in constant._repr_html_()
        (a * a * 3.0).sum().backward()  # d/da sum(3 a^2) = 6 a
    shown = a._repr_html_()
    grad = re.search(r"<pre>grad  (.*?)</pre>", shown, re.S).group(1)
    assert [float(v) for v in re.findall(r"-?[0-9.]+", grad)] == [6.0, -12.0, 3.0, 24.0]
    assert "array(" not in shown and "grad=[[  6., -12.]" in repr(a) and t.swept_from == 3
    with tape.Tape():
        scalar = tape.Tensor(2.0)
    assert repr(scalar) == f"Tensor(2., shape=(), dtype=float64, node={scalar.node})"


def test_a_guard_made_in_a_notebook_cell_names_the_cell(tmp_path):
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "shell = InteractiveShell.instance()\n"
            "shell.run_cell('import tape', store_history=True)\n"
            "shell.run_cell('def hinge(w):\\n    return 1.0 - w if w < 1.0 else 0.0 * w', store_history=True)\n"
            "shell.run_cell('traced = tape.trace(hinge, 0.5)')\n"
            "print(shell.user_ns['traced'].program.format().splitlines()[-1])\n")
    run = python(code, IPYTHONDIR=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "guard: argument 0 < 1.0 was True (at Cell In[2], line 2 in hinge)"


def test_ipython_shows_a_tape_and_a_trace_as_text_tables():
    from IPython.lib.pretty import pretty

    t, x1, x2, y = worked_example()
    lines = pretty(t).splitlines()
    assert lines[0] == "Tape: 6 nodes, not swept yet" and lines[1].split() == ["node", "op", "parents", "partials", "adjoint"]
    assert len(lines) == 8 and repr(t) == "<Tape: 6 nodes>"  # an error message keeps the short form
    traced = tape.trace(lambda w: tape.sin(w) * 2.0, 0.5)
    lines = pretty(traced).splitlines()
    assert lines[0] == "<traced <lambda>: 3 nodes, 3 operands, 0 guards>"
    assert lines[4].split() == ["v2", "mul", "v1,", "2.0"] and lines[-1] == "outputs: v2"
