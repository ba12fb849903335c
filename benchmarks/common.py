"""Timing helpers shared by the benchmarks: medians of repeated runs, and optional anchors."""
from __future__ import annotations

import gc
import importlib.util
import os
import platform
import statistics
import time
from typing import Callable


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
