"""mlp.evaluate against a confusion matrix built by hand; mlp.predict on the image files people
have (ink in the alpha channel, 16-bit and floating-point pixels) and on files it cannot read;
every program on a checkpoint that is not one."""
import numpy as np
import pytest
from tape import Tape

from mlp import checkpoint, evaluate, predict, serve
from mlp.data import IDX_FILES, write_idx
from mlp.nn import MLP
from mlp.plots import confusion_matrix

Image = pytest.importorskip("PIL.Image", reason="reading images needs pillow (pip install pillow)")

TRUE = [0, 0, 1, 2, 2, 2, 3]
PREDICTED = [0, 1, 1, 0, 2, 2, 2]
BY_HAND = {(0, 0): 1, (0, 1): 1, (1, 1): 1, (2, 0): 1, (2, 2): 2, (3, 2): 1}  # (true, predicted): count


def test_the_confusion_matrix_counts_true_rows_and_predicted_columns():
    expected = np.zeros((4, 4), dtype=int)
    for (true, predicted), count in BY_HAND.items():
        expected[true, predicted] = count
    np.testing.assert_array_equal(confusion_matrix(np.array(TRUE), np.array(PREDICTED), 4), expected)


def test_evaluate_prints_the_hand_built_matrix(tmp_path, capsys):
    """A model that predicts k for an image whose only ink is pixel k, on a data set of such images."""
    with Tape():
        model = MLP([784, 10, 10], activation="relu")
        model.load_state_dict({"layers.0.weight": np.eye(10, 784), "layers.0.bias": np.zeros(10),
                               "layers.1.weight": 10 * np.eye(10), "layers.1.bias": np.zeros(10)})
        checkpoint.save(tmp_path / "model.npz", checkpoint.Checkpoint(model, 1, args={"dataset": "mnist"}))
    images = np.zeros((len(PREDICTED), 28, 28), np.uint8)
    images.reshape(len(PREDICTED), 784)[np.arange(len(PREDICTED)), PREDICTED] = 255
    arrays = {"x_train": images, "y_train": np.array(TRUE, np.uint8), "x_test": images, "y_test": np.array(TRUE, np.uint8)}
    for field, name in IDX_FILES.items():
        write_idx(tmp_path / name, arrays[field])
    assert evaluate.main([str(tmp_path / "model.npz"), "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 57.14% (4 of 7)" in out
    rows = {int(line.split("|")[0]): [int(n) for n in line.split("|")[1].split()] for line in out.splitlines() if " | " in line}
    counts = {(t, p): n for t, row in rows.items() for p, n in enumerate(row) if n}
    assert counts == BY_HAND


# -- predict: image files --------------------------------------------------------------------------

DIGIT = np.zeros((28, 28))
DIGIT[6:9, 8:20] = 1.0  # a 7: the bar
DIGIT[9:23, 15:18] = 1.0  # and the stem


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    with Tape():
        checkpoint.save(path, checkpoint.Checkpoint(MLP([784, 16, 10], activation="relu", seed=0), 1,
                                                    args={"dataset": "mnist-5k"}))
    return path


def save(path, pixels, mode=None):
    Image.fromarray(pixels, mode).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    """The digit in each form: grey, as a drawing program's ink on a transparent background (RGBA
    and grey with alpha), 16-bit and floating-point."""
    ink = (DIGIT * 255).astype(np.uint8)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = ink  # black ink: only the alpha channel tells it from the background
    grey_alpha = np.stack([np.zeros_like(ink), ink], axis=-1)
    return {
        "grey": save(tmp_path / "grey.png", ink),
        "rgba": save(tmp_path / "rgba.png", rgba, "RGBA"),
        "grey+alpha": save(tmp_path / "la.png", grey_alpha, "LA"),
        "16-bit": save(tmp_path / "deep.png", (DIGIT * 65535).astype(np.uint16)),
        "float": save(tmp_path / "float.tif", DIGIT.astype(np.float32), "F"),
        "32-bit to 1000": save(tmp_path / "int1000.tif", (DIGIT * 1000).astype(np.int32), "I"),
        "32-bit to 255": save(tmp_path / "int255.tif", (DIGIT * 255).astype(np.int32), "I"),
        "32-bit to 256": save(tmp_path / "int256.tif", (DIGIT * 256).astype(np.int32), "I"),
        "float to 255": save(tmp_path / "float255.tif", (DIGIT * 255).astype(np.float32), "F"),
        "opaque rgba": save(tmp_path / "opaque.png", np.dstack([ink, ink, ink, np.full_like(ink, 255)]), "RGBA"),
    }


@pytest.mark.parametrize("form", ["grey", "rgba", "grey+alpha", "16-bit", "float", "32-bit to 1000", "32-bit to 255",
                                  "32-bit to 256", "float to 255", "opaque rgba"])
def test_every_form_of_the_digit_reads_as_the_digit(images, form):
    np.testing.assert_array_equal(predict.read_image(images[form]), DIGIT.ravel())


def test_ink_in_the_alpha_channel_predicts_as_the_grey_digit(model_file, images, capsys):
    assert predict.main([str(model_file), str(images["grey"])]) == 0
    grey = capsys.readouterr()
    assert predict.main([str(model_file), str(images["rgba"])]) == 0
    rgba = capsys.readouterr()
    assert rgba.out.replace("rgba.png", "grey.png") == grey.out and rgba.err == grey.err == ""


@pytest.mark.parametrize("ink, words", [
    (0, "is blank: no pixel holds ink"),
    (3, "is nearly blank: only 3 of 784 pixels hold ink"),
])
def test_a_blank_image_is_classified_with_a_warning(model_file, tmp_path, capsys, ink, words):
    pixels = np.zeros((28, 28), np.uint8)
    pixels[10, 10 : 10 + ink] = 255
    assert predict.main([str(model_file), str(save(tmp_path / "blank.png", pixels))]) == 0
    captured = capsys.readouterr()
    assert words in captured.err and "with probability" in captured.out


def refused(main, argv, capsys) -> str:
    """Run a program that should refuse its input: exit code 2 and one line on stderr."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_images_it_cannot_read_are_refused_with_the_reason(model_file, images, tmp_path, capsys):
    content = images["grey"].read_bytes()
    (tmp_path / "cut.png").write_bytes(content[: len(content) // 2])
    (tmp_path / "notes.png").write_text("not an image")
    nan = DIGIT.astype(np.float32)
    nan[0, 0] = np.nan
    save(tmp_path / "nan.tif", nan, "F")
    assert "cut.png: image file is truncated" in refused(predict.main, [model_file, tmp_path / "cut.png"], capsys)
    assert "notes.png is not an image" in refused(predict.main, [model_file, tmp_path / "notes.png"], capsys)
    assert "is a directory, not an image" in refused(predict.main, [model_file, tmp_path], capsys)
    assert "no image at" in refused(predict.main, [model_file, tmp_path / "none.png"], capsys)
    assert "holds F pixels from nan" in refused(predict.main, [model_file, tmp_path / "nan.tif"], capsys)


@pytest.mark.parametrize("program", ["evaluate", "predict", "serve"])
def test_a_file_that_is_no_checkpoint_is_refused_in_one_line(program, images, tmp_path, monkeypatch, capsys):
    def no_serving(*args):
        raise AssertionError("a checkpoint that is none was served")

    monkeypatch.setattr(serve, "make_server", no_serving)
    main = {"evaluate": evaluate.main, "predict": lambda argv: predict.main([*argv, str(images["grey"])]),
            "serve": serve.main}[program]
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "dir.npz").mkdir()
    assert "empty.npz is empty (0 bytes)" in refused(main, [tmp_path / "empty.npz"], capsys)
    assert "dir.npz is a directory, not a checkpoint" in refused(main, [tmp_path / "dir.npz"], capsys)
    with Tape():
        diverged = MLP([784, 4, 10])
        diverged.parameters().values[3] = np.nan
        checkpoint.save(tmp_path / "nan.npz", checkpoint.Checkpoint(diverged, 1))
    assert "1 of its 3,190 weights are not finite" in refused(main, [tmp_path / "nan.npz"], capsys)


def edited(source, target, edit_meta=lambda meta: meta, edit_arrays=lambda arrays: None) -> None:
    """A copy of the checkpoint `source` as a hand might have edited it: its JSON and its arrays."""
    import json
    with np.load(source) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["meta"] = np.array(json.dumps(edit_meta(json.loads(str(arrays["meta"])))))
    edit_arrays(arrays)
    np.savez(target, **arrays)


def setting(field, value):
    def edit(meta):
        *outer, last = field.split(".")
        inner = meta
        for name in outer:
            inner = inner[name]
        inner[last] = value
        return meta
    return edit


HAND_EDITS = {
    "meta a list": (lambda meta: [meta], {}, "meta should be an object, got [{"),
    "args a list": (setting("args", [1]), {}, "args should be an object, got [1]"),
    "unknown optimizer": (setting("optimizer", "lbfgs"), {}, "optimizer should be one of sgd, "),
    "epoch a string": (setting("epoch", "3"), {}, 'epoch should be an integer >= 0, got "3"'),
    "negative epoch": (setting("epoch", -1), {}, "epoch should be an integer >= 0, got -1"),
    "rng state a number": (setting("rng_state", 7), {}, "rng_state should be an object or null, got 7"),
    "rng state of another kind": (setting("rng_state", {"bit_generator": "MT19937", "state": {}}), {},
                                  "is not a readable wengert checkpoint (ValueError"),
    "a layer of no units": (setting("model.sizes", [1, 0, 2]), {}, "model.sizes should be a list of two or more"),
    "sizes of strings": (setting("model.sizes", ["784", "10"]), {}, "model.sizes should be a list of two or more"),
    "options unknown": (setting("optimizer_options", {"lr": 0.1, "nesterov": True}), {},
                        "is not a readable wengert checkpoint (TypeError"),
    "best epoch after the last": (setting("best", {"epoch": 9, "metric": "val_loss", "value": 1.0}), {},
                                  "best.epoch should be an epoch from 1 to 1, got 9"),
    "best epoch 0": (setting("best", {"epoch": 0, "metric": "val_loss", "value": 1.0}), {},
                     "best.epoch should be an epoch from 1 to 1, got 0"),
    "best metric unknown": (setting("best", {"epoch": 1, "metric": "f1", "value": 1.0}), {},
                            'best.metric should be "val_loss" or "val_accuracy", got "f1"'),
    "optimizer state of another shape": (lambda meta: meta, {"optimizer/m": np.zeros(3)},
                                         "optimizer state m has shape (3,), expected (18,)"),
}


@pytest.mark.parametrize("program", ["evaluate", "predict", "serve"])
@pytest.mark.parametrize("edit", HAND_EDITS, ids=list(HAND_EDITS))
def test_a_hand_edited_checkpoint_is_refused_in_one_line_naming_the_field(program, edit, images, tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.setattr(serve, "make_server", lambda *args: pytest.fail("a damaged checkpoint was served"))
    main = {"evaluate": evaluate.main, "predict": lambda argv: predict.main([*argv, str(images["grey"])]),
            "serve": serve.main}[program]
    with Tape():
        model = MLP([1, 4, 2], seed=0)
        state = {"m": np.zeros(len(model.parameters())), "v": np.ones(len(model.parameters())), "steps": np.array(3)}
        checkpoint.save(tmp_path / "good.npz", checkpoint.Checkpoint(
            model, 1, "adam", {"lr": 0.01}, state, np.random.default_rng(1).bit_generator.state, {"dataset": "mnist-5k"}))
    edit_meta, arrays, words = HAND_EDITS[edit]
    edited(tmp_path / "good.npz", tmp_path / "edited.npz", edit_meta, lambda a: a.update(arrays))
    err = refused(main, [tmp_path / "edited.npz"], capsys)
    assert "edited.npz" in err and words in err


def test_random_bytes_are_no_archive_and_the_message_says_so(tmp_path):
    (tmp_path / "noise.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.load(tmp_path / "noise.npz")
    assert str(error.value) == f"{tmp_path / 'noise.npz'} is not a wengert checkpoint (not an .npz archive)"


def test_every_level_of_alpha_reads_as_its_fraction_of_255_in_float64(tmp_path):
    """Each of the 256 alpha levels, not only 0 and 255: the pixels are level / 255 rounded once, in float64."""
    levels = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = levels
    pixels = predict.read_image(save(tmp_path / "levels.png", rgba, "RGBA"), invert="no")
    assert pixels.dtype == np.float64
    np.testing.assert_array_equal(pixels, levels.ravel() / 255.0)


@pytest.mark.parametrize("best_epoch", [1, 3])
def test_a_best_epoch_at_either_bound_loads_with_its_own_weights(tmp_path, best_epoch):
    with Tape():
        last, best = MLP([3, 4, 2], seed=0), MLP([3, 4, 2], seed=1)
        saved = checkpoint.Checkpoint(last, 3)
        saved.best = checkpoint.Best(best, best_epoch, "val_accuracy", 0.75)
        checkpoint.save(tmp_path / "model.npz", saved)
        back = checkpoint.load(tmp_path / "model.npz")
    assert (back.epoch, back.best.epoch, back.best.metric, back.best.value) == (3, best_epoch, "val_accuracy", 0.75)
    np.testing.assert_array_equal(back.model.parameters().values, last.parameters().values)
    np.testing.assert_array_equal(back.kept.parameters().values, best.parameters().values)
