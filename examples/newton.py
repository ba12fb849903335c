"""Newton's method for logistic regression, its Hessian by `tape.hessian` on a matrix node.

Which handwritten digits are 8s rather than 3s (mnist-5k: 800 training and 200 test images,
each averaged over 2x2 blocks of pixels to 14x14 = 196 inputs, and a 1 for the bias). The
model is p = sigmoid(Xw); the loss the mean of log(1 + e^z) - y z over the samples (z = Xw).
Its gradient is Xᵀ(p - y)/n and its Hessian XᵀDX/n with D = diag(p(1 - p)): the example
computes both with the tape from w, ONE matrix node, prints the Hessian beside the closed form,
and takes Newton steps w <- w - H⁻¹ g. Then Pearlmutter's trick on the MMiDS net (784-32-10):
a Hessian-vector product without the Hessian, beside finite differences of the gradient.

Run: python examples/newton.py
"""
import numpy as np

import tape
from mlp.data import load
from mlp.nn import MLP
from tape import Tensor

data = load("mnist-5k")


def threes_and_eights(x, y):
    """The 3s and 8s: pixels averaged over 2x2 blocks, a column of ones; label 1 for an 8."""
    keep = (y == 3) | (y == 8)
    pooled = x[keep].reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 196)
    return np.hstack([pooled, np.ones((len(pooled), 1))]), (y[keep] == 8).astype(float)


X, y = threes_and_eights(data.x_train, data.y_train)
X_test, y_test = threes_and_eights(data.x_test, data.y_test)
n, d = X.shape
# A little L2 regularisation, (LAMBDA/2)|w|^2: pixels that are blank in every image (the borders)
# would otherwise give the Hessian zero rows, and it could not be inverted.
LAMBDA = 1e-3


def loss(w):
    """The mean logistic loss of the training set, regularised; w a Tensor of d entries."""
    z = X @ w
    return (tape.softplus(z) - y * z).mean() + LAMBDA / 2 * (w * w).sum()


def accuracy(w, X, y) -> float:
    return 100 * np.mean((X @ w > 0) == (y == 1))


print(f"1. The Hessian of the loss at w = 0 ({d} x {d}), by tape.hessian on one matrix node w")
w = np.zeros(d)
H = tape.hessian(loss)(Tensor(w))
p = 1 / (1 + np.exp(-X @ w))
closed_form = X.T @ np.diag(p * (1 - p)) @ X / n + LAMBDA * np.eye(d)  # XᵀDX/n + λI
shown = np.ix_([105, 106, 196], [105, 106, 196])  # two pixels in the middle of the image, and the bias
print("   rows and columns of two middle pixels and the bias:")
for row, (ours, theirs) in enumerate(zip(H[shown], closed_form[shown])):
    print(f"   {'tape.hessian' if row == 0 else '':12} {np.round(ours, 6)}   {'XᵀDX/n + λI' if row == 0 else '':11} {np.round(theirs, 6)}")
print(f"   largest difference over all {d * d} entries: {np.abs(H - closed_form).max():.1e}")

STEPS = 6
print(f"\n2. Newton's method, {STEPS} steps: w <- w - H⁻¹ g, g and H from the tape")
for step in range(STEPS + 1):
    value, g = tape.value_and_grad(loss)(Tensor(w))
    print(f"   w{step}: loss {value:.6f}, largest gradient entry {np.abs(g).max():.1e}, "
          f"training accuracy {accuracy(w, X, y):4.1f}%, test accuracy {accuracy(w, X_test, y_test):4.1f}%")
    if step < STEPS:
        w = w - np.linalg.solve(tape.hessian(loss)(Tensor(w)), g)

print("\n3. Pearlmutter's trick: H v for the MMiDS net's loss in its first layer's weights, no Hessian formed")
with tape.Tape():
    weights = MLP([784, 32, 10], activation="sigmoid", seed=0).state_dict()
batch, labels = data.x_train[:64], data.y_train[:64]


def net_loss(W1):
    """The batch's mean softmax cross-entropy of the 784-32-10 sigmoid net, in W1 (32 x 784)."""
    hidden = tape.sigmoid(batch @ W1.T + weights["layers.0.bias"])
    return tape.softmax_cross_entropy(hidden @ weights["layers.1.weight"].T + weights["layers.1.bias"], labels)


W1 = weights["layers.0.weight"]
V = np.random.default_rng(0).normal(size=W1.shape)
Hv = tape.hvp(net_loss, Tensor(W1), V)
eps = 1e-5  # central differences of the gradient along V: (g(W1 + eps V) - g(W1 - eps V)) / 2 eps
differences = (tape.grad(net_loss)(Tensor(W1 + eps * V)) - tape.grad(net_loss)(Tensor(W1 - eps * V))) / (2 * eps)
print(f"   hvp {Hv.shape}, its largest entry {np.abs(Hv).max():.3e}")
print(f"   largest difference from central differences of the gradient, relative: "
      f"{np.abs(Hv - differences).max() / np.abs(differences).max():.1e}")
