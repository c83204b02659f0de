"""`calculator`: safe arithmetic over a whitelist of `ast` nodes. The expression is never evaluated
by Python (`eval`/`exec`/`compile` to code); only numbers, + - * / // % **, unary signs and
parentheses are accepted, and every step is bounded so a hostile expression cannot burn the CPU or
memory of the function."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from agentwire_tools.registry import SideEffect, Tool, ToolError

MAX_EXPRESSION_CHARS = 512
MAX_NODES = 256
#: |exponent| above this is refused outright, before any estimate of the result's size.
MAX_EXPONENT = 1000
#: Results (and every intermediate value) must stay within ±10**100: plenty for arithmetic a model
#: delegates, and small enough that multiplying two such numbers is instant.
MAX_MAGNITUDE_DIGITS = 100
MAX_MAGNITUDE = 10**MAX_MAGNITUDE_DIGITS

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class CalculatorInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: str = Field(
        min_length=1,
        max_length=MAX_EXPRESSION_CHARS,
        description="An arithmetic expression: numbers, + - * / // % **, unary minus and parentheses, "
        "e.g. '(2 + 3) * -4 ** 2'.",
    )


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression; raises `ToolError` with a message for the model."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"Expression is too long ({len(expression)} characters; at most {MAX_EXPRESSION_CHARS}).")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"Not a valid arithmetic expression: {exc.msg}.") from None
    except (RecursionError, MemoryError):
        raise ToolError("Expression is nested too deeply.") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError(f"Expression is too complex (more than {MAX_NODES} parts).")
    return _evaluate(tree.body)


def _evaluate(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        # bool is an int subclass; `True + 1` is not arithmetic a user meant.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ToolError(f"Only numbers are allowed, not {node.value!r}.")
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolError("Division by zero.") from None
        except OverflowError:
            raise ToolError(f"Result is too large (limit ±1e{MAX_MAGNITUDE_DIGITS}).") from None
        if isinstance(value, complex):
            raise ToolError("Result is not a real number (a negative number to a fractional power).")
        return _bounded(value)
    raise ToolError(f"Unsupported syntax: {_describe(node)}. Only numbers and + - * / // % ** ( ) are allowed.")


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse a power whose result would be too large *before* computing it (10**10**10 is cheap to
    write and very expensive to evaluate)."""
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"Exponent {exponent} is too large (at most {MAX_EXPONENT} in absolute value).")
    if exponent > 0 and abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_MAGNITUDE_DIGITS:
        raise ToolError(f"Result is too large (limit ±1e{MAX_MAGNITUDE_DIGITS}).")


def _bounded(value: Number) -> Number:
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError(f"Result is too large (limit ±1e{MAX_MAGNITUDE_DIGITS}).")
    if abs(value) > MAX_MAGNITUDE:
        raise ToolError(f"Result is too large (limit ±1e{MAX_MAGNITUDE_DIGITS}).")
    return value


def _describe(node: ast.expr) -> str:
    kinds = {
        ast.Name: "names",
        ast.Call: "function calls",
        ast.Attribute: "attributes",
        ast.Subscript: "subscripts",
        ast.Compare: "comparisons",
        ast.BoolOp: "boolean operators",
        ast.Lambda: "lambdas",
    }
    return kinds.get(type(node), type(node).__name__)


def format_number(value: Number) -> str:
    return repr(value)


def run_calculator(call: CalculatorInput) -> str:
    return format_number(evaluate(call.expression))


CALCULATOR = Tool(
    name="calculator",
    description=(
        "Evaluate an arithmetic expression exactly and return its value. Supports integers and decimals, "
        "+ - * / (true division), // (floor division), % (modulo), ** (power), unary minus and parentheses. "
        "Use it for any arithmetic instead of computing in your head."
    ),
    input_model=CalculatorInput,
    run=run_calculator,
    timeout_s=2.0,
    max_output_chars=1_000,
    side_effect=SideEffect.READ_ONLY,
    # Computed by this code from the validated input: no third-party text to fence.
    untrusted_output=False,
)
