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
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.texts] == ["one -> two", "three -> one", "two -> zero", "zero -> three"]
    assert figure._suptitle.get_text().startswith("4 misclassified")
    grid = axes.images[0].get_array()
    shown = [grid[8:36, 2 + 32 * c : 30 + 32 * c] for c in range(4)]  # the first row's cells: a title band, then 28 x 28
    for image, i in zip(shown, [1, 3, 5, 7]):
        np.testing.assert_array_equal(image, history.dataset.x_test[i].reshape(28, 28))
    assert grid.mask[:8].all() and grid.mask[:, :2].all() and grid.mask[8:36, 4 * 32 :].all()  # around them: background


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


def run_rows(val: bool, rates=(0.001, 0.001)) -> list[dict]:
    """Two epochs of metrics as fit's History holds them (None where the run had no validation part)."""
    return [{"epoch": e, "train_loss": 1.5 / e, "train_accuracy": 0.5 + 0.2 * e, "test_loss": 1.25 / e,
             "test_accuracy": 0.625 + 0.125 * e, "seconds": 12.3456 / e ** 4, "samples_per_s": 11811.4 * e,
             "val_loss": 1.0 / e if val else None, "val_accuracy": 0.6 + 0.1 * e if val else None, "lr": rate}
            for e, rate in zip((1, 2), rates)]


def cells(page: str) -> list[list[str]]:
    """The text of each table row's cells, and the paragraph before the table as the first row."""
    from html.parser import HTMLParser

    class Parsed(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.rows, self.open, self.spans = [], [], []

        def handle_starttag(self, tag, attrs):
            self.open.append(tag)
            if tag in ("tr", "p"):
                self.rows.append([])
            if tag in ("td", "th", "p"):
                self.rows[-1].append("")
                self.spans.append(dict(attrs).get("colspan"))

        def handle_endtag(self, tag):
            assert self.open.pop() == tag

        def handle_data(self, data):
            self.rows[-1][-1] += data

    parsed = Parsed()
    parsed.feed(page)
    assert not parsed.open
    return parsed.rows, parsed.spans


def test_the_html_table_groups_losses_and_accuracies_in_percent_and_fits_a_notebook(tmp_path):
    history = History(run_rows(val=True), out=tmp_path / "a<b", model=None, best_epoch=2, test_accuracy=0.875)
    rows, spans = cells(history._repr_html_())
    assert rows[0] == [f"2 epochs at learning rate 0.001 in {tmp_path / 'a<b'}, kept epoch 2: test accuracy 87.50%"]
    assert rows[1] == ["epoch", "loss", "accuracy", "seconds", "samples/s"]
    assert [s for s in spans if s] == ["3", "3"]
    assert rows[2] == ["train", "val", "test", "train", "val", "test"]
    assert rows[3] == ["1", "1.5", "1", "1.25", "70.00%", "70.00%", "75.00%", "12.3", "11,811"]
    assert rows[4] == ["2", "0.75", "0.5", "0.625", "90.00%", "80.00%", "87.50%", "0.772", "23,623"]
    assert "&lt;b" in history._repr_html_() and '<th rowspan="2">epoch</th>' in history._repr_html_()


def test_without_validation_or_with_a_changing_rate_the_columns_follow(tmp_path):
    history = History(run_rows(val=False, rates=(0.001, 0.0005)), out=tmp_path, model=None, test_accuracy=0.875)
    rows, _ = cells(history._repr_html_())
    assert rows[0] == [f"2 epochs in {tmp_path}: test accuracy 87.50%"]
    assert rows[1] == ["epoch", "loss", "accuracy", "seconds", "samples/s", "learning rate"]
    assert rows[2] == ["train", "test", "train", "test"]
    assert rows[4][-1] == "0.0005"


def test_the_plain_text_is_the_summary_and_an_aligned_table(tmp_path):
    history = History(run_rows(val=True), out=tmp_path, model=None, best_epoch=2, test_accuracy=0.875)
    lines = str(history).splitlines()
    assert lines[0] == f"2 epochs at learning rate 0.001 in {tmp_path}, kept epoch 2: test accuracy 87.50%"
    assert lines[1].split() == ["epoch", "train", "loss", "val", "loss", "test", "loss", "train", "acc", "val", "acc",
                                "test", "acc", "seconds", "samples/s"]
    assert lines[3].split() == ["2", "0.75", "0.5", "0.625", "90.00%", "80.00%", "87.50%", "0.772", "23,623"]
    assert len({len(line) for line in lines[1:]}) == 1 and max(map(len, lines[1:])) <= 92  # right-aligned, within an 850-pixel output area
    printed = []

    class Printer:
        def text(self, text):
            printed.append(text)

    history._repr_pretty_(Printer(), False)
    assert printed == [str(history)]


def test_an_interrupted_history_says_so_with_the_last_finished_epochs_accuracy(tmp_path):
    two = History(run_rows(val=False), out=tmp_path, model=None, interrupted=True)
    assert two.summary() == f"2 epochs at learning rate 0.001 in {tmp_path}, then interrupted: test accuracy 87.50% at epoch 2"
    one = History(run_rows(val=False)[:1], out=tmp_path, model=None, interrupted=True)
    assert one.summary().startswith("1 epoch at learning rate 0.001 in ")
    none = History([], out=tmp_path, model=None, interrupted=True)
    assert str(none) == f"interrupted during epoch 1 in {tmp_path}, before any epoch was saved"
    assert cells(none._repr_html_())[0] == [[str(none)]]


def test_the_curves_show_the_learning_rate_only_where_it_changes():
    from mlp import plots

    text = [{k: "" if v is None else str(v) for k, v in row.items()} for row in run_rows(val=True)]
    constant = plots.curves(text, best=2).figure
    assert [ax.get_title() for ax in constant.axes] == ["loss (learning rate 0.001 throughout)", "accuracy"]
    np.testing.assert_allclose(constant.axes[1].lines[0].get_ydata(), [70.0, 90.0])  # train accuracy, in %
    changing = [{**row, "lr": rate} for row, rate in zip(text, ("0.001", "0.0005"))]
    rate = plots.curves(changing).figure.axes[2]
    assert rate.get_title().startswith("learning rate")
    np.testing.assert_array_equal(rate.lines[0].get_ydata(), [0.001, 0.0005])
