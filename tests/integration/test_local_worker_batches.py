"""The local worker is Lambda's SQS event source mapping with ReportBatchItemFailures: in a batch with
good and bad records only the good ones are deleted, the bad ones come back after the visibility timeout
and end in the DLQ after maxReceiveCount, and a handler that raises fails the whole batch. Real queues
on the shared emulator; the handler is a plain function (what is under test is the worker)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from agentwire_infra.local.lambda_runtime import failed_message_ids
from agentwire_infra.local.stack import LocalStack
from agentwire_infra.local.worker import ConsumerLoop, VisibilityHeartbeat

VISIBILITY_S = 1
MAX_RECEIVES = 2


@pytest.fixture()
def scratch_queue(local_stack: LocalStack, aws: Any) -> Any:
    """A queue (1 s visibility, redrive to its DLQ after 2 receives) described like a manifest's."""
    assert local_stack.topology is not None
    sqs, name = aws("sqs"), f"batches-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES})
    url = sqs.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": str(VISIBILITY_S), "RedrivePolicy": redrive}
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    template = local_stack.topology.queue("tools", "invocations")
    return dataclasses.replace(
        template,
        queue_name=name,
        queue_url=url,
        queue_arn=arn,
        dlq_name=f"{name}-dlq",
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        batch_size=10,
        max_receive_count=MAX_RECEIVES,
        visibility_timeout_s=VISIBILITY_S,
    )


def loop_for(queue: Any, handler: Any, aws: Any) -> ConsumerLoop:
    stop = threading.Event()
    return ConsumerLoop(
        queue,
        handler,
        client=aws("sqs"),
        region="us-east-1",
        stop=stop,
        heartbeat=VisibilityHeartbeat(aws("sqs"), stop),
        wait_s=1,
    )


def bodies_in(aws: Any, queue_url: str) -> list[str]:
    response = aws("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return sorted(message["Body"] for message in response.get("Messages", []))


def send(aws: Any, queue_url: str, *bodies: str) -> None:
    entries = [{"Id": str(index), "MessageBody": body} for index, body in enumerate(bodies)]
    assert not aws("sqs").send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")


def drive(loop: ConsumerLoop, rounds_s: float) -> None:
    """Poll for `rounds_s` seconds: long enough for every redelivery the test expects."""
    deadline = time.monotonic() + rounds_s
    while time.monotonic() < deadline:
        loop.poll_once()


def test_only_the_failed_records_of_a_batch_come_back_and_they_end_in_the_dlq(scratch_queue: Any, aws: Any) -> None:
    seen: Counter[str] = Counter()

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        failures = []
        for record in event["Records"]:
            seen[record["body"]] += 1
            if record["body"].startswith("bad"):
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}

    send(aws, scratch_queue.queue_url, "good-1", "bad-1", "good-2")
    drive(loop_for(scratch_queue, handler, aws), rounds_s=MAX_RECEIVES * VISIBILITY_S + 4)

    assert (seen["good-1"], seen["good-2"]) == (1, 1), seen  # deleted after their one success
    assert seen["bad-1"] == MAX_RECEIVES, seen  # redelivered until the redrive policy moves it
    assert bodies_in(aws, scratch_queue.queue_url) == []
    assert bodies_in(aws, scratch_queue.dlq_url) == ["bad-1"]


def test_a_handler_that_raises_fails_the_whole_batch(scratch_queue: Any, aws: Any) -> None:
    seen: Counter[str] = Counter()

    def handler(event: dict[str, Any], context: Any) -> None:
        for record in event["Records"]:
            seen[record["body"]] += 1
        if seen["first"] == 1:
            raise RuntimeError("the sandbox fell over")

    send(aws, scratch_queue.queue_url, "first", "second")
    loop = loop_for(scratch_queue, handler, aws)
    drive(loop, rounds_s=VISIBILITY_S + 3)

    # The raise sent both back (nothing deleted); the second delivery succeeded and deleted both.
    assert seen == Counter({"first": 2, "second": 2}), seen
    assert bodies_in(aws, scratch_queue.queue_url) == [] and bodies_in(aws, scratch_queue.dlq_url) == []


@pytest.mark.parametrize(
    ("response", "failed"),
    [
        (None, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        # What Lambda cannot read fails the whole batch: an unknown or empty id, a wrong shape.
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": "b"}, {"a", "b"}),
        ("ok", {"a", "b"}),
    ],
)
def test_failed_message_ids_reads_the_answer_as_lambda_does(response: Any, failed: set[str]) -> None:
    assert failed_message_ids(response, ["a", "b"]) == failed
