"""The training loop: `run_training(recipe, model, data, callbacks)` trains a model as a `Recipe` says.

Each epoch shuffles the training set, runs Algorithm 3 on every batch (matrix nodes: the batch's
traced step, one node per layer operation; scalar nodes: the per-sample trace replayed on all
cores; with augment each image moved at random first, with dropout units dropped at random), clips the gradient (clip), steps the optimizer at the rate of
the schedule, then measures the validation part (val) and the test set, appends a row to
DIR/metrics.csv and writes the checkpoint DIR/model.npz (atomically). With val the model of
the best validation epoch is kept beside the last, and patience stops the run when it has not
improved for that many epochs. A loss or a weight that stops being a finite number ends the run
(`Diverged`) and keeps the last good checkpoint. How progress is shown, and how to resume, the
caller gives: this module imports no progress bar, no figures and no program (only `say`, a run's narration,
and `Stopwatch`, an epoch's clock, from mlp.progress).
"""
from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numba
import numpy as np

from . import checkpoint, data, rundir
from .accumulate import AccumulatorStep, MatrixAccumulator, MatrixStep, InputRows, TracedAccumulator
from .augment import Augment
from .history import History
from .losses import log_softmax
from .nn import MLP
from .optim import OPTIMIZERS
from .progress import Stopwatch, say
from .recipe import Recipe, UsageError
from .schedule import Schedule

# metrics.csv's columns: the first seven as they always were, then those of later options
METRICS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "samples_per_s",
           "val_loss", "val_accuracy", "lr"]
# The options a resumed run must share with the run that wrote the checkpoint (not threads: the
# traced scalar path's sums are the same on any number; matrix nodes' products, to rounding).
RUN_DEFINING = ["dataset", "limit", "hidden", "activation", "init", "bias", "optimizer", "lr", "momentum",
                "beta1", "beta2", "eps", "weight_decay", "batch_size", "seed", "dropout", "schedule", "warmup",
                "step_size", "gamma", "min_lr", "val", "monitor", "augment", "shift", "rotate", "elastic",
                "elastic_sigma", "clip"]
# Those it may change: how the numbers are computed, said on the resumed run's first line
COMPUTING = ["nodes", "dtype", "trace"]
RUNS = Path("runs")


class Progress(Protocol):
    """What shows an epoch's progress (mlp.progress.ProgressBar is one): made with a label and the
    number of samples, told how many are done, and finished with the epoch's line."""

    shown: bool

    def due(self, done: int) -> bool: ...

    def update(self, done: int, text: str = "") -> None: ...

    def finish(self, text: str = "") -> None: ...


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

    def __init__(self, recipe: Recipe, out: Path, model: MLP | None = None, dataset: data.Dataset | None = None,
                 progress: Callable[[str, int], Progress] | None = None) -> None:
        """The run `recipe` describes, writing into `out`; `model` and `dataset`, if given, in place of
        those it names (the model is trained in place; resumed, it takes the checkpoint's weights).
        `progress(label, samples)` makes what shows an epoch's progress (nothing is shown if None)."""
        self.recipe, self.out, self.progress = recipe, out, progress or _Unseen
        self.record = {**recipe.record(), "dataset": dataset.name if dataset else recipe.dataset}  # as checkpoints keep it
        self.checkpoint_path, self.metrics_path = out / "model.npz", out / "metrics.csv"
        if recipe.resume:
            saved = checkpoint.load(self.checkpoint_path)  # its models on tapes of their own, as every model's
            if saved.rng_state is None or not saved.optimizer_options:
                raise checkpoint.CheckpointError(f"{self.checkpoint_path} holds a model without its run (no optimizer "
                                                 f"or RNG state): it cannot be resumed")
            _check_resumable(saved.args, self.record, self.checkpoint_path)
            if changed := _computing_changes(saved.args, self.record):
                say(f"resuming {self.checkpoint_path} with {changed}: the same model and run, computed another way "
                    f"(its numbers differ from those of the run continued as it was)")
            self._keep_metrics_through(saved.epoch)
        self.data = dataset or data.load(recipe.dataset, data_dir=recipe.data_dir)
        x_train, y_train = self.data.x_train[: recipe.limit], self.data.y_train[: recipe.limit]
        try:
            kept, held = data.validation_split(y_train, recipe.val, recipe.seed)  # (all, none) without --val
        except ValueError as e:
            raise UsageError(f"--val {recipe.val:g}: {e}") from None
        self.x_train, self.y_train = x_train[kept], y_train[kept]
        self.x_val, self.y_val = x_train[held], y_train[held]
        classes = len(self.data.classes)
        dropout = recipe.dropout * len(recipe.hidden) if len(recipe.dropout) == 1 else recipe.dropout
        if recipe.resume:
            if model is not None:
                model.load_state_dict(saved.model.state_dict())
            self.model = model or saved.model
            self.optimizer, self.epoch = saved.make_optimizer(self.model), saved.epoch
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = saved.rng_state
            self.best = saved.best
        else:
            self.model = model or MLP([self.x_train.shape[1], *recipe.hidden, classes], activation=recipe.activation,
                                      bias=recipe.bias, init=recipe.init, seed=recipe.seed, dropout=dropout)
            if (self.model.sizes[0], self.model.sizes[-1]) != (self.x_train.shape[1], classes):
                raise UsageError(f"the model takes {self.model.sizes[0]} inputs to {self.model.sizes[-1]} classes; "
                                 f"{self.data.name} has {self.x_train.shape[1]} to {classes}")
            self.optimizer = OPTIMIZERS[recipe.optimizer](self.model.parameters(), **recipe.optimizer_options())
            self.rng, self.epoch, self.best = np.random.default_rng(recipe.seed), 0, None
        self.saved = self.model.parameters().values.copy()  # the weights of the last epoch saved
        self.saved_epoch = self.epoch  # ... and its number
        self.pending = None  # (the checkpoint being put in place, its epoch, its weights), see `save`
        if recipe.nodes == "matrix" and recipe.trace:
            self.step = MatrixStep(self.model, self.optimizer, recipe.dtype, recipe.clip)
        else:
            accumulator = MatrixAccumulator(self.model, dtype=recipe.dtype) if recipe.nodes == "matrix" else \
                TracedAccumulator(self.model)
            self.step = AccumulatorStep(accumulator, self.optimizer, recipe.clip)
        self.inputs, self.val_inputs, self.test_inputs = (InputRows(x) for x in (self.x_train, self.x_val, self.data.x_test))
        self.augment = Augment(recipe.shift, recipe.rotate, recipe.elastic, recipe.elastic_sigma) if recipe.augment else None
        self.ahead = recipe.augment and recipe.nodes == "matrix"  # warp the next batch's images during a step
        steps = -(-len(self.x_train) // recipe.batch_size)  # an epoch's
        self.schedule = Schedule(recipe.lr, recipe.schedule, steps * recipe.epochs, round(recipe.warmup * steps),
                                 steps * recipe.step_size, recipe.gamma, recipe.min_lr)

    def train_epoch(self, bar: Progress) -> tuple[float, float, float]:
        """One epoch; returns (mean loss, accuracy, seconds). Raises `Diverged` after a batch
        whose logits, loss, or step's weights are not finite."""
        n, size = len(self.x_train), self.recipe.batch_size
        total_loss, correct = 0.0, 0
        with np.errstate(over="ignore", invalid="ignore"):  # numbers no longer finite: said below, once
            for batch, (inputs, rows, labels, keep) in enumerate(self.batches(), 1):
                try:
                    result = self.step(inputs, rows, labels, keep, self.schedule(self.optimizer.steps))
                except ValueError:  # matrix nodes refuse the loss of logits that overflowed: it has no derivative there
                    if np.isfinite(self.step.logits(InputRows(inputs.dense[rows]))).all():
                        raise
                    raise Diverged(f"{self._diverged_in(batch)}: the logits overflowed") from None
                if not math.isfinite(result.loss) or result.nonfinite:
                    what = f"the loss became {result.loss}" if not math.isfinite(result.loss) else \
                        "the weights stopped being finite numbers"
                    raise Diverged(f"{self._diverged_in(batch)}: {what}")
                total_loss += result.loss * len(rows)
                correct += result.correct
                done = min(batch * size, n)
                if bar.due(done):
                    bar.update(done, f"loss {_short(total_loss / done)}  accuracy {100 * (correct / done):.1f}%  "
                                     f"{done / self.clock.seconds():,.0f} samples/s")
        return total_loss / n, correct / n, self.clock.seconds()

    def _diverged_in(self, batch: int) -> str:
        return (f"training diverged in epoch {self.epoch + 1}, batch {batch} of "
                f"{-(-len(self.x_train) // self.recipe.batch_size)}")

    def batches(self) -> Iterator[tuple[InputRows, np.ndarray, np.ndarray, np.ndarray | None]]:
        """An epoch's batches as a step takes them: (inputs, rows of them, labels indexed like
        the inputs, dropout scales or None), from the run's generator in one order (the epoch's
        shuffle, then each batch's augmentation key and dropout scales). With --augment each
        batch's images are its rows warped: on matrix nodes the next batch's on a thread of its
        own while this batch's step runs (the key drawn at the same place in the order)."""
        n, size = len(self.x_train), self.recipe.batch_size
        order = self.rng.permutation(n)
        warped = None  # the next batch's images, being warped
        for first in range(0, n, size):
            rows, inputs, labels = order[first : first + size], self.inputs, self.y_train
            if self.augment:  # the batch's images, moved: rows 0, 1, ... of their own
                images = warped.result() if warped else \
                    self.augment(self.x_train, rows, self.rng.integers(2**63), parallel=not self.ahead)
                inputs, labels, rows = InputRows(images), labels[rows], np.arange(len(rows))
            keep = self.model.dropout_scales(self.rng, len(rows)) if self.model.dropout_units else None
            if self.ahead and first + size < n:
                warped = _warper(os.getpid()).submit(self.augment, self.x_train, order[first + size : first + 2 * size],
                                                     self.rng.integers(2**63), False)
            yield inputs, rows, labels, keep

    def measure(self, inputs: InputRows, y: np.ndarray) -> tuple[float, float, np.ndarray]:
        """Mean cross-entropy, accuracy and predictions of the model on `inputs`, by the step's
        forward pass (no dropout)."""
        return scores(self.step.logits(inputs), y)

    def save(self, epoch: int) -> None:
        """Write epoch's checkpoint. Its last part, the fsync and the rename (about half of its
        time, spent waiting on the disk), runs on a thread of its own during the next epoch, as
        asynchronous checkpoints do (Orbax's, PyTorch's); `settle` waits for it."""
        self.settle()
        weights = self.model.parameters().values.copy()

        def in_background(job: Callable[[], None]) -> None:
            self.pending = (_checkpoint_writer(os.getpid()).submit(job), epoch, weights)

        checkpoint.save(self.checkpoint_path, checkpoint.Checkpoint(
            model=self.model, epoch=epoch, optimizer=self.recipe.optimizer,
            optimizer_options=self.recipe.optimizer_options(), optimizer_state=self.optimizer.state_dict(),
            rng_state=self.rng.bit_generator.state, args=self.record, best=self.best,
        ), later=in_background)

    def settle(self, quietly: bool = False) -> str:
        """Wait until the last checkpoint written is in place, which makes it the one saved (its
        epoch and weights). Raises the error that kept it from its place, if one did, or with
        `quietly` says it in words ("" if none)."""
        if not self.pending:
            return ""
        done, epoch, weights = self.pending
        try:
            done.result()  # a Ctrl-C while waiting leaves it pending, for the next wait
        except OSError as e:
            self.pending = None
            if not quietly:
                raise
            return f"epoch {epoch}'s checkpoint could not be written ({e})"
        self.pending, self.saved_epoch, self.saved = None, epoch, weights
        return ""

    def keep(self) -> None:
        """Leave in the model the weights the run keeps: the best validation epoch's if it has one,
        else those of the last epoch saved (the initial ones before the first): an epoch cut short
        leaves none of its steps in the model."""
        self.model.parameters().values[:] = self.best.model.parameters().values if self.best else self.saved

    def improved(self, epoch: int, val_loss: float, val_accuracy: float) -> bool:
        """Keep the model as the best if this validation epoch beats the best so far (strictly:
        on a tie the earlier epoch stays the best)."""
        metric = self.recipe.monitor
        value = val_loss if metric == "val_loss" else val_accuracy
        if self.best and not (value < self.best.value if metric == "val_loss" else value > self.best.value):
            return False
        if self.best is None:
            copy = MLP(self.model.sizes, self.model.activation, self.model.bias, self.model.init_name,
                       dropout=self.model.dropout)
            self.best = checkpoint.Best(copy, epoch, metric, value)
        self.best.model.parameters().values[:] = self.model.parameters().values
        self.best.epoch, self.best.value = epoch, value
        return True

    def patience_ran_out(self) -> bool:
        patience = self.recipe.patience
        return bool(patience and self.best and self.epoch - self.best.epoch >= patience)

    def fit(self, callbacks: Sequence[Callable[[dict], object]] = ()) -> list[dict]:
        """Train up to recipe.epochs (or until patience runs out, or a callback returns True),
        writing metrics and checkpoints (all in place when it returns); returns metrics.csv's rows.
        An epoch's row is written before its checkpoint (a resumed run drops rows past its
        checkpoint), and metrics.csv is made with the first row. Each callback is called with each epoch's row, as a dict."""
        stop = False
        while self.epoch < self.recipe.epochs and not self.patience_ran_out() and not stop:
            bar = self.progress(f"epoch {self.epoch + 1}/{self.recipe.epochs}", len(self.x_train))
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
        self.settle()
        if self.patience_ran_out() and self.epoch < self.recipe.epochs:
            say(f"stopped early after epoch {self.epoch}: {self.recipe.monitor} has not improved for "
                f"{self.recipe.patience} epochs")
        return self._metrics()

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
            raise UsageError(f"cannot resume: {path} is missing, and {self.checkpoint_path} is of epoch {epoch}; "
                                 f"the run's metrics are gone (start a new run, or put the file back)")
        if not path.is_file():
            return
        text = path.read_text(errors="replace")
        table = list(csv.reader(io.StringIO(text, newline="")))
        header = table[0] if table else []

        def damaged(why: str) -> UsageError:
            return UsageError(f"cannot resume: {path} is damaged ({why}); {self.checkpoint_path} is of epoch {epoch}")

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


def _check_resumable(saved: dict, given: dict, path: Path) -> None:
    """Refuse to resume a run recorded as `saved` with the options `given` unless they define the same run."""
    defaults = Recipe().record()  # an older run's missing options were the defaults
    defining = RUN_DEFINING + ["epochs"] * (given["schedule"] == "cosine")  # the cosine's length
    saved = {k: saved.get(k, defaults[k]) for k in defining}
    differing = [k for k in defining if saved[k] != given[k]]
    if differing:
        details = ", ".join(f"--{k.replace('_', '-')} was {saved[k]!r}, now {given[k]!r}" for k in differing)
        raise UsageError(f"cannot resume from {path}: the run differs ({details}); give the same arguments, or a new --out")


def _computing_changes(saved: dict, given: dict) -> str:
    """How the options that choose how a run computes (not what) differ from the checkpoint's, in words."""
    defaults = Recipe().record()
    return ", ".join(f"--{k} {given[k]} (it ran with --{k} {saved.get(k, defaults[k])})"
                     for k in COMPUTING if saved.get(k, defaults[k]) != given[k])


class RunError(RuntimeError):
    """A run that could not go on (a full disk, ...); the message says what is saved."""


@functools.cache
def _warper(process: int) -> ThreadPoolExecutor:
    """The thread that warps a matrix run's next batch (a forked process makes its own)."""
    return ThreadPoolExecutor(1, thread_name_prefix="warp")


@functools.cache
def _checkpoint_writer(process: int) -> ThreadPoolExecutor:
    """The thread that puts a run's checkpoints in place (see Run.save)."""
    return ThreadPoolExecutor(1, thread_name_prefix="checkpoint")


@contextlib.contextmanager
def thread_plan(recipe: Recipe):
    """Who has the cores during the run (--threads of them, default all). Scalar nodes: numba's compiled
    replays, numpy's BLAS on one thread; their numbers are the same on any --threads. Matrix nodes:
    numpy's BLAS, whose products a second thread makes up to 1.4x faster on the second semester's net
    (benchmarks/RESULTS.md, "What --threads gives matrix runs"); the optimizer's compiled pass on one
    thread, as idle OpenMP threads would spin beside BLAS's; with --augment one thread fewer for BLAS,
    as the next batch's images are warped beside it (`Run.batches`). OpenBLAS's threaded products sum in
    an order that depends on the number of threads, so a matrix run's numbers are the same on the same
    --threads, and to rounding on another."""
    from threadpoolctl import threadpool_limits

    compiled = numba.get_num_threads()
    threads = min(recipe.threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(1 if recipe.nodes == "matrix" else threads)
    try:
        with threadpool_limits(max(threads - recipe.augment, 1) if recipe.nodes == "matrix" else 1, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(compiled)


def run_training(recipe: Recipe, model: MLP | None = None, dataset: data.Dataset | None = None,
                 callbacks: Sequence[Callable[[dict], object]] = (), *,
                 progress: Callable[[str, int], Progress] | None = None, figures: Callable[[History], object] | None = None,
                 resume_hint: Callable[[Path], str] | None = None) -> History:
    """One run as `recipe` says, for `python -m mlp.train`, `mlp.fit` and a sweep's trials alike: claim
    its directory, train `model` (else the recipe's, on a tape of its own) on `dataset` (else the
    recipe's), write metrics.csv and checkpoints, and `figures(history)` if the recipe has plots.
    `progress` shows each epoch (see `Run`); `resume_hint(directory)` says how to continue an
    interrupted run (default: in Python, and on the command line).
    The model ends holding the weights the run keeps (those of the best validation epoch with val,
    else of the last finished epoch), the history's model; Ctrl-C ends the run so, and says so; the
    history says it was interrupted."""
    wanted = recipe.out or RUNS / (dataset.name if dataset else recipe.dataset)
    if recipe.resume:
        claim, note = rundir.claim_existing(wanted), ""
    else:
        claim, note = rundir.claim_new(wanted, explicit=recipe.out is not None, fresh=recipe.fresh)
    if note:
        say(note)
    run = None
    try:
        with thread_plan(recipe):
            run = Run(recipe, claim.directory, model, dataset, progress)
            say(f"training a {'-'.join(map(str, run.model.sizes))} {run.model.activation} MLP with {recipe.optimizer} on "
                f"{len(run.x_train):,} {run.data.name} samples ({len(run.data.x_test):,} test)\nwriting {claim.directory}")
            rows = run.fit(callbacks)
            accuracy = run.report(rows)
            run.keep()
            history = History.from_csv(rows, out=claim.directory, model=run.model, dataset=run.data,
                                       test_accuracy=accuracy, best_epoch=run.best.epoch if run.best else None)
            if recipe.plots and figures:
                figures(history)
            return history
    except KeyboardInterrupt:
        saved = _saved(run)
        if run:
            run.keep()
        again = f"; {(resume_hint or _resume_hint)(claim.directory)}" if run and run.saved_epoch else ""
        print(f"interrupted during epoch {run.epoch + 1 if run else 1}: {saved}{again}", file=sys.stderr)
        return History.from_csv(run._metrics() if run else [], out=claim.directory, model=run.model if run else model,
                                dataset=run.data if run else None, interrupted=True)
    except Diverged as e:
        raise Diverged(f"{e}; {_saved(run)}") from None
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise RunError(f"{e}; {_saved(run)}") from e
    finally:
        if run:
            run.settle(quietly=True)  # after another error, the checkpoint on its way lands before the run ends
        claim.release()


def _resume_hint(directory: Path) -> str:
    return (f"continue in Python with mlp.fit(model, data, resume=True, out={str(directory)!r}) and its other "
            f"options as they were, or with python -m mlp.train --resume --out {directory} and its flags")


class _Unseen:
    """No progress shown: what `Run.fit` uses when its caller gives none."""

    shown = False

    def __init__(self, label: str, total: int) -> None:
        pass

    def due(self, done: int) -> bool:
        return False

    def update(self, done: int, text: str = "") -> None:
        pass

    def finish(self, text: str = "") -> None:
        pass


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(loss: float) -> str:
    return f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.4g}"


def _saved(run: Run | None) -> str:
    """What the run has saved, once the checkpoint on its way is in place (or has failed: said)."""
    problem = run.settle(quietly=True) if run else ""
    if run and run.saved_epoch:
        saved = f"epoch {run.saved_epoch} is saved in {run.checkpoint_path}"
    else:
        saved = "nothing was saved" if run and run.epoch else "no epoch was completed and nothing was saved"
    return f"{saved} ({problem})" if problem else saved


