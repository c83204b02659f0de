"""The OpenAI provider: Chat Completions with function tools through the official SDK (retries off)."""

from __future__ import annotations

from typing import Any

import openai
from agentwire_contracts.consumer import StepError

from agentwire_llm import errors
from agentwire_llm.model import Completion, CompletionRequest
from agentwire_llm.providers.http_errors import retry_after_s
from agentwire_llm.providers.openai_format import completion_from_body, request_params

_STATUS_CODES: dict[int, str] = {
    400: errors.BAD_REQUEST,
    401: errors.UNAUTHORIZED,
    403: errors.UNAUTHORIZED,
    404: errors.BAD_REQUEST,
    408: errors.TIMEOUT,
    413: errors.CONTEXT_TOO_LONG,
    422: errors.BAD_REQUEST,
    429: errors.RATE_LIMITED,
    503: errors.OVERLOADED,
    504: errors.TIMEOUT,
}


def error_from_status(exc: openai.APIStatusError) -> StepError:
    retry_after = retry_after_s(exc.response.headers)
    body: dict[str, Any] = exc.body if isinstance(exc.body, dict) else {}
    # The SDK hands over the body's `error` object (or the whole body when there is none).
    nested = body.get("error")
    error: dict[str, Any] = nested if isinstance(nested, dict) else body
    error_code = str(error.get("code") or "")
    error_type = str(error.get("type") or "")
    message = str(error.get("message") or f"HTTP {exc.status_code} from the OpenAI API")
    code = _STATUS_CODES.get(exc.status_code, errors.UNAVAILABLE)
    if error_code == "context_length_exceeded":
        code = errors.CONTEXT_TOO_LONG
    elif exc.status_code == 429 and error_code == "insufficient_quota":
        # Out of credit, not a passing rate limit: retrying cannot help.
        code = errors.UNAUTHORIZED
    label = error_code or error_type or str(exc.status_code)
    return errors.llm_error(code, f"{label}: {message}"[:1000], retry_after_s=retry_after)


class OpenAIProvider:
    def __init__(self, client: openai.OpenAI) -> None:
        self._client = client

    @classmethod
    def create(
        cls, api_key: str, *, base_url: str | None = None, timeout_s: float = 120.0, **client_options: Any
    ) -> OpenAIProvider:
        client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, **client_options)
        return cls(client)

    @property
    def name(self) -> str:
        return "openai"

    def complete(self, request: CompletionRequest) -> Completion:
        try:
            response = self._client.chat.completions.with_raw_response.create(**request_params(request))
            body = response.http_response.json()
        except openai.APITimeoutError as exc:
            raise errors.timed_out("the OpenAI API did not answer in time") from exc
        except openai.APIConnectionError as exc:
            raise errors.unavailable("could not reach the OpenAI API") from exc
        except openai.APIStatusError as exc:
            raise error_from_status(exc) from exc
        except ValueError as exc:
            raise errors.unavailable("the OpenAI API answered with a body that is not JSON") from exc
        if not isinstance(body, dict):
            raise errors.unavailable("the OpenAI API answered with a body that is not a JSON object")
        return completion_from_body(body, provider=self.name, requested_model=request.model)
