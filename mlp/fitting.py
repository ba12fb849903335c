"""Training from Python in one call, `mlp.fit(model, "mnist-5k", epochs=3)`: the keywords make a
`Recipe`, which the library's training loop runs (the run `python -m mlp.train` makes of the same flags)."""
from __future__ import annotations

from dataclasses import fields
from typing import Callable, Sequence

from . import training
from .data import Dataset
from .history import History
from .nn import MLP
from .progress import ProgressBar
from .recipe import MODEL_OPTIONS, Recipe


def fit(model: MLP | None = None, data: str | Dataset = "mnist-5k", *, recipe: Recipe | None = None,
        callbacks: Callable[[dict], object] | Sequence[Callable[[dict], object]] = (), **options) -> History:
    """Train `model` in place (or the model the options describe, as `python -m mlp.train` makes
    it) on `data` (a data set's name, or one `mlp.load` gave: it sets the recipe's dataset), as
    `recipe` (an `mlp.Recipe`, default `Recipe()`) with `options` changed, exactly as the training
    program does with the same flags: `fit(model, epochs=5, optimizer="sgd", lr=0.1, val=0.1, out="runs/mine")`.
    The run writes into `out` (default: runs/<data set>, or the first free runs/<data set>-N);
    `resume=True` continues the run in `out` from its checkpoint (the model takes its weights).
    Each callback (one, or a list) is called with each epoch's metrics (a dict) and stops the run
    by returning True.
    Returns the history. The model ends holding the weights the run keeps, and is the history's
    model: with `val`, the best validation epoch's (the checkpoint's `kept`), else the last
    epoch's. Ctrl-C (interrupting the kernel) returns the history so far, the model holding the
    kept weights of the epochs finished (an epoch cut short leaves none of its steps)."""
    if not isinstance(data, (str, Dataset)):
        raise TypeError(f"fit(data): expected a data set's name or a Dataset (mlp.load(name), or mlp.Dataset(name, "
                        f"x_train, y_train, x_test, y_test, classes) of your arrays: a run tests on a test set each "
                        f"epoch), got {type(data).__name__}")
    if not isinstance(recipe, (Recipe, type(None))):
        raise TypeError(f"fit(recipe): expected an mlp.Recipe, got {type(recipe).__name__}")
    run = arguments(model, data, options, recipe)
    return training.run_training(run, model, data if isinstance(data, Dataset) else None, checked_callbacks(callbacks),
                                 progress=ProgressBar, figures=save_figures)


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


def arguments(model: MLP | None, dataset: str | Dataset, options: dict, recipe: Recipe | None = None) -> Recipe:
    """The recipe of these keyword options (over `recipe`), each checked (ValueError naming the
    option), with the model's own shape, activation and dropout; TypeError for an option it
    cannot take (one the model gives, or none of the recipe's)."""
    known = {f.name for f in fields(Recipe)} - {"dataset"}
    takes = known - set(MODEL_OPTIONS) if model is not None else known
    for name in options:
        if name not in takes:
            given = f" (the model gives it: {model!r})" if name in known else ""
            raise TypeError(f"fit() got an option it cannot take: {name!r}{given}; it takes those of "
                            f"python -m mlp.train: {', '.join(sorted(takes))}")
    changes = dict(options)
    if isinstance(dataset, str):
        changes["dataset"] = dataset
    if model is not None:
        changes.update(hidden=model.sizes[1:-1], activation=model.activation, init=model.init_name, bias=model.bias,
                       dropout=list(model.dropout))
    return (recipe or Recipe()).replace(**changes)


def save_figures(history: History) -> None:
    """The run's figures in its directory: curves.png, confusion.png and mistakes.png."""
    history.plot().save(history.out / "curves.png")
    history.confusion().save(history.out / "confusion.png")
    history.mistakes().save(history.out / "mistakes.png")
