"""`python -m mlp.train`: the program mlp/programs/train.py under its command's name (see mlp.programs.command)."""
from .programs import command, train

command(__name__, train)
