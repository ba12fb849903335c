"""Training from Python in one call, `mlp.fit(model, "mnist-5k", epochs=3)`: the training
program's own run, its options given as keywords and checked by its own parser."""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

from . import train
from .data import Dataset
from .history import History
from .nn import MLP

# What a given model already says; and resume, which would train the checkpoint's model instead
MODEL_OPTIONS = ("hidden", "activation", "init", "bias", "dropout", "resume")


class _Refusing(argparse.ArgumentParser):
    """The training program's parser, raising ValueError where the program would exit."""

    def error(self, message: str):
        raise ValueError(message)


def fit(model: MLP | None = None, data: str | Dataset = "mnist-5k", *,
        callbacks: Callable[[dict], object] | Sequence[Callable[[dict], object]] = (), **options) -> History:
    """Train `model` in place (or the model the options describe, as `python -m mlp.train` makes
    it) on `data` (a data set's name, or one `mlp.load` gave), exactly as the training program does
    with the same options: `fit(model, epochs=5, optimizer="sgd", lr=0.1, val=0.1, out="runs/mine")`.
    The run writes into `out` (default: runs/<data set>, or the first free runs/<data set>-N).
    Each callback (one, or a list) is called with each epoch's metrics (a dict) and stops the run
    by returning True.
    Returns the history; Ctrl-C (interrupting the kernel) returns it so far, the model holding the
    weights of the last finished epoch."""
    if not isinstance(data, (str, Dataset)):
        raise TypeError(f"fit(data): expected a data set's name or a Dataset (mlp.load(name), or mlp.Dataset(name, "
                        f"x_train, y_train, x_test, y_test, classes) of your arrays: a run tests on a test set each "
                        f"epoch), got {type(data).__name__}")
    args = arguments(model, data, options)
    return train.run_training(args, model, data if isinstance(data, Dataset) else None, checked_callbacks(callbacks))


def checked_callbacks(callbacks) -> list[Callable[[dict], object]]:
    """One callable, or a sequence of them, as a list; anything else refused before training."""
    if callable(callbacks):
        return [callbacks]
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"fit(callbacks): expected a callable or a list of them, got {type(callbacks).__name__}")
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(f"fit(callbacks): entry {i} is a {type(callback).__name__}, not a callable")
    return callbacks


def arguments(model: MLP | None, dataset: str | Dataset, options: dict) -> argparse.Namespace:
    """The training program's arguments for these keyword options, checked as the program checks
    its flags (ValueError naming the option), with the model's own shape, activation and dropout."""
    p = train.parser(_Refusing)
    known = {a.dest for a in p._actions} - {"help", "dataset"}
    takes = known - set(MODEL_OPTIONS) if model is not None else known
    for name in options:
        if name not in takes:
            given = f" (the model gives it: {model!r})" if name in known else ""
            raise TypeError(f"fit() got an option it cannot take: {name!r}{given}; it takes those of "
                            f"python -m mlp.train: {', '.join(sorted(takes))}")
    argv = [f"--dataset={dataset}"] if isinstance(dataset, str) else []
    for name, value in options.items():
        argv += flag(p, name, value)
    args = p.parse_args(argv)
    if model is not None:
        args.hidden, args.activation, args.init = model.sizes[1:-1], model.activation, model.init_name
        args.bias, args.dropout = model.bias, list(model.dropout)
    if isinstance(dataset, Dataset):
        args.dataset = dataset.name
    train.check_options(p, args)
    train.check_size(p, args)
    return args


def flag(p: argparse.ArgumentParser, name: str, value) -> list[str]:
    """`name=value` as the command line says it: --name value, --name v1 v2, or a switch."""
    action = next(a for a in p._actions if a.dest == name)
    if action.nargs == 0:  # a switch: store_true, or store_false as --no-bias
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected True or False, got {value!r}")
        on = value if isinstance(action, argparse._StoreTrueAction) else not value
        return [action.option_strings[0]] if on else []
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple)) else [value]
    return [action.option_strings[0], *map(str, values)]
