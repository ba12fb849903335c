"""A multilayer perceptron on the tape, trained on handwritten digits.

From Python: `model = mlp.MLP([784, 32, 10])`, `history = mlp.fit(model, "mnist-5k", epochs=3)`,
`digits = mlp.load("mnist-5k")`, `mlp.fit(model, recipe=mlp.Recipe(epochs=3, val=0.1))`. The names
are imported on first use, so that `python -m mlp.serve` and the others load only what they need.
The modules here are the library; the programs (`python -m mlp.train`, ...) are in mlp/programs/.
"""
from importlib import import_module

_LAZY = {"fit": "fitting", "History": "history", "MLP": "nn", "load": "data", "Dataset": "data", "Recipe": "recipe"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mlp' has no attribute {name!r}")
    return getattr(import_module(f".{_LAZY[name]}", __name__), name)
