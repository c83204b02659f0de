"""What AWS hands a consumer, built one way for the tests and the local runtime alike.

    from agentwire_contracts.testing import LambdaContextStub, RecordingEventsClient, eventbridge_body, sqs_batch_event

    response = handler.lambda_handler(sqs_batch_event([eventbridge_body(request)]), LambdaContextStub("agentwire-llm"))
    assert client.details("llm.completion.completed.v1")

* `eventbridge_body(event)` — the SQS message body EventBridge delivers for a contract `Event` (the whole
  EventBridge event, `detail` as an object);
* `sqs_record(body, ...)` / `sqs_batch_event(bodies, ...)` — Lambda's SQS event, field for field as the
  event source mapping sends it (`sqs_batch_event_from_messages` builds it from `ReceiveMessage` results:
  the local workers do);
* `RecordingEventsClient` — boto3's EventBridge client as the `EventPublisher` uses it, recording entries;
* `LambdaContextStub` — the attributes and method Powertools and handlers read from Lambda's context;
* `recording_spans(service, tmp_path)` — the spans a test makes, read back as the local exporter wrote them.

No boto3, no service: any package may use it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import md5
from pathlib import Path
from typing import Any

from agentwire_contracts.envelope import Event

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "LambdaContextStub",
    "RecordingEventsClient",
    "SpanRecorder",
    "eventbridge_body",
    "eventbridge_envelope",
    "queue_arn",
    "recording_spans",
    "sqs_batch_event",
    "sqs_batch_event_from_messages",
    "sqs_record",
]

#: The account and region of the test doubles (moto's default account).
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def queue_arn(name: str, *, region: str = REGION, account_id: str = ACCOUNT_ID) -> str:
    return f"arn:aws:sqs:{region}:{account_id}:{name}"


def eventbridge_envelope(
    event: Event[Any], *, event_id: str | None = None, account_id: str = ACCOUNT_ID, region: str = REGION
) -> dict[str, Any]:
    """The EventBridge event a rule delivers for a contract event (its `detail` is the contract's)."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": event.detail_type,
        "source": event.source,
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": event.detail(),
    }


def eventbridge_body(
    event: Event[Any], *, event_id: str | None = None, account_id: str = ACCOUNT_ID, region: str = REGION
) -> str:
    """The SQS message body EventBridge delivers for `event` (the envelope, as JSON)."""
    return json.dumps(eventbridge_envelope(event, event_id=event_id, account_id=account_id, region=region))


def _lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API attribute shape (`StringValue`) → Lambda's event shape (`stringValue`)."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType", "String"),
        }
        for name, value in attributes.items()
    }


def sqs_record(
    body: str,
    *,
    message_id: str | None = None,
    receipt_handle: str | None = None,
    attributes: Mapping[str, str] | None = None,
    message_attributes: Mapping[str, Any] | None = None,
    md5_of_body: str | None = None,
    source_arn: str | None = None,
    region: str = REGION,
) -> dict[str, Any]:
    """One record of Lambda's SQS event. `attributes` and `message_attributes` are in the SQS API's shape
    (what `ReceiveMessage` returns); missing system attributes get a first delivery sent now."""
    attributes = attributes or {}
    now_ms = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or f"AQEB{uuid.uuid4().hex}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", now_ms),
            "SenderId": attributes.get("SenderId", ACCOUNT_ID),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", now_ms),
        },
        "messageAttributes": _lambda_message_attributes(message_attributes or {}),
        "md5OfBody": md5_of_body or md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn or queue_arn("agentwire-test", region=region),
        "awsRegion": region,
    }


def sqs_batch_event(
    bodies: Iterable[str],
    *,
    message_ids: Sequence[str] | None = None,
    source_arn: str | None = None,
    region: str = REGION,
) -> dict[str, Any]:
    """Lambda's SQS event for these bodies (`message_ids`, when given, one per body)."""
    bodies = list(bodies)
    ids: Sequence[str | None] = list(message_ids) if message_ids is not None else [None] * len(bodies)
    if len(ids) != len(bodies):
        raise ValueError("one message id per body")
    return {
        "Records": [
            sqs_record(body, message_id=message_id, source_arn=source_arn, region=region)
            for body, message_id in zip(bodies, ids, strict=True)
        ]
    }


def sqs_batch_event_from_messages(
    messages: Sequence[Mapping[str, Any]], *, source_arn: str, region: str
) -> dict[str, Any]:
    """Lambda's SQS event for `ReceiveMessage` results (what the local workers hand the handlers)."""
    return {
        "Records": [
            sqs_record(
                message["Body"],
                message_id=message["MessageId"],
                receipt_handle=message["ReceiptHandle"],
                attributes=message.get("Attributes"),
                message_attributes=message.get("MessageAttributes"),
                md5_of_body=message.get("MD5OfBody", ""),
                source_arn=source_arn,
                region=region,
            )
            for message in messages
        ]
    }


class RecordingEventsClient:
    """Stands in for boto3's EventBridge client behind the real `EventPublisher`: accepts and records
    every `PutEvents` entry."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in Entries]}

    def details(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """The published `detail` objects (of one detail-type, or all), in order."""
        return [
            json.loads(entry["Detail"])
            for entry in self.entries
            if detail_type is None or entry["DetailType"] == detail_type
        ]


@dataclass
class LambdaContextStub:
    """The attributes and method Powertools and handlers read from Lambda's context object. The remaining
    time counts down from `timeout_s` since creation, or is `remaining_ms` exactly when that is set (a test
    of a deadline)."""

    function_name: str = "agentwire-test"
    memory_limit_in_mb: int = 512
    timeout_s: float = 30
    region: str = REGION
    account_id: str = ACCOUNT_ID
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started_at: float = field(default_factory=time.monotonic)
    remaining_ms: int | None = None

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        if self.remaining_ms is not None:
            return self.remaining_ms
        elapsed_ms = (time.monotonic() - self.started_at) * 1000
        return max(0, int(self.timeout_s * 1000 - elapsed_ms))


class SpanRecorder:
    """The spans this process finishes while recording (as the local JSONL exporter writes them)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def spans(self, name: str | None = None) -> list[dict[str, Any]]:
        from agentwire_contracts import telemetry

        return [span for span in telemetry.read_spans([self.path]) if name is None or span["name"] == name]

    def one(self, name: str) -> dict[str, Any]:
        [span] = self.spans(name)
        return span


@contextmanager
def recording_spans(service: str, directory: Path) -> Iterator[SpanRecorder]:
    """Within the block, this process's spans go to `directory/spans.jsonl` (tests of a service's spans);
    afterwards tracing is configured again from the environment."""
    from agentwire_contracts import telemetry

    path = directory / "spans.jsonl"
    telemetry.configure(service, spans_file=path, force=True)
    try:
        yield SpanRecorder(path)
    finally:
        telemetry.configure(service, force=True)
