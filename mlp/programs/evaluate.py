"""Measure a trained model on a data set's test part: `python -m mlp.evaluate DIR/model.npz`.

Prints the accuracy, the mean cross-entropy and the confusion matrix (rows: true class,
columns: predicted class).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import tape

from .. import checkpoint, data
from ..plots import confusion_matrix
from ..recipe import dataset_name
from ..training import evaluate
from . import cli, finish


def format_confusion(counts: np.ndarray, classes: list[str]) -> str:
    """The matrix as aligned text, classes abbreviated to fit."""
    names = [c[:7] for c in classes]
    width = max(6, max(map(len, names)), len(str(counts.max())))
    lines = ["true \\ predicted".ljust(width + 3) + " ".join(n.rjust(width) for n in names)]
    for name, row in zip(names, counts):
        lines.append(name.rjust(width) + " | " + " ".join(str(n).rjust(width) for n in row))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m mlp.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="a model.npz written by mlp.train")
    p.add_argument("--dataset", type=cli.flag_type(dataset_name), help="default: the one the model was trained on")
    p.add_argument("--data-dir", type=Path)
    args = p.parse_args(argv)
    try:
        with tape.Tape():
            saved = checkpoint.load(args.checkpoint)
            name = args.dataset or saved.args.get("dataset", "mnist-5k")
            dataset = data.load(name, data_dir=args.data_dir)
            if dataset.x_test.shape[1] != saved.kept.sizes[0]:
                raise data.DataFormatError(f"{name} has {dataset.x_test.shape[1]} inputs, the model expects {saved.kept.sizes[0]}")
            loss, accuracy, predicted = evaluate(saved.kept, dataset.x_test, dataset.y_test)
    except (checkpoint.CheckpointError, FileNotFoundError, data.DataFormatError, data.DatasetNotFoundError) as e:
        return cli.refuse(e)
    kept = f" (kept: epoch {saved.best.epoch}, the best {saved.best.metric})" if saved.best else ""
    print(f"{args.checkpoint}: {saved.kept} after {saved.epoch} epochs{kept}")
    print(f"{name} test set: accuracy {100 * accuracy:.2f}% ({int(round(accuracy * len(predicted)))} of "
          f"{len(predicted)}), mean cross-entropy {loss:.4f}\n")
    print(format_confusion(confusion_matrix(dataset.y_test, predicted, len(dataset.classes)), dataset.classes))
    return 0


if __name__ == "__main__":
    finish(main())
