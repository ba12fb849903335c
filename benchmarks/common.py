"""Timing helpers shared by the benchmarks: medians of repeated runs, and optional anchors."""
from __future__ import annotations

import gc
import importlib.util
import os
import platform
import statistics
import time
from typing import Callable

import numpy as np


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `run()` over `repeats` calls, after `warmup` untimed calls. Garbage
    left by earlier runs (micrograd's cycles) is collected first, so no run pays for another's."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def machine() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def softmax_adjoint_in_place(z, one_hot, scale, zmax, total) -> None:
    """z = (softmax of z's rows - one_hot) * scale, the mean cross-entropy's adjoint at the
    logits z, computed in z with the buffers zmax and total (rows x 1): the numpy-by-hand loops'."""
    np.max(z, axis=1, keepdims=True, out=zmax)
    z -= zmax
    np.exp(z, out=z)
    np.sum(z, axis=1, keepdims=True, out=total)
    z /= total
    z -= one_hot
    z *= scale
