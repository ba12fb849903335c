"""What the command-line programs share: a mistake in the arguments, or in a file they name, is
refused in one line on stderr with exit code 2 (as argparse does), never with a traceback."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..recipe import UsageError  # noqa: F401 - the programs' name for it

MISTAKE = 2  # the exit code of a refused argument or file


class ArgumentParser(argparse.ArgumentParser):
    """argparse, refusing a bad argument in one line: `prog: error: ... (see --help)`."""

    def error(self, message: str):
        self.exit(MISTAKE, f"{self.prog}: error: {message} (see --help)\n")


def flag_type(kind) -> Callable[[str], object]:
    """argparse's `type=` for a recipe option's kind: the flag's text read and checked, refused in
    the recipe's words ("expected a positive integer, got 0"), or as argparse says when it is no
    value of the kind at all ("invalid positive_int value: 'x'")."""
    def read(text: str):
        value = kind.read(text)
        try:
            return kind.check(value, given=text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    read.__name__ = kind.name
    return read


def refuse(error: BaseException | str) -> int:
    """Say `error: ...` on stderr; returns the exit code of a user's mistake."""
    print(f"error: {error}", file=sys.stderr)
    return MISTAKE
