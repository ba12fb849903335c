"""Checkpoints: a model, its optimizer's state, the epoch, the RNG state and the arguments of a
run, and the model of its best validation epoch if it kept one, in one `.npz` file written
atomically (a half-written file never replaces a good one; the file itself is mlp.archive's)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .archive import FORMAT, CheckpointError, read, unreadable, write, write_atomically, wrong  # noqa: F401 - their names here too
from .nn import MLP
from .optim import OPTIMIZERS, Optimizer


@dataclass
class Best:
    """The model of a run's best validation epoch, kept beside the last epoch's."""

    model: MLP
    epoch: int
    metric: str  # what made it the best: "val_loss" (lowest) or "val_accuracy" (highest)
    value: float


@dataclass
class Checkpoint:
    model: MLP  # the last epoch's, which a resumed run continues from
    epoch: int  # epochs completed
    optimizer: str = "sgd"  # its name in OPTIMIZERS
    optimizer_options: dict = field(default_factory=dict)  # lr, betas, ...
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    rng_state: dict | None = None  # numpy Generator.bit_generator.state
    args: dict = field(default_factory=dict)  # the run's arguments, as given
    best: Best | None = None

    @property
    def kept(self) -> MLP:
        """The model the run reports: its best validation epoch's, if it kept one, else the last."""
        return self.best.model if self.best else self.model

    def make_optimizer(self, model: MLP | None = None) -> Optimizer:
        """The optimizer, with its state restored, on the checkpoint's model (or on `model`, of its shape)."""
        opt = OPTIMIZERS[self.optimizer]((model or self.model).parameters(), **self.optimizer_options)
        if self.optimizer_state:
            opt.load_state_dict(self.optimizer_state)
        return opt


def save(path: str | os.PathLike, checkpoint: Checkpoint,
         later: Callable[[Callable[[], None]], object] | None = None) -> None:
    """Write `checkpoint` to `path`: to a temporary file beside it first, then put in place (by
    `later(job)` if given: see archive.write_atomically)."""
    record = {"epoch": checkpoint.epoch, "optimizer": checkpoint.optimizer,
              "optimizer_options": checkpoint.optimizer_options, "rng_state": checkpoint.rng_state,
              "args": checkpoint.args}
    parts = {}
    if checkpoint.best:
        best = checkpoint.best
        record["best"] = {"epoch": best.epoch, "metric": best.metric, "value": best.value}
        parts["best"] = best.model.state_dict()
    parts["optimizer"] = checkpoint.optimizer_state
    write(path, checkpoint.model, record, parts, later)


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save`; the model is rebuilt on a tape of its own. Anything
    else (an empty or truncated file, a directory, weights that are not finite) raises
    `CheckpointError` naming the file."""
    path = Path(path)
    meta, parts = read(path)
    if meta["optimizer"] not in OPTIMIZERS:
        raise wrong(path, "optimizer", f"one of {', '.join(OPTIMIZERS)}", meta["optimizer"])
    try:
        config = meta["model"]
        checkpoint = Checkpoint(
            model=MLP.from_saved(config, parts["model"]),
            epoch=meta["epoch"],
            optimizer=meta["optimizer"],
            optimizer_options=meta["optimizer_options"],
            optimizer_state=parts["optimizer"],
            rng_state=meta["rng_state"],
            args=meta["args"],
        )
        if "best" in meta:
            kept = meta["best"]
            checkpoint.best = Best(MLP.from_saved(config, parts["best"]), kept["epoch"], kept["metric"], float(kept["value"]))
        if checkpoint.optimizer_options or checkpoint.optimizer_state:  # a run's, not a model's alone
            checkpoint.make_optimizer()  # its options and state fit the model
        if checkpoint.rng_state is not None:
            np.random.default_rng().bit_generator.state = checkpoint.rng_state
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise unreadable(path, e) from None
    return checkpoint
