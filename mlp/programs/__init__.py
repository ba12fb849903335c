"""The programs: thin command lines over the library (mlp/*.py), which imports none of them.

`python -m mlp.train` (and evaluate, predict, serve, sweep) runs mlp/train.py, a launcher that
runs the program here; `import mlp.train` gives the program's module itself (see `command`).
"""
from __future__ import annotations

import sys
from types import ModuleType


def command(name: str, program: ModuleType) -> None:
    """What a launcher mlp/NAME.py does: run `program` when run as a command (`name` is
    "__main__"), else stand for it, so that mlp.NAME is the program's module and its names."""
    if name == "__main__":
        sys.exit(program.main())
    sys.modules[name] = program
