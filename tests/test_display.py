"""What a notebook shows: each object's HTML (or SVG) is well formed and holds the numbers of the
mathematics, computed here with `math`, not by the engine."""
import importlib.util
import math
import shutil
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser

import numpy as np
import pytest

import tape
from mlp.nn import MLP


class Parsed(HTMLParser):
    """An HTML fragment's table cells (row by row), caption and other text; every tag it opens
    must be closed in order."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.open, self.rows, self.caption, self.text = [], [], "", []
        self.feed(text)
        self.close()
        assert not self.open, f"unclosed tags {self.open}"

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"</{tag}> closes nothing open"

    def handle_data(self, data):
        if "caption" in self.open:
            self.caption += data
        elif self.open and self.open[-1] in ("td", "th", "i"):
            self.rows[-1][-1] += data
        else:
            self.text.append(data)


def worked_example():
    t = tape.Tape()
    with t:
        x1, x2 = tape.Var(math.pi), tape.Var(1.0)
        y = x2 * tape.cos(x1) + tape.exp(x2)
    return t, x1, x2, y


def test_a_tape_is_the_courses_table_2():
    t, x1, x2, y = worked_example()
    before = Parsed(t._repr_html_())
    assert before.caption == "Tape: 6 nodes, not swept yet" and all(row[4] == "" for row in before.rows[1:])
    with t:
        y.backward()
    shown = Parsed(t._repr_html_())
    assert shown.rows[0] == ["node", "op", "parents", "partials", "adjoint"]
    rows = {row[1] + row[2]: row for row in shown.rows[1:]}
    assert rows["cos0"][3] == f"{-math.sin(math.pi):.6g}"
    assert rows["mul1, 2"][3] == f"{math.cos(math.pi):.6g}, 1"
    assert rows["exp1"][3] == f"{math.e:.6g}"
    leaves = [row for row in shown.rows[1:] if row[1] == "leaf"]
    assert [row[4] for row in leaves] == [f"{-math.sin(math.pi):.6g}", f"{math.cos(math.pi) + math.e:.6g}"]
    assert shown.caption == "Tape: 6 nodes, adjoints of the sweep from node 5"
    text = t.format().splitlines()  # the plain text has the same rows
    assert text[0].split() == ["node", "op", "parents", "partials", "adjoint"] and len(text) == 7


def test_a_long_tape_leaves_out_its_middle_and_says_how_many():
    with tape.Tape() as t:
        x = tape.Var(0.5)
        for _ in range(99):
            x = tape.sin(x)
    shown = Parsed(t._repr_html_())
    assert shown.caption == "Tape: 100 nodes, not swept yet"
    assert len(shown.rows) == 1 + 20 + 1 + 20
    assert shown.rows[21] == ["60 rows left out"]
    assert shown.rows[1][0] == "0" and shown.rows[-1][0] == "99"
    assert len(t.format().splitlines()) == 101  # the text keeps every row


def test_named_vars_give_the_tape_a_value_column_the_courses_table_2():
    with tape.Tape() as t:
        x1, x2 = tape.Var(math.pi), tape.Var(1.0)
        v1 = tape.cos(x1)
        v2 = x2 * v1
        v3 = tape.exp(x2)
        f = v2 + v3
        f.backward()
    table = t.table({x1: "x1", x2: "x2", v1: "v1", v2: "v2", v3: "v3", f: "f"})
    shown = Parsed(table.html())
    assert shown.rows[0] == ["node", "op", "parents", "partials", "value", "adjoint"]
    values = [math.pi, 1.0, math.cos(math.pi), math.cos(math.pi), math.e, math.cos(math.pi) + math.e]  # -1, -1, e
    adjoints = [-math.sin(math.pi), math.cos(math.pi) + math.e, 1, 1, 1, 1]
    assert [row[0] for row in shown.rows[1:]] == ["x1", "x2", "v1", "v2", "v3", "f"]
    assert [row[4] for row in shown.rows[1:]] == [f"{v:.6g}" for v in values]
    assert [row[5] for row in shown.rows[1:]] == [f"{a:.6g}" for a in adjoints]
    assert table.text().splitlines()[3].split() == ["v1", "cos", "x1", f"{-math.sin(math.pi):.6g}", "-1", "1"]
    assert "value" not in t.format({x1.node: "x1"}).splitlines()[0]  # nodes named by number: no values known


def test_a_long_tape_formats_only_the_rows_it_shows(monkeypatch):
    with tape.Tape() as t:
        x = tape.Var(0.5)
        for _ in range(9_999):
            x = tape.sin(x)
    read, node = [], t.node
    monkeypatch.setattr(t, "node", lambda i: read.append(i) or node(i))
    assert "9,960 rows left out" in t._repr_html_()
    assert sorted(read) == [*range(20), *range(9_980, 10_000)]


def test_a_var_shows_its_value_and_grad_as_its_text_repr_does():
    t, x1, x2, y = worked_example()
    assert Parsed(x2._repr_html_()).text[-1].strip() == "1.0 (node 1, no sweep yet)"
    with t:
        y.backward()
    shown = "".join(Parsed(y._repr_html_()).text)
    assert repr(y) == f"Var({math.e - 1!r})" and f"{math.e - 1!r} (node 5, grad 1.0 of the sweep from node 5)" in shown
    assert f"grad {math.cos(math.pi) + math.e!r}" in "".join(Parsed(x2._repr_html_()).text)


def test_a_2d_var_array_shows_a_grid_of_values_and_after_a_sweep_one_of_grads():
    values = np.array([[1.0, -2.0, 3.5], [0.25, 5.0, -6.0]])
    with tape.Tape():
        a = tape.VarArray(values)
        assert Parsed(a._repr_html_()).rows == [["", "0", "1", "2"], ["0", "1", "-2", "3.5"], ["1", "0.25", "5", "-6"]]
        total = (a * a).sum()
        total.backward()
        html = a._repr_html_()
    values_grid, grads_grid = (Parsed(part) for part in html.replace("</table>", "</table>\0").split("\0")[:2])
    assert values_grid.caption == "VarArray of shape (2, 3), float64: values"
    assert grads_grid.caption == f"grad, of the sweep from node {total.node}"
    assert values_grid.rows[1:] == [[str(i), *(f"{v:.6g}" for v in row)] for i, row in enumerate(values)]
    assert grads_grid.rows[1:] == [[str(i), *(f"{2 * v:.6g}" for v in row)] for i, row in enumerate(values)]  # d(sum a^2)/da = 2a


def test_a_wide_and_long_var_array_leaves_out_its_middle_columns_and_rows():
    values = np.arange(5000.0).reshape(50, 100)
    with tape.Tape():
        shown = Parsed(tape.VarArray(values)._repr_html_())
    assert shown.rows[0] == ["", "0", "1", "2", "...", "97", "98", "99"]  # 8 columns fit 850 pixels
    assert len(shown.rows) == 1 + 20 + 1 + 20 and shown.rows[21] == ["10 rows left out"]
    assert shown.rows[-1] == ["49", "4900", "4901", "4902", "...", "4997", "4998", "4999"]
    assert shown.rows[1][:2] == ["0", "0"]


@pytest.mark.parametrize("shape", [(7,), (2, 3, 4)])
def test_other_var_arrays_show_a_row_per_entry(shape):
    values = np.arange(float(np.prod(shape))).reshape(shape)
    with tape.Tape():
        a = tape.VarArray(values)
        shown = Parsed(a._repr_html_())
        (a * 3.0).sum().backward()
        swept = Parsed(a._repr_html_())
    assert shown.caption == f"VarArray of shape {shape}, float64, not swept yet"
    assert shown.rows[0] == ["entry", "value", "grad"] and len(shown.rows) == 1 + values.size
    last = str(values.size - 1) if len(shape) == 1 else str(tuple(s - 1 for s in shape))
    assert shown.rows[-1] == [last, f"{values.size - 1}", ""] and swept.rows[-1] == [last, f"{values.size - 1}", "3"]
    assert swept.caption.startswith(f"VarArray of shape {shape}, float64, grads of the sweep from node ")


def test_a_traced_function_shows_its_program_and_guards_escaped():
    traced = tape.trace(lambda w: (1.0 - w if w < 1.0 else 0.0 * w) ** 2, 0.5)
    shown = Parsed(traced._repr_html_())
    assert shown.caption == "<traced <lambda>: 3 nodes, 4 operands, 1 guards>"
    assert shown.rows[1] == ["v0", "input", "-", "0.5"] and shown.rows[2][:3] == ["v1", "sub", "1.0, v0"]
    assert any(line.startswith("guard: argument 0 < 1.0 was True") for line in shown.text)


def test_a_model_shows_its_layers_and_parameter_counts():
    model = MLP([784, 32, 16, 10], activation="tanh", dropout=[0.1, 0.3])
    shown = Parsed(model._repr_html_())
    assert shown.rows[0] == ["layer", "inputs", "outputs", "activation", "dropout", "parameters"]
    assert shown.rows[1:] == [["0", "784", "32", "tanh", "0.1", f"{784 * 32 + 32:,}"],
                              ["1", "32", "16", "tanh", "0.3", f"{32 * 16 + 16:,}"],
                              ["2", "16", "10", "(logits)", "0", f"{16 * 10 + 10:,}"]]
    total = 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert shown.text[0] == f"{model!r}: {total:,} parameters" and not shown.caption  # above the table, not wrapped to its width


def test_a_models_line_above_its_table_is_escaped():
    model = MLP([3, 2], init=lambda fan_in, fan_out, rng: rng.random((fan_out, fan_in)))
    shown = Parsed(model._repr_html_())
    assert shown.text[0] == "MLP([3, 2], activation='sigmoid', bias=True, init='<lambda>'): 8 parameters"


needs_graphviz = pytest.mark.skipif(importlib.util.find_spec("graphviz") is None,
                                    reason="drawing needs the graphviz package (pip install graphviz)")


@needs_graphviz
@pytest.mark.skipif(shutil.which("dot") is None, reason="drawing needs Graphviz's dot (apt-get install graphviz)")
def test_a_drawing_shows_inline_as_svg():
    t, x1, x2, y = worked_example()
    with t:
        y.backward()
        drawing = tape.draw(y, names={x1: "x1", x2: "x2"})
    svg = drawing._repr_mimebundle_()["image/svg+xml"]
    root = ElementTree.fromstring(svg[svg.index("<svg"):])
    texts = [el.text for el in root.iter() if el.tag.endswith("text")]
    assert f"= {math.e - 1:.6g}" in texts and f"adjoint {math.e - 1:.6g}" in texts  # y's value, x2's adjoint
    assert f"{math.e:.4g}" in texts  # the exp node's partial on its edge


@needs_graphviz
def test_without_graphviz_dot_the_drawing_says_so(monkeypatch):
    import graphviz

    t, x1, x2, y = worked_example()
    with t:
        drawing = tape.draw(y)

    def no_dot(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(drawing.graph, "pipe", no_dot)
    bundle = drawing._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    shown = Parsed(bundle["text/html"])
    assert "needs Graphviz's dot program: apt-get install graphviz" in "".join(shown.text)
    assert "digraph" in bundle["text/plain"]


def test_names_are_escaped_in_every_cell():
    t, x1, x2, y = worked_example()
    shown = Parsed(t.table({x1.node: "<x1>", x2.node: "a & b"}).html())
    assert shown.rows[1][0] == "<x1>" and shown.rows[4][2] == "a & b, 2"  # mul's parents: x2 and the cos node


@pytest.mark.parametrize("nodes, rows", [(41, 41), (42, 41)])
def test_a_table_is_cut_only_when_cutting_leaves_out_rows(nodes, rows):
    with tape.Tape() as t:
        x = tape.Var(0.5)
        for _ in range(nodes - 1):
            x = tape.sin(x)
    shown = Parsed(t._repr_html_())
    assert len(shown.rows) - 1 == rows and (nodes == rows or shown.rows[21] == [f"{nodes - 40} rows left out"])


def test_a_tables_text_aligns_its_columns_says_where_rows_were_left_out_and_ends_with_its_notes():
    short = tape.Table(("name", "count"), [("a", "1"), ("bbb", "22")], notes=["total: 23"], right=(1,))
    assert short.text() == "name  count\na         1\nbbb      22\ntotal: 23"
    rows = [(f"r{i}", str(i)) for i in range(45)]
    long = tape.Table(("row", "n"), rows, notes=["end"], caption="45 rows")
    lines = repr(long).splitlines()
    assert lines[0] == "45 rows" and lines[1].split() == ["row", "n"]
    assert [line.split()[0] for line in lines[2:22]] == [f"r{i}" for i in range(20)]
    assert lines[22] == "... 5 rows left out"  # after the header and the first 20 rows
    assert [line.split()[0] for line in lines[23:43]] == [f"r{i}" for i in range(25, 45)]
    assert lines[43:] == ["end"]


def test_a_traced_functions_text_ends_with_its_outputs_and_guards():
    traced = tape.trace(lambda w: (1.0 - w if w < 1.0 else 0.0 * w) ** 2, 0.5)
    lines = traced.table().text().splitlines()
    assert lines[-2] == "outputs: v2"
    assert lines[-1].startswith("guard: argument 0 < 1.0 was True")
