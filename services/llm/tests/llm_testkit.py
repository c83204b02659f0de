"""Builders and fakes shared by the llm service's tests (imported by name: see conftest.py)."""

from __future__ import annotations

import json
import uuid
from functools import partial
from pathlib import Path
from typing import Any

from agentwire_contracts import testing
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolSpec, ToolUseBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.llm import LlmCompletionRequested
from agentwire_contracts.testing import LambdaContextStub, RecordingEventsClient
from agentwire_llm.manifest import MANIFEST

STATE_TABLE = "test-llm-state"
IDEMPOTENCY_TABLE = "test-llm-idempotency"


def create_tables(dynamodb: Any) -> None:
    """The llm tables as the manifest describes them (key names and types)."""
    names = {"state": STATE_TABLE, "idempotency": IDEMPOTENCY_TABLE}
    for table in MANIFEST.tables:
        keys = [{"AttributeName": table.partition_key, "KeyType": "HASH"}]
        attributes = [{"AttributeName": table.partition_key, "AttributeType": "S"}]
        if table.sort_key:
            keys.append({"AttributeName": table.sort_key, "KeyType": "RANGE"})
            attributes.append({"AttributeName": table.sort_key, "AttributeType": "S"})
        dynamodb.create_table(
            TableName=names[table.name],
            KeySchema=keys,
            AttributeDefinitions=attributes,
            BillingMode="PAY_PER_REQUEST",
        )


#: EventBridge behind the real `EventPublisher`, and Lambda's context: the shared test doubles.
FakeEventsClient = RecordingEventsClient
FakeLambdaContext = partial(LambdaContextStub, "agentwire-llm-completions", memory_limit_in_mb=1024, timeout_s=300)


CALCULATOR = ToolSpec(
    name="calculator",
    description="Evaluate an arithmetic expression.",
    input_schema={"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
)
CURRENT_TIME = ToolSpec(
    name="current_time",
    description="The current time in an IANA time zone.",
    input_schema={"type": "object", "properties": {"timezone": {"type": "string"}}},
)


def user(text: str) -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


def tool_result(tool_use_id: str, content: str, *, is_error: bool = False) -> Message:
    return Message(role="user", content=[ToolResultBlock(tool_use_id=tool_use_id, content=content, is_error=is_error)])


def assistant_tool_use(tool_use_id: str, name: str, tool_input: dict[str, Any]) -> Message:
    return Message(role="assistant", content=[ToolUseBlock(id=tool_use_id, name=name, input=tool_input)])


def completion_request_event(
    messages: list[Message],
    *,
    step: int = 0,
    run_id: str = "run-1",
    tools: list[ToolSpec] | None = None,
    task_token: str = "token-abc",
    model: str = "default",
    tenant_id: str = "tenant-1",
    **fields: Any,
) -> Event[LlmCompletionRequested]:
    data = LlmCompletionRequested(
        session_id="sess-1",
        step=step,
        model=model,
        system="You are a helpful assistant.",
        messages=messages,
        tools=tools if tools is not None else [CALCULATOR, CURRENT_TIME],
        **{"max_tokens": 512, **fields},
    )
    return Event.create(
        data,
        tenant_id=tenant_id,
        run_id=run_id,
        causation_id="run-request-event",
        trace_header="Root=1-5759e988-bd862e3fe1be46a994272793",
        task_token=task_token,
    )


def sqs_record(body: str, message_id: str | None = None) -> dict[str, Any]:
    """One record of an SQS batch event from the llm's queue, shaped as Lambda's event source mapping sends it."""
    return testing.sqs_record(body, message_id=message_id, source_arn=testing.queue_arn("agentwire-llm-completions"))


def write_script(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def text_response(text: str, *, input_tokens: int = 10, output_tokens: int = 5, **usage: int) -> dict[str, Any]:
    return {
        "id": f"msg_{uuid.uuid4().hex[:12]}",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "model": "claude-sonnet-4-5-20250929",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, **usage},
    }


def error_response(error_type: str, message: str = "something happened") -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}
