"""Recipe searches on Dask: each trial is the training program's run (the same numbers as running
it alone), nothing is lost when a worker or the client dies, and bad specs are refused in a line."""
import contextlib
import csv
import importlib.util
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlp import checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
missing = [m for m in ("distributed", "mlxtend", "threadpoolctl") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"sweeps need {', '.join(missing)} (pip install -e '.[test]')")
TIMED = {"seconds", "samples_per_s"}
SPEC = """
dataset = "mnist-5k"
metric = "val_accuracy"
[fixed]
epochs = {epochs}
val = 0.1
limit = {limit}
batch_size = 20
[grid]
hidden = [[8], [16]]
dropout = [0.0, 0.2]
"""


def spec_file(tmp_path: Path, epochs: int = 1, limit: int = 400, text: str | None = None) -> Path:
    """SPEC (of `epochs` on `limit` samples) as a file, or `text`."""
    path = tmp_path / "sweep.toml"
    path.write_text(SPEC.format(epochs=epochs, limit=limit) if text is None else text)
    return path


def trials(directory: Path) -> list[dict]:
    with open(directory / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def untimed(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMED} for row in csv.DictReader(f)]


def test_a_sweep_runs_each_trial_as_the_training_program_would_and_picks_by_validation(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert sweep_main([str(spec_file(tmp_path)), "--out", str(out), "--workers", "2"]) == 0
    rows = trials(out)
    assert sorted(int(r["trial"]) for r in rows) == [1, 2, 3, 4] and {r["status"] for r in rows} == {"done"}
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    printed, log = capsys.readouterr()
    progress = [line.split(": ", 1)[1] for line in log.splitlines() if line.startswith("trial ")]
    assert [line.split(";")[0] for line in progress] == [f"{k} ended, {4 - k} running or waiting" for k in range(1, 5)]
    assert progress[-1].endswith(f"; best val_accuracy {float(best['val_accuracy']):.4f} (trial {best['trial']})")
    assert f"best trial: {best['trial']}, val_accuracy {float(best['val_accuracy']):.4f}" in printed
    for row, (hidden, dropout) in zip(sorted(rows, key=lambda r: int(r["trial"])),
                                      [(8, 0.0), (8, 0.2), (16, 0.0), (16, 0.2)]):
        alone = tmp_path / f"alone-{row['trial']}"
        assert train.main(["--epochs", "1", "--val", "0.1", "--limit", "400", "--batch-size", "20", "--hidden",
                           str(hidden), "--dropout", str(dropout), "--no-plots", "--out", str(alone)]) == 0
        assert untimed(out / f"trial-{row['trial']}" / "metrics.csv") == untimed(alone / "metrics.csv")
        assert (out / f"trial-{row['trial']}" / "model.npz").read_bytes()[:2] == b"PK"
        assert f"hidden=[{hidden}], dropout={dropout}" in row["options"]
        assert checkpoint.load(out / f"trial-{row['trial']}" / "model.npz").args["threads"] == 1  # a worker a core
    alone_best = f"--hidden {16 if int(best['trial']) > 2 else 8}"
    assert f"run it alone: python -m mlp.train --dataset mnist-5k --epochs 1 --val 0.1" in printed and alone_best in printed
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def sweep_main(argv):
    from mlp import sweep

    return sweep.main(argv)


def test_a_failing_or_diverging_trial_is_a_row_with_its_reason_never_the_best_and_the_others_go_on(tmp_path, capsys):
    text = SPEC.format(epochs=1, limit=400).replace('hidden = [[8], [16]]\ndropout = [0.0, 0.2]',
                                                    'lr = [0.1, 1e9, 1e300]\noptimizer = ["sgd"]')
    out, began = tmp_path / "sweep", time.perf_counter()
    assert sweep_main([str(spec_file(tmp_path, text=text)), "--out", str(out), "--workers", "1"]) == 0
    rows = {r["trial"]: r for r in trials(out)}
    assert all(0 < float(r["seconds"]) < time.perf_counter() - began for r in rows.values())  # each trial's own time
    assert [rows[n]["status"] for n in "123"] == ["done", "diverged", "diverged"]
    assert float(rows["1"]["val_loss"]) < math.log(10) < float(rows["2"]["val_loss"])  # 1e9: huge, but finite
    assert "not below chance's ln(10) = 2.303" in rows["2"]["reason"]
    assert "training diverged" in rows["3"]["reason"] and "A smaller" not in rows["3"]["reason"]
    printed = capsys.readouterr().out
    assert "best trial: 1," in printed and "--lr 0.1" in printed and "1e+09" not in printed


@pytest.mark.parametrize("text, words", [
    ('[fixed]\nepochs = 1\nval = 0.1\nlayers = 3\n', "fixed.layers is not an option of python -m mlp.train"),
    ('[fixed]\nval = 0.1\n[grid]\nbatch-size = [8]\n', "grid.batch-size is not an option of python -m mlp.train"),
    ('[fixed]\nval = 0.1\nhidden = [8]\n[grid]\nhidden = [[8], [16]]\n', "hidden is in both [fixed] and [grid]"),
    ('[fixed]\nval = 0.1\nresume = true\n', "fixed.resume cannot be given: a trial runs from its start"),
    ('[fixed]\nval = 0.1\n[grid]\nout = ["a", "b"]\n', "grid.out cannot be given"),
    ('[fixed]\nval = 0.1\nthreads = 4\n', "fixed.threads cannot be given"),
    ('[fixed]\nval = 0.1\ndataset = "fashion"\n', "fixed.dataset cannot be given: the spec's own dataset field"),
    ('fixed = 3\n', "[fixed] must be a table of options, got 3"),
    ('dataset = 5\n[fixed]\nval = 0.1\n', "dataset must be a data set's name, a string, got 5"),
    ('metric = []\n[fixed]\nval = 0.1\n', "metric [] cannot choose the best trial; one of val_accuracy, val_loss"),
    ('seed = -1\n[fixed]\nval = 0.1\n', "seed must be a whole number of at least 0, got -1"),
    ('seed = "abc"\n[fixed]\nval = 0.1\n', "seed must be a whole number of at least 0, got 'abc'"),
    ('seed = 1.5\n[fixed]\nval = 0.1\n', "seed must be a whole number of at least 0, got 1.5"),
    ('seed = true\n[fixed]\nval = 0.1\n', "seed must be a whole number of at least 0, got True"),
    ('[fixed]\nval = 0.1\n[random]\nlr = {log_uniform = [1e-4, "a"]}\n',
     "random.lr.log_uniform must be [low, high], two finite numbers, got [0.0001, 'a']"),
    ('[fixed]\nval = 0.1\n[random]\nlr = {log_uniform = [1e-4, inf]}\n',
     "random.lr.log_uniform must be [low, high], two finite numbers, got [0.0001, inf]"),
    ('[fixed]\nval = 0.1\n[random]\nlr = {uniform = [1e-4]}\n', "random.lr.uniform must be [low, high], two finite"),
    ('[fixed]\nval = 0.1\n[random]\nbatch_size = {integers = [1, 1e20]}\n',
     "random.batch_size.integers must be [low, high], two whole numbers, got [1, 1e+20]"),
    ('[fixed]\nval = 0.1\n[random]\nbatch_size = {integers = [1, 9223372036854775807]}\n',
     "random.batch_size.integers spans more than a draw can"),
    ('[fixed]\nval = 0.1\n[random]\nweight_decay = {uniform = [-1e308, 1e308]}\n',
     "random.weight_decay.uniform spans more than a draw can"),
    ('[fixed]\nval = 0.1\n[random]\nlr = {uniform = [0.1, 0.1]}\n', "random.lr.uniform must have low < high, got [0.1, 0.1]"),
    ('[fixed]\nval = 0.1\n[random]\nlr = {log_uniform = [0, 1]}\n', "random.lr.log_uniform must have low > 0"),
    ('[fixed]\nval = 0.1\n[random]\noptimizer = {choice = []}\n', "random.optimizer.choice must be a non-empty list"),
    ('[fixed]\nval = 0.1\n[random]\nlr = 0.1\n', "random.lr must be one of {uniform, log_uniform or integers"),
    ('trials = 10000000\n[fixed]\nval = 0.1\n[random]\nlr = {uniform = [0.1, 0.2]}\n',
     "trials must be a whole number from the grid's 1 to 1,000 (each trial is checked before any runs), got 10000000"),
    ('trials = true\n[fixed]\nval = 0.1\n', "trials must be a whole number"),
    ('[fixed]\nval = 0.1\n[grid]\n' + "".join(f'{o} = [{", ".join(map(str, range(1, 11)))}]\n' for o in
     ("epochs", "batch_size", "limit", "step_size", "patience", "seed", "warmup", "hidden")),
     "trials must be a whole number from the grid's 100,000,000 to 1,000"),
    ('trials = 5\n[fixed]\nval = 0.1\n[grid]\nseed = [1, 2]\n', "trials = 5 repeats the grid's 2 runs as they are"),
    ('[fixed]\nval = 0.1\n[grid]\nhidden = []\n', "grid.hidden must be a non-empty list of values"),
    ('metric = "f1"\n[fixed]\nval = 0.1\n', "metric 'f1' cannot choose the best trial; one of val_accuracy, val_loss"),
    ('metric = "test_accuracy"\n[fixed]\nval = 0.1\n', "(the test set never chooses)"),
    ('[fixed]\nepochs = 1\n', "val_accuracy needs a validation part: give val = 0.1"),
    ('[fixed]\nval = 0.1\nepochs = 0\n', "argument --epochs: expected a positive integer, got 0"),
    ('[fixed]\nval = 0.1\n[random]\nlr = {normal = [0, 1]}\n', "random.lr must be one of"),
    ('trials = 2\n[fixed]\nval = 0.1\n[grid]\nseed = [1, 2, 3]\n', "trials must be a whole number from the grid's 3 to"),
    ('dataset = "mnist-5k"\nepochs = 3\n', "unknown fields epochs"),
    ('[fixed\n', "is not TOML"),
])
def test_bad_specs_are_refused_in_one_line(tmp_path, capsys, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert sweep_main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and words in err
    assert not (tmp_path / "out").exists()


def test_resuming_a_sweep_whose_table_is_damaged_or_whose_spec_changed_is_refused(tmp_path, capsys):
    out, spec = tmp_path / "sweep", spec_file(tmp_path)
    out.mkdir()
    (out / "sweep.toml").write_bytes(spec.read_bytes())
    from mlp.sweep import COLUMNS

    for damaged in ("trial,status\n1,done\n", ",".join(COLUMNS) + "\nfirst" + "," * (len(COLUMNS) - 1) + "\n"):
        (out / "trials.csv").write_text(damaged)  # columns missing; a trial that is not a number
        assert sweep_main([str(spec), "--out", str(out), "--resume"]) == 2
        assert f"{out / 'trials.csv'} is damaged" in capsys.readouterr().err
    (out / "sweep.toml").write_text(SPEC.format(epochs=2, limit=400))
    assert sweep_main([str(spec), "--out", str(out), "--resume"]) == 2
    assert f"{spec} is not the sweep it ran" in capsys.readouterr().err


def test_random_draws_follow_the_seed_and_stay_in_their_bounds(tmp_path):
    from mlp import sweep

    text = ('trials = 6\nseed = 3\n[fixed]\nval = 0.1\n[random]\nlr = {log_uniform = [1e-4, 1e-2]}\n'
            'batch_size = {integers = [8, 64]}\noptimizer = {choice = ["sgd", "adam"]}\n')
    path = spec_file(tmp_path, text=text)
    first, again = sweep.Spec.read(path), sweep.Spec.read(path)
    assert first.trials == again.trials and len(first.trials) == 6
    assert all(1e-4 <= t["lr"] <= 1e-2 and 8 <= t["batch_size"] <= 64 and t["optimizer"] in ("sgd", "adam")
               for t in first.trials)
    assert len({t["lr"] for t in first.trials}) == 6 and {"lr", "batch_size"} <= set(first.varied)


@pytest.mark.parametrize("low, high", [(-2**63, 2**63 - 2), (-5, -4), (-2**63 - 1, 0), (0, 2**63 - 1)])
def test_integer_draws_span_what_numpys_64_bit_draw_can_and_no_more(low, high):
    """rng.integers(low, high + 1) takes -2**63 <= low and high + 1 <= 2**63 - 1 (int64, the upper bound excluded)."""
    from mlp import sweep

    if not (-2**63 <= low and high + 1 <= 2**63 - 1):
        with pytest.raises(sweep.SpecError, match=r"random.seed.integers spans more than a draw can"):
            sweep._sampler("seed", {"integers": [low, high]}, Path("sweep.toml"))
        return
    draw, rng = sweep._sampler("seed", {"integers": [low, high]}, Path("sweep.toml")), np.random.default_rng(0)
    drawn = [draw(rng) for _ in range(100)]
    assert all(isinstance(d, int) and low <= d <= high for d in drawn) and len(set(drawn)) > 1


@pytest.mark.parametrize("kind", ["uniform", "log_uniform"])
def test_real_draws_take_bounds_beyond_64_bit_integers(kind):
    """Only integer draws are bound to int64: a uniform draw over +-1e30 (or 1e-30 to 1e30) is fine."""
    from mlp import sweep

    low, high = (-1e30 if kind == "uniform" else 1e-30), 1e30
    draw, rng = sweep._sampler("weight_decay", {kind: [low, high]}, Path("sweep.toml")), np.random.default_rng(0)
    assert all(low <= d <= high for d in (draw(rng) for _ in range(100)))


def test_a_killed_client_resumes_running_only_the_missing_trials(tmp_path):
    out, spec = tmp_path / "sweep", spec_file(tmp_path, epochs=2, limit=1000)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    client = subprocess.Popen([sys.executable, "-m", "mlp.sweep", str(spec), "--out", str(out), "--workers", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not (out / "trials.csv").exists():
        time.sleep(0.1)
    os.killpg(client.pid, signal.SIGKILL)  # the client and its local cluster, as a machine going away
    client.wait()
    before = {r["trial"]: (out / f"trial-{r['trial']}" / "model.npz").read_bytes() for r in trials(out)}
    assert 1 <= len(before) < 4
    resumed = subprocess.run([sys.executable, "-m", "mlp.sweep", str(spec), "--out", str(out), "--workers", "1",
                              "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} trials were finished before; running the other {4 - len(before)}" in resumed.stderr
    rows = trials(out)
    assert sorted(int(r["trial"]) for r in rows) == [1, 2, 3, 4] and {r["status"] for r in rows} == {"done"}
    for trial, model in before.items():  # not run again
        assert (out / f"trial-{trial}" / "model.npz").read_bytes() == model


@contextlib.contextmanager
def dask_cluster(tmp_path: Path, workers: int):
    """A `dask scheduler` and `workers` `dask worker` processes on this machine, as on a real cluster;
    yields the scheduler's file and the processes (the scheduler first), all killed at the end."""
    bin_dir, env = Path(sys.executable).parent, dict(os.environ, PYTHONPATH=str(ROOT))
    scheduler_file = tmp_path / "scheduler.json"
    processes = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                   "--no-dashboard", "--scheduler-file", str(scheduler_file)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not scheduler_file.exists():
            time.sleep(0.1)
        processes += [subprocess.Popen([str(bin_dir / "dask"), "worker", "--scheduler-file", str(scheduler_file),
                                        "--nthreads", "1", "--no-dashboard", "--name", f"worker-{i}"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                      for i in range(workers)]
        yield scheduler_file, processes
    finally:
        for p in processes:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # a worker and the process it runs trials in
            except (ProcessLookupError, PermissionError):
                p.kill()
            p.wait()


def test_a_worker_killed_mid_trial_has_its_trial_run_again_and_every_trial_ends_once(tmp_path):
    from dask.distributed import Client

    from mlp import sweep

    with dask_cluster(tmp_path, 2) as (scheduler_file, processes), \
            Client(scheduler_file=str(scheduler_file), timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
        spec = sweep.Spec.read(spec_file(tmp_path, epochs=2, limit=2000))
        record = sweep.Sweep(spec, tmp_path)
        running = threading.Thread(target=sweep.run, args=(spec, record, client))
        running.start()
        victim = processes[1]  # worker-0
        victim_address = None
        while running.is_alive() and victim_address is None:  # a worker busy with a trial
            busy = [w for w, tasks in client.processing().items() if tasks]
            named = {info["name"]: w for w, info in client.scheduler_info()["workers"].items()}
            victim_address = named.get("worker-0") if named.get("worker-0") in busy else None
            time.sleep(0.05)
        os.killpg(victim.pid, signal.SIGKILL)
        running.join(300)
    rows = trials(tmp_path)
    assert sorted(int(r["trial"]) for r in rows) == [1, 2, 3, 4] and {r["status"] for r in rows} == {"done"}
    assert victim_address is not None  # it was killed while a trial ran on it


def test_a_lost_scheduler_stops_the_sweep_and_leaves_its_unfinished_trials_to_resume(tmp_path, capsys):
    out, spec = tmp_path / "sweep", spec_file(tmp_path, epochs=2, limit=1000)
    with dask_cluster(tmp_path, 1) as (scheduler_file, processes):
        while "address" not in scheduler_file.read_text():
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        client = subprocess.Popen([sys.executable, "-m", "mlp.sweep", str(spec), "--out", str(out), "--scheduler", address],
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        while time.time() < deadline and not (out / "trials.csv").exists():
            time.sleep(0.1)
        os.killpg(processes[0].pid, signal.SIGKILL)  # the scheduler, its machine gone
        stdout, stderr = client.communicate(timeout=120)
    assert client.returncode == 1 and "best trial" not in stdout and "Traceback" not in stderr, stderr
    assert "the sweep lost its Dask scheduler (scheduler-connection-lost)" in stderr and f"continue on a running cluster with --resume --out {out}" in stderr
    rows = trials(out)
    assert 1 <= len(rows) < 4 and {r["status"] for r in rows} == {"done"}  # no trial blamed for the scheduler
    assert sweep_main([str(spec), "--out", str(out), "--workers", "1", "--resume"]) == 0
    assert f"{len(rows)} trials were finished before; running the other {4 - len(rows)}" in capsys.readouterr().err
    assert sorted(int(r["trial"]) for r in trials(out)) == [1, 2, 3, 4] and {r["status"] for r in trials(out)} == {"done"}


def test_two_sweeps_on_one_cluster_whose_folders_share_a_name_keep_their_own_results(tmp_path):
    from mlp import checkpoint, sweep

    sweeps = []
    for owner, sizes in (("a", [5, 6]), ("b", [7, 9])):
        text = SPEC.format(epochs=1, limit=200).replace("hidden = [[8], [16]]\ndropout = [0.0, 0.2]",
                                                        f"hidden = {[[h] for h in sizes]}")
        (tmp_path / owner / "sw").mkdir(parents=True)
        spec = sweep.Spec.read(spec_file(tmp_path / owner, text=text))
        sweeps.append((spec, sweep.Sweep(spec, tmp_path / owner / "sw")))
    with sweep.connect(None, 1) as client:  # both submit their trials 1 and 2 before either ends
        running = [threading.Thread(target=sweep.run, args=(spec, record, client)) for spec, record in sweeps]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(300)
    for spec, record in sweeps:
        rows = trials(record.directory)
        assert sorted(int(r["trial"]) for r in rows) == [1, 2]
        for row in rows:
            hidden = spec.trials[int(row["trial"]) - 1]["hidden"]
            assert checkpoint.load(record.directory / f"trial-{row['trial']}" / "model.npz").model.sizes[1:-1] == hidden
            metrics = (record.directory / f"trial-{row['trial']}" / "metrics.csv").read_text().splitlines()
            assert row["val_loss"] == metrics[-1].split(",")[metrics[0].split(",").index("val_loss")]


def test_local_workers_are_forked_unless_compiled_threads_already_run_here():
    code = ("from mlp import sweep\nprint(sweep._start_method())\nimport numba, numpy as np\n"
            "@numba.njit(parallel=True)\ndef total(a):\n    s = 0.0\n    for i in numba.prange(a.size):\n"
            "        s += a[i]\n    return s\ntotal(np.ones(8))\nprint(sweep._start_method())\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.stdout.split() == ["fork", "forkserver"], run.stderr


def test_a_scheduler_that_does_not_answer_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from mlp import sweep

    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "1s")
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert sweep_main([str(spec_file(tmp_path)), "--out", str(tmp_path / "out"), "--scheduler",
                       f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and f"--scheduler tcp://127.0.0.1:{port}: no Dask scheduler answers there" in err
    assert not (tmp_path / "out").exists()  # no sweep.toml left behind to refuse the corrected command


def test_a_sweep_claims_its_folder_as_a_sweep_and_resumes_only_a_sweeps(tmp_path, monkeypatch, capsys):
    from mlp import rundir, sweep

    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", "1s")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"tcp://127.0.0.1:{unused.getsockname()[1]}"
    spec, out = str(spec_file(tmp_path)), tmp_path / "out"
    held, _ = rundir.claim_new(out, explicit=True, fresh=False, kind="sweep")  # another sweep, writing in it
    assert sweep_main([spec, "--out", str(out)]) == 2
    assert f"--out {out} is being written by another sweep: wait for it, add --fresh" in capsys.readouterr().err
    assert sweep_main([spec, "--out", str(out), "--resume"]) == 2
    assert f"--resume: {out} is being written by another sweep" in capsys.readouterr().err
    held.release()
    out.mkdir()
    (out / "metrics.csv").write_text("epoch\n")  # a training run's
    assert sweep_main([spec, "--out", str(out)]) == 2
    assert f"already holds files (metrics.csv): continue its sweep with --resume, add --fresh" in capsys.readouterr().err
    assert sweep_main([spec, "--out", str(out), "--resume"]) == 2
    assert f"--resume: {out} is not a sweep's directory: it has no sweep.toml" in capsys.readouterr().err
    assert sweep_main([spec, "--out", str(out), "--fresh", "--scheduler", nowhere]) == 2  # --fresh, as advised
    assert f"{out} holds an earlier run, so this one goes to {tmp_path / 'out-2'}" in capsys.readouterr().err
    assert os.listdir(out) == ["metrics.csv"] and not (tmp_path / "out-2").exists()


def test_ctrl_c_ends_a_sweep_with_its_one_clear_line(tmp_path):
    out, spec = tmp_path / "sweep", spec_file(tmp_path, epochs=2, limit=1000)
    client = subprocess.Popen([sys.executable, "-m", "mlp.sweep", str(spec), "--out", str(out), "--workers", "1"],
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline and not (out / "trials.csv").exists():
        time.sleep(0.1)
    os.killpg(client.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the sweep and its local workers
    _, stderr = client.communicate(timeout=120)
    assert client.returncode == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.splitlines()[-1] == (f"interrupted: {len(trials(out))} trials are recorded in {out / 'trials.csv'}; "
                                       f"continue with --resume --out {out}")


def test_the_sweeps_figure_shows_each_option_as_the_spec_gave_it():
    from mlp import plots

    points = [(1, {"hidden": [8, 8], "lr": 0.01}, 0.5), (2, {"hidden": [8, 32], "lr": 0.1}, 0.7),
              (3, {"hidden": [8, 8], "lr": 0.1}, 0.6)]
    axes = plots.sweep(points, ["hidden", "lr"], "val_accuracy").figure.axes
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["[8, 32]", "[8, 8]"]
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["0.01", "0.1"]
    for ax, column in zip(axes, ("hidden", "lr")):
        labels = [t.get_text() for t in ax.get_xticklabels()]
        x, y = ax.lines[0].get_data()
        assert [(labels[int(i)], v) for i, v in zip(x, y)] == [(str(o[column]), m) for _, o, m in points]
