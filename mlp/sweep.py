"""`python -m mlp.sweep`: the program mlp/programs/sweep.py under its command's name (see mlp.programs.command)."""
from .programs import command, sweep

command(__name__, sweep)
