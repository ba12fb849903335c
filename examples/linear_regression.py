"""The course's first model: weight = a * height + b (eq. 1), fitted by gradient descent on the
tape to the sum of squared residuals (eq. 2), printed beside the least-squares solution.

The data are a small illustrative sample (heights in cm, weights in kg), not a survey.
Run: python examples/linear_regression.py
"""
import numpy as np

import tape

heights = np.array([152.0, 158, 163, 165, 168, 170, 173, 175, 178, 180, 183, 188])
weights = np.array([51.0, 56, 59, 61, 63, 66, 68, 70, 74, 75, 79, 84])

# Standardise the heights so that a and b do not fight each other: the cost is then well
# conditioned and plain gradient descent converges in a few dozen steps.
mean, std = heights.mean(), heights.std()
xs = ((heights - mean) / std).tolist()


def cost(a, b):
    """c = sum_i (a x_i + b - y_i)^2, the course's eq. (2)."""
    return tape.sum([(a * x + b - y) ** 2 for x, y in zip(xs, weights.tolist())])


def in_cm(a, b):
    """The line in the original units: weight = slope * height + intercept."""
    return a / std, b - a * mean / std


value_and_grad = tape.value_and_grad(cost, argnums=(0, 1))
a, b, lr = 0.0, 0.0, 0.02
for step in range(1, 101):
    c, (da, db) = value_and_grad(a, b)
    a, b = a - lr * da, b - lr * db
    if step in (1, 5, 20, 100):
        print(f"step {step:3d}: cost {c:10.3f}   weight = {in_cm(a, b)[0]:.4f} * height + {in_cm(a, b)[1]:.4f}")

slope, intercept = np.polyfit(heights, weights, 1)
print(f"\ngradient descent on the tape:  weight = {in_cm(a, b)[0]:.4f} * height + {in_cm(a, b)[1]:.4f}")
print(f"least squares (numpy.polyfit): weight = {slope:.4f} * height + {intercept:.4f}")
