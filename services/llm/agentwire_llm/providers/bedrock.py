"""The Amazon Bedrock provider: the Converse API through boto3 (`bedrock-runtime`), retries off."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from agentwire_llm import errors
from agentwire_llm.model import Completion, CompletionRequest
from agentwire_llm.providers.bedrock_format import completion_from_response, error_for, request_params


class BedrockProvider:
    def __init__(self, client: Any, *, cache_prompt: bool = False) -> None:
        self._client = client
        self._cache_prompt = cache_prompt

    @classmethod
    def create(
        cls, *, region: str | None = None, timeout_s: float = 120.0, cache_prompt: bool = False
    ) -> BedrockProvider:
        config = Config(read_timeout=timeout_s, connect_timeout=10, retries={"max_attempts": 1, "mode": "standard"})
        return cls(boto3.client("bedrock-runtime", region_name=region, config=config), cache_prompt=cache_prompt)

    @property
    def name(self) -> str:
        return "bedrock"

    def complete(self, request: CompletionRequest) -> Completion:
        try:
            response = self._client.converse(**request_params(request, cache_prompt=self._cache_prompt))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = str(error.get("Message") or "")
            code = error_for(str(error.get("Code") or ""), message, status)
            raise errors.llm_error(code, f"{error.get('Code')}: {message}"[:1000]) from exc
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise errors.timed_out("Bedrock did not answer in time") from exc
        except BotoCoreError as exc:
            raise errors.unavailable(f"could not call Bedrock: {type(exc).__name__}") from exc
        return completion_from_response(response, provider=self.name, requested_model=request.model)
