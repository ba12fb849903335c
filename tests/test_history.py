"""History without training: its HTML table's summary line, its CSV of one row, and the confusion matrix
and mistakes of a model whose predictions the test fixes, each checked against numpy written here."""
import csv

import numpy as np
import pytest

from mlp.data import Dataset
from mlp.history import History

CLASSES = ["zero", "one", "two", "three"]


class Fixed:
    """A model that predicts the labels it is given for the test images it is given."""

    def __init__(self, images: np.ndarray, predicted: np.ndarray):
        self.images, self.predicted = images, predicted

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert x is self.images
        return self.predicted


@pytest.fixture
def history(tmp_path):
    rng = np.random.default_rng(3)
    x_test = rng.random((9, 784))
    y_test = np.array([0, 1, 2, 3, 3, 2, 1, 0, 3])
    predicted = np.array([0, 2, 2, 1, 3, 0, 1, 3, 3])  # wrong at 1, 3, 5, 7: (true, predicted) all distinct
    dataset = Dataset("fixed", x_test[:0], y_test[:0], x_test, y_test, CLASSES)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": None} for e in (1, 2, 3)]
    return History(rows, out=tmp_path, model=Fixed(x_test, predicted), dataset=dataset, best_epoch=2,
                   test_accuracy=0.123456)


def test_the_confusion_matrix_counts_true_rows_against_predicted_columns(history):
    y, predicted = history.dataset.y_test, history.model.predicted
    expected = np.array([[np.sum((y == t) & (predicted == p)) for p in range(4)] for t in range(4)])
    axes = history.confusion().figure.axes[0]
    np.testing.assert_array_equal(axes.images[0].get_array(), expected)
    assert [t.get_text() for t in axes.get_xticklabels()] == CLASSES
    assert axes.get_title() == "test set: 5 of 9 right"


def test_the_mistakes_are_titled_true_then_predicted(history):
    figure = history.mistakes().figure
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["one -> two", "three -> one", "two -> zero", "zero -> three"]
    assert figure._suptitle.get_text().startswith("4 misclassified")


def test_the_html_summary_counts_the_epochs_and_shows_the_accuracy_in_percent(history, tmp_path):
    assert history._repr_html_().startswith(f"<p>3 epochs in {tmp_path}, kept epoch 2: test accuracy 12.35%</p>")


def test_a_history_of_one_epoch_saves_as_csv_with_its_header(history, tmp_path):
    one = History(history.rows[:1], out=tmp_path, model=None)
    one.to_csv(tmp_path / "one.csv")
    assert list(csv.DictReader(open(tmp_path / "one.csv", newline=""))) == [{"epoch": "1", "train_loss": "1.0",
                                                                              "val_loss": ""}]


def test_a_history_without_a_model_says_how_many_epochs_it_ran(history, tmp_path):
    with pytest.raises(ValueError, match=r"confusion\(\): .* no model .*, 3 epochs\)"):
        History(history.rows, out=tmp_path, model=None).confusion()
