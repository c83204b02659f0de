"""The `CallOnce` port on Powertools idempotency (DynamoDB persistence): one result per tool call.

The key is (tenant_id, run_id, tool_call_id); the tool name and input are the validation payload, so
a redelivery replays the stored outcome while a *different* call reusing an id is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from agentwire_tools.execution import ToolOutcome
from agentwire_tools.service import CallConflict, CallInProgress, CallKey, CallRecord, CallStoreUnavailable

#: Stable prefix of every record key: renaming a Python function must not forget past calls.
KEY_PREFIX = "tools.invocation"
#: Field names match `CallKey` and `CallRecord`.
KEY_JMESPATH = "[tenant_id, run_id, tool_call_id]"
VALIDATION_JMESPATH = "[tool_name, input]"


def _mark_replayed(response: Any, idempotent_data: DataRecord) -> Any:
    return {**response, "replayed": True} if isinstance(response, dict) else response


def _run_call(*, call: dict[str, Any], thunk: Callable[[], ToolOutcome]) -> dict[str, Any]:
    # `call` is what Powertools hashes (key and validation payload); `thunk` does the work.
    return thunk().model_dump(mode="json")


class PowertoolsCallOnce:
    def __init__(self, persistence: BasePersistenceLayer, *, expires_after_s: int = 24 * 3600) -> None:
        self.config = IdempotencyConfig(
            event_key_jmespath=KEY_JMESPATH,
            payload_validation_jmespath=VALIDATION_JMESPATH,
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_s,
            response_hook=_mark_replayed,
        )
        self._idempotent_call = idempotent_function(
            _run_call,
            data_keyword_argument="call",
            persistence_store=persistence,
            config=self.config,
            key_prefix=KEY_PREFIX,
        )

    @classmethod
    def on_dynamodb(cls, table_name: str, *, expires_after_s: int = 24 * 3600) -> PowertoolsCallOnce:
        persistence = DynamoDBPersistenceLayer(table_name=table_name, key_attr="id", expiry_attr="expiration")
        return cls(persistence, expires_after_s=expires_after_s)

    def register_lambda_context(self, context: LambdaContext) -> None:
        """Lets an in-progress record expire with this invocation's deadline, so a call whose Lambda
        crashed mid-way is retried by the next delivery instead of being 'in progress' for a day."""
        self.config.register_lambda_context(context)

    def __call__(self, key: CallKey, record: CallRecord, call: Callable[[], ToolOutcome]) -> ToolOutcome:
        payload = {**asdict(key), **asdict(record)}
        try:
            stored = self._idempotent_call(call=payload, thunk=call)
        except IdempotencyValidationError as exc:
            raise CallConflict(
                f"tool call {key.tool_call_id!r} of run {key.run_id!r} was already made with a different tool or input"
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise CallInProgress(
                f"tool call {key.tool_call_id!r} of run {key.run_id!r} is already running (an earlier delivery, or "
                "one whose worker died: its claim lapses with that invocation's deadline)"
            ) from exc
        except IdempotencyPersistenceLayerError as exc:
            raise CallStoreUnavailable(str(exc)) from exc
        return ToolOutcome.model_validate(stored)
