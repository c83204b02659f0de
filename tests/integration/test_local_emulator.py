"""The emulator's speed-ups must not change what the AWS APIs do: transactions stay all-or-nothing."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest


@pytest.fixture()
def scratch_table(aws: Any) -> str:
    name = f"scratch-{uuid.uuid4().hex[:8]}"
    aws("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def item(pk: str, sk: str, value: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, "value": {"S": value}}


def items_of(aws: Any, table: str) -> dict[tuple[str, str], str]:
    scanned = aws("dynamodb").scan(TableName=table)["Items"]
    return {(i["pk"]["S"], i["sk"]["S"]): i["value"]["S"] for i in scanned}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(aws: Any, scratch_table: str) -> None:
    dynamodb = aws("dynamodb")
    dynamodb.put_item(TableName=scratch_table, Item=item("s", "1", "first"))
    dynamodb.put_item(TableName=scratch_table, Item=item("s", "2", "second"))

    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": scratch_table, "Item": item("s", "1", "overwritten")}},
                {"Put": {"TableName": scratch_table, "Item": item("s", "3", "new")}},
                {"Delete": {"TableName": scratch_table, "Key": {"pk": {"S": "s"}, "sk": {"S": "2"}}}},
                {
                    "Put": {
                        "TableName": scratch_table,
                        "Item": item("s", "4", "conflict"),
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
    assert items_of(aws, scratch_table) == {("s", "1"): "first", ("s", "2"): "second"}


def test_a_transaction_that_succeeds_applies_every_write(aws: Any, scratch_table: str) -> None:
    dynamodb = aws("dynamodb")
    dynamodb.put_item(TableName=scratch_table, Item=item("s", "1", "first"))
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": scratch_table,
                    "Item": item("s", "2", "second"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Delete": {"TableName": scratch_table, "Key": {"pk": {"S": "s"}, "sk": {"S": "1"}}}},
        ]
    )
    assert items_of(aws, scratch_table) == {("s", "2"): "second"}


# -- Step Functions: waitForTaskToken failures (patched in agentwire_infra.local.emulator) -------------------

ROLE_ARN = "arn:aws:iam::123456789012:role/agentwire-test-states"


@pytest.fixture()
def callback_machine(aws: Any) -> tuple[str, str]:
    """A one-task machine: send the task token to a queue and wait; one retry of `Test.Retryable`."""
    queue_url = aws("sqs").create_queue(QueueName=f"callbacks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    definition = {
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 60,
                "Retry": [{"ErrorEquals": ["Test.Retryable"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "End": True,
            }
        },
    }
    arn = aws("stepfunctions").create_state_machine(
        name=f"callbacks-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=ROLE_ARN
    )["stateMachineArn"]
    return arn, queue_url


def next_token(aws: Any, queue_url: str) -> str:
    for _ in range(30):
        messages = aws("sqs").receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            aws("sqs").delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
            return str(json.loads(messages[0]["Body"])["token"])
    raise AssertionError("no task token arrived")


def finished(aws: Any, execution_arn: str) -> dict[str, Any]:
    for _ in range(300):
        described: dict[str, Any] = aws("stepfunctions").describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    raise AssertionError("the execution did not finish")


def start(aws: Any, machine_arn: str) -> str:
    return str(
        aws("stepfunctions").start_execution(stateMachineArn=machine_arn, name=f"e-{uuid.uuid4().hex[:8]}", input="{}")[
            "executionArn"
        ]
    )


def test_send_task_failure_keeps_its_cause(aws: Any, callback_machine: tuple[str, str]) -> None:
    machine_arn, queue_url = callback_machine
    execution_arn = start(aws, machine_arn)
    aws("stepfunctions").send_task_failure(taskToken=next_token(aws, queue_url), error="Test.Fatal", cause="why")

    described = finished(aws, execution_arn)
    assert (described["status"], described.get("error"), described.get("cause")) == ("FAILED", "Test.Fatal", "why")
    history = aws("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    failed = [event["taskFailedEventDetails"] for event in history if event["type"] == "TaskFailed"]
    assert failed == [
        {"resourceType": "sqs", "resource": "sendMessage.waitForTaskToken", "error": "Test.Fatal", "cause": "why"}
    ]


@pytest.fixture()
def status_changes(aws: Any) -> str:
    """A queue behind a default-bus rule for Step Functions' execution status changes (as AWS routes them)."""
    sqs, events = aws("sqs"), aws("events")
    name = f"status-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"]}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))  # the account's default bus
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


def status_change_of(aws: Any, queue_url: str, execution_arn: str) -> dict[str, Any]:
    for _ in range(30):
        for message in aws("sqs").receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []):
            body: dict[str, Any] = json.loads(message["Body"])
            if body["detail"]["executionArn"] == execution_arn:
                return body
    raise AssertionError(f"no status change of {execution_arn}")


def test_an_ended_execution_reports_its_status_on_the_default_bus(
    aws: Any, callback_machine: tuple[str, str], status_changes: str
) -> None:
    machine_arn, queue_url = callback_machine
    execution_arn = start(aws, machine_arn)
    aws("stepfunctions").send_task_success(taskToken=next_token(aws, queue_url), output=json.dumps({"answer": 42}))
    assert finished(aws, execution_arn)["status"] == "SUCCEEDED"

    change = status_change_of(aws, status_changes, execution_arn)
    assert (change["source"], change["detail-type"]) == ("aws.states", "Step Functions Execution Status Change")
    assert change["resources"] == [execution_arn]
    detail = change["detail"]
    assert (detail["stateMachineArn"], detail["status"]) == (machine_arn, "SUCCEEDED")
    assert detail["name"] == execution_arn.rsplit(":", 1)[1] and json.loads(detail["output"]) == {"answer": 42}
    assert json.loads(detail["input"]) == {} and detail["stopDate"] >= detail["startDate"] > 0


def test_a_stopped_execution_keeps_the_stops_error_and_reports_aborted(
    aws: Any, callback_machine: tuple[str, str], status_changes: str
) -> None:
    machine_arn, queue_url = callback_machine
    execution_arn = start(aws, machine_arn)
    token = next_token(aws, queue_url)
    aws("stepfunctions").stop_execution(executionArn=execution_arn, error="Ops.Stopped", cause="maintenance")
    aws("stepfunctions").send_task_success(taskToken=token, output="{}")  # moto ends it when the task wakes

    assert finished(aws, execution_arn)["status"] == "ABORTED"
    [last] = aws("stepfunctions").get_execution_history(executionArn=execution_arn, reverseOrder=True, maxResults=1)[
        "events"
    ]
    assert last["type"] == "ExecutionAborted"
    assert last["executionAbortedEventDetails"] == {"error": "Ops.Stopped", "cause": "maintenance"}
    assert status_change_of(aws, status_changes, execution_arn)["detail"]["status"] == "ABORTED"
    oldest_first = aws("stepfunctions").get_execution_history(executionArn=execution_arn)["events"]
    assert oldest_first[0]["type"] == "ExecutionStarted" and oldest_first[-1] == last


def test_a_retried_task_waits_for_its_own_answer_under_a_new_token(aws: Any, callback_machine: tuple[str, str]) -> None:
    machine_arn, queue_url = callback_machine
    execution_arn = start(aws, machine_arn)
    first = next_token(aws, queue_url)
    aws("stepfunctions").send_task_failure(taskToken=first, error="Test.Retryable", cause="try again")

    second = next_token(aws, queue_url)
    assert second != first
    assert aws("stepfunctions").describe_execution(executionArn=execution_arn)["status"] == "RUNNING"
    aws("stepfunctions").send_task_success(taskToken=second, output=json.dumps({"answer": 42}))

    described = finished(aws, execution_arn)
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"]) == {"answer": 42}


def test_an_answer_sent_before_the_heartbeat_wait_begins_ends_that_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving a busy machine produces, in order: moto publishes a heartbeat task, the worker
    answers, and only then does the task set up its heartbeat endpoint and wait on it."""
    from agentwire_infra.local.emulator import keep_answers_that_beat_the_heartbeat_wait
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint, CallbackOutcomeSuccess

    monkeypatch.setattr(CallbackEndpoint, "setup_heartbeat_endpoint", CallbackEndpoint.setup_heartbeat_endpoint)
    keep_answers_that_beat_the_heartbeat_wait()

    answered = CallbackEndpoint(callback_id="early")
    answered.notify(CallbackOutcomeSuccess(callback_id="early", output='{"answer": 42}'))
    assert answered.setup_heartbeat_endpoint(heartbeat_seconds=1).clear_and_wait() is True

    # Still waiting: no answer yet, so the wait runs out as a heartbeat timeout.
    silent = CallbackEndpoint(callback_id="silent")
    assert silent.setup_heartbeat_endpoint(heartbeat_seconds=1).clear_and_wait() is False


# -- DynamoDB Query reads only the queried partition (query_only_the_partition) ---------------------------


def create_indexed_table(dynamodb: Any, name: str) -> None:
    """pk/sk plus an index on `value` that spans every partition."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "value", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-value",
                "KeySchema": [{"AttributeName": "value", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture()
def indexed_table(aws: Any) -> str:
    name = f"query-{uuid.uuid4().hex[:8]}"
    dynamodb = aws("dynamodb")
    create_indexed_table(dynamodb, name)
    for pk in ("a", "b", "c"):
        for index in range(12):
            dynamodb.put_item(TableName=name, Item=item(pk, f"m#{index:03d}", "even" if index % 2 == 0 else "odd"))
    return name


def keys_of(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["pk"]["S"], i["sk"]["S"]) for i in items]


def test_a_query_sees_its_partition_only_in_key_order_with_conditions_filters_and_pages(
    aws: Any, indexed_table: str
) -> None:
    dynamodb = aws("dynamodb")

    def query(**extra: Any) -> dict[str, Any]:
        return dict(
            dynamodb.query(
                TableName=indexed_table,
                KeyConditionExpression=extra.pop("condition", "pk = :pk"),
                ExpressionAttributeValues={":pk": {"S": "b"}, **extra.pop("values", {})},
                **extra,
            )
        )

    assert keys_of(query()["Items"]) == [("b", f"m#{i:03d}") for i in range(12)]
    newest = query(ScanIndexForward=False, Limit=3)
    assert keys_of(newest["Items"]) == [("b", "m#011"), ("b", "m#010"), ("b", "m#009")]
    after = query(ScanIndexForward=False, Limit=3, ExclusiveStartKey=newest["LastEvaluatedKey"])
    assert keys_of(after["Items"]) == [("b", "m#008"), ("b", "m#007"), ("b", "m#006")]
    ranged = query(
        condition="pk = :pk AND sk BETWEEN :lo AND :hi", values={":lo": {"S": "m#004"}, ":hi": {"S": "m#006"}}
    )
    assert keys_of(ranged["Items"]) == [("b", "m#004"), ("b", "m#005"), ("b", "m#006")]
    filtered = query(
        FilterExpression="#v = :odd", ExpressionAttributeNames={"#v": "value"}, values={":odd": {"S": "odd"}}
    )
    assert keys_of(filtered["Items"]) == [("b", f"m#{i:03d}") for i in range(1, 12, 2)]
    assert (filtered["Count"], filtered["ScannedCount"]) == (6, 12)
    # A first page with a Limit ends with LastEvaluatedKey when anything follows, matching or not; Limit
    # counts items read before the filter. (What the emulator's first-page shortcut must keep.)
    prefix = {":p": {"S": "m#00"}}
    first = query(condition="pk = :pk AND begins_with(sk, :p)", values=prefix, Limit=10)
    assert keys_of(first["Items"]) == [("b", f"m#{i:03d}") for i in range(10)] and "LastEvaluatedKey" in first
    last_two = query(condition="pk = :pk AND sk > :lo", values={":lo": {"S": "m#009"}}, Limit=2)
    assert keys_of(last_two["Items"]) == [("b", "m#010"), ("b", "m#011")]
    newest_odd = query(
        ScanIndexForward=False,
        Limit=2,
        FilterExpression="#v = :odd",
        ExpressionAttributeNames={"#v": "value"},
        values={":odd": {"S": "odd"}},
    )
    assert keys_of(newest_odd["Items"]) == [("b", "m#011")] and newest_odd["ScannedCount"] == 2
    missing = dynamodb.query(
        TableName=indexed_table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "zzz"}}
    )
    assert missing["Items"] == []
    # An index query still spans every partition.
    by_value = dynamodb.query(
        TableName=indexed_table,
        IndexName="by-value",
        KeyConditionExpression="#v = :even",
        ExpressionAttributeNames={"#v": "value"},
        ExpressionAttributeValues={":even": {"S": "even"}},
    )
    assert sorted({pk for pk, _ in keys_of(by_value["Items"])}) == ["a", "b", "c"] and by_value["Count"] == 18


def test_a_base_table_query_no_longer_lists_the_whole_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: with the patch, a Query on the table's key never calls `Table.all_items`; an index query does."""
    import boto3
    from agentwire_infra.local.emulator import query_only_the_partition
    from moto import mock_aws
    from moto.dynamodb.models.table import Table

    monkeypatch.setattr(Table, "query", Table.query)
    listed: list[str] = []
    all_items = Table.all_items
    monkeypatch.setattr(Table, "all_items", lambda self: listed.append(self.name) or all_items(self))
    query_only_the_partition()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_indexed_table(dynamodb, "t")
        for pk in ("a", "b"):
            dynamodb.put_item(TableName="t", Item=item(pk, "1", "v"))
        found = dynamodb.query(
            TableName="t", KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "b"}}
        )
        assert keys_of(found["Items"]) == [("b", "1")] and listed == []
        dynamodb.query(
            TableName="t",
            IndexName="by-value",
            KeyConditionExpression="#v = :v",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":v": {"S": "v"}},
        )
        assert listed == ["t"]
