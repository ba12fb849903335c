"""Matrix nodes: the course's step three ("make sure it supports matrix/vector nodes").

First the worked example f(x1, x2) = x2 * cos(x1) + e^x2 at (pi, 1) with x a vector node: its
entries are scalar Vars, so the scalar tape goes on from there. Then a two-layer net in the
notes' matrix form, H = sigmoid(X W1 + b1), Z = H W2 + b2, y = mean softmax cross-entropy: one
node per operation, each adjoint a matrix of its node's shape, printed and compared with the
notes' tensor-form rules (for Z = XW: X̄ = Z̄ Wᵀ and W̄ = Xᵀ Z̄), written out here in numpy.

Run: python examples/matrix_nodes.py
"""
import math

import numpy as np

import tape
from tape import Tensor

np.set_printoptions(precision=4, suppress=True)

print("1. The worked example with x = [x1, x2] as ONE vector node")
with tape.Tape() as t:
    x = Tensor([math.pi, 1.0])
    f = x[1] * tape.cos(x[0]) + tape.exp(x[1])  # x[0] and x[1] are Vars taken from the matrix node
    f.backward()
    print(f"f(pi, 1) = {f.value:.12f} (e - 1); the gradient x̄ = {x.grad} (0 and e - 1 = {math.e - 1:.4f})")
    t.show()

print("\n2. A two-layer net on a batch of 4 samples, in matrix form")
rng = np.random.default_rng(0)
X_values = rng.standard_normal((4, 3))  # 4 samples, 3 inputs
labels = np.array([0, 1, 1, 0])
with tape.Tape() as t:
    X = Tensor(X_values, requires_grad=False)  # the data: a constant, no adjoint
    W1, b1 = Tensor(rng.standard_normal((3, 5)) * 0.5), Tensor(np.zeros(5))
    W2, b2 = Tensor(rng.standard_normal((5, 2)) * 0.5), Tensor(np.zeros(2))
    Z1 = X @ W1 + b1
    H = tape.sigmoid(Z1)
    Z = H @ W2 + b2
    y = tape.softmax_cross_entropy(Z, labels)  # a scalar: a Var
    y.backward()
    names = {W1: "W1", b1: "b1", W2: "W2", b2: "b2", Z1: "Z1", H: "H", Z: "Z", y: "y"}
    t.show(names={v.node: name for v, name in names.items()})

    print(f"\ny = {y.value:.6f}; each adjoint has its node's shape:")
    for v, name in names.items():
        if isinstance(v, Tensor):
            print(f"  {name}̄ {v.grad.shape}:\n{v.grad}")

    # The notes' tensor form, by hand: Z̄ = (softmax(Z) - one-hot) / batch, then for each product
    # Z = XW: X̄ = Z̄ Wᵀ and W̄ = Xᵀ Z̄; a bias row added to every sample gets the column sums.
    p = np.exp(Z.value) / np.exp(Z.value).sum(axis=1, keepdims=True)
    Z_bar = (p - np.eye(2)[labels]) / len(labels)
    checks = {
        "Z̄ = (softmax(Z) - one-hot) / 4": (Z.grad, Z_bar),
        "W̄2 = Hᵀ Z̄": (W2.grad, H.value.T @ Z_bar),
        "b̄2 = column sums of Z̄": (b2.grad, Z_bar.sum(axis=0)),
        "H̄ = Z̄ W2ᵀ": (H.grad, Z_bar @ W2.value.T),
        "Z̄1 = H̄ * H * (1 - H)": (Z1.grad, (Z_bar @ W2.value.T) * H.value * (1 - H.value)),
        "W̄1 = Xᵀ Z̄1": (W1.grad, X_values.T @ ((Z_bar @ W2.value.T) * H.value * (1 - H.value))),
    }
    print("\nThe tape's adjoints against the notes' formulas:")
    for formula, (from_tape, by_hand) in checks.items():
        print(f"  {formula:32s} largest difference {np.abs(from_tape - by_hand).max():.1e}")
