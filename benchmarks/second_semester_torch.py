"""The PyTorch twin of examples/second_semester.py: the same recipe, for the same-session
comparison of accuracy and time. The same data, validation part (mlp.data.validation_split)
and augmentation (mlp.augment, the same code); PyTorch's own nn.Linear
layers (initialised by the same Kaiming-uniform rule), dropout, Adam and cosine schedule
(per step), float32 on the CPU; each epoch measured on the validation part (if the recipe holds
one out) and the test set, the best validation epoch's model kept and reported (else the last
epoch's), as the training program does.

    python -m benchmarks.second_semester_torch --dataset {mnist-5k,fashion-mnist} [--seed 0] [--threads 2]
"""
import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from second_semester import recipe  # noqa: E402

from mlp import data, train  # noqa: E402
from mlp.augment import Augment  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist-5k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    r = train.parser().parse_args([*recipe(args.dataset), "--seed", str(args.seed)])
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    ds = data.load(r.dataset)
    kept, held = data.validation_split(ds.y_train, r.val, r.seed) if r.val else (np.arange(len(ds.y_train)), np.arange(0))
    X, Y = ds.x_train[kept], ds.y_train[kept]
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    x_val, y_val, x_test, y_test = as_tensor(ds.x_train[held]), ds.y_train[held], as_tensor(ds.x_test), ds.y_test
    layers, width = [], X.shape[1]
    for size in r.hidden:
        linear = torch.nn.Linear(width, size)
        torch.nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
        torch.nn.init.zeros_(linear.bias)
        layers += [linear, torch.nn.ReLU(), torch.nn.Dropout(r.dropout[0])]
        width = size
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=r.lr)
    steps = -(-len(X) // r.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(1.0, k / (steps * r.epochs - 1)))))
    loss_fn, rng = torch.nn.CrossEntropyLoss(), np.random.default_rng(r.seed)
    augment = Augment(r.shift, r.rotate, r.elastic, r.elastic_sigma) if r.augment else None

    def accuracy(x, y):
        model.eval()
        with torch.no_grad():
            right = (model(x).argmax(1).numpy() == y).mean()
        model.train()
        return float(right)

    best = (-1.0, 0, None)
    for epoch in range(1, r.epochs + 1):
        order = rng.permutation(len(X))
        for first in range(0, len(X), r.batch_size):
            rows = order[first : first + r.batch_size]
            x = augment(X, rows, rng.integers(2**63)) if augment else X[rows]
            optimizer.zero_grad()
            loss_fn(model(as_tensor(x)), torch.tensor(Y[rows])).backward()
            optimizer.step()
            schedule.step()
        val = accuracy(x_val, y_val) if len(held) else 0.0
        accuracy(x_test, y_test)  # measured every epoch, as the training program does
        if val > best[0] or not len(held):
            best = (val, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    kept = f"kept epoch {best[1]} (val accuracy {100 * best[0]:.2f}%)" if len(held) else f"the last epoch's model ({best[1]})"
    print(f"PyTorch {torch.__version__} twin of the {args.dataset} recipe ({args.threads} threads): {kept}, "
          f"{time.perf_counter() - start:.1f} s in all")
    print(f"test accuracy: {100 * accuracy(x_test, y_test):.2f}%")


if __name__ == "__main__":
    main()
