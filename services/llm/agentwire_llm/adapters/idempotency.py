"""`OncePerStep` on Powertools idempotency: one record per (tenant, run, step) in the idempotency table."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentwire_contracts.consumer import StepError
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

from agentwire_llm import errors
from agentwire_llm.completion import RecordedTurn, StepKey

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: Fixed, so records do not depend on the Lambda function's (deployment-specific) name.
KEY_PREFIX = "agentwire-llm.completion"


def _call(call: Callable[[], RecordedTurn], *, step: dict[str, Any]) -> RecordedTurn:
    # `step` is only what Powertools hashes (key) and validates (fingerprint); the work is `call`.
    return call()


class PowertoolsOncePerStep:
    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        expires_after_seconds: int = 24 * 3600,
    ) -> None:
        self.persistence = DynamoDBPersistenceLayer(
            table_name=table_name, key_attr="id", expiry_attr="expiration", boto3_client=client
        )
        self.config = IdempotencyConfig(
            event_key_jmespath="key",
            payload_validation_jmespath="fingerprint",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
        )
        self._call_once = idempotent_function(
            _call,
            data_keyword_argument="step",
            persistence_store=self.persistence,
            config=self.config,
            output_serializer=PydanticSerializer(model=RecordedTurn),
            key_prefix=KEY_PREFIX,
        )

    def register_lambda_context(self, context: Any) -> None:
        """Lets an in-progress record expire with the invocation, so a crashed attempt cannot block a retry."""
        if context is not None:
            self.config.register_lambda_context(context)

    def run_once(self, key: StepKey, fingerprint: str, call: Callable[[], RecordedTurn]) -> RecordedTurn:
        try:
            turn = self._call_once(call, step={"key": str(key), "fingerprint": fingerprint})
        except IdempotencyValidationError as exc:
            raise StepError(
                errors.BAD_REQUEST,
                f"step {key.step} of run {key.run_id} was already answered for a different request",
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            # The step asked again while an earlier attempt holds it (a crashed invocation's claim lasts until
            # that invocation would have timed out): retryable, so the run's backoff outlasts the claim
            # instead of the message hiding for the whole visibility timeout.
            raise errors.llm_error(
                errors.UNAVAILABLE, f"step {key.step} of run {key.run_id} is being answered by another attempt"
            ) from exc
        if not isinstance(turn, RecordedTurn):
            raise TypeError(f"idempotency returned {type(turn).__name__}, expected RecordedTurn")
        return turn
