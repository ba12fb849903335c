"""Training from Python: `mlp.fit` is the training program's run (same numbers as the CLI), takes
its options as keywords checked by its parser, and keeps a model when interrupted."""
import csv
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import mlp
import tape
from mlp import checkpoint, optim, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("digit_source")  # each test on the digits and on stand-ins (conftest)
SMALL = dict(limit=400, batch_size=20, plots=False)
TIMED = {"seconds", "samples_per_s"}  # the only columns that differ between two runs


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMED} for row in csv.DictReader(f)]


def test_fit_is_the_training_programs_run_to_the_last_digit(tmp_path):
    options = ["--limit", "400", "--batch-size", "20", "--no-plots", "--hidden", "16", "--epochs", "2", "--val", "0.1",
               "--dropout", "0.2", "--schedule", "cosine", "--seed", "3"]
    assert train.main([*options, "--out", str(tmp_path / "cli")]) == 0
    history = mlp.fit(None, "mnist-5k", hidden=[16], epochs=2, val=0.1, dropout=0.2, schedule="cosine", seed=3,
                      out=tmp_path / "fit", **SMALL)
    assert rows_of(tmp_path / "fit" / "metrics.csv") == rows_of(tmp_path / "cli" / "metrics.csv")
    cli_model = checkpoint.load(tmp_path / "cli" / "model.npz").kept
    np.testing.assert_array_equal(history.model.parameters().values, cli_model.parameters().values)
    with open(tmp_path / "cli" / "metrics.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert history["epoch"] == [1, 2] and history.best_epoch in (1, 2)
    assert history["val_accuracy"] == [float(r["val_accuracy"]) for r in written]
    kept = next(r for r in written if int(r["epoch"]) == history.best_epoch)
    assert history.test_accuracy == float(kept["test_accuracy"])


def test_a_given_model_is_trained_in_place_on_a_given_data_set(tmp_path):
    model = mlp.MLP([784, 8, 10], activation="tanh", seed=1)
    before = model.parameters().values.copy()
    digits = mlp.load("mnist-5k")
    history = mlp.fit(model, digits, epochs=1, out=tmp_path / "run", **SMALL)
    assert history.model is model and not np.array_equal(before, model.parameters().values)
    saved = checkpoint.load(tmp_path / "run" / "model.npz")
    np.testing.assert_array_equal(saved.model.parameters().values, model.parameters().values)
    assert saved.args["hidden"] == [8] and saved.args["activation"] == "tanh" and saved.args["dataset"] == "mnist-5k"


@pytest.mark.parametrize("options, error, words", [
    (dict(epochs=0), ValueError, "argument --epochs: expected a positive integer, got 0"),
    (dict(shift=100), ValueError, "argument --shift: expected a number from 0 to 14, got 100"),
    (dict(patience=3), ValueError, "--patience needs a validation part"),
    (dict(optimizer="lbfgs"), ValueError, "argument --optimizer: invalid choice: 'lbfgs'"),
    (dict(augment="yes"), ValueError, "augment: expected True or False, got 'yes'"),
    (dict(epoch=3), TypeError, "fit() got an option it cannot take: 'epoch'"),
    (dict(hidden=[4]), TypeError, "'hidden' (the model gives it: MLP([784, 8, 10]"),
    (dict(resume=True), ValueError, "is not a run's directory"),  # a given model resumes too (issue 32): from a run
])
def test_options_are_checked_as_the_program_checks_its_flags(tmp_path, options, error, words):
    options = dict(options)  # the parameter's own dict serves the next data source too
    with pytest.raises(error) as raised:
        mlp.fit(mlp.MLP([784, 8, 10]), epochs=options.pop("epochs", 1), out=tmp_path / "run", **options)
    assert words in str(raised.value)
    assert not (tmp_path / "run").exists()


def test_a_model_of_another_shape_than_the_data_is_refused(tmp_path):
    with pytest.raises(Exception, match="the model takes 100 inputs to 10 classes; mnist-5k has 784 to 10"):
        mlp.fit(mlp.MLP([100, 10]), epochs=1, out=tmp_path / "run", **SMALL)


def test_interrupting_fit_keeps_the_last_finished_epoch_in_the_model(tmp_path, monkeypatch, capsys):
    steps, stop_at = [0], 20 + 7  # 20 steps an epoch: the 8th step of epoch 2
    real_step = optim.Adam.step

    def step(self, *args):
        steps[0] += 1
        if steps[0] == stop_at:
            raise KeyboardInterrupt
        return real_step(self, *args)

    monkeypatch.setattr(optim.Adam, "step", step)
    model = mlp.MLP([784, 8, 10], seed=0)
    history = mlp.fit(model, epochs=3, out=tmp_path, **SMALL)
    assert history.interrupted and history["epoch"] == [1]
    epoch_1 = checkpoint.load(tmp_path / "model.npz")
    assert epoch_1.epoch == 1
    np.testing.assert_array_equal(model.parameters().values, epoch_1.model.parameters().values)
    assert f"interrupted during epoch 2: epoch 1 is saved in {tmp_path / 'model.npz'}" in capsys.readouterr().err


def test_a_callback_sees_each_epoch_and_can_stop_the_run(tmp_path):
    seen = []
    history = mlp.fit(None, hidden=[8], epochs=5, out=tmp_path, callbacks=[seen.append, lambda row: row["epoch"] == 2],
                      **SMALL)
    assert [row["epoch"] for row in seen] == [1, 2] and len(history) == 2 and seen[0]["val_loss"] is None
    assert [row["test_accuracy"] for row in seen] == pytest.approx(history["test_accuracy"], rel=1e-5)


class Table(HTMLParser):
    """The cells of an HTML table, row by row (a parser that fails on what is not HTML is not needed:
    the test checks that every tag it opens, it closes)."""

    def __init__(self):
        super().__init__()
        self.rows, self.open = [], []

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)
        if tag == "tr":
            self.rows.append([])

    def handle_endtag(self, tag):
        assert self.open.pop() == tag

    def handle_data(self, text):
        if self.open and self.open[-1] in ("td", "th"):
            self.rows[-1].append(text)


def test_the_history_shows_as_a_table_saves_as_csv_and_plots_as_png(tmp_path):
    history = mlp.fit(None, hidden=[8], epochs=2, out=tmp_path / "run", **SMALL)
    table = Table()
    table.feed(history._repr_html_())
    assert not table.open and table.rows[:2] == [["epoch", "loss", "accuracy", "seconds", "samples/s"],
                                                 ["train", "test", "train", "test"]]
    written = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv", newline="")))
    for shown, row in zip(table.rows[2:], written):
        assert int(shown[0]) == int(row["epoch"])
        assert shown[4] == f"{100 * float(row['test_accuracy']):.2f}%"
    history.to_csv(tmp_path / "again.csv")
    again = list(csv.DictReader(open(tmp_path / "again.csv", newline="")))
    assert [float(r["train_loss"]) for r in again] == [float(r["train_loss"]) for r in written]
    for picture in (history.plot(), history.confusion(), history.mistakes()):
        assert picture._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = history.confusion().figure.axes[0]
    predicted = history.model.logits(history.dataset.x_test).argmax(axis=1)
    right = int((predicted == history.dataset.y_test).sum())
    assert axes.get_title() == f"test set: {right} of {len(predicted)} right"


def test_a_model_saves_and_loads(tmp_path):
    model = mlp.MLP([784, 5, 10], activation="sigmoid", seed=4)
    model.save(tmp_path / "m.npz")
    back = mlp.MLP.load(tmp_path / "m.npz")
    assert back.sizes == [784, 5, 10] and back.activation == "sigmoid"
    np.testing.assert_array_equal(back.parameters().values, model.parameters().values)


def test_importing_mlp_loads_nothing_heavy():
    code = "import sys, mlp; assert 'numba' not in sys.modules and 'mlp.train' not in sys.modules; print(mlp.fit.__name__)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout == "fit\n"


def test_fit_leaves_the_kept_epochs_weights_in_the_model_and_no_copy_on_the_users_tape(tmp_path):
    """With val the model ends holding the best validation epoch's weights (the checkpoint's kept
    model, not its last), and is the history's model; the kept copy is recorded on no tape of the user's."""
    model = mlp.MLP([784, 16, 10], seed=1)
    nodes = len(tape.current_tape())
    history = mlp.fit(model, epochs=5, val=0.2, lr=0.02, monitor="val_accuracy", out=tmp_path / "run", **SMALL)
    assert len(tape.current_tape()) == nodes
    with tape.Tape():  # the checkpoint's two models, read back, on a tape of the test's
        saved = checkpoint.load(tmp_path / "run" / "model.npz")
    assert saved.best.epoch < saved.epoch  # the rule is seen: the kept epoch is not the last
    assert history.model is model and history.best_epoch == saved.best.epoch
    np.testing.assert_array_equal(model.parameters().values, saved.kept.parameters().values)
    assert not np.array_equal(model.parameters().values, saved.model.parameters().values)


def test_fit_resumes_a_given_model_from_its_run(tmp_path):
    whole = mlp.MLP([784, 8, 10], seed=2)
    mlp.fit(whole, epochs=2, out=tmp_path / "whole", **SMALL)
    mlp.fit(mlp.MLP([784, 8, 10], seed=2), epochs=1, out=tmp_path / "halves", **SMALL)
    other = mlp.MLP([784, 8, 10], seed=9)  # its own weights give way to the checkpoint's
    history = mlp.fit(other, epochs=2, out=tmp_path / "halves", resume=True, **SMALL)
    assert history["epoch"] == [1, 2] and history.model is other
    assert other.parameters().values.tobytes() == whole.parameters().values.tobytes()
    with pytest.raises(ValueError, match=r"cannot resume from .*: the run differs \(--hidden was \[8\], now \[4\]"):
        mlp.fit(mlp.MLP([784, 4, 10]), epochs=3, out=tmp_path / "halves", resume=True, **SMALL)


def test_an_interrupted_fit_says_how_to_resume_in_python_and_that_way_resumes(tmp_path, monkeypatch, capsys):
    steps, real_step = [0], optim.Adam.step

    def step(self, *args):
        steps[0] += 1
        if steps[0] == 20 + 3:  # 20 steps an epoch: in epoch 2
            raise KeyboardInterrupt
        return real_step(self, *args)

    monkeypatch.setattr(optim.Adam, "step", step)
    model = mlp.MLP([784, 8, 10], seed=0)
    assert mlp.fit(model, epochs=2, out=tmp_path / "run", **SMALL).interrupted
    err = capsys.readouterr().err
    assert f"continue in Python with mlp.fit(model, data, resume=True, out={str(tmp_path / 'run')!r})" in err
    assert f"or with python -m mlp.train --resume --out {tmp_path / 'run'}" in err
    history = mlp.fit(model, epochs=2, out=tmp_path / "run", resume=True, **SMALL)
    assert history["epoch"] == [1, 2] and not history.interrupted


def test_resuming_a_given_model_records_nothing_on_the_users_tape(tmp_path):
    mlp.fit(mlp.MLP([784, 8, 10], seed=2), epochs=1, val=0.2, out=tmp_path / "run", **SMALL)
    model = mlp.MLP([784, 8, 10], seed=2)
    nodes = len(tape.current_tape())
    mlp.fit(model, epochs=2, val=0.2, out=tmp_path / "run", resume=True, **SMALL)
    assert len(tape.current_tape()) == nodes


def test_training_records_nothing_on_the_users_tape(tmp_path):
    """Neither the model trained nor the copy of its best validation epoch is recorded on the tape
    current while `fit` runs (the user's, or the thread's default): each model has a tape of its own."""
    default = tape.current_tape()
    before = len(default)
    model = mlp.MLP([784, 6, 10], seed=0)
    with tape.Tape() as user:
        history = mlp.fit(model, epochs=2, val=0.25, out=tmp_path / "inside", **SMALL)
    mlp.fit(model, epochs=1, val=0.25, out=tmp_path / "outside", **SMALL)
    assert len(user) == 0 and len(default) == before
    assert history.best_epoch and len(history.model.tape) == len(model.tape) == len(model.parameters())


def test_a_run_with_plots_writes_its_three_figures_into_its_directory(tmp_path):
    history = mlp.fit(None, "mnist-5k", hidden=[8], epochs=1, out=tmp_path / "run", **{**SMALL, "plots": True})
    assert history.out == tmp_path / "run"
    for name in ("curves.png", "confusion.png", "mistakes.png"):
        assert (tmp_path / "run" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
