"""The training program and its companions: python -m mlp.train, mlp.evaluate, mlp.predict."""
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import stand_in_digits
from mlp import checkpoint, data, evaluate, predict, rundir, train, training
from mlp.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("digit_source")  # each test on the digits and on stand-ins
SMALL = ["--limit", "400", "--hidden", "16", "--batch-size", "20", "--no-plots"]


def process_data(digit_source: str, where: Path) -> tuple[list[str], str, data.Dataset]:
    """For a training process of its own: the flags of its data, the data set's name and the data
    (the stand-ins as --dataset mnist's IDX files in `where`, which a process reads as any user's)."""
    if digit_source == "mnist-5k":
        return [], "mnist-5k", data.load("mnist-5k")
    made = stand_in_digits()
    where.mkdir()
    for key, name in data.IDX_FILES.items():
        array = getattr(made, key)
        data.write_idx(where / name, np.round(array * 255).astype(np.uint8).reshape(-1, 28, 28) if key[0] == "x"
                       else array.astype(np.uint8))
    return ["--dataset", "mnist", "--data-dir", str(where)], "mnist", data.load("mnist", data_dir=where)


def weights(out: Path) -> np.ndarray:
    return checkpoint.load(out / "model.npz").model.parameters().values


def metrics(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digit_source) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert train.main(["--limit", "600", "--epochs", "3", "--hidden", "32", "--out", str(out)]) == 0
    return out


def test_a_short_run_learns_and_writes_its_outputs(trained, capsys):
    with open(trained / "metrics.csv", newline="") as f:
        assert next(csv.reader(f)) == ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                       "seconds", "samples_per_s", "val_loss", "val_accuracy", "lr"]
    rows = metrics(trained)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[-1]["test_accuracy"]) > 0.6  # chance is 0.1
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    for png in ("curves.png", "confusion.png", "mistakes.png"):
        assert (trained / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = checkpoint.load(trained / "model.npz")
    assert saved.epoch == 3 and saved.model.sizes == [784, 32, 10] and saved.args["limit"] == 600


@pytest.mark.parametrize("options", [
    [],
    ["--dropout", "0.3", "--augment", "--val", "0.2", "--schedule", "cosine", "--warmup", "0.5", "--clip", "1"],
    ["--nodes", "matrix", "--dtype", "float32", "--dropout", "0.3", "--val", "0.2", "--clip", "1", "--weight-decay", "0.01"],
], ids=["plain", "dropout-augment-val-cosine-clip", "matrix-traced-float32-dropout-val-clip-decay"])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run_on_any_number_of_threads(tmp_path, monkeypatch, options):
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    small = [*SMALL, "--batch-size", "40", "--optimizer", "momentum", *options]  # 40: chunks for two threads
    assert train.main([*small, "--epochs", "3", "--threads", "1", "--out", str(whole)]) == 0
    epochs, original = [], training.Run.train_epoch

    def interrupted_second_epoch(self, bar):
        epochs.append(1)
        if len(epochs) == 2:
            raise KeyboardInterrupt
        return original(self, bar)

    monkeypatch.setattr(training.Run, "train_epoch", interrupted_second_epoch)
    assert train.main([*small, "--epochs", "3", "--threads", "2", "--out", str(halves)]) == 130
    monkeypatch.setattr(training.Run, "train_epoch", original)
    with open(halves / "metrics.csv", "a") as f:
        f.write("2,9,9,9,9,9,9\n")  # as if stopped between epoch 2's row and its checkpoint
    assert train.main([*small, "--epochs", "3", "--threads", "1", "--out", str(halves), "--resume"]) == 0
    assert weights(whole).tobytes() == weights(halves).tobytes()
    assert [r["epoch"] for r in metrics(halves)] == ["1", "2", "3"]
    for column in ("test_loss", "val_loss", "lr"):
        assert [r[column] for r in metrics(halves)] == [r[column] for r in metrics(whole)]
    kept = [checkpoint.load(run / "model.npz").kept.parameters().values for run in (whole, halves)]
    assert kept[0].tobytes() == kept[1].tobytes()


def test_resume_refuses_a_different_run(tmp_path, capsys):
    assert train.main([*SMALL, "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert train.main([*SMALL, "--epochs", "2", "--lr", "0.01", "--out", str(tmp_path), "--resume"]) == 2
    assert "--lr was 0.001, now 0.01" in capsys.readouterr().err
    assert train.main(["--epochs", "2", "--out", str(tmp_path / "none"), "--resume"]) == 2  # no checkpoint
    assert capsys.readouterr().err.startswith(f"error: --resume: {tmp_path / 'none'} is not a run's directory")
    (tmp_path / "empty").mkdir()
    assert train.main(["--epochs", "2", "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert capsys.readouterr().err == f"error: no checkpoint at {tmp_path / 'empty' / 'model.npz'}\n"
    assert not (tmp_path / "none").exists()



@pytest.mark.parametrize("damage, words", [
    (lambda text: text[: text.rindex(",")], "the row of epoch 2 is not whole"),
    (lambda text: text.rstrip("\r\n")[:-1], "the row of epoch 2 was cut short"),
    (lambda text: text[: text.index("\n2,")] + "\n", "it holds the rows of 1 epochs"),
    (lambda text: text.replace("\n2,", "\n3,"), "the row of epoch 2 is not whole"),
    (lambda text: text.replace("\n1,", "\n1,x", 1), "the row of epoch 1 is not whole"),
    (lambda text: "\n".join(line if not line.startswith("2,") else ",".join(
        cell if i != 6 else "fast" for i, cell in enumerate(line.split(","))) for line in text.split("\n")),
     "the row of epoch 2 is not whole"),  # samples_per_s, the last column every row has
    (lambda text: "epoch,loss\n" + text, "its first line is not metrics.csv's header"),
    (lambda text: "\n".join(",".join(line.split(",")[:6]) for line in text.split("\n")),
     "its first line is not metrics.csv's header"),  # six columns: a run's speed is gone
    (lambda text: "", "its first line is not metrics.csv's header"),
    (None, "is missing"),
], ids=["cut-cells", "cut-digit", "row-gone", "renumbered", "not-a-number", "not-a-speed", "header", "six-columns", "empty",
        "deleted"])
def test_resume_refuses_a_damaged_metrics_file_naming_it(tmp_path, capsys, damage, words):
    assert train.main([*SMALL, "--epochs", "2", "--out", str(tmp_path)]) == 0
    path, before = tmp_path / "metrics.csv", files(tmp_path)
    if damage:
        path.write_text(damage(path.read_text()), newline="")
    else:
        path.unlink()
    damaged = files(tmp_path)
    capsys.readouterr()
    assert train.main([*SMALL, "--epochs", "3", "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and words in err and "epoch 2" in err
    assert files(tmp_path) == damaged and damaged["model.npz"] == before["model.npz"]  # nothing trained, nothing lost


@pytest.mark.parametrize("field, value, words", [
    ("rng_state", None, "holds a model without its run (no optimizer or RNG state): it cannot be resumed"),
    ("args", "--lr 0.1", 'args should be an object, got "--lr 0.1"'),
    ("optimizer", "adamw", "optimizer should be one of"),
])
def test_resume_refuses_a_hand_edited_checkpoint_in_one_line(tmp_path, capsys, field, value, words):
    import json
    assert train.main([*SMALL, "--epochs", "1", "--out", str(tmp_path)]) == 0
    with np.load(tmp_path / "model.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    meta[field] = value
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "model.npz", **arrays)
    capsys.readouterr()
    assert train.main([*SMALL, "--epochs", "2", "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "model.npz") in err and words in err


@pytest.mark.parametrize("after", ["3,0.1,0.9,0.2,0.8,1.0,400,,,0.001\r\n", "3,0.1,0.9,0.2,0.8,1.0,400,,,0.001\r\n4,0.1"],
                         ids=["a-whole-row", "and-a-cut-one"])
def test_resume_drops_the_rows_after_its_checkpoint_and_follows_on(tmp_path, after):
    assert train.main([*SMALL, "--epochs", "2", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "metrics.csv", "a", newline="") as f:  # epoch 3's row, then killed before its checkpoint
        f.write(after)
    assert train.main([*SMALL, "--epochs", "4", "--out", str(tmp_path), "--resume"]) == 0
    rows = metrics(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"] and rows[2]["train_loss"] != "0.1"
    assert all(None not in r and len(r) == len(training.METRICS) for r in rows)


def test_resume_under_a_cosine_schedule_refuses_other_epochs_and_a_constant_one_takes_more(tmp_path, capsys):
    """A cosine's length is its number of epochs: more of them would change the steps already
    taken. Under a constant rate more epochs just go on."""
    cosine = [*SMALL, "--schedule", "cosine", "--out", str(tmp_path / "cosine")]
    assert train.main([*cosine, "--epochs", "1"]) == 0
    assert train.main([*cosine, "--epochs", "2", "--resume"]) == 2
    assert "--epochs was 1, now 2" in capsys.readouterr().err
    constant = [*SMALL, "--out", str(tmp_path / "constant")]
    assert train.main([*constant, "--epochs", "1"]) == 0
    assert train.main([*constant, "--epochs", "2", "--resume"]) == 0
    with open(tmp_path / "constant" / "metrics.csv") as f:
        assert len(f.read().splitlines()) == 3

def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_a_new_run_never_writes_over_another(tmp_path, monkeypatch, capsys):
    out = tmp_path / "mine"
    assert train.main([*SMALL, "--epochs", "1", "--out", str(out)]) == 0
    before = files(out)
    assert set(before) == {"model.npz", "metrics.csv"}
    capsys.readouterr()
    assert train.main([*SMALL, "--epochs", "1", "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {out} already holds files (metrics.csv, model.npz)" in err
    assert "--resume" in err and "--fresh" in err
    assert train.main([*SMALL, "--epochs", "1", "--seed", "1", "--out", str(out), "--fresh"]) == 0
    assert f"writing {out}-2" in capsys.readouterr().err
    assert files(out) == before and (tmp_path / "mine-2" / "model.npz").exists()

    monkeypatch.chdir(tmp_path)  # the default, runs/<dataset>, as `make train` twice
    for _ in range(2):
        assert train.main([*SMALL, "--epochs", "1"]) == 0
    assert "runs/mnist-5k holds an earlier run, so this one goes to runs/mnist-5k-2" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mnist-5k", "mnist-5k-2"]
    assert files(tmp_path / "runs" / "mnist-5k").keys() == before.keys()


def test_runs_started_together_in_one_folder_write_into_directories_of_their_own(tmp_path, digit_source):
    flags, name, test = process_data(digit_source, tmp_path / "idx")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    processes = [subprocess.Popen([sys.executable, "-m", "mlp.train", *SMALL, *flags, "--epochs", "1", "--seed", str(seed)],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for seed in range(3)]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    directories = sorted((tmp_path / "runs").iterdir())
    assert [d.name for d in directories] == [name, f"{name}-2", f"{name}-3"]
    seeds = set()
    for directory in directories:
        assert files(directory).keys() == {"model.npz", "metrics.csv"}
        saved = checkpoint.load(directory / "model.npz")
        seeds.add(saved.args["seed"])
        (row,) = metrics(directory)  # one run's one epoch, whole
        accuracy = (saved.model.logits(test.x_test).argmax(axis=1) == test.y_test).mean()
        assert float(row["test_accuracy"]) == pytest.approx(accuracy, abs=1e-6)  # the row is this model's
    assert seeds == {0, 1, 2}


@pytest.mark.parametrize("where, words", [
    ("a-file", "is a file, not a directory"),
    ("a-file/run", "cannot write in --out"),
    ("/proc/self/no/such/run", "cannot write in --out"),
])
def test_an_output_directory_it_cannot_use_is_refused_in_one_line(tmp_path, monkeypatch, capsys, where, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("mine")
    assert train.main([*SMALL, "--out", where]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and where in err
    assert (tmp_path / "a-file").read_text() == "mine"


def test_a_read_only_output_directory_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    def read_only(path, *args, real=os.open):  # root may write anywhere, so the file system's answer is made up
        if Path(path).name == rundir.LOCK:
            raise PermissionError(13, "Permission denied")
        return real(path, *args)

    monkeypatch.setattr(rundir.os, "open", read_only)
    assert train.main([*SMALL, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: cannot write in --out {tmp_path}: Permission denied\n"


@pytest.mark.parametrize("fault, problem", [
    ("weight", "in epoch 2, batch 1 of 20: the weights stopped being finite numbers"),
    ("test loss", "in epoch 2: the test loss became nan"),
])
def test_a_run_that_diverges_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, fault, problem):
    original_epoch, original_measure = training.Run.train_epoch, training.Run.measure

    def poisoned_second_epoch(self, bar):
        if self.epoch == 1 and fault == "weight":  # a first-layer weight: relu(nan) = 0 would hide it from the loss
            self.model.parameters().values[5] = np.nan
        return original_epoch(self, bar)

    def overflowing_second_test(self, inputs, y):
        loss, accuracy, predicted = original_measure(self, inputs, y)
        second = (tmp_path / "metrics.csv").exists()  # epoch 1's row is written
        return (np.nan if fault == "test loss" and second else loss), accuracy, predicted

    monkeypatch.setattr(training.Run, "train_epoch", poisoned_second_epoch)
    monkeypatch.setattr(training.Run, "measure", overflowing_second_test)
    assert train.main([*SMALL, "--epochs", "3", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"error: training diverged {problem}" in err
    assert f"epoch 1 is saved in {tmp_path / 'model.npz'}" in err and "smaller --lr" in err
    assert checkpoint.load(tmp_path / "model.npz").epoch == 1  # and its weights are finite
    assert [r["epoch"] for r in metrics(tmp_path)] == ["1"]


def test_a_run_whose_loss_overflows_saves_nothing(tmp_path, capsys):
    for nodes in ("matrix", "scalar"):
        out = tmp_path / nodes
        assert train.main([*SMALL, "--optimizer", "sgd", "--lr", "1e300", "--nodes", nodes, "--out", str(out)]) == 1
        assert "training diverged in epoch 1" in capsys.readouterr().err
        assert not out.exists()


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


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_a_checkpoint_that_cannot_reach_the_disk_keeps_the_previous_one(trained, tmp_path, monkeypatch, call):
    path = tmp_path / "model.npz"
    path.write_bytes((trained / "model.npz").read_bytes())
    before, saved = path.read_bytes(), checkpoint.load(path)

    def fail(*args):
        raise OSError("Input/output error")

    monkeypatch.setattr(os, call, fail)
    with pytest.raises(OSError, match="Input/output error"):
        checkpoint.save(path, saved)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


@pytest.mark.parametrize("when", ["writing", "fsync"])
def test_a_failed_write_whose_temporary_file_vanished_raises_its_own_error(tmp_path, monkeypatch, when):
    """Someone removed the temporary file (a cleaner, the run's folder deleted) as the write failed:
    the error raised is the write's, not that the file is missing."""
    path = tmp_path / "model.npz"

    def vanish_and_fail(*args):
        for tmp in tmp_path.glob(".model.npz.*.tmp"):
            tmp.unlink()
        raise OSError("Input/output error")

    if when == "fsync":
        monkeypatch.setattr(os, "fsync", vanish_and_fail)
    with pytest.raises(OSError, match="Input/output error"):
        checkpoint.write_atomically(path, vanish_and_fail if when == "writing" else lambda f: f.write(b"x"))
    monkeypatch.undo()
    assert not list(tmp_path.iterdir())


def test_ctrl_c_keeps_the_last_epoch_and_exits_cleanly(tmp_path, monkeypatch, capsys):
    calls = []
    original = training.Run.train_epoch

    def interrupted_second_epoch(self, bar):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, bar)

    monkeypatch.setattr(training.Run, "train_epoch", interrupted_second_epoch)
    assert train.main([*SMALL, "--epochs", "5", "--out", str(tmp_path)]) == 130
    assert f"interrupted during epoch 2: epoch 1 is saved in {tmp_path / 'model.npz'}; continue with --resume --out {tmp_path}" \
        in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "model.npz").epoch == 1


def slowly_in_place(monkeypatch, fail_epoch: int | None = None) -> list:
    """archive's put-in-place made slow (0.2 s), recording (its thread's name, the epoch it puts in
    place) and failing as a full disk would at `fail_epoch`: the checkpoint's last part is
    still on its way when the next epoch starts, or the run ends."""
    from mlp import archive

    seen, original = [], archive._put_in_place

    def slow(tmp, path, mode):
        time.sleep(0.2)
        epoch = checkpoint.read(tmp)[0]["epoch"]
        seen.append((threading.current_thread().name, epoch))
        if epoch == fail_epoch:
            tmp.unlink()
            raise OSError("No space left on device")
        original(tmp, path, mode)

    monkeypatch.setattr(archive, "_put_in_place", slow)
    return seen


def ctrl_c_in_epoch_3(monkeypatch) -> None:
    original = training.Run.train_epoch

    def interrupted_third_epoch(self, bar):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return original(self, bar)

    monkeypatch.setattr(training.Run, "train_epoch", interrupted_third_epoch)


def test_a_checkpoint_is_put_in_place_on_a_thread_of_its_own_and_in_place_when_the_run_ends(tmp_path, monkeypatch):
    seen = slowly_in_place(monkeypatch)
    assert train.main([*SMALL, "--epochs", "3", "--out", str(tmp_path)]) == 0
    assert [epoch for _, epoch in seen] == [1, 2, 3] and all(name.startswith("checkpoint") for name, _ in seen)
    assert checkpoint.load(tmp_path / "model.npz").epoch == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".png") == ["metrics.csv", "model.npz"]
    assert oct((tmp_path / "model.npz").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_ctrl_c_while_the_last_checkpoint_is_on_its_way_says_it_is_saved_once_it_is(tmp_path, monkeypatch, capsys):
    seen = slowly_in_place(monkeypatch)
    ctrl_c_in_epoch_3(monkeypatch)
    assert train.main([*SMALL, "--epochs", "5", "--out", str(tmp_path)]) == 130
    assert f"interrupted during epoch 3: epoch 2 is saved in {tmp_path / 'model.npz'}; continue" in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "model.npz").epoch == 2 and [e for _, e in seen] == [1, 2]


@pytest.mark.parametrize("epochs", [3, 2])  # found failed at the next epoch's checkpoint, or at the run's end
def test_a_checkpoint_that_could_not_be_put_in_place_stops_the_run_saying_which_is_saved(tmp_path, monkeypatch, capsys,
                                                                                        epochs):
    slowly_in_place(monkeypatch, fail_epoch=2)
    assert train.main([*SMALL, "--epochs", str(epochs), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.endswith(f"\nerror: No space left on device; epoch 1 is saved in {tmp_path / 'model.npz'}\n")
    assert checkpoint.load(tmp_path / "model.npz").epoch == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_first_checkpoint_that_could_not_be_put_in_place_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    slowly_in_place(monkeypatch, fail_epoch=1)
    assert train.main([*SMALL, "--epochs", "2", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.endswith("\nerror: No space left on device; nothing was saved\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_ctrl_c_after_a_checkpoint_failed_says_so_and_what_is_saved(tmp_path, monkeypatch, capsys):
    slowly_in_place(monkeypatch, fail_epoch=2)
    ctrl_c_in_epoch_3(monkeypatch)
    assert train.main([*SMALL, "--epochs", "5", "--out", str(tmp_path)]) == 130
    assert (f"interrupted during epoch 3: epoch 1 is saved in {tmp_path / 'model.npz'} (epoch 2's checkpoint could not "
            "be written (No space left on device)); continue") in capsys.readouterr().err


def test_ctrl_c_in_the_first_epoch_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    def interrupted(self, bar):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.Run, "train_epoch", interrupted)
    assert train.main([*SMALL, "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "interrupted during epoch 1: no epoch was completed and nothing was saved" in err and "--resume" not in err
    assert not (tmp_path / "run").exists()  # made for this run, and left as it was found


def test_sigint_to_a_running_training_process(tmp_path, digit_source):
    flags, _, _ = process_data(digit_source, tmp_path / "idx")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen([sys.executable, "-m", "mlp.train", *flags, "--hidden", "16", "--epochs", "500",
                                "--no-plots", "--out", str(tmp_path / "run")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "run" / "model.npz").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "continue with --resume" in err and "Traceback" not in err
    assert checkpoint.load(tmp_path / "run" / "model.npz").epoch >= 1


@pytest.mark.parametrize("code", [0, 3, 130])
def test_a_program_exits_with_its_code_its_objects_frozen_and_its_atexit_handlers_run(code):
    program = ("import atexit, gc\nfrom mlp.programs import finish\n"
               "atexit.register(lambda: print('atexit ran; frozen:', gc.get_freeze_count() > 0))\n"
               f"finish({code})")
    done = subprocess.run([sys.executable, "-c", program], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (code, "atexit ran; frozen: True\n", "")


def test_a_training_process_killed_then_resumed_ends_with_the_weights_of_an_uninterrupted_run(tmp_path, digit_source):
    """kill -9 while the run trains, its last checkpoint perhaps still on its way to its place (a
    temporary file left beside it): --resume continues from the checkpoint in place, to the same
    weights, bit for bit, and the same rows."""
    flags, _, _ = process_data(digit_source, tmp_path / "idx")
    run = [sys.executable, "-m", "mlp.train", *flags, *SMALL, "--epochs", "30", "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([*run, "--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True, timeout=300)
    process = subprocess.Popen([*run, "--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(metrics(tmp_path / "killed") if (tmp_path / "killed" / "metrics.csv").exists()
                                         else []) < 3:
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    assert 1 <= checkpoint.load(tmp_path / "killed" / "model.npz").epoch < 30  # killed in the run
    resumed = subprocess.run([*run, "--out", str(tmp_path / "killed"), "--resume"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert weights(tmp_path / "whole").tobytes() == weights(tmp_path / "killed").tobytes()
    assert metrics(tmp_path / "killed") == [dict(r, seconds=k["seconds"], samples_per_s=k["samples_per_s"])
                                            for r, k in zip(metrics(tmp_path / "whole"), metrics(tmp_path / "killed"))]


@pytest.mark.parametrize("argv, words", [
    (["--batch-size", "0"], ["--batch-size", "expected a positive integer, got 0"]),
    (["--lr", "-1"], ["--lr", "expected a positive finite number, got -1"]),
    (["--lr", "inf"], ["--lr", "expected a positive finite number, got inf"]),
    (["--lr", "nan"], ["--lr", "got nan"]),
    (["--epochs", "-1"], ["--epochs", "expected a positive integer, got -1"]),
    (["--hidden", "32", "0"], ["--hidden", "got 0"]),
    (["--hidden", "100000000", "--nodes", "scalar"], ["--hidden 100000000", "a [784, 100000000, 10] model", "a tape holds at most"]),
    (["--hidden", "1000000", "--threads", "1"], ["--hidden 1000000", "GiB of memory; this machine has"]),
    (["--limit", "0"], ["--limit"]),
    (["--threads", "0"], ["--threads"]),
    (["--momentum", "1.5"], ["--momentum", "expected a number in [0, 1), got 1.5"]),
    (["--beta2", "1"], ["--beta2"]),
    (["--eps", "0"], ["--eps"]),
    (["--eps", "1e400"], ["--eps", "got 1e400"]),
    (["--weight-decay", "-0.1"], ["--weight-decay", "expected a finite number >= 0"]),
    (["--weight-decay", "inf"], ["--weight-decay", "got inf"]),
    (["--optimizer", "lbfgs"], ["--optimizer", "invalid choice"]),
    (["--activation", "gelu"], ["--activation", "invalid choice"]),
    (["--dataset", "cifar"], ["--dataset", "unknown data set 'cifar'; known: mnist-5k, mnist, fashion-mnist"]),
    (["--seed", "x"], ["--seed", "invalid non_negative_int value"]),
    (["--seed", "-1"], ["--seed", "expected an integer >= 0, got -1"]),
    (["--resume", "--fresh"], ["--fresh", "not allowed with argument --resume"]),
    (["--dropout", "1"], ["--dropout", "expected a number in [0, 1), got 1"]),
    (["--hidden", "8", "8", "8", "--dropout", "0.1", "0.2"], ["--dropout", "one for each of the 3 hidden layers, got 2"]),
    (["--patience", "3"], ["--patience needs a validation part", "--val"]),
    (["--val", "1"], ["--val", "expected a number in [0, 1), got 1"]),
    (["--schedule", "linear"], ["--schedule", "invalid choice"]),
    (["--warmup", "-1"], ["--warmup", "expected a finite number >= 0"]),
    (["--gamma", "0"], ["--gamma", "expected a number in (0, 1], got 0"]),
    (["--min-lr", "0.1"], ["--min-lr 0.1 is above --lr 0.001"]),
    (["--clip", "0"], ["--clip", "expected a positive finite number, got 0"]),
    (["--shift", "inf"], ["--shift", "got inf"]),
    (["--elastic-sigma", "0"], ["--elastic-sigma", "got 0"]),
    (["--elastic-sigma", "1e6"], ["--elastic-sigma", "expected a number above 0 and at most 28, got 1e6"]),
    (["--elastic-sigma", "1e300"], ["--elastic-sigma", "got 1e300"]),
    (["--shift", "1e6"], ["--shift", "expected a number from 0 to 14, got 1e6"]),
    (["--elastic", "1e9"], ["--elastic", "expected a number from 0 to 100, got 1e9"]),
    (["--rotate", "-1"], ["--rotate", "expected a number from 0 to 180, got -1"]),
    (["--rotate", "x"], ["--rotate", "invalid"]),
    (["--warmup", "11"], ["--warmup 11 is longer than the run (--epochs 10)"]),
    (["--warmup", "2.5", "--epochs", "2"], ["--warmup 2.5 is longer than the run (--epochs 2)"]),
])
def test_bad_arguments_are_refused_in_one_line_naming_the_argument(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m mlp.train: error: ") and err.count("\n") == 1
    for word in words:
        assert word in err


@pytest.mark.parametrize("argv, words", [
    (["--val", "0.001"], "leaves no validation sample in the smallest one ({n} samples): give a fraction from {low:.3g}"),
    (["--val", "0.99"], "leaves no training sample in the smallest one ({n} samples)"),
])
def test_a_validation_part_with_a_class_empty_or_taking_a_whole_class_is_refused(tmp_path, capsys, argv, words):
    n = int(np.bincount(data.load("mnist-5k").y_train[:400]).min())  # of --limit 400 (35 of the digits)
    assert train.main([*SMALL, *argv, "--patience", "2", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    words = words.format(n=n, low=1 / n)
    assert err.count("\n") == 1 and err.startswith(f"error: --val {argv[1]}: holding out") and words in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options", [["--min-lr", "0.0005"], ["--min-lr", "0.001"], ["--shift", "14"], ["--rotate", "180"],
                                     ["--elastic", "100"], ["--elastic-sigma", "28"]])
def test_values_up_to_their_bound_are_taken(options):
    p = train.parser()
    args = p.parse_args(options)
    train.check_options(p, args)
    assert getattr(args, options[0][2:].replace("-", "_")) == float(options[1])


@pytest.mark.parametrize("warmup", ["4", "5"])
def test_a_warm_up_as_long_as_the_run_or_shorter_is_taken(warmup):
    p = train.parser()
    args = p.parse_args(["--warmup", warmup, "--epochs", "5"])
    train.check_options(p, args)
    assert args.warmup == float(warmup)


def test_missing_data_says_which_files_to_put_where(tmp_path, capsys):
    assert train.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "train-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "out").exists()


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
    assert "bad.npz is not a wengert checkpoint (not an .npz archive)" in err and "no checkpoint at" in err


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


def test_validation_keeps_the_best_epoch_and_patience_stops_the_run(tmp_path, monkeypatch, capsys):
    """Validation losses made up per epoch: the best is epoch 2's; with --patience 2 the run
    stops after epoch 4, keeps epoch 2's model (the weights a 2-epoch run ends with) and reports
    its test accuracy."""
    made_up = iter([0.9, 0.5, 0.6, 0.7, 0.1, 0.1])
    original = training.Run.measure

    def measure(self, inputs, y):
        loss, accuracy, predicted = original(self, inputs, y)
        return (next(made_up) if inputs is self.val_inputs else loss), accuracy, predicted

    monkeypatch.setattr(training.Run, "measure", measure)
    val = [*SMALL, "--val", "0.25", "--epochs", "6"]
    assert train.main([*val, "--patience", "2", "--out", str(tmp_path / "early")]) == 0
    out, err = capsys.readouterr()
    rows = metrics(tmp_path / "early")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"] and [r["val_loss"] for r in rows] == ["0.9", "0.5", "0.6", "0.7"]
    assert "stopped early after epoch 4: val_loss has not improved for 2 epochs" in err
    assert "kept the model of epoch 2, the best val_loss (0.5) of 4 epochs" in err
    assert out == f"test accuracy: {100 * float(rows[1]['test_accuracy']):.2f}%\n"
    saved = checkpoint.load(tmp_path / "early" / "model.npz")
    assert saved.epoch == 4 and saved.best.epoch == 2
    monkeypatch.setattr(training.Run, "measure", original)
    assert train.main([*val, "--epochs", "2", "--out", str(tmp_path / "two")]) == 0
    assert saved.kept.parameters().values.tobytes() == weights(tmp_path / "two").tobytes()
    assert evaluate.main([str(tmp_path / "early" / "model.npz")]) == 0
    assert "after 4 epochs (kept: epoch 2, the best val_loss)" in capsys.readouterr().out
    # resumed with the same patience, it has nothing more to do
    assert train.main([*val, "--patience", "2", "--out", str(tmp_path / "early"), "--resume"]) == 0
    assert len(metrics(tmp_path / "early")) == 4


def test_the_validation_part_is_held_out_of_training(tmp_path, capsys):
    digits = data.load("mnist-5k")
    held = sum(round(0.25 * n) for n in np.bincount(digits.y_train[:400]))  # 100 of the digits
    assert train.main([*SMALL, "--val", "0.25", "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert f"on {400 - held} mnist-5k samples ({len(digits.y_test):,} test)" in capsys.readouterr().err
    row = metrics(tmp_path)[0]
    assert 0 < float(row["val_loss"]) and 0 <= float(row["val_accuracy"]) <= 1


def test_the_lr_column_follows_the_schedule(tmp_path):
    assert train.main([*SMALL, "--epochs", "4", "--schedule", "step", "--step-size", "2", "--gamma", "0.5",
                       "--lr", "0.01", "--out", str(tmp_path)]) == 0
    assert [float(r["lr"]) for r in metrics(tmp_path)] == [0.01 * 0.5 ** ((epoch - 1) // 2) for epoch in (1, 2, 3, 4)]
    assert all(r["val_loss"] == r["val_accuracy"] == "" for r in metrics(tmp_path))


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_a_tie_in_the_monitored_metric_keeps_the_earlier_epoch(tmp_path, monkeypatch, capsys, monitor):
    """Only a strictly better validation epoch replaces the kept one: epochs 2 and 4 tie for
    the best, epoch 2's model is kept (the weights a 2-epoch run ends with)."""
    made_up = iter([0.9, 0.5, 0.7, 0.5] if monitor == "val_loss" else [0.1, 0.5, 0.3, 0.5])
    original = training.Run.measure

    def measure(self, inputs, y):
        loss, accuracy, predicted = original(self, inputs, y)
        if inputs is self.val_inputs:
            return (next(made_up), accuracy, predicted) if monitor == "val_loss" else (loss, next(made_up), predicted)
        return loss, accuracy, predicted

    monkeypatch.setattr(training.Run, "measure", measure)
    val = [*SMALL, "--val", "0.25", "--monitor", monitor]
    assert train.main([*val, "--epochs", "4", "--out", str(tmp_path / "tie")]) == 0
    assert f"kept the model of epoch 2, the best {monitor} (0.5) of 4 epochs" in capsys.readouterr().err
    saved = checkpoint.load(tmp_path / "tie" / "model.npz")
    assert saved.best.epoch == 2
    monkeypatch.setattr(training.Run, "measure", original)
    assert train.main([*val, "--epochs", "2", "--out", str(tmp_path / "two")]) == 0
    assert saved.kept.parameters().values.tobytes() == weights(tmp_path / "two").tobytes()


def test_the_warm_up_lasts_its_epochs_in_steps_rounded(tmp_path):
    """--warmup 1.53 with 20 steps an epoch: round(30.6) = 31 steps; epoch 1 ends at step 19,
    at lr * 20 / 31, and epoch 2 past the warm-up, at lr."""
    assert train.main([*SMALL, "--epochs", "2", "--warmup", "1.53", "--lr", "0.01", "--out", str(tmp_path)]) == 0
    assert [float(r["lr"]) for r in metrics(tmp_path)] == pytest.approx([0.01 * 20 / 31, 0.01], rel=1e-5)


def test_the_live_bar_shows_the_epochs_running_accuracy_in_percent(tmp_path):
    texts = []

    class Recording:
        shown = False

        def __init__(self, label, n):
            pass

        def due(self, done):
            return True

        def update(self, done, text=""):
            texts.append((done, text))

        def finish(self, text=""):
            pass

    recipe = Recipe(limit=400, hidden=[8], batch_size=20, plots=False, epochs=1, out=tmp_path / "run")
    history = training.run_training(recipe, progress=Recording)
    done, text = texts[-1]
    assert done == 400 and f"accuracy {100 * history['train_accuracy'][0]:.1f}%" in text


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matrix_nodes_traced_and_untraced_give_the_same_run_to_the_bit(tmp_path, dtype):
    """The traced step runs the numpy operations recording runs, in the same order: the same
    metrics.csv (times aside) and weights, in float64 and in float32."""
    runs = []
    for name, flags in (("traced", []), ("untraced", ["--no-trace"])):
        out = tmp_path / name
        assert train.main([*SMALL, "--epochs", "2", "--nodes", "matrix", "--dtype", dtype, "--dropout", "0.2", "--out",
                           str(out), *flags]) == 0
        rows = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in metrics(out)]
        runs.append((rows, weights(out).tobytes()))
    assert runs[0] == runs[1]
    assert checkpoint.load(tmp_path / "untraced" / "model.npz").args["trace"] is False
