"""`python -m mlp.serve`: the program mlp/programs/serve.py under its command's name (see mlp.programs.command)."""
from .programs import command, serve

command(__name__, serve)
