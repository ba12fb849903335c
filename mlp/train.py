"""Train an MLP on handwritten digits: `python -m mlp.train` (see --help).

Each epoch shuffles the training set, runs Algorithm 3 on every batch (the fused path: one
compiled call per batch on all cores), steps the optimizer, then measures the test set, appends
a row to DIR/metrics.csv and writes the checkpoint DIR/model.npz (atomically). At the end it
draws DIR/curves.png, DIR/confusion.png and DIR/mistakes.png and prints the test accuracy.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

import tape

from . import checkpoint, data
from .accumulate import FusedAccumulator, SparseRows
from .init import INITIALISERS
from .losses import log_softmax
from .nn import ACTIVATIONS, MLP
from .optim import OPTIMIZERS
from .progress import ProgressBar

METRICS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "samples_per_s"]
# The arguments a resumed run must share with the run that wrote the checkpoint.
RUN_DEFINING = ["dataset", "limit", "hidden", "activation", "init", "bias", "optimizer", "lr", "momentum",
                "beta1", "beta2", "eps", "weight_decay", "batch_size", "seed", "threads"]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
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
    p = argparse.ArgumentParser(
        prog="python -m mlp.train", description=__doc__.split("\n\n")[0],
    )
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
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the shuffling (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, help="compiled threads (default: all cores)")
    p.add_argument("--out", type=Path, help="output directory (default: runs/<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/model.npz")
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG figures")
    return p


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
    log_p = log_softmax(model.logits(X))
    predicted = log_p.argmax(axis=1)
    return float(-log_p[np.arange(len(y)), y].mean()), float((predicted == y).mean()), predicted


class Run:
    """One training run: the data, the model, the optimizer, the shuffling RNG and the outputs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = args.out or Path("runs") / args.dataset
        self.checkpoint_path = self.out / "model.npz"
        self.data = data.load(args.dataset, data_dir=args.data_dir)
        self.x_train, self.y_train = self.data.x_train[: args.limit], self.data.y_train[: args.limit]
        classes = len(self.data.classes)
        if args.resume:
            saved = checkpoint.load(self.checkpoint_path)
            _check_resumable(saved.args, args, self.checkpoint_path)
            self.model, self.optimizer, self.epoch = saved.model, saved.make_optimizer(), saved.epoch
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = saved.rng_state
        else:
            self.model = MLP([self.x_train.shape[1], *args.hidden, classes], activation=args.activation,
                             bias=args.bias, init=args.init, seed=args.seed)
            self.optimizer = OPTIMIZERS[args.optimizer](self.model.parameters(), **optimizer_options(args))
            self.rng, self.epoch = np.random.default_rng(args.seed), 0
        self.accumulator = FusedAccumulator(self.model, args.threads)
        self.inputs = SparseRows(self.x_train)

    def train_epoch(self, bar: ProgressBar) -> tuple[float, float, float]:
        """One epoch; returns (mean loss, accuracy, seconds)."""
        n, size = len(self.x_train), self.args.batch_size
        order = self.rng.permutation(n)
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        for first in range(0, n, size):
            rows = order[first : first + size]
            self.optimizer.zero_grad()
            result = self.accumulator.accumulate(self.inputs, rows, self.y_train, 1.0 / len(rows))
            self.optimizer.step()
            total_loss += result.loss * len(rows)
            correct += result.correct
            done = first + len(rows)
            bar.update(done, f"loss {total_loss / done:.4f}  accuracy {100 * correct / done:5.1f}%  "
                             f"{done / (time.perf_counter() - start):,.0f} samples/s")
        return total_loss / n, correct / n, time.perf_counter() - start

    def save(self) -> None:
        checkpoint.save(self.checkpoint_path, checkpoint.Checkpoint(
            model=self.model, epoch=self.epoch, optimizer=self.args.optimizer,
            optimizer_options=optimizer_options(self.args), optimizer_state=self.optimizer.state_dict(),
            rng_state=self.rng.bit_generator.state, args=run_record(self.args),
        ))

    def fit(self) -> list[dict]:
        """Train up to args.epochs, writing metrics and checkpoints; returns metrics.csv's rows."""
        metrics_path = self.out / "metrics.csv"
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.args.resume or not metrics_path.exists():
            with open(metrics_path, "w", newline="") as f:
                csv.writer(f).writerow(METRICS)
        while self.epoch < self.args.epochs:
            bar = ProgressBar(f"epoch {self.epoch + 1}/{self.args.epochs}", len(self.x_train))
            train_loss, train_accuracy, seconds = self.train_epoch(bar)
            test_loss, test_accuracy, _ = evaluate(self.model, self.data.x_test, self.data.y_test)
            self.epoch += 1
            row = [self.epoch, train_loss, train_accuracy, test_loss, test_accuracy, seconds, len(self.x_train) / seconds]
            with open(metrics_path, "a", newline="") as f:
                csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
            self.save()
            bar.finish(f"loss {train_loss:.4f}  accuracy {100 * train_accuracy:5.1f}%  "
                       f"test loss {test_loss:.4f}  test accuracy {100 * test_accuracy:5.1f}%  "
                       f"{len(self.x_train) / seconds:,.0f} samples/s")
        with open(metrics_path, newline="") as f:
            return list(csv.DictReader(f))

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
        raise SystemExit(f"cannot resume from {path}: the run differs ({details}); give the same arguments, or a new --out")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with tape.Tape():
            run = Run(args)
            print(f"training {run.model} on {args.dataset} ({len(run.x_train):,} samples, "
                  f"{len(run.data.x_test):,} test) with {args.optimizer}; writing {run.out}", file=sys.stderr)
            try:
                rows = run.fit()
            except KeyboardInterrupt:
                done = f"epoch {run.epoch} is saved in {run.checkpoint_path}" if run.epoch else "no epoch was completed"
                print(f"\ninterrupted during epoch {run.epoch + 1}: {done}; continue with --resume", file=sys.stderr)
                return 130
            if args.plots:
                run.draw(rows)
    except (data.DatasetNotFoundError, data.DataFormatError, checkpoint.CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    accuracy = float(rows[-1]["test_accuracy"]) if rows else float("nan")
    print(f"test accuracy: {100 * accuracy:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
