"""The expression parser of the web page's tape explorer reads ASCII only: a digit or a space of
another script is refused where it stands, never read as a number or skipped."""

import pytest

import tape
from mlp.expression import ExpressionError, evaluate

@pytest.mark.parametrize("text, character, position", [
    ("x1 + \u0663", "\u0663", 6),  # an Arabic-Indic three
    ("x1 * \uff12", "\uff12", 6),  # a full-width two
    ("x\u00b9 + 1", "x", 1),  # x followed by a superscript one is no variable
    ("x1\u00a0+ x2", "\u00a0", 3),  # a no-break space
])
def test_characters_outside_ascii_are_refused_where_they_stand(text, character, position):
    with tape.Tape(), pytest.raises(ExpressionError) as error:
        evaluate(text, {"x1": 1, "x2": 2})
    assert error.value.position + 1 == position
    assert f"at character {position}:" in str(error.value)

@pytest.mark.parametrize("values", [{"x1": "\u0663"}, {"x\u0661": 3}])
def test_values_and_names_outside_ascii_are_refused(values):
    with tape.Tape(), pytest.raises(ExpressionError):
        evaluate("x1", values)

def test_ascii_spaces_of_every_kind_separate_tokens():
    with tape.Tape():
        y, leaves = evaluate("\tx1 *\n2 +\r\x0bx1\x0c", {"x1": 1.5})
        assert y.value == 4.5 and list(leaves) == ["x1"]


def test_an_expression_too_long_is_shown_by_its_first_60_characters():
    text = "x1 + " * 120
    with tape.Tape(), pytest.raises(ExpressionError) as error:
        evaluate(text, {"x1": 1})
    assert error.value.position == 60 and f"\n  {text[:60]}...\n" in str(error.value)
