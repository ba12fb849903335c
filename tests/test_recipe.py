"""The recipe (mlp.Recipe): each option's check refuses a bad value naming the option, what it needs and
what came, and takes the values at its bounds; the command line's flags, the README's table and a
checkpoint's record come from it; fit, the command line and a sweep's trial run one recipe to the
same metrics.csv."""
import csv
import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest

import mlp
from mlp import checkpoint, sweep, train
from mlp.recipe import Recipe, RecipeError, markdown_table

ROOT = Path(__file__).resolve().parents[1]

BAD = {  # an option family: (option, a bad value, what the error says), every option at least once
    "positive integers": [("epochs", 0, "argument --epochs: expected a positive integer, got 0"),
                          ("batch_size", -1, "argument --batch-size: expected a positive integer, got -1"),
                          ("limit", 0, "argument --limit: expected a positive integer, got 0"),
                          ("step_size", 0, "argument --step-size: expected a positive integer, got 0"),
                          ("patience", 0, "argument --patience: expected a positive integer, got 0"),
                          ("threads", 0, "argument --threads: expected a positive integer, got 0"),
                          ("epochs", 2.0, "argument --epochs: expected a positive integer, got 2.0"),
                          ("epochs", True, "argument --epochs: expected a positive integer, got True"),
                          ("epochs", "3", "argument --epochs: expected a positive integer, got '3'")],
    "integers from 0": [("seed", -1, "argument --seed: expected an integer >= 0, got -1"),
                        ("seed", 0.5, "argument --seed: expected an integer >= 0, got 0.5")],
    "positive numbers": [("lr", 0.0, "argument --lr: expected a positive finite number, got 0.0"),
                         ("lr", math.inf, "argument --lr: expected a positive finite number, got inf"),
                         ("lr", math.nan, "argument --lr: expected a positive finite number, got nan"),
                         ("lr", "0.1", "argument --lr: expected a positive finite number, got '0.1'"),
                         ("eps", -1e-8, "argument --eps: expected a positive finite number, got -1e-08"),
                         ("clip", 0, "argument --clip: expected a positive finite number, got 0")],
    "numbers from 0": [("weight_decay", -0.1, "argument --weight-decay: expected a finite number >= 0, got -0.1"),
                       ("warmup", -1, "argument --warmup: expected a finite number >= 0, got -1"),
                       ("min_lr", math.inf, "argument --min-lr: expected a finite number >= 0, got inf")],
    "fractions": [("momentum", 1.0, "argument --momentum: expected a number in [0, 1), got 1.0"),
                  ("beta1", -0.1, "argument --beta1: expected a number in [0, 1), got -0.1"),
                  ("beta2", 1, "argument --beta2: expected a number in [0, 1), got 1"),
                  ("val", 1.5, "argument --val: expected a number in [0, 1), got 1.5"),
                  ("dropout", 1.0, "argument --dropout: expected a number in [0, 1), got 1.0")],
    "factors": [("gamma", 0, "argument --gamma: expected a number in (0, 1], got 0"),
                ("gamma", 1.5, "argument --gamma: expected a number in (0, 1], got 1.5")],
    "bounded": [("shift", 14.5, "argument --shift: expected a number from 0 to 14, got 14.5"),
                ("rotate", -1, "argument --rotate: expected a number from 0 to 180, got -1"),
                ("elastic", 101, "argument --elastic: expected a number from 0 to 100, got 101"),
                ("elastic_sigma", 0, "argument --elastic-sigma: expected a number above 0 and at most 28, got 0"),
                ("elastic_sigma", 28.5, "argument --elastic-sigma: expected a number above 0 and at most 28, got 28.5")],
    "choices": [("activation", "gelu", "argument --activation: invalid choice: 'gelu' (choose from 'relu', 'sigmoid', "
                                       "'tanh')"),
                ("init", "he", "argument --init: invalid choice: 'he' (choose from 'kaiming_normal',"),
                ("optimizer", "lbfgs", "argument --optimizer: invalid choice: 'lbfgs' (choose from 'adam', 'momentum',"),
                ("schedule", "linear", "argument --schedule: invalid choice: 'linear' (choose from 'constant', 'step', "
                                       "'cosine')"),
                ("monitor", "val_f1", "argument --monitor: invalid choice: 'val_f1' (choose from 'val_loss', "
                                      "'val_accuracy')"),
                ("nodes", "tensor", "argument --nodes: invalid choice: 'tensor' (choose from 'scalar', 'matrix')"),
                ("dtype", "float16", "argument --dtype: invalid choice: 'float16' (choose from 'float64', 'float32')")],
    "data sets": [("dataset", "cifar", "argument --dataset: unknown data set 'cifar'; known: mnist-5k, mnist, "
                                       "fashion-mnist")],
    "switches": [("bias", 1, "bias: expected True or False, got 1"),
                 ("augment", "yes", "augment: expected True or False, got 'yes'"),
                 ("resume", None, "resume: expected True or False, got None"),
                 ("fresh", 0, "fresh: expected True or False, got 0"),
                 ("plots", "no", "plots: expected True or False, got 'no'"),
                 ("trace", 1.0, "trace: expected True or False, got 1.0")],
    "paths": [("out", 3, "argument --out: expected a path (a str or a pathlib.Path), got 3"),
              ("data_dir", ["data"], "argument --data-dir: expected a path (a str or a pathlib.Path), got ['data']")],
    "lists": [("hidden", [32, 0], "argument --hidden: expected a positive integer, got 0"),
              ("hidden", [32.5], "argument --hidden: expected a positive integer, got 32.5"),
              ("dropout", (0.1, -0.1), "argument --dropout: expected a number in [0, 1), got -0.1")],
}


@pytest.mark.parametrize("family", BAD)
def test_each_option_refuses_a_bad_value_naming_the_option_what_it_needs_and_what_came(family):
    for name, value, words in BAD[family]:
        with pytest.raises(RecipeError) as raised:
            Recipe(**{name: value})
        assert str(raised.value) == words or (words.endswith(",") and str(raised.value).startswith(words)), name


def test_every_option_has_a_bad_value_above():
    assert {f.name for f in dataclasses.fields(Recipe)} == {name for cases in BAD.values() for name, _, _ in cases}


@pytest.mark.parametrize("options, words", [
    (dict(hidden=[8, 8, 8], dropout=[0.1, 0.2]), "--dropout: expected one probability, or one for each of the 3 hidden "
                                                 "layers, got 2"),
    (dict(patience=3), "--patience needs a validation part to watch: give --val FRACTION too"),
    (dict(warmup=10.5), "--warmup 10.5 is longer than the run (--epochs 10): the rate would never reach --lr"),
    (dict(min_lr=0.1), "--min-lr 0.1 is above --lr 0.001"),
    (dict(dtype="float32", nodes="scalar"), "--dtype float32 needs --nodes matrix: scalar nodes are float64"),
    (dict(resume=True, fresh=True), "argument --fresh: not allowed with argument --resume"),
    (dict(hidden=[10**8], nodes="scalar"), "--hidden 100000000: a [784, 100000000, 10] model's trace needs "
                                           "159,200,000,040 tape nodes or edges; a tape holds at most 2,147,483,647"),
    (dict(hidden=[10**6], threads=1), "GiB of memory; this machine has"),
])
def test_options_that_do_not_fit_together_are_refused(options, words):
    with pytest.raises(RecipeError) as raised:
        Recipe(**options)
    assert words in str(raised.value)


@pytest.mark.parametrize("options, kept", [
    (dict(epochs=1, seed=0, limit=1, threads=1, step_size=1, patience=1, val=0.5), {}),
    (dict(shift=14, rotate=180, elastic=100, elastic_sigma=28), dict(shift=14.0, rotate=180.0)),
    (dict(elastic_sigma=0.5, shift=0.5), {}),  # above 0 and below 1
    (dict(elastic=0, shift=0, rotate=0, gamma=1, momentum=0, beta1=0, beta2=0, weight_decay=0, val=0), dict(gamma=1.0)),
    (dict(warmup=10, min_lr=0.001), {}),  # as long as the run; the cosine down to the rate itself
    (dict(dtype="float32", nodes="matrix"), {}),
    (dict(lr=1, hidden=32, dropout=0.25), dict(lr=1.0, hidden=(32,), dropout=(0.25,))),  # an int where a float goes; one for a list
    (dict(hidden=(), dropout=()), {}),  # a model without hidden layers (softmax regression)
    (dict(hidden=[8, 8, 8], dropout=0.2), dict(dropout=(0.2,))),  # one probability for every hidden layer
    (dict(hidden=np.array([16, 8]), dropout=[np.float64(0.1), 0.2], seed=np.int64(3)), dict(hidden=(16, 8), seed=3)),
    (dict(out="runs/mine", data_dir=Path("d")), dict(out=Path("runs/mine"), data_dir=Path("d"))),
])
def test_values_at_their_bounds_are_taken_in_their_type(options, kept):
    recipe = Recipe(**options)
    for name, value in {**options, **kept}.items():
        assert np.array_equal(getattr(recipe, name), value) if np.ndim(value) else getattr(recipe, name) == value, name
    for f in dataclasses.fields(Recipe):  # annotations as text: "int | None", "tuple[float, ...]", ...
        value, kind = getattr(recipe, f.name), {"int": int, "float": float}.get(f.type.strip("tuple[").split()[0].strip(","))
        for item in value if isinstance(value, tuple) else [value]:
            assert kind is None or item is None or type(item) is kind, (f.name, item)
    assert isinstance(recipe.hidden, tuple) and isinstance(recipe.dropout, tuple)


@pytest.mark.parametrize("nodes, threads, gib", [("scalar", 1, "371.8"), ("scalar", 2, "413.4"), ("matrix", 2, "276.8")])
def test_a_model_is_refused_where_its_estimated_memory_is_above_the_machines(monkeypatch, nodes, threads, gib):
    """784-1,000,000-10, batches of 32: weights w = 795,000,010; the estimate 72 w + 24 * 10,000 * 10**6
    bytes, and on scalar nodes 8 * 2 w (2 chunks of 16 samples) + (threads + 1) (24 n + 16 e) for a
    sample's trace of n = 784 + w + 4 * 1,000,010 nodes and e = 2 * 784 * 10**6 + 4 * 10**6 + 2 * 10**7 + 40
    edges (under the tape's 2**31)."""
    need = 72 * 795_000_010 + 24 * 10_000 * 10**6
    if nodes == "scalar":
        need += 8 * 2 * 795_000_010 + (threads + 1) * (24 * 799_000_834 + 16 * 1_592_000_040)
    monkeypatch.setattr("mlp.recipe._physical_memory", lambda: need)
    assert Recipe(hidden=[10**6], threads=threads, nodes=nodes).hidden == (10**6,)
    monkeypatch.setattr("mlp.recipe._physical_memory", lambda: need - 1)
    with pytest.raises(RecipeError) as raised:
        Recipe(hidden=[10**6], threads=threads, nodes=nodes)
    assert str(raised.value) == (f"--hidden 1000000 with --batch-size 32: a [784, 1000000, 10] model needs about {gib} "
                                 f"GiB of memory; this machine has {gib} GiB")


def test_a_model_is_refused_where_the_tape_would_hold_more_than_it_can(monkeypatch):
    """784-64-10 on scalar nodes: 50,890 weights; a sample's trace has 784 + 50,890 + 4 * 74 = 51,970
    nodes and 2 * 784 * 64 + 4 * 64 + 2 * 64 * 10 + 4 * 10 = 101,928 edges: the most the tape must
    hold, on any number of threads. Matrix nodes record no sample's trace."""
    monkeypatch.setattr("mlp.recipe.TAPE_LIMIT", 101_928)
    assert Recipe(hidden=[64], threads=2, nodes="scalar").hidden == (64,)
    monkeypatch.setattr("mlp.recipe.TAPE_LIMIT", 101_927)
    assert Recipe(hidden=[64]).nodes == "matrix"
    with pytest.raises(RecipeError) as raised:
        Recipe(hidden=[64], threads=1, nodes="scalar")
    assert str(raised.value) == ("--hidden 64: a [784, 64, 10] model's trace needs 101,928 tape nodes or edges; a tape "
                                 "holds at most 101,927")


def test_a_recipe_is_frozen_and_a_changed_one_is_checked_again():
    recipe = Recipe(epochs=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.epochs = 4
    assert recipe.replace(epochs=4).epochs == 4 and recipe.epochs == 3
    with pytest.raises(RecipeError, match="argument --epochs: expected a positive integer, got 0"):
        recipe.replace(epochs=0)


def test_the_record_a_checkpoint_keeps_makes_the_recipe_again():
    recipe = Recipe(hidden=(16, 8), dropout=(0.1, 0.2), out=Path("runs/x"), lr=0.01, val=0.1, patience=2, augment=True)
    record = recipe.record()
    assert record["hidden"] == [16, 8] and record["out"] == "runs/x" and record["patience"] == 2
    assert Recipe(**record) == recipe
    assert list(record) == [f.name for f in dataclasses.fields(Recipe)]


def test_the_optimizer_takes_the_options_of_its_kind():
    assert Recipe().optimizer_options() == dict(lr=0.001, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8)
    assert Recipe(optimizer="sgd", lr=0.1).optimizer_options() == dict(lr=0.1, weight_decay=0.0)
    assert Recipe(optimizer="rmsprop", momentum=0.5).optimizer_options() == dict(lr=0.001, weight_decay=0.0, beta=0.5,
                                                                                 eps=1e-8)
    for kind in ("momentum", "unbiased_momentum", "nesterov"):
        assert Recipe(optimizer=kind, momentum=0.8).optimizer_options() == dict(lr=0.001, weight_decay=0.0, beta=0.8)


def test_the_flags_are_the_recipes_fields_with_their_defaults_and_help():
    p = train.parser()
    actions = {a.dest: a for a in p._actions if a.dest != "help"}
    fields = dataclasses.fields(Recipe)
    assert list(actions) == [f.name for f in fields]
    for f in fields:
        assert actions[f.name].help == f.metadata["help"], f.name
    assert actions["bias"].option_strings == ["--no-bias"] and actions["batch_size"].option_strings == ["--batch-size"]
    assert train.check_options(p, p.parse_args([])) == Recipe()


def test_a_recipe_said_as_flags_is_the_same_recipe():
    options = dict(dataset="mnist-5k", hidden=(16, 8), dropout=(0.1, 0.2), bias=False, augment=True, lr=0.01,
                   val=0.1, patience=2, out=Path("runs/x"), optimizer="sgd", schedule="cosine", min_lr=0.0001, plots=False)
    p = train.parser()
    flags = train.flags(options)
    assert "--no-bias" in flags and "--augment" in flags and "--no-plots" in flags
    assert train.check_options(p, p.parse_args(flags)) == Recipe(**options)
    assert train.flags(dict(bias=True, augment=False, clip=None)) == []  # as by default: nothing to say


def test_the_readme_table_is_the_recipes():
    table = markdown_table()
    assert table in (ROOT / "README.md").read_text()
    assert table.count("\n") == 1 + len(dataclasses.fields(Recipe))
    assert "| `--no-bias` | `bias` | True | layers without biases |" in table
    assert "| `--lr` | `lr` | 0.001 | learning rate |" in table


def metrics(text: str) -> list[dict]:
    """metrics.csv's rows without the columns of time (seconds, samples per second)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {"seconds", "samples_per_s"} <= set(rows[0])
    return [{k: v for k, v in row.items() if k not in ("seconds", "samples_per_s")} for row in rows]


def test_fit_the_command_line_and_a_sweep_trial_given_one_recipe_write_the_same_metrics(tmp_path):
    options = dict(hidden=[12], epochs=2, limit=300, batch_size=25, val=0.2, lr=0.005, dropout=0.1, optimizer="adam",
                   schedule="cosine", seed=3, plots=False)
    recipe = Recipe(**options)
    history = mlp.fit(None, "mnist-5k", recipe=recipe.replace(out=tmp_path / "fit"))
    assert train.main(train.flags({**options, "out": tmp_path / "cli"})) == 0
    trial = sweep.run_trial(1, "mnist-5k", options)
    assert trial["status"] == "done", trial
    by_fit, by_cli = ((tmp_path / name / "metrics.csv").read_text() for name in ("fit", "cli"))
    assert metrics(by_fit) == metrics(by_cli) == metrics(trial["files"]["metrics.csv"].decode())
    assert len(metrics(by_fit)) == 2 and metrics(by_fit)[1]["val_loss"] != ""
    recorded = checkpoint.load(tmp_path / "cli" / "model.npz").args
    assert Recipe(**recorded) == recipe.replace(out=tmp_path / "cli") and history.best_epoch is not None
