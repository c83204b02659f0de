"""The llm service's error codes and the `StepError`s providers raise.

Every provider maps its own failures to these codes, so the state machine's Retry/Catch (which match
on the code) never needs to know which provider answered.
"""

from __future__ import annotations

import math
from typing import Final

from agentwire_contracts.consumer import StepError

RATE_LIMITED: Final = "Llm.RateLimited"
OVERLOADED: Final = "Llm.Overloaded"
TIMEOUT: Final = "Llm.Timeout"
#: The provider failed on its side (5xx, connection lost): worth another try.
UNAVAILABLE: Final = "Llm.Unavailable"
BAD_REQUEST: Final = "Llm.BadRequest"
CONTEXT_TOO_LONG: Final = "Llm.ContextTooLong"
#: The provider refused our credentials or permissions: an operator must act, retrying cannot help.
UNAUTHORIZED: Final = "Llm.Unauthorized"
SCRIPT_EXHAUSTED: Final = "Llm.ScriptExhausted"
#: The scripted provider's script is missing or malformed.
SCRIPT_INVALID: Final = "Llm.ScriptInvalid"

RETRYABLE: Final = frozenset({RATE_LIMITED, OVERLOADED, TIMEOUT, UNAVAILABLE})


#: The failed answer's `message` is all the state machine sees of it (the resume consumer passes it on as
#: the task failure's Cause), so a rate-limited answer that knows its wait ends its message with
#: `; retry_after_s=<whole seconds>`: the run's `ReadRateLimitWait` state reads the number after the last
#: `=` and waits that long (see services/orchestrator/README.md).
WAIT_MARKER: Final = "retry_after_s="
#: `FailureData.message`'s limit: the marker must survive it.
MAX_MESSAGE_CHARS: Final = 4096


def with_wait(message: str, retry_after_s: float) -> str:
    """`message` ending with the wait the state machine reads (whole seconds, rounded up, at least 1)."""
    suffix = f"; {WAIT_MARKER}{max(1, math.ceil(retry_after_s))}"
    return message[: MAX_MESSAGE_CHARS - len(suffix)] + suffix


def llm_error(code: str, message: str, *, retry_after_s: float | None = None) -> StepError:
    """A `StepError` whose retryability follows from its code, so no call site can get it wrong."""
    if code == RATE_LIMITED and retry_after_s is not None:
        message = with_wait(message, retry_after_s)
    return StepError(code, message, retryable=code in RETRYABLE, retry_after_s=retry_after_s)


def rate_limited(message: str, retry_after_s: float | None = None) -> StepError:
    return llm_error(RATE_LIMITED, message, retry_after_s=retry_after_s)


def overloaded(message: str) -> StepError:
    return llm_error(OVERLOADED, message)


def timed_out(message: str) -> StepError:
    return llm_error(TIMEOUT, message)


def unavailable(message: str) -> StepError:
    return llm_error(UNAVAILABLE, message)


def bad_request(message: str) -> StepError:
    return llm_error(BAD_REQUEST, message)


def context_too_long(message: str) -> StepError:
    return llm_error(CONTEXT_TOO_LONG, message)


#: The run's or the tenant's budget cannot cover the call: not retried, the run ends with this reason.
BUDGET_EXCEEDED: Final = "Llm.BudgetExceeded"


def budget_exceeded(message: str) -> StepError:
    return llm_error(BUDGET_EXCEEDED, message)


def unpriced(model: str, why: str) -> StepError:
    """A model the price table does not know, asked for while a budget applies: its cost cannot be bounded,
    so the call is refused rather than counted as free. Not retryable: an operator must price it."""
    return bad_request(
        f"the model {model!r} has no price in the price table, and {why} applies to this call: add the model "
        "(or a prefix of its id) to the price table (data/prices.json, or the file AGENTWIRE_LLM_PRICES names)"
    )
