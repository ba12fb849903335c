"""The MMiDS 8.5.3 run in PyTorch, as the book wrote it, for the same-session comparison with
examples/reproduce_mmids_fashion.py: 784-32-10 sigmoid, nn.CrossEntropyLoss (the batch mean),
batch 32, 10 epochs of SGD lr 1e-3, then 10 of Adam, on Debian's Fashion-MNIST files.

    python -m benchmarks.mmids_fashion_torch [--seed 42]
"""
import argparse
import time

import torch

from mlp.data import load

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=42)
seed = parser.parse_args().seed
torch.manual_seed(seed)
torch.set_num_threads(2)
data = load("fashion-mnist")
x_train, y_train = torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train)
x_test, y_test = torch.tensor(data.x_test, dtype=torch.float32), torch.tensor(data.y_test)
model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.Sigmoid(), torch.nn.Linear(32, 10))
loss_fn = torch.nn.CrossEntropyLoss()
generator = torch.Generator().manual_seed(seed)

for name, optimizer, book in (("SGD, lr 1e-3", torch.optim.SGD(model.parameters(), lr=1e-3), 64.0),
                              ("then Adam", torch.optim.Adam(model.parameters()), 87.1)):
    start = time.perf_counter()
    for _ in range(10):
        order = torch.randperm(len(x_train), generator=generator)
        for first in range(0, len(order), 32):
            rows = order[first : first + 32]
            optimizer.zero_grad()
            loss_fn(model(x_train[rows]), y_train[rows]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        accuracy = 100 * (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"PyTorch {name:13s} 10 epochs: test accuracy {accuracy:.1f}% (the book: {book}%) in {seconds:.1f} s")
