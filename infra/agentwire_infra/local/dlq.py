"""What sits in the dead-letter queues, and why; and moving it back (`agentwire dlq`).

Peeking receives each DLQ's messages and makes them visible again at once, so nothing is consumed. The
reason of a message is the last failure the worker recorded for its message id (SQS's redrive keeps the
id when it moves a message to the DLQ): the handler's exception, or the failed record's error.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentwire_infra.local.provision import QueueTopology, Topology
from agentwire_infra.local.tracing import read_failures

MAX_PEEK = 1000
NO_REASON = "no failure recorded (undeliverable, or failed before the worker)"


@dataclass
class DeadLetter:
    dlq: str
    service: str
    consumer: str
    message_id: str
    detail_type: str | None
    run_id: str | None
    receive_count: int | None
    reason: str
    sent_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _peek_all(sqs: Any, queue_url: str, limit: int = MAX_PEEK) -> list[dict[str, Any]]:
    """Every message of the queue (up to `limit`), left visible again."""
    found: dict[str, dict[str, Any]] = {}
    receipts: list[str] = []
    try:
        while len(found) < limit:
            response = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=30,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            for message in messages:
                found[message["MessageId"]] = message
                receipts.append(message["ReceiptHandle"])
    finally:
        for start in range(0, len(receipts), 10):
            entries = [
                {"Id": str(index), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
                for index, receipt in enumerate(receipts[start : start + 10])
            ]
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
    return list(found.values())


def _describe(body: str) -> tuple[str | None, str | None]:
    try:
        envelope = json.loads(body)
        return envelope.get("detail-type"), (envelope.get("detail") or {}).get("metadata", {}).get("run_id")
    except (ValueError, AttributeError):
        return None, None


def list_dead_letters(sqs: Any, topology: Topology, failures_file: Path) -> list[DeadLetter]:
    failures = read_failures(failures_file)
    letters: list[DeadLetter] = []
    for queue in topology.queues:
        for message in _peek_all(sqs, queue.dlq_url):
            detail_type, run_id = _describe(message.get("Body", ""))
            failure = failures.get(message["MessageId"])
            attributes = message.get("Attributes") or {}
            reason = failure["reason"] if failure else NO_REASON
            letters.append(
                DeadLetter(
                    dlq=queue.dlq_name,
                    service=queue.service,
                    consumer=queue.consumer,
                    message_id=message["MessageId"],
                    detail_type=detail_type,
                    run_id=run_id,
                    receive_count=failure.get("receive_count") if failure else None,
                    reason=reason,
                    sent_at=attributes.get("SentTimestamp"),
                )
            )
    return letters


def redrive(sqs: Any, topology: Topology, queue_name: str | None = None) -> dict[str, int]:
    """Move every message of the DLQs (or of the one named: queue or DLQ name) back to its source queue."""
    moved: dict[str, int] = {}
    chosen: list[QueueTopology] = [
        queue
        for queue in topology.queues
        if queue_name is None or queue_name in (queue.queue_name, queue.dlq_name, f"{queue.service}/{queue.consumer}")
    ]
    if queue_name is not None and not chosen:
        raise KeyError(queue_name)
    for queue in chosen:
        count = 0
        while True:
            response = sqs.receive_message(
                QueueUrl=queue.dlq_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if not messages:
                break
            entries = []
            for index, message in enumerate(messages):
                entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    entry["MessageAttributes"] = message["MessageAttributes"]
                entries.append(entry)
            sent = sqs.send_message_batch(QueueUrl=queue.queue_url, Entries=entries)
            ok = {item["Id"] for item in sent.get("Successful", [])}
            # Delete only what reached the source queue; the rest stays in the DLQ.
            deletions = [
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages)
                if str(index) in ok
            ]
            if deletions:
                sqs.delete_message_batch(QueueUrl=queue.dlq_url, Entries=deletions)
            count += len(deletions)
            if len(deletions) < len(messages):
                break
        if count:
            moved[queue.dlq_name] = count
    return moved
