"""What the command-line programs share: a mistake in the arguments, or in a file they name, is
refused in one line on stderr with exit code 2 (as argparse does), never with a traceback."""
from __future__ import annotations

import argparse
import sys

MISTAKE = 2  # the exit code of a refused argument or file


class UsageError(ValueError):
    """A mistake of the user's that the program refuses; the message says what and where. A
    ValueError, as the library (mlp.fit) raises it; the programs turn it into a usage message."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, refusing a bad argument in one line: `prog: error: ... (see --help)`."""

    def error(self, message: str):
        self.exit(MISTAKE, f"{self.prog}: error: {message} (see --help)\n")


def refuse(error: BaseException | str) -> int:
    """Say `error: ...` on stderr; returns the exit code of a user's mistake."""
    print(f"error: {error}", file=sys.stderr)
    return MISTAKE
