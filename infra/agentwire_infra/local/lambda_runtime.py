"""What AWS Lambda hands a function, rebuilt locally: the context object and the SQS batch event.

The handlers are the deployed Lambda entry points, unchanged; these shapes are the contract between
them and the runtime, so they follow Lambda's documented SQS event format field for field — built by
`agentwire_contracts.testing`, the same code the services' tests hand their handlers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentwire_contracts.testing import LambdaContextStub, sqs_batch_event_from_messages

from agentwire_infra.local.provision import EMULATOR_ACCOUNT_ID

Handler = Callable[[dict[str, Any], Any], Any]


def import_handler(dotted_path: str) -> Handler:
    """`agentwire_llm.handler.lambda_handler` → the function."""
    module_name, _, function_name = dotted_path.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {dotted_path!r} is not a dotted path module.function")
    handler = getattr(importlib.import_module(module_name), function_name)
    if not callable(handler):
        raise TypeError(f"{dotted_path} is not callable")
    return handler  # type: ignore[no-any-return]


@dataclass
class LambdaContext(LambdaContextStub):
    """Lambda's context object for a local invocation (the emulator's account)."""

    account_id: str = EMULATOR_ACCOUNT_ID


def sqs_event(messages: Sequence[Mapping[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """`ReceiveMessage` results → Lambda's SQS event (the same builder the services' tests use)."""
    return sqs_batch_event_from_messages(messages, source_arn=queue_arn, region=region)


def failed_message_ids(response: Any, message_ids: Sequence[str]) -> set[str]:
    """The messages to leave on the queue, read from a handler's answer as Lambda reads it.

    With ReportBatchItemFailures, Lambda deletes everything but the listed ids; an answer it cannot
    understand (not a dict, an id that is missing, empty or not in the batch) fails the whole batch.
    `None` (a handler that returns nothing) means success.
    """
    if response is None:
        return set()
    if not isinstance(response, Mapping):
        return set(message_ids)
    failures = response.get("batchItemFailures") or []
    if not isinstance(failures, list):
        return set(message_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not identifier or identifier not in message_ids:
            return set(message_ids)
        failed.add(identifier)
    return failed
