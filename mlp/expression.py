"""Expressions typed by a user (`x2*cos(x1) + exp(x2)`), parsed with a whitelist and evaluated
on the tape: numbers, the variables x1, x2, ..., `pi` and `e`, + - * / ** and unary minus,
parentheses and the engine's functions. Nothing else is accepted, and nothing is ever passed to
`eval`: a small recursive-descent parser builds the expression out of `tape.Var` operations.
Every numeric failure (a domain error, a division by zero, an overflow, a complex power) is an
`ExpressionError` pointing at the operation; a value is always a finite real number.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

import tape

MAX_LENGTH = 500
MAX_DEPTH = 50  # nested parentheses and unary signs
MAX_VARIABLES = 100
CONSTANTS = {"pi": math.pi, "e": math.e}
SPACE = re.compile(r"\s*", re.ASCII)
TOKEN = re.compile(r"(?:(?P<number>\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op>\*\*|[-+*/()]))", re.ASCII)
VARIABLE = re.compile(r"x[1-9]\d*", re.ASCII)
OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}


class ExpressionError(ValueError):
    """A refused expression: the message points at the offending character."""

    def __init__(self, text: str, position: int, problem: str):
        self.position, self.problem = position, problem
        super().__init__(f"{problem} at character {position + 1}:\n  {text}\n  {' ' * position}^")


@dataclass
class Token:
    kind: str  # number, name, op, end
    text: str
    position: int


def tokens(text: str) -> list[Token]:
    """The whitelisted tokens of `text`; any other character becomes a "bad" token, which the
    parser refuses where it meets it (so the first problem in reading order is the one named)."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(text[:60] + "...", 60, f"the expression is longer than {MAX_LENGTH} characters")
    out, position = [], 0
    while (position := SPACE.match(text, position).end()) < len(text):
        match = TOKEN.match(text, position)
        if match:
            kind = match.lastgroup
            out.append(Token(kind, match.group(kind), position))
            position = match.end()
        else:
            out.append(Token("bad", text[position], position))
            position += 1
    out.append(Token("end", "", len(text)))
    return out


class Parser:
    """expression := term (('+' | '-') term)*;  term := unary (('*' | '/') unary)*;
    unary := ('-' | '+') unary | power;  power := atom ('**' unary)?;
    atom := number | variable | constant | function '(' expression ')' | '(' expression ')'."""

    def __init__(self, text: str, variables: dict[str, tape.Var]):
        self.text, self.variables = text, variables
        self.tokens, self.i, self.depth = tokens(text), 0, 0

    def parse(self):
        value = self.expression()
        if self.peek().kind != "end":
            self.fail(f"unexpected {'character ' if self.peek().kind == 'bad' else ''}{self.peek().text!r}")
        return value

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, problem: str, token: Token | None = None):
        raise ExpressionError(self.text, (token or self.peek()).position, problem)

    def expression(self):
        value = self.term()
        while self.peek().text in ("+", "-"):
            op = self.take()
            value = self.binary(op, value, self.term())
        return value

    def term(self):
        value = self.unary()
        while self.peek().text in ("*", "/"):
            op = self.take()
            value = self.binary(op, value, self.unary())
        return value

    def unary(self):
        if self.peek().text in ("-", "+"):
            sign = self.take().text
            value = self.nested(self.unary)
            return -value if sign == "-" else value
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek().text == "**":
            op = self.take()
            return self.binary(op, base, self.nested(self.unary))
        return base

    def binary(self, op: Token, left, right):
        """left op right. The tape's errors name their operation; Python's floats' do not, so
        theirs are named here."""
        shown = f"{_show(left)} {op.text} {_show(right)}"
        try:
            result = OPERATIONS[op.text](left, right)
        except OverflowError:
            self.fail(f"{shown} is too large for a float", op)
        except (ArithmeticError, ValueError) as error:
            self.fail(str(error) if isinstance(left, tape.Var) or isinstance(right, tape.Var) else f"{shown}: {error}", op)
        return self.checked(result, shown, op)

    def checked(self, result, shown: str, token: Token):
        """`result` if it is a finite real number (or a Var of one); else refused at `token`."""
        if isinstance(result, complex):
            self.fail(f"{shown} is not a real number", token)
        value = result.value if isinstance(result, tape.Var) else result
        if not math.isfinite(value):
            self.fail(f"{shown} gives {value}: too large for a float", token)
        return result

    def atom(self):
        token = self.take()
        if token.kind == "number":
            return self.checked(float(token.text), token.text, token)
        if token.text == "(":
            value = self.nested(self.expression)
            self.expect(")", token)
            return value
        if token.kind == "name":
            return self.name(token)
        if token.kind == "bad":
            self.fail(f"unexpected character {token.text!r}", token)
        self.fail("expected a number, a variable, a function or '('" if token.kind != "end" else "the expression ends too soon", token)

    def name(self, token: Token):
        if token.text in self.variables:
            return self.variables[token.text]
        if token.text in CONSTANTS:
            return CONSTANTS[token.text]
        if token.text in tape.ELEMENTARY:
            self.expect("(", token, f"{token.text} needs its argument in parentheses")
            argument = self.nested(self.expression)
            self.expect(")", token)
            try:
                result = tape.ELEMENTARY[token.text](argument)
            except (ArithmeticError, ValueError) as error:  # the tape's errors name the function
                self.fail(str(error), token)
            return self.checked(result, f"{token.text}({_show(argument)})", token)
        if VARIABLE.fullmatch(token.text):
            self.fail(f"{token.text} has no value (give one with the variables)", token)
        self.fail(f"unknown name {token.text!r}: use x1, x2, ..., pi, e or one of {', '.join(sorted(tape.ELEMENTARY))}", token)

    def expect(self, text: str, opener: Token, problem: str | None = None) -> None:
        if self.peek().text != text:
            self.fail(problem or f"expected {text!r} to close the {opener.text!r} at character {opener.position + 1}")
        self.take()

    def nested(self, rule):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"more than {MAX_DEPTH} nested parentheses or signs")
        try:
            return rule()
        finally:
            self.depth -= 1


def _show(x) -> str:
    value = x.value if isinstance(x, tape.Var) else x
    return f"({value:.6g})" if value < 0 else f"{value:.6g}"


def number(text: str | float, name: str) -> float:
    """A variable's value: a number, or a text of numbers and constants such as "pi / 2"."""
    if isinstance(text, str):
        value = Parser(text, {}).parse()
    elif isinstance(text, (int, float)) and not isinstance(text, bool):
        try:
            value = float(text)
        except OverflowError:
            raise ExpressionError(name, 0, f"{name} is too large for a float") from None
    else:
        raise ExpressionError(name, 0, f"{name} needs a number, got {text!r}")
    if not math.isfinite(value):
        raise ExpressionError(str(text), 0, f"{name} needs a finite number, got {value!r}")
    return value


def evaluate(text: str, values: dict) -> tuple[tape.Var | float, dict[str, tape.Var]]:
    """Parse `text` and record it on the current tape, the variables as leaves (in the order
    x1, x2, ...); returns the result and the leaves."""
    if len(values) > MAX_VARIABLES:
        raise ExpressionError(text, 0, f"{len(values)} variables; at most {MAX_VARIABLES} are accepted")
    for name in values:
        if not VARIABLE.fullmatch(name):
            raise ExpressionError(name, 0, f"variables are named x1, x2, ...; got {name!r}")
    ordered = sorted(values, key=lambda n: (len(n), n))  # x2 before x10
    numbers = {name: number(values[name], name) for name in ordered}
    leaves = {name: tape.Var(numbers[name]) for name in ordered}
    return Parser(text, leaves).parse(), leaves
