"""MMiDS 8.5.2: the two-layer network's worked example, on the tape.

x = [1, 0, -1], y = [0, 1]; z1 = sigmoid(W0 x), z2 = softmax(W1 z1), loss = -log z2[1];
no biases. Prints z1, z2, the loss and both weight gradients beside the book's figures.
Run: python examples/mmids_example.py
"""
import numpy as np

import tape
from mlp import losses
from mlp.nn import MLP

x = np.array([1.0, 0.0, -1.0])
label = 1  # y = [0, 1]
W0 = np.array([[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]])
W1 = np.array([[-1.0, 0.0], [2.0, -1.0]])

with tape.Tape():
    model = MLP([3, 2, 2], activation="sigmoid", bias=False)
    model.load_state_dict({"layers.0.weight": W0, "layers.1.weight": W1})
    hidden, output = model.layers
    z1 = hidden(list(x))  # two sigmoid nodes
    logits = output(z1)  # two dot nodes
    loss = losses.softmax_cross_entropy(logits, label)  # one node, partials z2 - y
    loss.backward()
    z2 = losses.softmax(np.array([v.value for v in logits]))
    grad_W0, grad_W1 = (layer.weights.grad for layer in model.layers)


def row(values) -> str:
    return "[" + ", ".join(f"{v:7.4f}" for v in values) + "]"


book = {"z1": "[ 0.7311,  0.7311]", "z2": "[ 0.1881,  0.8119]", "loss": "0.2084",
        "W0.grad": ("[-0.1110, -0.0000,  0.1110]", "[ 0.0370,  0.0000, -0.0370]"),
        "W1.grad": ("[ 0.1375,  0.1375]", "[-0.1375, -0.1375]")}
print(f"{'':9}{'wengert':30}the book (MMiDS 8.5.2)")
print(f"{'z1':9}{row(v.value for v in z1):30}{book['z1']}")
print(f"{'z2':9}{row(z2):30}{book['z2']}")
print(f"{'loss':9}{loss.value:<30.4f}{book['loss']}")
for name, grad in (("W0.grad", grad_W0), ("W1.grad", grad_W1)):
    for i, title in enumerate((name, "")):
        print(f"{title:9}{row(grad[i]):30}{book[name][i]}")
