"""The programs: thin command lines over the library (mlp/*.py), which imports none of them.

`python -m mlp.train` (and evaluate, predict, serve, sweep) runs mlp/train.py, a launcher that
runs the program here; `import mlp.train` gives the program's module itself (see `command`).
"""
from __future__ import annotations

import gc
import sys
from types import ModuleType
from typing import NoReturn


def command(name: str, program: ModuleType) -> None:
    """What a launcher mlp/NAME.py does: run `program` when run as a command (`name` is
    "__main__"), else stand for it, so that mlp.NAME is the program's module and its names."""
    if name == "__main__":
        finish(program.main())
    sys.modules[name] = program


def finish(code: int) -> NoReturn:
    """Exit a program with `code`, its objects frozen first: Python's exit would otherwise walk
    the 160,000 objects of numpy, numba and matplotlib in its last collections (0.3-0.4 s) only to
    free memory the system takes back anyway. atexit handlers still run."""
    gc.freeze()
    sys.exit(code)
