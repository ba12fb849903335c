"""`python -m mlp.predict`: the program mlp/programs/predict.py under its command's name (see mlp.programs.command)."""
from .programs import command, predict

command(__name__, predict)
