"""Train an MLP on handwritten digits: `python -m mlp.train` (see --help).

Each epoch shuffles the training set, runs Algorithm 3 on every batch (the fused path: one
compiled call per batch on all cores), steps the optimizer, then measures the test set, appends
a row to DIR/metrics.csv and writes the checkpoint DIR/model.npz (atomically). At the end it
draws DIR/curves.png, DIR/confusion.png and DIR/mistakes.png and prints the test accuracy.

A new run never writes over another: DIR must be new or empty (without --out, the first free
one of runs/<dataset>, runs/<dataset>-2, ...). A loss or a weight that stops being a finite
number ends the run (exit code 1) and keeps the last good checkpoint.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tape

from . import checkpoint, cli, data
from .accumulate import FusedAccumulator, SparseRows
from .init import INITIALISERS
from .losses import log_softmax
from .nn import ACTIVATIONS, MLP
from .optim import OPTIMIZERS
from .progress import ProgressBar

METRICS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "samples_per_s"]
# The arguments a resumed run must share with the run that wrote the checkpoint (not --threads:
# the fused path's sums are the same on any number of threads).
RUN_DEFINING = ["dataset", "limit", "hidden", "activation", "init", "bias", "optimizer", "lr", "momentum",
                "beta1", "beta2", "eps", "weight_decay", "batch_size", "seed"]
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


def dataset_name(text: str) -> str:
    if text not in data.DATASETS:
        raise argparse.ArgumentTypeError(f"unknown data set {text!r}; known: {', '.join(data.DATASETS)}")
    return text


def parser() -> argparse.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m mlp.train", description=__doc__.split("\n\n")[0])
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
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds the initial weights and the shuffling (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, help="compiled threads (default: all cores; the results are the same on any number)")
    p.add_argument("--out", type=Path, help="output directory, new or empty (default: runs/<dataset>, or the first free "
                                            "runs/<dataset>-2, -3, ... when it holds a run)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in OUT from OUT/model.npz")
    again.add_argument("--fresh", action="store_true", help="if OUT holds files, write into the first free OUT-2, OUT-3, ... instead")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG figures")
    return p


def check_size(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (through the parser) a model too big for the tape or for this machine's memory,
    before anything is allocated."""
    sizes = [INPUTS, *args.hidden, CLASSES]
    weights = sum(m * n + n * args.bias for m, n in zip(sizes, sizes[1:]))
    edges = sum(m * n * (1 + (i > 0)) for i, (m, n) in enumerate(zip(sizes, sizes[1:])))  # a sample's, at most
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


def run_directory(args: argparse.Namespace) -> tuple[Path, str]:
    """The directory the run writes into, and a note if it is not the one asked for. A new run
    never writes into a directory that holds files; without --out (or with --fresh) it takes the
    first free one of OUT, OUT-2, OUT-3, ..."""
    wanted = args.out or RUNS / args.dataset
    if wanted.exists() and not wanted.is_dir():
        raise cli.UsageError(f"--out {wanted} is a file, not a directory")
    if args.resume or not _holds_files(wanted):
        return wanted, ""
    if args.out is not None and not args.fresh:
        names = sorted(p.name for p in wanted.iterdir())
        held = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise cli.UsageError(f"--out {wanted} already holds files ({held}): continue its run with --resume, "
                             f"add --fresh to write into the first free {wanted}-2, {wanted}-3, ..., or give a new --out")
    for n in itertools.count(2):
        candidate = wanted.with_name(f"{wanted.name}-{n}")
        if not _holds_files(candidate):
            return candidate, f"{wanted} holds an earlier run, so this one goes to {candidate}"


def _holds_files(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def claim(out: Path) -> bool:
    """Make `out` and check that files can be written in it; True if it was made here."""
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise cli.UsageError(f"cannot write in --out {out}: {e.strerror or e}") from None
    return made


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
    """Mean cross-entropy, accuracy and the predictions on (X, y); nothing is recorded. Logits
    that overflow give a loss of nan, without numpy's warnings."""
    with np.errstate(over="ignore", invalid="ignore"):
        log_p = log_softmax(model.logits(X))
    predicted = log_p.argmax(axis=1)
    return float(-log_p[np.arange(len(y)), y].mean()), float((predicted == y).mean()), predicted


class Diverged(ArithmeticError):
    """The loss or the weights stopped being finite numbers; the message says where."""


class Run:
    """One training run: the data, the model, the optimizer, the shuffling RNG and the outputs."""

    def __init__(self, args: argparse.Namespace, out: Path) -> None:
        self.args, self.out = args, out
        self.checkpoint_path, self.metrics_path = out / "model.npz", out / "metrics.csv"
        if args.resume:
            saved = checkpoint.load(self.checkpoint_path)
            _check_resumable(saved.args, args, self.checkpoint_path)
        self.data = data.load(args.dataset, data_dir=args.data_dir)
        self.x_train, self.y_train = self.data.x_train[: args.limit], self.data.y_train[: args.limit]
        classes = len(self.data.classes)
        if args.resume:
            self.model, self.optimizer, self.epoch = saved.model, saved.make_optimizer(), saved.epoch
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = saved.rng_state
            self._forget_metrics_after(self.epoch)
        else:
            self.model = MLP([self.x_train.shape[1], *args.hidden, classes], activation=args.activation,
                             bias=args.bias, init=args.init, seed=args.seed)
            self.optimizer = OPTIMIZERS[args.optimizer](self.model.parameters(), **optimizer_options(args))
            self.rng, self.epoch = np.random.default_rng(args.seed), 0
        self.accumulator = FusedAccumulator(self.model, args.threads)
        self.inputs = SparseRows(self.x_train)

    def train_epoch(self, bar: ProgressBar) -> tuple[float, float, float]:
        """One epoch; returns (mean loss, accuracy, seconds). Raises `Diverged` after a batch
        whose loss, or whose step's weights, are not finite."""
        n, size = len(self.x_train), self.args.batch_size
        order = self.rng.permutation(n)
        weights = self.model.parameters().values
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        for batch, first in enumerate(range(0, n, size), 1):
            rows = order[first : first + size]
            self.optimizer.zero_grad()
            result = self.accumulator.accumulate(self.inputs, rows, self.y_train, 1.0 / len(rows))
            self.optimizer.step()
            if not (math.isfinite(result.loss) and math.isfinite(weights.sum())):
                what = f"the loss became {result.loss}" if not math.isfinite(result.loss) else "the weights stopped being finite numbers"
                raise Diverged(f"training diverged in epoch {self.epoch + 1}, batch {batch} of {-(-n // size)}: {what}")
            total_loss += result.loss * len(rows)
            correct += result.correct
            done = first + len(rows)
            bar.update(done, f"loss {_short(total_loss / done)}  accuracy {100 * correct / done:5.1f}%  "
                             f"{done / (time.perf_counter() - start):,.0f} samples/s")
        return total_loss / n, correct / n, time.perf_counter() - start

    def save(self, epoch: int) -> None:
        checkpoint.save(self.checkpoint_path, checkpoint.Checkpoint(
            model=self.model, epoch=epoch, optimizer=self.args.optimizer,
            optimizer_options=optimizer_options(self.args), optimizer_state=self.optimizer.state_dict(),
            rng_state=self.rng.bit_generator.state, args=run_record(self.args),
        ))

    def fit(self) -> list[dict]:
        """Train up to args.epochs, writing metrics and checkpoints; returns metrics.csv's rows.
        An epoch's row is written before its checkpoint (a resumed run drops rows past its
        checkpoint), and metrics.csv is made with the first row."""
        while self.epoch < self.args.epochs:
            bar = ProgressBar(f"epoch {self.epoch + 1}/{self.args.epochs}", len(self.x_train))
            try:
                train_loss, train_accuracy, seconds = self.train_epoch(bar)
            except BaseException:
                bar.finish()  # end a drawn line before the message
                raise
            test_loss, test_accuracy, _ = evaluate(self.model, self.data.x_test, self.data.y_test)
            epoch = self.epoch + 1
            if not math.isfinite(test_loss):
                raise Diverged(f"training diverged in epoch {epoch}: the test loss became {test_loss}")
            row = [epoch, train_loss, train_accuracy, test_loss, test_accuracy, seconds, len(self.x_train) / seconds]
            new = not self.metrics_path.exists()
            with open(self.metrics_path, "a", newline="") as f:
                if new:
                    csv.writer(f).writerow(METRICS)
                csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
            self.save(epoch)
            self.epoch = epoch
            bar.finish(f"loss {_short(train_loss)}  accuracy {100 * train_accuracy:5.1f}%  "
                       f"test loss {_short(test_loss)}  test accuracy {100 * test_accuracy:5.1f}%  "
                       f"{len(self.x_train) / seconds:,.0f} samples/s")
        return self._metrics()

    def _metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    def _forget_metrics_after(self, epoch: int) -> None:
        """Drop metrics.csv's rows of epochs after the checkpoint's (a run stopped between the
        two writes), so the resumed run's rows follow on without repeats."""
        rows = self._metrics()
        kept = [r for r in rows if r["epoch"].isdigit() and int(r["epoch"]) <= epoch]
        if len(kept) < len(rows):
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, METRICS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            checkpoint.write_atomically(self.metrics_path, lambda f: f.write(text.getvalue().encode()))

    def draw(self, rows: list[dict]) -> None:
        from . import plots

        _, _, predicted = evaluate(self.model, self.data.x_test, self.data.y_test)
        classes = self.data.classes
        plots.curves(rows, self.out / "curves.png")
        plots.confusion(plots.confusion_matrix(self.data.y_test, predicted, len(classes)), classes, self.out / "confusion.png")
        plots.mistakes(self.data.x_test, self.data.y_test, predicted, classes, self.out / "mistakes.png")


def _check_resumable(saved: dict, args: argparse.Namespace, path: Path) -> None:
    given = run_record(args)
    differing = [k for k in RUN_DEFINING if saved.get(k) != given.get(k)]
    if differing:
        details = ", ".join(f"--{k.replace('_', '-')} was {saved.get(k)!r}, now {given.get(k)!r}" for k in differing)
        raise cli.UsageError(f"cannot resume from {path}: the run differs ({details}); give the same arguments, or a new --out")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    check_size(p, args)
    try:
        out, note = run_directory(args)
        made = claim(out)
    except cli.UsageError as e:
        return cli.refuse(e)
    if note:
        print(note, file=sys.stderr)
    run = None
    try:
        with tape.Tape():
            run = Run(args, out)
            print(f"training {run.model} on {args.dataset} ({len(run.x_train):,} samples, "
                  f"{len(run.data.x_test):,} test) with {args.optimizer}; writing {out}", file=sys.stderr)
            rows = run.fit()
            if args.plots:
                run.draw(rows)
    except (cli.UsageError, checkpoint.CheckpointError, data.DatasetNotFoundError, data.DataFormatError,
            FileNotFoundError) as e:
        return cli.refuse(e)
    except Diverged as e:
        print(f"error: {e}; {_saved(run)}. A smaller --lr (it is {args.lr:g}) may help", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        epoch = run.epoch + 1 if run else 1
        again = f"; continue with --resume --out {out}" if run and run.epoch else ""
        print(f"interrupted during epoch {epoch}: {_saved(run)}{again}", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"error: {e}; {_saved(run)}", file=sys.stderr)
        return 1
    finally:
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # made for a run that saved nothing
    accuracy = float(rows[-1]["test_accuracy"]) if rows else float("nan")
    print(f"test accuracy: {100 * accuracy:.2f}%")
    return 0


def _short(loss: float) -> str:
    return f"{loss:.4f}" if abs(loss) < 1e4 else f"{loss:.4g}"


def _saved(run: Run | None) -> str:
    if run and run.epoch:
        return f"epoch {run.epoch} is saved in {run.checkpoint_path}"
    return "no epoch was completed and nothing was saved"


if __name__ == "__main__":
    sys.exit(main())
