"""The optimizers' rules (notes 004), each one compiled pass over the parameters, split
between the cores (each entry's update is independent of the others, so the result does not
depend on the number of threads).

Each pass reads the gradient `g` in its own dtype (a float32 step's) times `scale` (clipping's,
1 without: exact) and keeps that float64 gradient in `kept` (the parameters' accumulator, which
may be g itself): no pass of its own to convert or to clip. It adds weight decay (g + wd theta,
as PyTorch's L2 decay; none where wd is 0) and counts the new parameters that are not finite
numbers, which it returns: the training loop's divergence check without a pass of its own, and
no array for g + wd theta.

Compiled with numpy's error model: Python's would test every division for a zero divisor (none
can be: eps > 0 and the bias corrections are positive) and that test keeps the loops from being
vectorized (Adam's step on 25,450 parameters: 193 us against 50 us)."""
import math

from numba import njit, prange

from tape import announce_compiling

announce_compiling(__name__, "mlp's training kernels")


@njit(cache=True, error_model="numpy", inline="always")
def _gradient(g, scale, kept, i, theta, wd):
    """Entry i of the gradient scaled, kept, with weight decay added (without, itself: -0.0 stays -0.0)."""
    gi = scale * float(g[i])
    kept[i] = gi
    return gi + wd * theta if wd != 0.0 else gi


@njit(cache=True, error_model="numpy", inline="always")
def _not_finite(x):
    """1 for an inf or a nan, else 0 (x - x is 0 for every finite x), without a branch."""
    return int(not (x - x == 0.0))


@njit(cache=True, error_model="numpy", parallel=True)
def sgd(theta, g, scale, kept, lr, wd):
    """theta = theta - lr g."""
    bad = 0
    for i in prange(theta.shape[0]):
        theta[i] -= lr * _gradient(g, scale, kept, i, theta[i], wd)
        bad += _not_finite(theta[i])
    return bad


@njit(cache=True, error_model="numpy", parallel=True)
def momentum(theta, g, scale, kept, v, lr, beta, unbias, wd):
    """v = beta v + (1 - beta) g;  theta = theta - lr v / unbias (1, or 1 - beta^t unbiased)."""
    bad = 0
    for i in prange(theta.shape[0]):
        v[i] = beta * v[i] + (1 - beta) * _gradient(g, scale, kept, i, theta[i], wd)
        theta[i] -= lr * v[i] / unbias
        bad += _not_finite(theta[i])
    return bad


@njit(cache=True, error_model="numpy", parallel=True)
def nesterov(phi, g, scale, kept, v, lr, beta, wd):
    """v' = beta v + (1 - beta) g, g taken at the look-ahead phi = theta - lr v; then
    theta' = theta - lr v', and phi' = theta' - lr v' = phi + lr v - 2 lr v'."""
    bad = 0
    for i in prange(phi.shape[0]):
        previous = v[i]
        v[i] = beta * v[i] + (1 - beta) * _gradient(g, scale, kept, i, phi[i], wd)
        phi[i] += lr * previous - 2 * lr * v[i]
        bad += _not_finite(phi[i])
    return bad


@njit(cache=True, error_model="numpy", parallel=True)
def rmsprop(theta, g, scale, kept, s, lr, beta, eps, wd):
    """s = beta s + (1 - beta) g^2;  theta = theta - lr g / (sqrt(s) + eps)."""
    bad = 0
    for i in prange(theta.shape[0]):
        gi = _gradient(g, scale, kept, i, theta[i], wd)
        s[i] = beta * s[i] + (1 - beta) * gi * gi
        theta[i] -= lr * gi / (math.sqrt(s[i]) + eps)
        bad += _not_finite(theta[i])
    return bad


@njit(cache=True, error_model="numpy", parallel=True)
def adam(theta, g, scale, kept, m, v, lr, beta1, beta2, eps, t, wd):
    """m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  theta = theta - lr m^ / (sqrt(v^) + eps)
    with m^ = m / (1 - b1^t) and v^ = v / (1 - b2^t), computed as PyTorch's Adam computes it, the
    corrections taken out of the loop: theta - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps),
    with one division and one square root an entry (division and square root are what the pass
    spends its time on: 275 us against 420 on the second semester's 268,800 weights)."""
    step, root = lr / (1 - beta1**t), 1 / math.sqrt(1 - beta2**t)
    bad = 0
    for i in prange(theta.shape[0]):
        gi = _gradient(g, scale, kept, i, theta[i], wd)
        m[i] = beta1 * m[i] + (1 - beta1) * gi
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
        theta[i] -= step * m[i] / (math.sqrt(v[i]) * root + eps)
        bad += _not_finite(theta[i])
    return bad


@njit(cache=True)
def clip_scale(g, max_norm):
    """The factor that scales g down to L2 norm max_norm where it is longer (1 where not), the
    norm summed in float64 whatever g's dtype."""
    total = 0.0
    for i in range(g.shape[0]):
        x = float(g[i])
        total += x * x
    norm = math.sqrt(total)
    return max_norm / norm if norm > max_norm else 1.0
