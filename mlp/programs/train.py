"""Train an MLP on handwritten digits: `python -m mlp.train` (see --help).

Its flags are the fields of `mlp.recipe.Recipe` (--batch-size is batch_size), with their help and
checks; the run is the library's training loop (`mlp.training.run_training`, see it for what an
epoch does). At the end it draws DIR/curves.png, DIR/confusion.png and DIR/mistakes.png and
prints the test accuracy of the model it keeps.

A new run never writes over another: DIR must be new or empty (without --out, the first free
one of runs/<dataset>, runs/<dataset>-2, ...). A loss or a weight that stops being a finite
number ends the run (exit code 1) and keeps the last good checkpoint.
"""
from __future__ import annotations

import argparse
import sys

from .. import checkpoint, data
from ..fitting import save_figures
from ..progress import ProgressBar
from ..recipe import Choice, Recipe, RecipeError, Several, Switch, flag, options
from ..training import RUNS, Diverged, RunError, run_training  # noqa: F401 - RUNS: where mlp.serve looks
from . import cli, finish

EXCLUSIVE = ("resume", "fresh")  # a run continues, or starts in a new directory


def parser(kind: type[argparse.ArgumentParser] = cli.ArgumentParser) -> argparse.ArgumentParser:
    """The program's flags, one a field of the recipe: its kind, default, help and group."""
    p = kind(prog="python -m mlp.train", description=__doc__.split("\n\n")[0])
    groups, exclusive = {}, None
    for f in options():
        what, group = f.metadata["kind"], f.metadata["group"]
        if group and group not in groups:
            groups[group] = p.add_argument_group(group)
        where = groups[group] if group else p
        if f.name in EXCLUSIVE:
            where = exclusive = exclusive or p.add_mutually_exclusive_group()
        settings = {"default": f.default, "help": f.metadata["help"]}
        if f.metadata["metavar"]:
            settings["metavar"] = f.metadata["metavar"]
        if isinstance(what, Switch):  # --augment sets True, --no-bias False
            settings.update(action="store_false" if f.default else "store_true", dest=f.name)
            settings.pop("default")
        else:
            if isinstance(what, Several):
                settings.update(nargs="+", type=cli.flag_type(what.kind), default=list(f.default))
            elif isinstance(what, Choice) and not hasattr(what, "read"):
                settings["choices"] = what.choices
            else:
                settings["type"] = cli.flag_type(what)
        where.add_argument(flag(f.name), **settings)
    return p


def check_options(p: argparse.ArgumentParser, args: argparse.Namespace) -> Recipe:
    """The recipe of the parsed flags; options that do not fit together (or a model too big for the
    tape or this machine's memory) refused through the parser."""
    try:
        return Recipe(**vars(args))
    except RecipeError as e:
        p.error(str(e))


def flags(given: dict) -> list[str]:
    """Recipe options (keywords, as mlp.fit takes them) as the command line says them: --name value,
    --name v1 v2, or a switch (nothing where it is as by default)."""
    fields, said = {f.name: f for f in options()}, []
    for name, value in given.items():
        if isinstance(fields[name].metadata["kind"], Switch):
            said += [] if value == fields[name].default else [flag(name)]  # the way from the default
        elif value is not None:
            said += [flag(name), *map(str, value if isinstance(value, (list, tuple)) else [value])]
    return said


def main(argv: list[str] | None = None) -> int:
    p = parser()
    recipe = check_options(p, p.parse_args(argv))
    try:
        history = run_training(recipe, progress=ProgressBar, figures=save_figures,
                               resume_hint=lambda directory: f"continue with --resume --out {directory}")
    except (cli.UsageError, checkpoint.CheckpointError, data.DatasetNotFoundError, data.DataFormatError,
            FileNotFoundError) as e:
        return cli.refuse(e)
    except Diverged as e:
        print(f"error: {e}. A smaller --lr (it is {recipe.lr:g}) may help", file=sys.stderr)
        return 1
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if history.interrupted:
        return 130
    print(f"test accuracy: {100 * history.test_accuracy:.2f}%")
    return 0


if __name__ == "__main__":
    finish(main())
