"""The DynamoDB transcript store on an in-process moto table."""

from __future__ import annotations

from typing import Any

import pytest
from agentwire_contracts.content import Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore, message_sk, partition_key
from agentwire_memory.ports import SessionGone, StoreUnavailable
from agentwire_memory.transcript import AppendKey, SessionRef
from botocore.exceptions import ClientError

TABLE = "agentwire-memory-main"
SESSION = SessionRef(tenant_id="acme", session_id="s1")


def user(text: str) -> Message:
    return Message(role="user", content=[TextBlock(text=text)])


def texts(entries: Any) -> list[str]:
    return [entry.message.text() for entry in entries]


def all_items(client: Any) -> list[dict[str, Any]]:
    return client.scan(TableName=TABLE, ConsistentRead=True)["Items"]


def make_store(client: Any, **kwargs: Any) -> DynamoTranscriptStore:
    return DynamoTranscriptStore(client, TABLE, sleep=lambda _: None, **kwargs)


def test_append_then_read_returns_messages_in_order_with_contiguous_seqs(dynamodb: Any) -> None:
    store = make_store(dynamodb)

    first = store.append(SESSION, AppendKey("run-1", 0), [user("one")])
    second = store.append(SESSION, AppendKey("run-1", 1), [user("two"), user("three")])

    assert [entry.seq for entry in first.entries] == [1]
    assert [entry.seq for entry in second.entries] == [2, 3]
    assert second.message_count == 3 and not second.duplicate
    transcript = store.read(SESSION)
    assert [entry.seq for entry in transcript] == [1, 2, 3]
    assert texts(transcript) == ["one", "two", "three"]
    assert store.message_count(SESSION) == 3
    assert texts(store.read(SESSION, up_to_seq=2)) == ["one", "two"]


def test_same_run_and_step_twice_writes_once_and_returns_the_first_outcome(dynamodb: Any) -> None:
    store = make_store(dynamodb)
    store.append(SESSION, AppendKey("run-0", 0), [user("before")])
    key = AppendKey("run-1", 3)

    first = store.append(SESSION, key, [user("a"), user("b")])
    store.append(SESSION, AppendKey("run-2", 0), [user("someone else")])
    again = store.append(SESSION, key, [user("a"), user("b")])

    assert again.duplicate and again.same_messages
    assert [e.seq for e in again.entries] == [e.seq for e in first.entries] == [2, 3]
    assert texts(again.entries) == ["a", "b"]
    assert again.message_count == first.message_count == 3
    assert texts(store.read(SESSION)) == ["before", "a", "b", "someone else"]


def test_a_reused_key_with_other_messages_is_flagged_and_writes_nothing(dynamodb: Any) -> None:
    store = make_store(dynamodb)
    store.append(SESSION, AppendKey("run-1", 0), [user("original")])

    again = store.append(SESSION, AppendKey("run-1", 0), [user("tampered")])

    assert again.duplicate and not again.same_messages
    assert texts(again.entries) == ["original"]
    assert texts(store.read(SESSION)) == ["original"]


def test_content_blocks_round_trip_exactly(dynamodb: Any) -> None:
    store = make_store(dynamodb)
    message = Message(
        role="assistant",
        content=[
            TextBlock(text='ünïcode ✓ and "quotes"'),
            ToolUseBlock(id="toolu_1", name="calc", input={"x": 0.1, "nested": {"list": [1, 2.5, None]}}),
        ],
    )
    result = Message(role="user", content=[ToolResultBlock(tool_use_id="toolu_1", content="", is_error=True)])

    store.append(SESSION, AppendKey("run-1", 0), [message, result])

    assert [entry.message for entry in store.read(SESSION)] == [message, result]


def test_keys_start_with_the_tenant_and_tenants_do_not_see_each_other(dynamodb: Any) -> None:
    store = make_store(dynamodb)
    store.append(SESSION, AppendKey("run-1", 0), [user("acme's")])
    other = SessionRef(tenant_id="globex", session_id="s1")

    store.append(other, AppendKey("run-9", 0), [user("globex's")])

    assert texts(store.read(SESSION)) == ["acme's"]
    assert texts(store.read(other)) == ["globex's"]
    assert all(item["pk"]["S"].startswith("T#") for item in all_items(dynamodb))
    assert {item["sk"]["S"] for item in all_items(dynamodb) if item["pk"]["S"] == "T#acme#S#s1"} == {
        "HEAD",
        "MSG#000000000001",
        "APPEND#run-1#000000",
    }


def test_reading_pages_through_a_long_transcript(dynamodb: Any) -> None:
    store = make_store(dynamodb)
    big = "x" * 60_000  # ~60 KB each: a 1 MB query page holds fewer than 20 of them
    for step in range(25):
        store.append(SESSION, AppendKey("run-1", step), [user(f"{step}:{big}")])

    transcript = store.read(SESSION)

    assert [entry.seq for entry in transcript] == list(range(1, 26))
    assert [entry.message.text().split(":")[0] for entry in transcript] == [str(i) for i in range(25)]


def test_a_missing_head_continues_after_the_last_message(dynamodb: Any) -> None:
    store = make_store(dynamodb)
    store.append(SESSION, AppendKey("run-1", 0), [user("one"), user("two")])
    # TTL deletes items in no particular order: the head may go before older messages.
    dynamodb.delete_item(TableName=TABLE, Key={"pk": {"S": partition_key(SESSION)}, "sk": {"S": "HEAD"}})

    outcome = store.append(SESSION, AppendKey("run-2", 0), [user("three")])

    assert [entry.seq for entry in outcome.entries] == [3]
    assert texts(store.read(SESSION)) == ["one", "two", "three"]


class RacingClient:
    """A client that lets another writer append just before each of our first `races` transactions."""

    def __init__(self, client: Any, rival: DynamoTranscriptStore, races: int):
        self._client = client
        self._rival = rival
        self._races = races
        self.transactions = 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        if self._races:
            self._races -= 1
            self._rival.append(SESSION, AppendKey(f"rival-{self._races}", 0), [user("rival")])
        return self._client.transact_write_items(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_losing_the_head_race_rereads_and_retries_with_jittered_backoff(dynamodb: Any) -> None:
    rival = make_store(dynamodb)
    racing = RacingClient(dynamodb, rival, races=2)
    sleeps: list[float] = []
    store = DynamoTranscriptStore(racing, TABLE, sleep=sleeps.append, jitter=lambda: 0.5)

    outcome = store.append(SESSION, AppendKey("run-1", 0), [user("mine")])

    assert outcome.conflicts == 2 and racing.transactions == 3
    assert [entry.seq for entry in outcome.entries] == [3]
    assert texts(store.read(SESSION)) == ["rival", "rival", "mine"]
    assert len(sleeps) == 2 and 0 < sleeps[0] < sleeps[1]


def test_the_head_race_is_bounded(dynamodb: Any) -> None:
    rival = make_store(dynamodb)
    store = DynamoTranscriptStore(RacingClient(dynamodb, rival, races=100), TABLE, max_attempts=3, sleep=lambda _: None)

    with pytest.raises(StoreUnavailable):
        store.append(SESSION, AppendKey("run-1", 0), [user("mine")])

    assert "mine" not in texts(store.read(SESSION))


class ThrottledClient:
    def __getattr__(self, name: str) -> Any:
        def throttled(**_: Any) -> Any:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, name
            )

        return throttled


def test_throttling_is_reported_as_store_unavailable() -> None:
    store = make_store(ThrottledClient())

    with pytest.raises(StoreUnavailable):
        store.append(SESSION, AppendKey("run-1", 0), [user("x")])
    with pytest.raises(StoreUnavailable):
        store.read(SESSION)


def test_other_client_errors_propagate_unchanged(aws: None) -> None:
    import boto3

    store = make_store(boto3.client("dynamodb", region_name="us-east-1"))  # no table was created

    with pytest.raises(ClientError) as raised:
        store.append(SESSION, AppendKey("run-1", 0), [user("x")])
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_deleting_a_session_leaves_nothing_of_it_and_nothing_else_is_touched(dynamodb: Any) -> None:
    store = make_store(dynamodb)
    for step in range(30):  # 30 messages + 30 markers + head: several BatchWriteItem calls
        store.append(SESSION, AppendKey("run-1", step), [user(f"m{step}")])
    neighbour = SessionRef(tenant_id="acme", session_id="s2")
    other_tenant = SessionRef(tenant_id="globex", session_id="s1")
    store.append(neighbour, AppendKey("run-2", 0), [user("keep me")])
    store.append(other_tenant, AppendKey("run-3", 0), [user("keep me too")])

    deleted = store.delete_session(SESSION)

    assert deleted == 60  # 30 messages + 30 markers; the head is replaced by the tombstone
    # What remains of the session is exactly its tombstone: no content, no count, no expiry (no retention set).
    [tombstone] = [item for item in all_items(dynamodb) if item["pk"]["S"] == partition_key(SESSION)]
    assert tombstone == {
        "pk": {"S": partition_key(SESSION)},
        "sk": {"S": "HEAD"},
        "kind": {"S": "deleted"},
        "tenant_id": {"S": "acme"},
        "session_id": {"S": "s1"},
        "deleted_at": tombstone["deleted_at"],
    }
    assert store.read(SESSION) == [] and store.is_deleted(SESSION)
    with pytest.raises(SessionGone):
        store.message_count(SESSION)
    assert texts(store.read(neighbour)) == ["keep me"] and not store.is_deleted(neighbour)
    assert texts(store.read(other_tenant)) == ["keep me too"] and not store.is_deleted(other_tenant)
    assert store.delete_session(SESSION) == 0


def test_the_tombstone_keeps_the_tenants_retention_and_stops_every_later_append(dynamodb: Any) -> None:
    store = make_store(dynamodb, now=lambda: 1_000_000.0)
    store.append(SESSION, AppendKey("run-1", 0), [user("hello")])
    store.delete_session(SESSION, retention_s=7 * 86400)
    [tombstone] = [item for item in all_items(dynamodb) if item["pk"]["S"] == partition_key(SESSION)]
    assert int(tombstone["expires_at"]["N"]) == 1_000_000 + 7 * 86400

    # A late append (a new step, or a redelivery of the first one) writes nothing.
    for key in (AppendKey("run-1", 1), AppendKey("run-1", 0), AppendKey("run-2", 0)):
        with pytest.raises(SessionGone):
            store.append(SESSION, key, [user("too late")])
    assert [item["sk"]["S"] for item in all_items(dynamodb) if item["pk"]["S"] == partition_key(SESSION)] == ["HEAD"]


def test_an_append_that_read_the_head_before_the_deletion_cannot_write_after_it(dynamodb: Any) -> None:
    """The race: the head was read live, the tombstone lands before the transaction; the head condition fails,
    the re-read sees the tombstone, and nothing is written."""
    store = make_store(dynamodb)
    store.append(SESSION, AppendKey("run-1", 0), [user("hello")])
    real_head = store._head
    calls = 0

    def head_then_delete(pk: str) -> Any:
        nonlocal calls
        calls += 1
        head = real_head(pk)
        if calls == 1:
            store.delete_session(SESSION)
        return head

    store._head = head_then_delete  # type: ignore[method-assign]
    with pytest.raises(SessionGone):
        store.append(SESSION, AppendKey("run-1", 1), [user("racing")])
    assert calls == 2
    assert [item["sk"]["S"] for item in all_items(dynamodb) if item["pk"]["S"] == partition_key(SESSION)] == ["HEAD"]


class StingyBatchClient:
    """Leaves the last request of each BatchWriteItem unprocessed the first `stingy` times."""

    def __init__(self, client: Any, stingy: int):
        self._client = client
        self._stingy = stingy
        self.batch_calls = 0

    def batch_write_item(self, *, RequestItems: dict[str, Any]) -> Any:
        self.batch_calls += 1
        ((table, requests),) = RequestItems.items()
        if self._stingy:
            self._stingy -= 1
            if len(requests) > 1:
                self._client.batch_write_item(RequestItems={table: requests[:-1]})
            return {"UnprocessedItems": {table: requests[-1:]}}
        return self._client.batch_write_item(RequestItems=RequestItems)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_unprocessed_deletes_are_retried(dynamodb: Any) -> None:
    make_store(dynamodb).append(SESSION, AppendKey("run-1", 0), [user("a"), user("b")])
    stingy = StingyBatchClient(dynamodb, stingy=2)

    deleted = make_store(stingy).delete_session(SESSION)

    assert deleted == 3 and stingy.batch_calls == 3  # 2 messages + the marker (the head became the tombstone)
    assert [item["sk"]["S"] for item in all_items(dynamodb) if item["pk"]["S"] == partition_key(SESSION)] == ["HEAD"]


def test_deletes_that_stay_unprocessed_raise_store_unavailable(dynamodb: Any) -> None:
    make_store(dynamodb).append(SESSION, AppendKey("run-1", 0), [user("a")])

    with pytest.raises(StoreUnavailable):
        make_store(StingyBatchClient(dynamodb, stingy=1000), max_attempts=3).delete_session(SESSION)


def test_message_items_are_json_strings_under_zero_padded_keys(dynamodb: Any) -> None:
    make_store(dynamodb).append(SESSION, AppendKey("run-1", 0), [user("hello")])

    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": partition_key(SESSION)}, "sk": {"S": message_sk(1)}})[
        "Item"
    ]

    assert item["sk"]["S"] == "MSG#000000000001"
    assert Message.model_validate_json(item["message"]["S"]) == user("hello")
    assert "expires_at" not in item  # transcripts are kept until the session is deleted by default


def test_ttls_are_set_when_configured(dynamodb: Any) -> None:
    store = make_store(dynamodb, now=lambda: 1_000_000.0, marker_ttl_s=60, transcript_ttl_s=3600)
    store.append(SESSION, AppendKey("run-1", 0), [user("hello")])

    expiry = {item["sk"]["S"]: int(item["expires_at"]["N"]) for item in all_items(dynamodb)}

    assert expiry == {"HEAD": 1_003_600, "MSG#000000000001": 1_003_600, "APPEND#run-1#000000": 1_000_060}
