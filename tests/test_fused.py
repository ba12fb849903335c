"""The fused path's sums do not depend on how many threads run them."""
import numpy as np
import pytest
from tape import Tape

from mlp.accumulate import FusedAccumulator, SparseRows
from mlp.nn import MLP


@pytest.mark.parametrize("samples", [40, 7])
def test_the_gradient_is_bit_identical_on_any_number_of_threads(samples):
    rng = np.random.default_rng(4)
    X = rng.random((samples, 60)) * (rng.random((samples, 60)) < 0.4)  # sparse, like digits
    y = rng.integers(0, 10, samples)
    results = []
    with Tape():
        model = MLP([60, 24, 10], activation="relu", seed=1)
        for threads in (1, 2, 3):
            model.zero_grad()
            result = FusedAccumulator(model, threads).accumulate(SparseRows(X), np.arange(samples), y, 1 / samples)
            results.append((model.params.grad.copy(), result.loss, result.correct))
    (grad1, loss1, correct1), *others = results
    assert np.abs(grad1).max() > 0
    for grad, loss, correct in others:
        assert grad.tobytes() == grad1.tobytes() and loss == loss1 and correct == correct1
