"""`python -m mlp.evaluate`: the program mlp/programs/evaluate.py under its command's name (see mlp.programs.command)."""
from .programs import command, evaluate

command(__name__, evaluate)
