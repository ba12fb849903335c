"""Train an MLP on handwritten digits: `python -m mlp.train` (see --help).

Each epoch shuffles the training set, runs Algorithm 3 on every batch (the fused path: one
compiled call per batch on all cores; with --augment each image moved at random first, with
--dropout units dropped at random), clips the gradient (--clip), steps the optimizer at the
rate of the schedule, then measures the validation part (--val) and the test set, appends a
row to DIR/metrics.csv and writes the checkpoint DIR/model.npz (atomically). With --val the
model of the best validation epoch is kept beside the last, and --patience stops the run when
it has not improved for that many epochs. At the end it draws DIR/curves.png,
DIR/confusion.png and DIR/mistakes.png and prints the test accuracy of the model it keeps.

A new run never writes over another: DIR must be new or empty (without --out, the first free
one of runs/<dataset>, runs/<dataset>-2, ...). A loss or a weight that stops being a finite
number ends the run (exit code 1) and keeps the last good checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numba
import numpy as np

import tape

from . import _updates, checkpoint, cli, data, rundir
from .accumulate import FusedAccumulator, MatrixAccumulator, SparseRows
from .augment import LIMITS, Augment
from .history import History
from .init import INITIALISERS
from .losses import log_softmax
from .nn import ACTIVATIONS, MLP
from .optim import OPTIMIZERS
from .progress import ProgressBar, Stopwatch, say
from .schedule import SCHEDULES, Schedule

# metrics.csv's columns: the first seven as they always were, then those of later options
METRICS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "samples_per_s",
           "val_loss", "val_accuracy", "lr"]
# The arguments a resumed run must share with the run that wrote the checkpoint (not --threads:
# the fused path's sums, and matrix nodes' on one BLAS thread, are the same on any number of threads).
RUN_DEFINING = ["dataset", "limit", "hidden", "activation", "init", "bias", "optimizer", "lr", "momentum",
                "beta1", "beta2", "eps", "weight_decay", "batch_size", "seed", "dropout", "schedule", "warmup",
                "step_size", "gamma", "min_lr", "val", "monitor", "augment", "shift", "rotate", "elastic",
                "elastic_sigma", "clip"]
# Those it may change: how the numbers are computed, said on the resumed run's first line
COMPUTING = ["nodes", "dtype"]
RUNS = Path("runs")
INPUTS, CLASSES, TEST_ROWS = 28 * 28, 10, 10_000  # of every data set (mnist-5k has fewer test rows)
TAPE_LIMIT = 2**31 - 1  # nodes and edges a tape holds (int32 indices)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def factor(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return value


def at_most(limit: float, positive: bool = False) -> Callable[[str], float]:
    """A parser of numbers from 0 (excluded if `positive`) to `limit`."""
    def number(text: str) -> float:
        value = float(text)
        if not (0 < value if positive else 0 <= value) or not value <= limit:
            raise argparse.ArgumentTypeError(f"expected a number {'above' if positive else 'from'} 0 "
                                             f"{'and at most' if positive else 'to'} {limit:g}, got {text}")
        return value
    return number


def dataset_name(text: str) -> str:
    if text not in data.DATASETS:
        raise argparse.ArgumentTypeError(f"unknown data set {text!r}; known: {', '.join(data.DATASETS)}")
    return text


def parser(kind: type[argparse.ArgumentParser] = cli.ArgumentParser) -> argparse.ArgumentParser:
    p = kind(prog="python -m mlp.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=dataset_name, default="mnist-5k",
                   help=f"one of {', '.join(data.DATASETS)} (default: %(default)s)")
    p.add_argument("--data-dir", type=Path, help="a directory holding the data set's IDX files")
    p.add_argument("--limit", type=positive_int, help="train on the first N training samples only")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[128], help="hidden layer sizes (default: 128)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu", help="of the hidden layers (default: %(default)s)")
    p.add_argument("--init", choices=sorted(INITIALISERS),
                   help="weight initialiser (default: kaiming_uniform for relu, else xavier_uniform)")
    p.add_argument("--no-bias", dest="bias", action="store_false", help="layers without biases")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="(default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default: %(default)s)")
    p.add_argument("--momentum", type=fraction, default=0.9, help="beta of momentum, nesterov and rmsprop (default: %(default)s)")
    p.add_argument("--beta1", type=fraction, default=0.9, help="Adam's beta1 (default: %(default)s)")
    p.add_argument("--beta2", type=fraction, default=0.999, help="Adam's beta2 (default: %(default)s)")
    p.add_argument("--eps", type=positive_float, default=1e-8, help="rmsprop's and Adam's epsilon (default: %(default)s)")
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0, help="L2 weight decay (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="samples per step (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=10, help="(default: %(default)s)")
    regular = p.add_argument_group("regularisation and schedules")
    regular.add_argument("--dropout", type=fraction, nargs="+", default=[0.0], metavar="P",
                         help="drop each hidden unit of a training sample with probability P: one P for every hidden "
                              "layer, or one per hidden layer (default: 0)")
    regular.add_argument("--schedule", choices=SCHEDULES, default="constant",
                         help="the learning rate's schedule, step by step: constant, step (times --gamma every "
                              "--step-size epochs) or cosine (down to --min-lr at the last epoch) (default: %(default)s)")
    regular.add_argument("--warmup", type=non_negative_float, default=0.0, metavar="EPOCHS",
                         help="raise the rate linearly from 0 over the first EPOCHS epochs (default: 0)")
    regular.add_argument("--step-size", type=positive_int, default=10, metavar="EPOCHS", help="for --schedule step (default: %(default)s)")
    regular.add_argument("--gamma", type=factor, default=0.1, help="for --schedule step (default: %(default)s)")
    regular.add_argument("--min-lr", type=non_negative_float, default=0.0, help="for --schedule cosine (default: %(default)s)")
    regular.add_argument("--clip", type=positive_float, metavar="NORM",
                         help="scale each batch's gradient down to this L2 norm where it is longer")
    regular.add_argument("--val", type=fraction, default=0.0, metavar="FRACTION",
                         help="hold out this fraction of each class of the training set for validation; the model of "
                              "the best validation epoch is kept and reported (default: 0, none)")
    regular.add_argument("--monitor", choices=["val_loss", "val_accuracy"], default="val_loss",
                         help="what makes a validation epoch the best: the lowest loss or the highest accuracy; on a tie "
                            "the earlier epoch stays the best (default: %(default)s)")
    regular.add_argument("--patience", type=positive_int, metavar="N",
                         help="with --val, stop when the best validation epoch is N epochs old (early stopping)")
    regular.add_argument("--augment", action="store_true",
                         help="move each training image at random every time it is used: a shift, a rotation and an "
                              "elastic distortion (the four options below)")
    regular.add_argument("--shift", type=at_most(LIMITS["shift"]), default=2.0, metavar="PIXELS",
                         help="with --augment, up to this many pixels each way (default: %(default)s)")
    regular.add_argument("--rotate", type=at_most(LIMITS["rotate"]), default=10.0, metavar="DEGREES",
                         help="with --augment, up to this many degrees either way (default: %(default)s)")
    regular.add_argument("--elastic", type=at_most(LIMITS["alpha"]), default=8.0, metavar="ALPHA",
                         help="with --augment, the elastic distortion's strength, 0 for none (default: %(default)s)")
    regular.add_argument("--elastic-sigma", type=at_most(LIMITS["sigma"], positive=True), default=3.0, metavar="SIGMA",
                         help="with --augment, the elastic distortion's smoothness in pixels (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds the initial weights and the shuffling (default: %(default)s)")
    p.add_argument("--nodes", choices=["scalar", "matrix"], default="scalar",
                   help="scalar: the course's tape of scalar Vars (fused per sample, compiled); matrix: one matrix "
                        "node per layer operation, numpy's BLAS (default: %(default)s)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                   help="what matrix nodes compute in; weights, their gradients and checkpoints stay float64 "
                        "(default: %(default)s)")
    p.add_argument("--threads", type=positive_int, help="compiled threads (default: all cores); matrix nodes compute on "
                                                        "one BLAS thread: the results are the same on any number")
    p.add_argument("--out", type=Path, help="output directory, new or empty (default: runs/<dataset>, or the first free "
                                            "runs/<dataset>-2, -3, ... when it holds a run)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/model.npz")
    again.add_argument("--fresh", action="store_true", help="if OUT holds files, write into the first free OUT-2, OUT-3, ... instead")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG figures")
    return p


def check_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (through the parser) options that do not fit together."""
    if len(args.dropout) not in (1, len(args.hidden)):
        p.error(f"--dropout: expected one probability, or one for each of the {len(args.hidden)} hidden layers, "
                f"got {len(args.dropout)}")
    if args.patience is not None and not args.val:
        p.error("--patience needs a validation part to watch: give --val FRACTION too")
    if args.warmup > args.epochs:
        p.error(f"--warmup {args.warmup:g} is longer than the run (--epochs {args.epochs}): the rate would never reach --lr")
    if args.min_lr > args.lr:
        p.error(f"--min-lr {args.min_lr:g} is above --lr {args.lr:g}")
    if args.dtype != "float64" and args.nodes != "matrix":
        p.error(f"--dtype {args.dtype} needs --nodes matrix: scalar nodes are float64")


def check_size(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (through the parser) a model too big for the tape or for this machine's memory,
    before anything is allocated."""
    sizes = [INPUTS, *args.hidden, CLASSES]
    weights = sum(m * n + n * args.bias for m, n in zip(sizes, sizes[1:]))
    edges = sum(m * n * (1 + (i > 0)) + 4 * n for i, (m, n) in enumerate(zip(sizes, sizes[1:])))  # a sample's, at most
    threads = args.threads or os.cpu_count() or 1
    chunks = min(FusedAccumulator.MAX_CHUNKS, -(-args.batch_size // FusedAccumulator.CHUNK))
    hidden = " ".join(map(str, args.hidden))
    if max(weights, threads * edges) > TAPE_LIMIT:
        p.error(f"--hidden {hidden}: a {sizes} model needs {max(weights, threads * edges):,} tape nodes or edges; "
                f"a tape holds at most {TAPE_LIMIT:,}")
    # values, gradient, optimizer state, tape leaves and copies for the checkpoint; each chunk's
    # accumulator; each thread's stretch of tape (doubled as it grows); the test set's activations
    need = 72 * weights + 8 * chunks * weights + 24 * threads * edges + 24 * TEST_ROWS * max(sizes[1:])
    memory = _physical_memory()
    if memory and need > memory:
        p.error(f"--hidden {hidden} with --batch-size {args.batch_size}: a {sizes} model needs about "
                f"{need / 2**30:,.1f} GiB of memory; this machine has {memory / 2**30:,.1f} GiB")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def optimizer_options(args: argparse.Namespace) -> dict:
    """The chosen optimizer's hyper-parameters, by the names its class takes."""
    options = {"lr": args.lr, "weight_decay": args.weight_decay}
    if args.optimizer in ("momentum", "unbiased_momentum", "nesterov", "rmsprop"):
        options["beta"] = args.momentum
    if args.optimizer == "rmsprop":
        options["eps"] = args.eps
    if args.optimizer == "adam":
        options.update(beta1=args.beta1, beta2=args.beta2, eps=args.eps)
    return options


def run_record(args: argparse.Namespace) -> dict:
    """The arguments as saved in the checkpoint (JSON-friendly)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def evaluate(model: MLP, X: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and the predictions on (X, y); nothing is recorded."""
    return scores(model.logits(X), y)


def scores(logits: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and the predictions of `logits` for the labels y. Logits
    that overflow give a loss of nan, without numpy's warnings."""
    with np.errstate(over="ignore", invalid="ignore"):
        log_p = log_softmax(logits)
    predicted = log_p.argmax(axis=1)
    return float(-log_p[np.arange(len(y)), y].mean()), float((predicted == y).mean()), predicted


class Diverged(ArithmeticError):
    """The loss or the weights stopped being finite numbers; the message says where."""


class Run:
    """One training run: the data, the model, the optimizer, the shuffling RNG and the outputs."""

    def __init__(self, args: argparse.Namespace, out: Path, model: MLP | None = None,
                 dataset: data.Dataset | None = None) -> None:
        """The run `args` describe, writing into `out`; `model` and `dataset`, if given, in place of
        those args name (the model is trained in place)."""
        self.args, self.out = args, out
        self.checkpoint_path, self.metrics_path = out / "model.npz", out / "metrics.csv"
        if args.resume:
            saved = checkpoint.load(self.checkpoint_path)
            if saved.rng_state is None or not saved.optimizer_options:
                raise checkpoint.CheckpointError(f"{self.checkpoint_path} holds a model without its run (no optimizer "
                                                 f"or RNG state): it cannot be resumed")
            _check_resumable(saved.args, args, self.checkpoint_path)
            if changed := _computing_changes(saved.args, args):
                say(f"resuming {self.checkpoint_path} with {changed}: the same model and run, computed another way "
                    f"(its numbers differ from those of the run continued as it was)")
            self._keep_metrics_through(saved.epoch)
        self.data = dataset or data.load(args.dataset, data_dir=args.data_dir)
        x_train, y_train = self.data.x_train[: args.limit], self.data.y_train[: args.limit]
        try:
            kept, held = data.validation_split(y_train, args.val, args.seed)  # (all, none) without --val
        except ValueError as e:
            raise cli.UsageError(f"--val {args.val:g}: {e}") from None
        self.x_train, self.y_train = x_train[kept], y_train[kept]
        self.x_val, self.y_val = x_train[held], y_train[held]
        classes = len(self.data.classes)
        dropout = args.dropout * len(args.hidden) if len(args.dropout) == 1 else args.dropout
        if args.resume:
            self.model, self.optimizer, self.epoch = saved.model, saved.make_optimizer(), saved.epoch
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = saved.rng_state
            self.best = saved.best
        else:
            self.model = model or MLP([self.x_train.shape[1], *args.hidden, classes], activation=args.activation,
                                      bias=args.bias, init=args.init, seed=args.seed, dropout=dropout)
            if (self.model.sizes[0], self.model.sizes[-1]) != (self.x_train.shape[1], classes):
                raise cli.UsageError(f"the model takes {self.model.sizes[0]} inputs to {self.model.sizes[-1]} classes; "
                                     f"{self.data.name} has {self.x_train.shape[1]} to {classes}")
            self.optimizer = OPTIMIZERS[args.optimizer](self.model.parameters(), **optimizer_options(args))
            self.rng, self.epoch, self.best = np.random.default_rng(args.seed), 0, None
        self.saved = self.model.parameters().values.copy()  # the weights of the last epoch saved
        if args.nodes == "matrix":
            self.accumulator = MatrixAccumulator(self.model, dtype=args.dtype)
        else:
            self.accumulator = FusedAccumulator(self.model, args.threads)
        self.inputs, self.val_inputs, self.test_inputs = (SparseRows(x) for x in (self.x_train, self.x_val, self.data.x_test))
        self.augment = Augment(args.shift, args.rotate, args.elastic, args.elastic_sigma) if args.augment else None
        steps = -(-len(self.x_train) // args.batch_size)  # an epoch's
        self.schedule = Schedule(args.lr, args.schedule, steps * args.epochs, round(args.warmup * steps),
                                 steps * args.step_size, args.gamma, args.min_lr)

    def train_epoch(self, bar: ProgressBar) -> tuple[float, float, float]:
        """One epoch, timed by `self.clock`; returns (mean loss, accuracy, seconds less those in
        numba's compiler, see `Stopwatch`). Raises `Diverged` after a batch whose loss, or whose step's weights, are not finite."""
        n, size, clip = len(self.x_train), self.args.batch_size, self.args.clip
        order = self.rng.permutation(n)
        weights, gradient = self.model.parameters().values, self.model.parameters().grad
        total_loss, correct = 0.0, 0
        for batch, first in enumerate(range(0, n, size), 1):
            rows = order[first : first + size]
            inputs, labels = self.inputs, self.y_train
            if self.augment:  # the batch's images, moved: rows 0, 1, ... of their own
                inputs, labels = SparseRows(self.augment(self.x_train, rows, self.rng.integers(2**63))), labels[rows]
                rows = np.arange(len(rows))
            keep = self.model.dropout_scales(self.rng, len(rows)) if self.model.dropout_units else None
            self.optimizer.lr = self.schedule(self.optimizer.steps)
            self.optimizer.zero_grad()
            result = self.accumulator.accumulate(inputs, rows, labels, 1.0 / len(rows), keep)
            if clip:
                _updates.clip_norm(gradient, clip)
            self.optimizer.step()
            if not (math.isfinite(result.loss) and math.isfinite(weights.sum())):
                what = f"the loss became {result.loss}" if not math.isfinite(result.loss) else "the weights stopped being finite numbers"
                raise Diverged(f"training diverged in epoch {self.epoch + 1}, batch {batch} of {-(-n // size)}: {what}")
            total_loss += result.loss * len(rows)
            correct += result.correct
            done = first + len(rows)
            if bar.due(done):
                bar.update(done, f"loss {_short(total_loss / done)}  accuracy {100 * (correct / done):.1f}%  "
                                 f"{done / self.clock.seconds():,.0f} samples/s")
        return total_loss / n, correct / n, self.clock.seconds()

    def measure(self, inputs: SparseRows, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """Mean cross-entropy, accuracy and predictions of the model on `inputs`, by the
        compiled forward pass (no dropout)."""
        return scores(self.accumulator.logits(inputs), y)

    def save(self, epoch: int) -> None:
        checkpoint.save(self.checkpoint_path, checkpoint.Checkpoint(
            model=self.model, epoch=epoch, optimizer=self.args.optimizer,
            optimizer_options=optimizer_options(self.args), optimizer_state=self.optimizer.state_dict(),
            rng_state=self.rng.bit_generator.state, args=run_record(self.args), best=self.best,
        ))
        self.saved[:] = self.model.parameters().values

    def restore(self) -> None:
        """Put back the weights of the last epoch saved (the initial ones before the first): an
        epoch cut short leaves none of its steps in the model."""
        self.model.parameters().values[:] = self.saved

    def improved(self, epoch: int, val_loss: float, val_accuracy: float) -> bool:
        """Keep the model as the best if this validation epoch beats the best so far (strictly:
        on a tie the earlier epoch stays the best)."""
        metric = self.args.monitor
        value = val_loss if metric == "val_loss" else val_accuracy
        if self.best and not (value < self.best.value if metric == "val_loss" else value > self.best.value):
            return False
        if self.best is None:
            self.best = checkpoint.Best(MLP(self.model.sizes, self.model.activation, self.model.bias, self.model.init_name,
                                            dropout=self.model.dropout), epoch, metric, value)
        self.best.model.parameters().values[:] = self.model.parameters().values
        self.best.epoch, self.best.value = epoch, value
        return True

    def patience_ran_out(self) -> bool:
        patience = self.args.patience
        return bool(patience and self.best and self.epoch - self.best.epoch >= patience)

    def fit(self, callbacks: Sequence[Callable[[dict], object]] = ()) -> list[dict]:
        """Train up to args.epochs (or until --patience runs out, or a callback returns True),
        writing metrics and checkpoints; returns metrics.csv's rows. An epoch's row is written
        before its checkpoint (a resumed run drops rows past its checkpoint), and metrics.csv is
        made with the first row. Each callback is called with each epoch's row, as a dict."""
        stop = False
        while self.epoch < self.args.epochs and not self.patience_ran_out() and not stop:
            bar = ProgressBar(f"epoch {self.epoch + 1}/{self.args.epochs}", len(self.x_train))
            try:
                with Stopwatch() as self.clock:
                    train_loss, train_accuracy, seconds = self.train_epoch(bar)
            except BaseException:
                bar.finish()  # end a drawn line before the message
                raise
            lr = self.optimizer.lr
            epoch = self.epoch + 1
            val_loss = val_accuracy = ""
            if len(self.x_val):
                val_loss, val_accuracy, _ = self.measure(self.val_inputs, self.y_val)
                if not math.isfinite(val_loss):
                    raise Diverged(f"training diverged in epoch {epoch}: the validation loss became {val_loss}")
            test_loss, test_accuracy, _ = self.measure(self.test_inputs, self.data.y_test)
            if not math.isfinite(test_loss):
                raise Diverged(f"training diverged in epoch {epoch}: the test loss became {test_loss}")
            best = len(self.x_val) and self.improved(epoch, val_loss, val_accuracy)
            row = [epoch, train_loss, train_accuracy, test_loss, test_accuracy, seconds, len(self.x_train) / seconds,
                   val_loss, val_accuracy, lr]
            new = not self.metrics_path.exists()
            with open(self.metrics_path, "a", newline="") as f:
                if new:
                    csv.writer(f).writerow(METRICS)
                csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
            self.save(epoch)
            self.epoch = epoch
            val = f", val {100 * val_accuracy:.1f}%{' (best)' if best else ''}" if len(self.x_val) else ""
            bar.finish(f"loss {_short(train_loss)}  accuracy {100 * train_accuracy:.1f}%{val}, test {100 * test_accuracy:.1f}%  "
                       f"{len(self.x_train) / seconds:,.0f} samples/s")
            if self.clock.compiling() >= 1:
                say(f"(epoch {epoch} also spent {self.clock.compiling():.1f} s compiling numba's kernels, now cached; not in "
                    f"its time)")
            numbers = {k: None if v == "" else v for k, v in zip(METRICS, row)}  # as a History's rows
            stop = any([bool(callback(numbers)) for callback in callbacks])
        if self.patience_ran_out() and self.epoch < self.args.epochs:
            say(f"stopped early after epoch {self.epoch}: {self.args.monitor} has not improved for "
                f"{self.args.patience} epochs")
        return self._metrics()

    @property
    def kept(self) -> MLP:
        """The model the run reports: the best validation epoch's with --val, else the last."""
        return self.best.model if self.best else self.model

    def _metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    def _keep_metrics_through(self, epoch: int) -> None:
        """Check metrics.csv against a checkpoint of `epoch`: one whole row for each of epochs 1 to
        `epoch`, the rows after it (of a run stopped between its two writes) dropped by rewriting
        the file; anything else is refused, naming the file, before any training."""
        path = self.metrics_path
        if not path.is_file() and epoch:
            raise cli.UsageError(f"cannot resume: {path} is missing, and {self.checkpoint_path} is of epoch {epoch}; "
                                 f"the run's metrics are gone (start a new run, or put the file back)")
        if not path.is_file():
            return
        text = path.read_text(errors="replace")
        table = list(csv.reader(io.StringIO(text, newline="")))
        header = table[0] if table else []

        def damaged(why: str) -> cli.UsageError:
            return cli.UsageError(f"cannot resume: {path} is damaged ({why}); {self.checkpoint_path} is of epoch {epoch}")

        if not 7 <= len(header) <= len(METRICS) or header != METRICS[: len(header)]:
            raise damaged("its first line is not metrics.csv's header")
        rows = table[1 : epoch + 1]
        if len(rows) < epoch:
            raise damaged(f"it holds the rows of {len(rows)} epochs")
        for number, row in enumerate(rows, 1):
            if len(row) != len(header) or row[0] != str(number) or not all(map(_is_number, row[1:7])):
                raise damaged(f"the row of epoch {number} is not whole: {','.join(row)[:60]!r}")
        if len(table) == epoch + 1 and not text.endswith("\n"):
            raise damaged(f"the row of epoch {epoch} was cut short")
        if len(table) > epoch + 1 or header != METRICS:
            kept = io.StringIO(newline="")
            csv.writer(kept).writerows([METRICS, *(row + [""] * (len(METRICS) - len(row)) for row in rows)])
            checkpoint.write_atomically(path, lambda f: f.write(kept.getvalue().encode()))

    def report(self, rows: list[dict]) -> float:
        """The test accuracy of the model the run keeps (the best validation epoch's, said so)."""
        if self.best:
            row = next(r for r in rows if int(r["epoch"]) == self.best.epoch)
            say(f"kept the model of epoch {self.best.epoch}, the best {self.best.metric} "
                f"({self.best.value:.4g}) of {len(rows)} epoch{'s' * (len(rows) != 1)}")
            return float(row["test_accuracy"])
        return float(rows[-1]["test_accuracy"]) if rows else float("nan")

    def draw(self, rows: list[dict]) -> None:
        from . import plots

        _, _, predicted = evaluate(self.kept, self.data.x_test, self.data.y_test)
        classes = self.data.classes
        plots.curves(rows, self.best.epoch if self.best else None).save(self.out / "curves.png")
        plots.confusion(plots.confusion_matrix(self.data.y_test, predicted, len(classes)), classes).save(self.out / "confusion.png")
        plots.mistakes(self.data.x_test, self.data.y_test, predicted, classes).save(self.out / "mistakes.png")


def _check_resumable(saved: dict, args: argparse.Namespace, path: Path) -> None:
    given, defaults = run_record(args), run_record(parser().parse_args([]))  # an older run's missing options were the defaults
    defining = RUN_DEFINING + ["epochs"] * (args.schedule == "cosine")  # the cosine's length
    saved = {k: saved.get(k, defaults[k]) for k in defining}
    differing = [k for k in defining if saved[k] != given[k]]
    if differing:
        details = ", ".join(f"--{k.replace('_', '-')} was {saved[k]!r}, now {given[k]!r}" for k in differing)
        raise cli.UsageError(f"cannot resume from {path}: the run differs ({details}); give the same arguments, or a new --out")


def _computing_changes(saved: dict, args: argparse.Namespace) -> str:
    """How the options that choose how a run computes (not what) differ from the checkpoint's, in words."""
    given, defaults = run_record(args), run_record(parser().parse_args([]))
    return ", ".join(f"--{k} {given[k]} (it ran with --{k} {saved.get(k, defaults[k])})"
                     for k in COMPUTING if saved.get(k, defaults[k]) != given[k])


class RunError(RuntimeError):
    """A run that could not go on (a full disk, ...); the message says what is saved."""


@contextlib.contextmanager
def thread_plan(args: argparse.Namespace):
    """Who has the cores during the run: numba's compiled kernels (the scalar nodes' and the
    optimizers'), --threads of them; numpy's BLAS one thread, with matrix nodes too: OpenBLAS's
    threaded products sum in an order that depends on the number of threads (the weights would
    differ in their last bits), and on this project's small products a second BLAS thread gains
    nothing (benchmarks/RESULTS.md, "One BLAS thread"). So the numbers are the same on any --threads."""
    from threadpoolctl import threadpool_limits

    compiled = numba.get_num_threads()
    if args.threads:
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(compiled)


def run_training(args: argparse.Namespace, model: MLP | None = None, dataset: data.Dataset | None = None,
                 callbacks: Sequence[Callable[[dict], object]] = ()) -> History:
    """One run as `python -m mlp.train` makes it, for the program and for `mlp.fit` alike: claim
    its directory, train, write metrics.csv, checkpoints and figures. Ctrl-C ends it with the
    weights of the last epoch saved in the model, and says so; the history says it was interrupted."""
    wanted = args.out or RUNS / args.dataset
    if args.resume:
        claim, note = rundir.claim_existing(wanted), ""
    else:
        claim, note = rundir.claim_new(wanted, explicit=args.out is not None, fresh=args.fresh)
    if note:
        say(note)
    run = None
    try:
        with tape.Tape() if model is None else contextlib.nullcontext(), thread_plan(args):
            run = Run(args, claim.directory, model, dataset)
            say(f"training a {'-'.join(map(str, run.model.sizes))} {run.model.activation} MLP with {args.optimizer} on "
                f"{len(run.x_train):,} {run.data.name} samples ({len(run.data.x_test):,} test)\nwriting {claim.directory}")
            rows = run.fit(callbacks)
            accuracy = run.report(rows)
            if args.plots:
                run.draw(rows)
            return History.from_csv(rows, out=claim.directory, model=run.kept, dataset=run.data, test_accuracy=accuracy,
                                    best_epoch=run.best.epoch if run.best else None)
    except KeyboardInterrupt:
        if run:
            run.restore()
        again = f"; continue with --resume --out {claim.directory}" if run and run.epoch else ""
        print(f"interrupted during epoch {run.epoch + 1 if run else 1}: {_saved(run)}{again}", file=sys.stderr)
        return History.from_csv(run._metrics() if run else [], out=claim.directory, model=run.model if run else model,
                                dataset=run.data if run else None, interrupted=True)
    except Diverged as e:
        raise Diverged(f"{e}; {_saved(run)}") from None
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise RunError(f"{e}; {_saved(run)}") from e
    finally:
        claim.release()


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    check_options(p, args)
    check_size(p, args)
    try:
        history = run_training(args)
    except (cli.UsageError, checkpoint.CheckpointError, data.DatasetNotFoundError, data.DataFormatError,
            FileNotFoundError) as e:
        return cli.refuse(e)
    except Diverged as e:
        print(f"error: {e}. A smaller --lr (it is {args.lr:g}) may help", file=sys.stderr)
        return 1
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if history.interrupted:
        return 130
    print(f"test accuracy: {100 * history.test_accuracy:.2f}%")
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(loss: float) -> str:
    return f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.4g}"


def _saved(run: Run | None) -> str:
    if run and run.epoch:
        return f"epoch {run.epoch} is saved in {run.checkpoint_path}"
    return "no epoch was completed and nothing was saved"


if __name__ == "__main__":
    sys.exit(main())
