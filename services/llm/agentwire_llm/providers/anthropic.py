"""The Anthropic provider: the Messages API through the official SDK.

The SDK's own retries are off: Step Functions retries the step (with backoff and jitter) on the
retryable codes, and retrying in both places would multiply the wait and the cost.
"""

from __future__ import annotations

from typing import Any

import anthropic
from agentwire_contracts.consumer import StepError

from agentwire_llm import errors
from agentwire_llm.model import Completion, CompletionRequest
from agentwire_llm.providers.anthropic_format import completion_from_body, error_from_body, request_params
from agentwire_llm.providers.http_errors import retry_after_s
from agentwire_llm.settings import LlmSettings

#: Status codes whose body did not say what went wrong, mapped by the status alone.
_STATUS_CODES: dict[int, str] = {
    400: errors.BAD_REQUEST,
    401: errors.UNAUTHORIZED,
    403: errors.UNAUTHORIZED,
    404: errors.BAD_REQUEST,
    408: errors.TIMEOUT,
    413: errors.CONTEXT_TOO_LONG,
    429: errors.RATE_LIMITED,
    504: errors.TIMEOUT,
    529: errors.OVERLOADED,
}


def error_from_status(exc: anthropic.APIStatusError) -> StepError:
    retry_after = retry_after_s(exc.response.headers)
    if isinstance(exc.body, dict) and exc.body.get("type") == "error":
        return error_from_body(exc.body, retry_after_s=retry_after)
    code = _STATUS_CODES.get(exc.status_code, errors.UNAVAILABLE)
    return errors.llm_error(code, f"HTTP {exc.status_code} from the Anthropic API", retry_after_s=retry_after)


class AnthropicProvider:
    def __init__(self, client: anthropic.Anthropic, *, cache_prompt: bool = True) -> None:
        self._client = client
        self._cache_prompt = cache_prompt

    @classmethod
    def create(
        cls,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        cache_prompt: bool = True,
        **client_options: Any,
    ) -> AnthropicProvider:
        client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, **client_options
        )
        return cls(client, cache_prompt=cache_prompt)

    @classmethod
    def from_settings(cls, settings: LlmSettings, **client_options: Any) -> AnthropicProvider:
        if settings.anthropic_api_key is None:
            raise ValueError("the Anthropic provider needs ANTHROPIC_API_KEY")
        return cls.create(
            settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout_s=settings.request_timeout_s,
            cache_prompt=settings.prompt_caching,
            **client_options,
        )

    @property
    def name(self) -> str:
        return "anthropic"

    def complete(self, request: CompletionRequest) -> Completion:
        try:
            raw = self._client.messages.with_raw_response.create(
                **request_params(request, cache_prompt=self._cache_prompt)
            )
            body = raw.http_response.json()
        except anthropic.APITimeoutError as exc:
            raise errors.timed_out("the Anthropic API did not answer in time") from exc
        except anthropic.APIConnectionError as exc:
            raise errors.unavailable("could not reach the Anthropic API") from exc
        except anthropic.APIStatusError as exc:
            raise error_from_status(exc) from exc
        except ValueError as exc:
            raise errors.unavailable("the Anthropic API answered with a body that is not JSON") from exc
        if not isinstance(body, dict) or body.get("type") != "message":
            raise errors.unavailable("the Anthropic API answered with a body that is not a message")
        return completion_from_body(body, provider=self.name, requested_model=request.model)
