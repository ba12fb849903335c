"""What a training run gives back: its metrics.csv as numbers, one dict an epoch, and the model it
kept; a notebook shows it as a table and its curves inline."""
from __future__ import annotations

import csv
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from . import plots
from .data import Dataset
from .nn import MLP


@dataclass
class History:
    """The per-epoch metrics of a run (`rows`: epoch, train_loss, ..., lr; None where a run has no
    value), its directory, the model it keeps (the best validation epoch's, else the last) and
    that model's test accuracy; `interrupted` if Ctrl-C ended it."""

    rows: list[dict] = field(repr=False)
    out: Path
    model: MLP | None
    dataset: Dataset | None = field(default=None, repr=False)  # what it was trained and tested on
    best_epoch: int | None = None
    test_accuracy: float = math.nan
    interrupted: bool = False

    @classmethod
    def from_csv(cls, rows: list[dict], **fields) -> History:
        """From metrics.csv's rows of text: numbers, and None for an empty cell."""
        numbers = [{k: None if v in ("", None) else int(v) if k == "epoch" else float(v) for k, v in r.items()} for r in rows]
        return cls(numbers, **fields)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, column: str) -> list:
        """A column by name: history["val_accuracy"] is one value an epoch."""
        return [row[column] for row in self.rows]

    def to_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, list(self.rows[0]) if self.rows else [])
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in self.rows)

    def plot(self) -> plots.Picture:
        """The learning curves (loss, accuracy, learning rate), the kept epoch marked."""
        text = [{k: "" if v is None else str(v) for k, v in row.items()} for row in self.rows]
        return plots.curves(text, self.best_epoch)

    def confusion(self) -> plots.Picture:
        """The confusion matrix of the kept model on the test set."""
        model, dataset = self._kept("confusion")
        counts = plots.confusion_matrix(dataset.y_test, model.predict(dataset.x_test), len(dataset.classes))
        return plots.confusion(counts, dataset.classes)

    def mistakes(self) -> plots.Picture:
        """The test images the kept model gets wrong, with their true and predicted classes."""
        model, dataset = self._kept("mistakes")
        return plots.mistakes(dataset.x_test, dataset.y_test, model.predict(dataset.x_test), dataset.classes)

    def _kept(self, caller: str) -> tuple[MLP, Dataset]:
        """The kept model and its data set, or a ValueError saying which this history lacks."""
        if self.model is None or self.dataset is None:
            lacking = "model" if self.model is None else "data set"
            raise ValueError(f"{caller}(): this history has no {lacking} to show (a run stopped before its "
                             f"{lacking} was made, {len(self.rows)} epochs)")
        return self.model, self.dataset

    def _repr_html_(self) -> str:
        columns = list(self.rows[0]) if self.rows else []
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>" for row in self.rows)
        kept = f", kept epoch {self.best_epoch}" if self.best_epoch else ""
        stopped = ", interrupted" if self.interrupted else ""
        return (f"<p>{len(self.rows)} epochs in {html.escape(str(self.out))}{kept}{stopped}: test accuracy "
                f"{100 * self.test_accuracy:.2f}%</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _cell(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
