"""The README's Python examples run, and print what the README says they print."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPILING = re.compile(r"compiling .* with numba \(first use only: cached for later runs\) \.\.\.")  # tape.announce_compiling
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def shown_output(block: str) -> list[str]:
    """The block's comment-only lines: the printed output, and some explanations among it."""
    return [line[2:].rstrip() for line in block.splitlines() if line.startswith("# ")]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_prints_what_the_readme_shows(block, tmp_path):
    run = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert run.returncode == 0, run.stderr
    shown = iter(shown_output(block))
    printed = [line for line in run.stdout.splitlines() if not COMPILING.fullmatch(line)]  # a first run's alone
    for line in printed:  # each printed line appears among the comments, in order
        assert line.rstrip() in shown, f"printed {line!r}, which the README does not show (in this order)"


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 3 and "y.backward()" in BLOCKS[0]
