"""A training run's recipe: every option, typed, with its default, its help and its check in one place.

`Recipe(epochs=5, lr=0.1, val=0.1)` checks each value as it is made and refuses a bad one with a
`RecipeError` naming the option (as its flag), what it needs and what came. `python -m mlp.train`
makes its flags from these fields (`--help` is their help), `mlp.fit` takes them as keywords,
`mlp.sweep` reads them from its TOML spec and a checkpoint stores `record()`; the README's option
table is `markdown_table()`.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

from tape import Traced

from .augment import LIMITS
from .data import DATASETS
from .init import INITIALISERS
from .nn import ACTIVATIONS
from .optim import OPTIMIZERS
from .schedule import SCHEDULES

INPUTS, CLASSES, TEST_ROWS = 28 * 28, 10, 10_000  # of every data set (mnist-5k has fewer test rows)
TAPE_LIMIT = 2**31 - 1  # nodes and edges a tape holds (int32 indices)
MODEL_OPTIONS = ("hidden", "activation", "init", "bias", "dropout")  # what a given model already says
REGULARISATION = "regularisation and schedules"  # the --help group of the second semester's options


class UsageError(ValueError):
    """A mistake of the user's that the program refuses; the message says what and where. A
    ValueError, as the library (mlp.fit) raises it; the programs turn it into a usage message."""


class RecipeError(UsageError):
    """An option's value, or options together, that a run cannot take; the message names the option."""


class Kind:
    """What an option takes: numbers of `type` within a range, said in `words` ("a positive integer");
    `name` is how a flag's parser calls it ("invalid positive_int value")."""

    def __init__(self, name: str, type: type, words: str, fits: Callable[[float], bool]) -> None:
        self.name, self.type, self.words, self.fits = name, type, words, fits

    def read(self, text: str):
        """A flag's text as a value (ValueError if it is not one), not yet checked."""
        return self.type(text)

    def check(self, value, given: str | None = None):
        """The value as the recipe keeps it, or a ValueError saying what it needs and what came
        (`given`: as the user wrote it, else its repr)."""
        kind = numbers.Real if self.type is float else numbers.Integral
        if not isinstance(value, kind) or isinstance(value, bool) or not self.fits(value):
            raise ValueError(f"expected {self.words}, got {given or repr(value)}")
        return self.type(value)


positive_int = Kind("positive_int", int, "a positive integer", lambda v: v >= 1)
non_negative_int = Kind("non_negative_int", int, "an integer >= 0", lambda v: v >= 0)
positive_float = Kind("positive_float", float, "a positive finite number", lambda v: 0 < v < math.inf)
non_negative_float = Kind("non_negative_float", float, "a finite number >= 0", lambda v: 0 <= v < math.inf)
fraction = Kind("fraction", float, "a number in [0, 1)", lambda v: 0 <= v < 1)
factor = Kind("factor", float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def at_most(limit: float, positive: bool = False) -> Kind:
    """Numbers from 0 (excluded if `positive`) to `limit`."""
    words = f"a number {'above 0 and at most' if positive else 'from 0 to'} {limit:g}"
    return Kind("number", float, words, lambda v: (0 < v if positive else 0 <= v) and v <= limit)


class Choice:
    """One of `choices` (a flag's parser lists them; a Python value is refused in its words)."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices

    def check(self, value, given: str | None = None):
        if value not in self.choices:
            raise ValueError(f"invalid choice: {value!r} (choose from {', '.join(map(repr, self.choices))})")
        return value


class DatasetName(Choice):
    """A data set's name, refused with the names known."""

    name = "dataset_name"

    def read(self, text: str) -> str:
        return text

    def check(self, value, given: str | None = None):
        if value not in self.choices:
            raise ValueError(f"unknown data set {value!r}; known: {', '.join(self.choices)}")
        return value


dataset_name = DatasetName(*DATASETS)


class Switch:
    """True or False: a flag without a value (`--augment`), or `--no-...` where it is on by default."""

    def check(self, value, given: str | None = None):
        if not isinstance(value, bool):
            raise ValueError(f"expected True or False, got {value!r}")
        return value


class Directory:
    """A path (str or os.PathLike), or None."""

    name = "Path"

    def read(self, text: str) -> Path:
        return Path(text)

    def check(self, value, given: str | None = None):
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"expected a path (a str or a pathlib.Path), got {value!r}")
        return Path(value)


class Several:
    """Values of `kind` (flags: `--hidden 32 16`), kept as a tuple; one value alone is one. (A
    recipe may have none: a model without hidden layers; the flags take one or more.)"""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind

    def check(self, value, given: str | None = None):
        values = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
        return tuple(self.kind.check(v) for v in values)


def option(default, kind, help: str, *, metavar: str | None = None, group: str | None = None):
    """A field of the recipe: its default, what it takes (`kind`), its --help line and placement."""
    return field(default=default, metadata={"kind": kind, "help": help, "metavar": metavar, "group": group})


@dataclass(frozen=True)
class Recipe:
    """Every option of a training run (flag --batch-size is field batch_size), each checked when made."""

    dataset: str = option("mnist-5k", dataset_name, f"one of {', '.join(DATASETS)} (default: %(default)s)")
    data_dir: Path | None = option(None, Directory(), "a directory holding the data set's IDX files")
    limit: int | None = option(None, positive_int, "train on the first N training samples only")
    hidden: tuple[int, ...] = option((128,), Several(positive_int), "hidden layer sizes (default: 128)")
    activation: str = option("relu", Choice(*sorted(ACTIVATIONS)), "of the hidden layers (default: %(default)s)")
    init: str | None = option(None, Choice(*sorted(INITIALISERS)),
                              "weight initialiser (default: kaiming_uniform for relu, else xavier_uniform)")
    bias: bool = option(True, Switch(), "layers without biases")
    optimizer: str = option("adam", Choice(*sorted(OPTIMIZERS)), "(default: %(default)s)")
    lr: float = option(1e-3, positive_float, "learning rate (default: %(default)s)")
    momentum: float = option(0.9, fraction, "beta of momentum, nesterov and rmsprop (default: %(default)s)")
    beta1: float = option(0.9, fraction, "Adam's beta1 (default: %(default)s)")
    beta2: float = option(0.999, fraction, "Adam's beta2 (default: %(default)s)")
    eps: float = option(1e-8, positive_float, "rmsprop's and Adam's epsilon (default: %(default)s)")
    weight_decay: float = option(0.0, non_negative_float, "L2 weight decay (default: %(default)s)")
    batch_size: int = option(32, positive_int, "samples per step (default: %(default)s)")
    epochs: int = option(10, positive_int, "(default: %(default)s)")
    dropout: tuple[float, ...] = option(
        (0.0,), Several(fraction), "drop each hidden unit of a training sample with probability P: one P for every "
        "hidden layer, or one per hidden layer (default: 0)", metavar="P", group=REGULARISATION)
    schedule: str = option(
        "constant", Choice(*SCHEDULES), "the learning rate's schedule, step by step: constant, step (times --gamma "
        "every --step-size epochs) or cosine (down to --min-lr at the last epoch) (default: %(default)s)",
        group=REGULARISATION)
    warmup: float = option(0.0, non_negative_float, "raise the rate linearly from 0 over the first EPOCHS epochs "
                           "(default: 0)", metavar="EPOCHS", group=REGULARISATION)
    step_size: int = option(10, positive_int, "for --schedule step (default: %(default)s)", metavar="EPOCHS",
                            group=REGULARISATION)
    gamma: float = option(0.1, factor, "for --schedule step (default: %(default)s)", group=REGULARISATION)
    min_lr: float = option(0.0, non_negative_float, "for --schedule cosine (default: %(default)s)", group=REGULARISATION)
    clip: float | None = option(None, positive_float, "scale each batch's gradient down to this L2 norm where it is "
                                "longer", metavar="NORM", group=REGULARISATION)
    val: float = option(0.0, fraction, "hold out this fraction of each class of the training set for validation; the "
                        "model of the best validation epoch is kept and reported (default: 0, none)",
                        metavar="FRACTION", group=REGULARISATION)
    monitor: str = option("val_loss", Choice("val_loss", "val_accuracy"), "what makes a validation epoch the best: "
                          "the lowest loss or the highest accuracy; on a tie the earlier epoch stays the best "
                          "(default: %(default)s)", group=REGULARISATION)
    patience: int | None = option(None, positive_int, "with --val, stop when the best validation epoch is N epochs "
                                  "old (early stopping)", metavar="N", group=REGULARISATION)
    augment: bool = option(False, Switch(), "move each training image at random every time it is used: a shift, a "
                           "rotation and an elastic distortion (the four options below)", group=REGULARISATION)
    shift: float = option(2.0, at_most(LIMITS["shift"]), "with --augment, up to this many pixels each way (default: "
                          "%(default)s)", metavar="PIXELS", group=REGULARISATION)
    rotate: float = option(10.0, at_most(LIMITS["rotate"]), "with --augment, up to this many degrees either way "
                           "(default: %(default)s)", metavar="DEGREES", group=REGULARISATION)
    elastic: float = option(8.0, at_most(LIMITS["alpha"]), "with --augment, the elastic distortion's strength, 0 for "
                            "none (default: %(default)s)", metavar="ALPHA", group=REGULARISATION)
    elastic_sigma: float = option(3.0, at_most(LIMITS["sigma"], positive=True), "with --augment, the elastic "
                                  "distortion's smoothness in pixels (default: %(default)s)", metavar="SIGMA",
                                  group=REGULARISATION)
    seed: int = option(0, non_negative_int, "seeds the initial weights and the shuffling (default: %(default)s)")
    nodes: str = option("matrix", Choice("scalar", "matrix"), "matrix: one matrix node per layer operation, numpy's "
                        "BLAS; scalar: the course's scalar Vars, a sample's loss traced once and replayed compiled "
                        "(default: %(default)s)")
    dtype: str = option("float64", Choice("float64", "float32"), "what matrix nodes compute in; weights, their "
                        "gradients and checkpoints stay float64 (default: %(default)s)")
    trace: bool = option(True, Switch(), "with --nodes matrix, record every batch's step anew instead of running "
                         "its trace (to compare: the same numbers to rounding)")
    threads: int | None = option(None, positive_int, "the cores a run computes on (default: all): the augmented "
                                 "images, scalar nodes' compiled replays, matrix nodes' BLAS products; scalar runs give "
                                 "the same numbers on any number, matrix runs on the same number (to rounding on another)")
    out: Path | None = option(None, Directory(), "output directory, new or empty (default: runs/<dataset>, or the "
                              "first free runs/<dataset>-2, -3, ... when it holds a run)")
    resume: bool = option(False, Switch(), "continue the run in OUT from OUT/model.npz")
    fresh: bool = option(False, Switch(), "if OUT holds files, write into the first free OUT-2, OUT-3, ... instead")
    plots: bool = option(True, Switch(), "skip the PNG figures")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            kind = f.metadata["kind"]
            try:
                object.__setattr__(self, f.name, kind.check(value))
            except ValueError as e:  # a switch's value comes from Python or TOML alone: named by its keyword
                raise RecipeError(f"{f.name if isinstance(kind, Switch) else 'argument ' + flag(f.name)}: {e}") from None
        self._check_together()
        self._check_size()

    def _check_together(self) -> None:
        """Refuse options that do not fit together."""
        if len(self.dropout) not in (1, len(self.hidden)):
            raise RecipeError(f"--dropout: expected one probability, or one for each of the {len(self.hidden)} hidden "
                              f"layers, got {len(self.dropout)}")
        if self.patience is not None and not self.val:
            raise RecipeError("--patience needs a validation part to watch: give --val FRACTION too")
        if self.warmup > self.epochs:
            raise RecipeError(f"--warmup {self.warmup:g} is longer than the run (--epochs {self.epochs}): the rate "
                              f"would never reach --lr")
        if self.min_lr > self.lr:
            raise RecipeError(f"--min-lr {self.min_lr:g} is above --lr {self.lr:g}")
        if self.dtype != "float64" and self.nodes != "matrix":
            raise RecipeError(f"--dtype {self.dtype} needs --nodes matrix: scalar nodes are float64")
        if self.resume and self.fresh:
            raise RecipeError("argument --fresh: not allowed with argument --resume")

    def _check_size(self) -> None:
        """Refuse a model too big for the tape (scalar nodes: a sample's trace) or for this machine's
        memory, before anything is allocated."""
        sizes = [INPUTS, *self.hidden, CLASSES]
        weights = sum(m * n + n * self.bias for m, n in zip(sizes, sizes[1:]))
        hidden = " ".join(map(str, self.hidden))
        # values, gradient, optimizer state, weights in dtype and copies for the checkpoint; the test set's activations
        need = 72 * weights + 24 * TEST_ROWS * max(sizes[1:])
        if self.nodes == "scalar":  # a sample's trace: its inputs and weights, a product a weight, a node or so a unit
            nodes = INPUTS + weights + sum(4 * n for n in sizes[1:])
            edges = sum(2 * m * n + 4 * n for m, n in zip(sizes, sizes[1:]))
            if max(nodes, edges) > TAPE_LIMIT:
                raise RecipeError(f"--hidden {hidden}: a {sizes} model's trace needs {max(nodes, edges):,} tape nodes "
                                  f"or edges; a tape holds at most {TAPE_LIMIT:,}")
            threads = self.threads or os.cpu_count() or 1
            # each chunk's gradient; the program and each thread's replay of it (values, adjoints, edges)
            need += 8 * -(-self.batch_size // Traced.BATCH_CHUNK) * weights + (threads + 1) * (24 * nodes + 16 * edges)
        memory = _physical_memory()
        if memory and need > memory:
            raise RecipeError(f"--hidden {hidden} with --batch-size {self.batch_size}: a {sizes} model needs about "
                              f"{need / 2**30:,.1f} GiB of memory; this machine has {memory / 2**30:,.1f} GiB")

    def replace(self, **changes) -> Recipe:
        """This recipe with some options changed, checked again."""
        return replace(self, **changes)

    def record(self) -> dict:
        """The options as a checkpoint stores them (JSON: lists for tuples, text for paths)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def optimizer_options(self) -> dict:
        """The chosen optimizer's hyper-parameters, by the names its class takes."""
        options = {"lr": self.lr, "weight_decay": self.weight_decay}
        if self.optimizer in ("momentum", "unbiased_momentum", "nesterov", "rmsprop"):
            options["beta"] = self.momentum
        if self.optimizer == "rmsprop":
            options["eps"] = self.eps
        if self.optimizer == "adam":
            options.update(beta1=self.beta1, beta2=self.beta2, eps=self.eps)
        return options


def flag(name: str) -> str:
    """The command line's flag of option `name`: --batch-size for batch_size, --no-bias for a switch
    on by default."""
    known = Recipe.__dataclass_fields__[name]
    off = isinstance(known.metadata["kind"], Switch) and known.default
    return f"--{'no-' * off}{name.replace('_', '-')}"


def options() -> list:
    """The recipe's fields (dataclasses.Field: name, default, metadata kind, help, metavar, group), in order."""
    return list(fields(Recipe))


def markdown_table() -> str:
    """The README's table of the options: flag, keyword of mlp.fit, default and help, from the fields."""
    lines = ["| flag | `mlp.fit` keyword | default | what |", "|---|---|---|---|"]
    for f in options():
        default = "" if f.default is None else " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        what = f.metadata["help"].replace("(default: %(default)s)", "").strip().replace("|", "\\|")
        lines.append(f"| `{flag(f.name)}` | `{f.name}` | {default} | {what} |")
    return "\n".join(lines)


def _plain(value):
    return list(value) if isinstance(value, tuple) else str(value) if isinstance(value, Path) else value


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None

