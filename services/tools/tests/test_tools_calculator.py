"""The calculator evaluates arithmetic exactly like Python does, and nothing else."""

from __future__ import annotations

import operator
import time

import pytest
from agentwire_tools.builtins.calculator import (
    CALCULATOR,
    MAX_EXPRESSION_CHARS,
    CalculatorInput,
    evaluate,
    run_calculator,
)
from agentwire_tools.registry import ToolError
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("-2 ** 2", -4),  # Python's precedence: unary minus binds looser than **
        ("(-2) ** 2", 4),
        ("2 ** -1", 0.5),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("10 / 4", 2.5),
        ("0.1 + 0.2", 0.1 + 0.2),
        ("+5 - -5", 10),
        ("1e3 * 2", 2000.0),
        ("  42  ", 42),
        ("((((3))))", 3),
    ],
)
def test_tools_calculator_matches_python_arithmetic(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected
    assert type(evaluate(expression)) is type(expected)


def test_tools_calculator_renders_the_number_as_text() -> None:
    assert run_calculator(CalculatorInput(expression="6 * 7")) == "42"
    assert run_calculator(CalculatorInput(expression="1 / 4")) == "0.25"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "Division by zero"),
        ("1 // 0", "Division by zero"),
        ("5 % 0", "Division by zero"),
        ("0 ** -1", "Division by zero"),
        ("1 +", "Not a valid arithmetic expression"),
        ("(1 + 2", "Not a valid arithmetic expression"),
        ("", "Not a valid arithmetic expression"),
        ("2 ** 10 ** 10", "too large"),
        ("10 ** 101", "too large"),
        ("9" * 102, "too large"),
        ("1e308 * 10", "too large"),
        ("2.0 ** 5000", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 < 2", "comparisons"),
        ("1 if 1 else 2", "Unsupported syntax"),
        ("True + 1", "Only numbers"),
        ("'a' * 3", "Only numbers"),
        ("1j * 2", "Only numbers"),
        ("1+" * 200 + "1", "too complex"),
    ],
)
def test_tools_calculator_refuses_with_a_clear_message(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('echo pwned')",
        "open('/etc/passwd').read()",
        "(1).__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "x + 1",
        "abs(-1)",
        "[1, 2][0]",
        "lambda: 1",
        "1; 2",
        "exec('1')",
    ],
)
def test_tools_calculator_rejects_names_calls_and_attributes(expression: str) -> None:
    with pytest.raises(ToolError):
        evaluate(expression)


def test_tools_calculator_bounds_are_checked_before_expensive_work() -> None:
    started = time.perf_counter()
    for hostile in ("9 ** 9 ** 9", "99999 ** 1000", "(10 ** 100) ** 100"):
        with pytest.raises(ToolError):
            evaluate(hostile)
    assert time.perf_counter() - started < 0.5


def test_tools_calculator_input_model_caps_the_expression_length() -> None:
    schema = CALCULATOR.spec.input_schema
    assert schema["properties"]["expression"]["maxLength"] == MAX_EXPRESSION_CHARS
    assert schema["required"] == ["expression"]
    with pytest.raises(ToolError, match="too long"):
        evaluate("1+" * MAX_EXPRESSION_CHARS + "1")


# A grammar of small ints with + - * and parentheses; each draw carries the text and its value,
# computed with Python's operators on the values (not by evaluating the text).
_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_leaves = st.integers(min_value=0, max_value=99).map(lambda n: (str(n), n))


def _combine(children: st.SearchStrategy[tuple[str, int]]) -> st.SearchStrategy[tuple[str, int]]:
    binary = st.tuples(children, st.sampled_from(sorted(_OPS)), children).map(
        lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", _OPS[t[1]](t[0][1], t[2][1]))
    )
    negated = children.map(lambda c: (f"-{c[0]}", -c[1]))
    return binary | negated


expressions = st.recursive(_leaves, _combine, max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_tools_calculator_agrees_with_python_on_random_expressions(drawn: tuple[str, int]) -> None:
    text, value = drawn
    assert evaluate(text) == value


@settings(max_examples=100, deadline=None)
@given(
    expressions,
    st.sampled_from(["__import__('os')", "os.system", "x", "print(1)", "(1).real", "globals()", "a.b.c"]),
    st.sampled_from(["+", "-", "*"]),
)
def test_tools_calculator_rejects_any_expression_smuggling_a_name(
    drawn: tuple[str, int], smuggled: str, op: str
) -> None:
    with pytest.raises(ToolError):
        evaluate(f"{drawn[0]} {op} {smuggled}")
