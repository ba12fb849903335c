"""MMiDS 8.5.3 on Fashion-MNIST: 784-32-10, sigmoid hidden layer, softmax cross-entropy,
batch 32; 10 epochs of SGD (lr 1e-3), then 10 epochs of Adam (its defaults) continuing from the
SGD-trained model. The book (PyTorch): 64.0%, then 87.1% test accuracy.

As the book's PyTorch code: weights and biases start from U(-1/sqrt(fan_in), 1/sqrt(fan_in))
(`nn.Linear`'s default), the loss is the batch mean, the training set is reshuffled each epoch.
Run: python examples/reproduce_mmids_fashion.py [--seed 42]
"""
import argparse
import time

import numpy as np

import tape
from mlp.accumulate import MatrixStep, InputRows
from mlp.data import load
from mlp.nn import MLP
from mlp.optim import SGD, Adam

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--seed", type=int, default=42)
seed = parser.parse_args().seed

data = load("fashion-mnist")  # Debian's dataset-fashion-mnist, the cache, or a download
rng = np.random.default_rng(seed)
with tape.Tape():
    model = MLP([784, 32, 10], activation="sigmoid", init="lecun_uniform", seed=seed)
    inputs = InputRows(data.x_train)

    def train(optimizer, epochs: int = 10, batch: int = 32) -> float:
        """Run the epochs on matrix nodes (float64, each step traced); return the seconds they took."""
        step, start = MatrixStep(model, optimizer), time.perf_counter()
        for _ in range(epochs):
            order = rng.permutation(len(data.x_train))
            for first in range(0, len(order), batch):
                rows = order[first : first + batch]
                step(inputs, rows, data.y_train, None, optimizer.lr)
        return time.perf_counter() - start

    def test_accuracy() -> float:
        return 100 * float((model.predict(data.x_test) == data.y_test).mean())

    for name, optimizer, book in (("SGD, lr 1e-3", SGD(model.parameters(), lr=1e-3), 64.0),
                                  ("then Adam", Adam(model.parameters()), 87.1)):
        seconds = train(optimizer)
        print(f"{name:13s} 10 epochs: test accuracy {test_accuracy():.1f}% (the book: {book}%) in {seconds:.1f} s")
