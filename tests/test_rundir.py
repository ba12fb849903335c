"""Claiming run directories: runs started together in one folder each get a directory of their own."""
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mlp import rundir
from mlp.recipe import UsageError


def run_in(wanted: str, explicit: bool, fresh: bool, start: float, stay: float) -> tuple[str, str] | str:
    """A run of another process: at `start`, claim a directory, write a file of its own in it, stay a
    while, then check the file is still its own. Returns (directory, what it found) or the refusal."""
    while time.time() < start:
        pass
    try:
        claim, _ = rundir.claim_new(Path(wanted), explicit, fresh)
    except UsageError as e:
        return str(e)
    mine = f"run {os.getpid()} {time.time_ns()}"
    (claim.directory / "metrics.csv").write_text(mine)
    time.sleep(stay)
    found = (claim.directory / "metrics.csv").read_text()
    claim.release()
    return str(claim.directory), "whole" if found == mine else found


@pytest.fixture(scope="module")
def pool():
    with multiprocessing.get_context("spawn").Pool(6) as workers:
        yield workers


# the state of runs/mnist-5k, runs/mnist-5k-2, -3 before the runs start
BEFORE = st.lists(st.sampled_from(["absent", "empty", "a run", "a file"]), min_size=3, max_size=3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=BEFORE, runs=st.integers(2, 6), explicit=st.booleans(), fresh=st.booleans(),
       stays=st.lists(st.floats(0, 0.05), min_size=6, max_size=6))
def test_runs_started_together_each_get_a_directory_of_their_own(pool, tmp_path_factory, before, runs, explicit,
                                                                  fresh, stays):
    folder = tmp_path_factory.mktemp("runs")
    names = ["mnist-5k", "mnist-5k-2", "mnist-5k-3"]
    for name, state in zip(names, before):
        if state == "empty":
            (folder / name).mkdir()
        elif state == "a run":
            (folder / name).mkdir()
            (folder / name / "model.npz").write_text(f"earlier {name}")
        elif state == "a file":
            (folder / name).write_text(f"a file {name}")
    start = time.time() + 0.3
    results = pool.starmap(run_in, [(str(folder / "mnist-5k"), explicit, fresh, start, stay) for stay in stays[:runs]])

    claimed = [r for r in results if isinstance(r, tuple)]
    assert all(found == "whole" for _, found in claimed)
    directories = [Path(d) for d, _ in claimed]
    assert len(set(directories)) == len(directories)  # no two runs in one directory
    for name, state in zip(names, before):  # nothing that was there is lost or written into
        if state == "a run":
            assert (folder / name) not in directories and (folder / name / "model.npz").read_text() == f"earlier {name}"
        elif state == "a file":
            assert (folder / name) not in directories and (folder / name).read_text() == f"a file {name}"
    for directory in directories:
        assert sorted(os.listdir(directory)) == ["metrics.csv"]  # the lock file is gone with its run
    refused = [r for r in results if isinstance(r, str)]
    if before[0] == "a file":
        assert len(refused) == runs and all("is a file, not a directory" in r for r in refused)
    elif explicit and not fresh:  # only the one directory asked for, by one run
        assert directories == ([] if before[0] == "a run" else [folder / "mnist-5k"])
        assert all("--out" in r and ("already holds files" in r or "another training run" in r) for r in refused)
    else:
        assert not refused and len(claimed) == runs


def test_a_run_killed_without_releasing_leaves_its_directory_to_resume_and_not_to_a_new_run(tmp_path):
    process = multiprocessing.get_context("spawn").Process(target=_claim_and_die, args=(str(tmp_path / "run"),))
    process.start()
    process.join()
    assert sorted(os.listdir(tmp_path / "run")) == [rundir.LOCK, "model.npz"]
    claim, note = rundir.claim_new(tmp_path / "run", explicit=False, fresh=False)
    assert claim.directory == tmp_path / "run-2" and "holds an earlier run" in note
    claim.release()
    assert not (tmp_path / "run-2").exists()  # made for nothing: removed
    claim = rundir.claim_existing(tmp_path / "run")  # the dead run's lock went with it
    with pytest.raises(UsageError, match="is being written by another training run"):
        rundir.claim_existing(tmp_path / "run")
    claim.release()
    assert sorted(os.listdir(tmp_path / "run")) == ["model.npz"]


def _claim_and_die(directory: str) -> None:
    claim, _ = rundir.claim_new(Path(directory), explicit=True, fresh=False)
    (claim.directory / "model.npz").write_text("epoch 1")
    os._exit(9)  # no release: as kill -9


def test_a_lock_file_removed_while_it_was_being_taken_is_made_again(tmp_path, monkeypatch):
    """The run before let go of the directory (removing its lock file) between this run's open and
    flock: the lock this run holds must be the lock file that is there now, not the removed one."""
    real = rundir.fcntl.flock
    calls = []

    def flock_after_the_other_run_ended(fd, operation):
        if not calls:
            (tmp_path / "run" / rundir.LOCK).unlink()
        calls.append(fd)
        return real(fd, operation)

    monkeypatch.setattr(rundir.fcntl, "flock", flock_after_the_other_run_ended)
    claim, _ = rundir.claim_new(tmp_path / "run", explicit=True, fresh=False)
    assert len(calls) == 2 and os.stat(tmp_path / "run" / rundir.LOCK).st_ino == os.fstat(claim.fd).st_ino
    claim.release()


def test_release_removes_only_a_directory_made_for_the_run(tmp_path):
    (tmp_path / "given").mkdir()
    for directory in (tmp_path / "given", tmp_path / "new"):
        claim, _ = rundir.claim_new(directory, explicit=True, fresh=False)
        assert claim.made == (directory.name == "new")
        claim.release()
    assert os.listdir(tmp_path) == ["given"] and not os.listdir(tmp_path / "given")


def test_a_directory_whose_parents_are_missing_is_made_with_them(tmp_path):
    claim, note = rundir.claim_new(tmp_path / "runs" / "mnist-5k", explicit=False, fresh=False)
    assert claim.directory.is_dir() and claim.made and note == ""
    claim.release()
    assert not (tmp_path / "runs" / "mnist-5k").exists() and (tmp_path / "runs").is_dir()


@pytest.mark.parametrize("files, listed", [(4, "a, b, c, d)"), (5, "a, b, c, d, ...)")])
def test_a_given_directory_that_holds_files_is_refused_naming_up_to_four(tmp_path, files, listed):
    (tmp_path / "run").mkdir()
    for name in "abcde"[:files]:
        (tmp_path / "run" / name).write_text(name)
    with pytest.raises(UsageError) as refused:
        rundir.claim_new(tmp_path / "run", explicit=True, fresh=False)
    assert f"already holds files ({listed}" in str(refused.value)
    assert sorted(os.listdir(tmp_path / "run")) == list("abcde"[:files])  # nothing added, nothing lost
