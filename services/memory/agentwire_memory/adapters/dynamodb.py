"""The transcript in one DynamoDB table (single-table design; see services/memory/README.md).

Keys (every partition key starts with the tenant):

    pk = T#<tenant>#S#<session>
    sk = HEAD                          the session head: message_count (= last seq)
    sk = MSG#<seq, 12 digits>          one transcript message (JSON string, exact content blocks)
    sk = APPEND#<run_id>#<step, 6 d.>  the append marker of (run, step): the seqs it wrote
    sk = TOOLOUTPUT#<call id>#<run_id> where a capped tool result's full output is (its claim check)
    sk = HEAD, kind = deleted          after session.deleted: the tombstone that replaces the head, so a
                                       late request cannot bring the session back

An append is one TransactWriteItems: the head update conditioned on the count it read, each message
put conditioned on attribute_not_exists, the marker put conditioned on attribute_not_exists. So two
writers can never take the same seq, and a (run, step) is appended at most once.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from agentwire_contracts.content import Message
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from agentwire_memory.ports import (
    SessionGone,
    SessionHead,
    StateItem,
    StateWrite,
    StoredSummary,
    StoreUnavailable,
)
from agentwire_memory.transcript import (
    AppendKey,
    AppendOutcome,
    Fact,
    SessionRef,
    TranscriptEntry,
    WindowBuilder,
    estimate_tokens,
    fingerprint,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
else:
    DynamoDBClient = Any

HEAD_SK = "HEAD"
MSG_PREFIX = "MSG#"
APPEND_PREFIX = "APPEND#"
SUMMARY_PREFIX = "SUMMARY#"
STATE_PREFIX = "STATE#"
TOOL_PREFIX = "TOOL#"
FACT_PREFIX = "FACT#"
RUN_FAILURE_PREFIX = "RUNFAILED#"
#: The claim check of a tool call's full output (`TOOLOUTPUT#<tool_use_id>#<run_id>`; sorts after `TOOL#…`,
#: which a `begins_with(sk, TOOL#)` never matches).
TOOL_OUTPUT_PREFIX = "TOOLOUTPUT#"
CONFIG_SK = "CONFIG"
#: `kind` of the tombstone a deleted session leaves in place of its head.
DELETED_KIND = "deleted"
SEQ_DIGITS = 12
STEP_DIGITS = 6
BATCH_WRITE_LIMIT = 25

#: Error codes that mean "not now" rather than "never": throttling and service-side trouble.
TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)
#: Cancellation reasons of a transaction that another writer got in first: re-read and retry.
RACE_REASONS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
THROTTLE_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"})

# Position of each item in the append transaction, to read CancellationReasons.
HEAD_INDEX = 0
MARKER_INDEX = 1


def partition_key(session: SessionRef) -> str:
    return f"T#{session.tenant_id}#S#{session.session_id}"


def user_partition_key(tenant_id: str, user_id: str) -> str:
    return f"T#{tenant_id}#U#{user_id}"


def tenant_partition_key(tenant_id: str) -> str:
    return f"T#{tenant_id}"


def summary_sk(through_seq: int) -> str:
    return f"{SUMMARY_PREFIX}{through_seq:0{SEQ_DIGITS}d}"


def _summary(item: dict[str, Any]) -> StoredSummary:
    return StoredSummary(
        text=item["text"]["S"],
        through_seq=int(item["through_seq"]["N"]),
        through_cum_tokens=_int(item, "through_cum_tokens"),
        usage=json.loads(item["usage"]["S"]) if "usage" in item else {},
        cost_microusd=_int(item, "cost_microusd"),
        run_id=item.get("run_id", {}).get("S", ""),
        step=_int(item, "step"),
        created_at=_int(item, "created_at"),
    )


def message_sk(seq: int) -> str:
    return f"{MSG_PREFIX}{seq:0{SEQ_DIGITS}d}"


def marker_sk(key: AppendKey) -> str:
    return f"{APPEND_PREFIX}{key.run_id}#{key.step:0{STEP_DIGITS}d}"


ENTRY_PROJECTION = "seq, message, tokens, cum_tokens"


def _int(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value else 0


def _entry(item: dict[str, Any]) -> TranscriptEntry:
    return TranscriptEntry(
        seq=int(item["seq"]["N"]),
        message=Message.model_validate_json(item["message"]["S"]),
        tokens=int(item["tokens"]["N"]) if "tokens" in item else None,
        cum_tokens=int(item["cum_tokens"]["N"]) if "cum_tokens" in item else None,
    )


def _s(value: str) -> dict[str, Any]:
    return {"S": value}


def _n(value: int) -> dict[str, Any]:
    return {"N": str(value)}


class DynamoTranscriptStore:
    """`TranscriptStore` on DynamoDB. Thread-safe as long as the boto3 client is."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        max_attempts: int = 8,
        base_delay_s: float = 0.01,
        max_delay_s: float = 0.5,
        marker_ttl_s: int | None = 30 * 86400,
        transcript_ttl_s: int | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ):
        self._client = client
        self._table = table_name
        self._max_attempts = max_attempts
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._marker_ttl_s = marker_ttl_s
        self._transcript_ttl_s = transcript_ttl_s
        self._now = now
        self._sleep = sleep
        self._jitter = jitter

    # -- append ---------------------------------------------------------------------------------

    def append(
        self, session: SessionRef, key: AppendKey, messages: Sequence[Message], *, retention_s: int | None = None
    ) -> AppendOutcome:
        if not messages:
            raise ValueError("nothing to append")
        digest = fingerprint(messages)
        pk = partition_key(session)
        tokens = [estimate_tokens(message) for message in messages]
        for attempt in range(self._max_attempts):
            # A tombstone fails both head conditions below (it has no message_count, and it exists), so an
            # append racing the deletion re-reads the head here and stops.
            head = self._head(pk)
            expected, token_count = (head.message_count, head.token_count) if head else self._last_seq_and_tokens(pk)
            running = token_count
            built: list[TranscriptEntry] = []
            for offset, (message, message_tokens) in enumerate(zip(messages, tokens, strict=True), start=1):
                running += message_tokens
                built.append(
                    TranscriptEntry(seq=expected + offset, message=message, tokens=message_tokens, cum_tokens=running)
                )
            entries = tuple(built)
            items = self._append_items(
                session, key, entries, head_exists=head is not None, digest=digest, retention_s=retention_s
            )
            try:
                self._call(self._client.transact_write_items, TransactItems=items)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
                reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
                if len(reasons) > MARKER_INDEX and reasons[MARKER_INDEX] == "ConditionalCheckFailed":
                    return self._replay(pk, key, digest)
                if any(reason in THROTTLE_REASONS for reason in reasons):
                    raise StoreUnavailable(f"append throttled: {reasons}") from exc
                if not any(reason in RACE_REASONS for reason in reasons):
                    raise
                self._backoff(attempt)
                continue
            return AppendOutcome(entries=entries, message_count=expected + len(entries), conflicts=attempt)
        raise StoreUnavailable(f"append lost the race for the session head {self._max_attempts} times")

    def _append_items(
        self,
        session: SessionRef,
        key: AppendKey,
        entries: tuple[TranscriptEntry, ...],
        *,
        head_exists: bool,
        digest: str,
        retention_s: int | None = None,
    ) -> list[dict[str, Any]]:
        pk = partition_key(session)
        now = int(self._now())
        expected = entries[0].seq - 1
        new_count = entries[-1].seq
        transcript_expiry = self._expiry(now, retention_s)

        head_values: dict[str, Any] = {
            ":new": _n(new_count),
            ":tokens": _n(entries[-1].cum_tokens or 0),
            ":now": _n(now),
            ":tenant": _s(session.tenant_id),
            ":session": _s(session.session_id),
        }
        set_clauses = [
            "message_count = :new",
            "token_count = :tokens",
            "updated_at = :now",
            "created_at = if_not_exists(created_at, :now)",
            "tenant_id = :tenant",
            "session_id = :session",
        ]
        if transcript_expiry is not None:
            set_clauses.append("expires_at = :expires")
            head_values[":expires"] = _n(transcript_expiry)
        head: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"pk": _s(pk), "sk": _s(HEAD_SK)},
            "UpdateExpression": "SET " + ", ".join(set_clauses),
            "ExpressionAttributeValues": head_values,
        }
        if head_exists:
            head["ConditionExpression"] = "message_count = :expected"
            head_values[":expected"] = _n(expected)
        else:
            head["ConditionExpression"] = "attribute_not_exists(pk)"

        marker_item: dict[str, Any] = {
            "pk": _s(pk),
            "sk": _s(marker_sk(key)),
            "kind": _s("append"),
            "run_id": _s(key.run_id),
            "step": _n(key.step),
            "seqs": {"L": [_n(entry.seq) for entry in entries]},
            "message_count": _n(new_count),
            "fingerprint": _s(digest),
            "created_at": _n(now),
        }
        if self._marker_ttl_s:
            marker_item["expires_at"] = _n(now + self._marker_ttl_s)

        items: list[dict[str, Any]] = [
            {"Update": head},
            {
                "Put": {
                    "TableName": self._table,
                    "Item": marker_item,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        for entry in entries:
            message_item: dict[str, Any] = {
                "pk": _s(pk),
                "sk": _s(message_sk(entry.seq)),
                "kind": _s("message"),
                "seq": _n(entry.seq),
                "role": _s(entry.message.role),
                # A JSON string, not a map: the content blocks come back byte for byte (no Decimal floats).
                "message": _s(entry.message.model_dump_json()),
                "tokens": _n(entry.tokens or 0),
                "cum_tokens": _n(entry.cum_tokens or 0),
                "run_id": _s(key.run_id),
                "step": _n(key.step),
                "created_at": _n(now),
            }
            if transcript_expiry is not None:
                message_item["expires_at"] = _n(transcript_expiry)
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": message_item,
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        return items

    def _replay(self, pk: str, key: AppendKey, digest: str) -> AppendOutcome:
        """The (run, step) was appended before: return exactly what that append wrote."""
        response = self._call(
            self._client.get_item,
            TableName=self._table,
            Key={"pk": _s(pk), "sk": _s(marker_sk(key))},
            ConsistentRead=True,
        )
        marker = response.get("Item")
        if marker is None:  # only if the session was deleted in between; the caller's retry re-appends
            raise StoreUnavailable("append marker vanished while replaying")
        seqs = [int(value["N"]) for value in marker["seqs"]["L"]]
        written = {entry.seq: entry for entry in self._query_messages(pk, seqs[0], seqs[-1])}
        entries = tuple(written[seq] for seq in seqs if seq in written)
        return AppendOutcome(
            entries=entries,
            message_count=int(marker["message_count"]["N"]),
            duplicate=True,
            same_messages=marker.get("fingerprint", {}).get("S") == digest,
        )

    def _head(self, pk: str) -> SessionHead | None:
        """The head, None when there is none; `SessionGone` when the session's tombstone stands."""
        response = self._call(
            self._client.get_item,
            TableName=self._table,
            Key={"pk": _s(pk), "sk": _s(HEAD_SK)},
            ConsistentRead=True,
            ProjectionExpression="message_count, token_count, kind",
        )
        item = response.get("Item")
        if not item:
            return None
        if item.get("kind", {}).get("S") == DELETED_KIND:
            raise SessionGone(f"session {pk} was deleted")
        return SessionHead(message_count=int(item["message_count"]["N"]), token_count=_int(item, "token_count"))

    def _last_seq_and_tokens(self, pk: str) -> tuple[int, int]:
        """Without a head (a new session, or a head TTL removed first), continue after the last message."""
        response = self._call(
            self._client.query,
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :msg)",
            ExpressionAttributeValues={":pk": _s(pk), ":msg": _s(MSG_PREFIX)},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
            ProjectionExpression="seq, cum_tokens",
        )
        items = response.get("Items", [])
        return (int(items[0]["seq"]["N"]), _int(items[0], "cum_tokens")) if items else (0, 0)

    def _expiry(self, now: int, retention_s: int | None) -> int | None:
        retention = retention_s if retention_s is not None else self._transcript_ttl_s
        return now + retention if retention else None

    def _backoff(self, attempt: int) -> None:
        # Full jitter: racing writers spread out instead of colliding again in lockstep.
        ceiling = min(self._max_delay_s, self._base_delay_s * (2**attempt))
        self._sleep(ceiling * self._jitter())

    # -- read -----------------------------------------------------------------------------------

    def read(self, session: SessionRef, *, up_to_seq: int | None = None) -> list[TranscriptEntry]:
        if up_to_seq is not None and up_to_seq < 1:
            return []
        return list(self._query_messages(partition_key(session), 1, up_to_seq))

    def message_count(self, session: SessionRef) -> int:
        return self.head(session).message_count

    def is_deleted(self, session: SessionRef) -> bool:
        try:
            self._head(partition_key(session))
        except SessionGone:
            return True
        return False

    def head(self, session: SessionRef) -> SessionHead:
        pk = partition_key(session)
        head = self._head(pk)
        if head is not None:
            return head
        count, tokens = self._last_seq_and_tokens(pk)
        return SessionHead(message_count=count, token_count=tokens)

    def _query_messages(self, pk: str, first_seq: int, last_seq: int | None) -> Iterator[TranscriptEntry]:
        # BETWEEN two MSG# keys: the HEAD and APPEND# items of the partition stay out of the range.
        last = message_sk(last_seq) if last_seq is not None else MSG_PREFIX + "9" * SEQ_DIGITS
        condition = "pk = :pk AND sk BETWEEN :first AND :last"
        values = {":pk": _s(pk), ":first": _s(message_sk(first_seq)), ":last": _s(last)}
        for item in self._paginate(
            TableName=self._table,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=True,
            # Right after our own append: an eventually consistent read could miss what we just wrote.
            ConsistentRead=True,
            ProjectionExpression=ENTRY_PROJECTION,
        ):
            yield _entry(item)

    def _paginate(self, **query: Any) -> Iterator[dict[str, Any]]:
        while True:
            response = self._call(self._client.query, **query)
            yield from response.get("Items", [])
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            query["ExclusiveStartKey"] = last_key

    def read_window(
        self, session: SessionRef, builder: WindowBuilder, *, up_to_seq: int, after_seq: int = 0, page_size: int = 50
    ) -> int:
        """Feed `builder` the messages after_seq < seq <= up_to_seq newest first, a page at a time, until it is
        done: the items read depend on the window, not on the session's length. Returns the items read."""
        if up_to_seq <= after_seq:
            return 0
        query: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :first AND :last",
            "ExpressionAttributeValues": {
                ":pk": _s(partition_key(session)),
                ":first": _s(message_sk(after_seq + 1)),
                ":last": _s(message_sk(up_to_seq)),
            },
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "ProjectionExpression": ENTRY_PROJECTION,
            "Limit": page_size,
        }
        read = 0
        while True:
            response = self._call(self._client.query, **query)
            items = response.get("Items", [])
            read += len(items)
            for item in items:
                if not builder.offer(_entry(item)):
                    return read
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return read
            # Later pages grow: a large window is read in few round trips, a small one reads little.
            query["Limit"] = min(query["Limit"] * 2, 400)
            query["ExclusiveStartKey"] = last_key

    def read_range(self, session: SessionRef, first_seq: int, last_seq: int, *, limit: int) -> list[TranscriptEntry]:
        """At most `limit` messages first_seq <= seq <= last_seq, oldest first."""
        if last_seq < first_seq:
            return []
        response = self._call(
            self._client.query,
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues={
                ":pk": _s(partition_key(session)),
                ":first": _s(message_sk(first_seq)),
                ":last": _s(message_sk(last_seq)),
            },
            ScanIndexForward=True,
            ConsistentRead=True,
            ProjectionExpression=ENTRY_PROJECTION,
            Limit=limit,
        )
        return [_entry(item) for item in response.get("Items", [])]

    def cum_tokens_at(self, session: SessionRef, seq: int) -> int:
        if seq < 1:
            return 0
        response = self._call(
            self._client.get_item,
            TableName=self._table,
            Key={"pk": _s(partition_key(session)), "sk": _s(message_sk(seq))},
            ConsistentRead=True,
            ProjectionExpression="cum_tokens",
        )
        item = response.get("Item")
        return _int(item, "cum_tokens") if item else 0

    # -- summaries ------------------------------------------------------------------------------

    def latest_summary(self, session: SessionRef) -> StoredSummary | None:
        response = self._call(
            self._client.query,
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": _s(partition_key(session)), ":prefix": _s(SUMMARY_PREFIX)},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = response.get("Items", [])
        return _summary(items[0]) if items else None

    def list_summaries(self, session: SessionRef) -> list[StoredSummary]:
        return [
            _summary(item)
            for item in self._paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": _s(partition_key(session)), ":prefix": _s(SUMMARY_PREFIX)},
                ConsistentRead=True,
            )
        ]

    def put_summary(self, session: SessionRef, summary: StoredSummary, *, retention_s: int | None = None) -> bool:
        """Store a summary once per through_seq (a redelivery writes nothing). True when written."""
        now = int(self._now())
        item: dict[str, Any] = {
            "pk": _s(partition_key(session)),
            "sk": _s(summary_sk(summary.through_seq)),
            "kind": _s("summary"),
            "text": _s(summary.text),
            "through_seq": _n(summary.through_seq),
            "through_cum_tokens": _n(summary.through_cum_tokens),
            "usage": _s(json.dumps(summary.usage, sort_keys=True)),
            "cost_microusd": _n(summary.cost_microusd),
            "run_id": _s(summary.run_id),
            "step": _n(summary.step),
            "created_at": _n(now),
        }
        expiry = self._expiry(now, retention_s)
        if expiry is not None:
            item["expires_at"] = _n(expiry)
        return self._put_if_absent(item)

    # -- agent state ----------------------------------------------------------------------------

    def get_state(self, session: SessionRef) -> list[StateItem]:
        return [
            StateItem(
                key=item["sk"]["S"][len(STATE_PREFIX) :],
                value_json=item["value"]["S"],
                version=int(item["version"]["N"]),
                writer=item.get("writer", {}).get("S", ""),
            )
            for item in self._paginate(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={":pk": _s(partition_key(session)), ":prefix": _s(STATE_PREFIX)},
                ConsistentRead=True,
            )
        ]

    def write_state(
        self,
        session: SessionRef,
        key: str,
        value_json: str | None,
        *,
        expected_version: int | None,
        writer: str,
        retention_s: int | None = None,
    ) -> StateWrite:
        """Set (value_json) or delete (None) one state key, conditioned on its version when one is expected.

        Idempotent per `writer` (run#step): a redelivered write whose condition fails because this very
        writer already applied it reports `applied` instead of a conflict."""
        pk = partition_key(session)
        item_key = {"pk": _s(pk), "sk": _s(STATE_PREFIX + key)}
        values: dict[str, Any] = {}
        if expected_version is None:
            condition = None
        elif expected_version == 0:
            condition = "attribute_not_exists(pk)"
        else:
            condition = "version = :expected"
            values[":expected"] = _n(expected_version)
        try:
            if value_json is None:
                kwargs: dict[str, Any] = {"TableName": self._table, "Key": item_key}
                if condition:
                    kwargs["ConditionExpression"] = condition
                if values:
                    kwargs["ExpressionAttributeValues"] = values
                self._call(self._client.delete_item, **kwargs)
                return StateWrite(applied=True, version=0)
            now = int(self._now())
            set_clauses = [
                "#v = :value",
                "version = if_not_exists(version, :zero) + :one",
                "writer = :writer",
                "updated_at = :now",
            ]
            values.update(
                {":value": _s(value_json), ":zero": _n(0), ":one": _n(1), ":writer": _s(writer), ":now": _n(now)}
            )
            expiry = self._expiry(now, retention_s)
            if expiry is not None:
                set_clauses.append("expires_at = :expires")
                values[":expires"] = _n(expiry)
            kwargs = {
                "TableName": self._table,
                "Key": item_key,
                "UpdateExpression": "SET " + ", ".join(set_clauses),
                "ExpressionAttributeNames": {"#v": "value"},
                "ExpressionAttributeValues": values,
                "ReturnValues": "UPDATED_NEW",
            }
            if condition:
                kwargs["ConditionExpression"] = condition
            response = self._call(self._client.update_item, **kwargs)
            return StateWrite(applied=True, version=int(response["Attributes"]["version"]["N"]))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            current = self._call(self._client.get_item, TableName=self._table, Key=item_key, ConsistentRead=True)
            item = current.get("Item")
            if item is not None and item.get("writer", {}).get("S") == writer and value_json is not None:
                return StateWrite(applied=True, version=int(item["version"]["N"]))
            if item is None and value_json is None:
                return StateWrite(applied=True, version=0)  # already deleted (a redelivered delete)
            return StateWrite(applied=False, version=int(item["version"]["N"]) if item else 0)

    # -- remote tool calls ------------------------------------------------------------------------

    def get_tool_result(self, session: SessionRef, run_id: str, call_id: str) -> str | None:
        response = self._call(
            self._client.get_item,
            TableName=self._table,
            Key={"pk": _s(partition_key(session)), "sk": _s(f"{TOOL_PREFIX}{run_id}#{call_id}")},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return item["result"]["S"] if item else None

    def put_tool_result(self, session: SessionRef, run_id: str, call_id: str, result_json: str) -> str:
        """Record a tool call's answer once; returns the answer that stands (the first one written)."""
        now = int(self._now())
        expiry = now + self._marker_ttl_s if self._marker_ttl_s else None
        item = self._record_item(
            session, f"{TOOL_PREFIX}{run_id}#{call_id}", "tool_call", "result", result_json, expiry
        )
        if self._put_if_absent(item):
            return result_json
        return self.get_tool_result(session, run_id, call_id) or result_json

    def put_run_failure(
        self, session: SessionRef, run_id: str, failure_json: str, *, retention_s: int | None = None
    ) -> bool:
        """A failed run of the session, kept beside its transcript (never in it: the model does not see it)
        as long as the transcript is kept."""
        now = int(self._now())
        expiry = self._expiry(now, retention_s)
        item = self._record_item(
            session, f"{RUN_FAILURE_PREFIX}{run_id}", "run_failure", "failure", failure_json, expiry
        )
        return self._put_if_absent(item)

    def _record_item(
        self, session: SessionRef, sk: str, kind: str, field: str, value: str, expires_at: int | None
    ) -> dict[str, Any]:
        """A write-once item beside the transcript: its key, kind, one JSON payload, and its expiry."""
        item: dict[str, Any] = {
            "pk": _s(partition_key(session)),
            "sk": _s(sk),
            "kind": _s(kind),
            field: _s(value),
            "created_at": _n(int(self._now())),
        }
        if expires_at is not None:
            item["expires_at"] = _n(expires_at)
        return item

    def list_run_failures(self, session: SessionRef) -> list[dict[str, Any]]:
        items = self._paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": _s(partition_key(session)), ":prefix": _s(RUN_FAILURE_PREFIX)},
            ConsistentRead=True,
        )
        failures = [json.loads(item["failure"]["S"]) for item in items]
        return sorted(failures, key=lambda failure: str(failure.get("occurred_at", "")))

    # -- full tool outputs (claim checks of capped results) --------------------------------------------

    def put_tool_output(
        self,
        session: SessionRef,
        tool_use_id: str,
        run_id: str,
        output_json: str,
        *,
        retention_s: int | None = None,
    ) -> bool:
        """Where a tool call's full output is (its result was capped), kept beside the transcript as long as
        the transcript; written once per (call id, run): a model may reuse a call id in a later run."""
        expiry = self._expiry(int(self._now()), retention_s)
        item = self._record_item(
            session, f"{TOOL_OUTPUT_PREFIX}{tool_use_id}#{run_id}", "tool_output", "output", output_json, expiry
        )
        return self._put_if_absent(item)

    def list_tool_outputs(self, session: SessionRef) -> list[dict[str, Any]]:
        items = self._paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": _s(partition_key(session)), ":prefix": _s(TOOL_OUTPUT_PREFIX)},
            ConsistentRead=True,
        )
        return [json.loads(item["output"]["S"]) for item in items]

    # -- long-term facts (per tenant and user) -----------------------------------------------------

    def list_facts(self, tenant_id: str, user_id: str, *, limit: int = 500) -> list[Fact]:
        facts: list[Fact] = []
        for item in self._paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": _s(user_partition_key(tenant_id, user_id)), ":prefix": _s(FACT_PREFIX)},
            ConsistentRead=True,
        ):
            facts.append(
                Fact(
                    fact_id=item["sk"]["S"][len(FACT_PREFIX) :],
                    text=item["text"]["S"],
                    created_at=_int(item, "created_at"),
                )
            )
            if len(facts) >= limit:
                break
        return facts

    def put_fact(self, tenant_id: str, user_id: str, fact: Fact, *, session_id: str, run_id: str) -> bool:
        """Save a fact once (keyed by its normalized text). True when it was new."""
        return self._put_if_absent(
            {
                "pk": _s(user_partition_key(tenant_id, user_id)),
                "sk": _s(FACT_PREFIX + fact.fact_id),
                "kind": _s("fact"),
                "text": _s(fact.text),
                "created_at": _n(fact.created_at or int(self._now())),
                "session_id": _s(session_id),
                "run_id": _s(run_id),
            }
        )

    def delete_facts(self, tenant_id: str, user_id: str, fact_ids: Sequence[str]) -> int:
        pk = user_partition_key(tenant_id, user_id)
        requests = [{"DeleteRequest": {"Key": {"pk": _s(pk), "sk": _s(FACT_PREFIX + fid)}}} for fid in fact_ids]
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._batch_delete(requests[start : start + BATCH_WRITE_LIMIT])
        return len(requests)

    # -- tenant configuration ----------------------------------------------------------------------

    def get_retention_days(self, tenant_id: str) -> int | None:
        response = self._call(
            self._client.get_item,
            TableName=self._table,
            Key={"pk": _s(tenant_partition_key(tenant_id)), "sk": _s(CONFIG_SK)},
        )
        item = response.get("Item")
        return int(item["retention_days"]["N"]) if item and "retention_days" in item else None

    def set_retention_days(self, tenant_id: str, days: int | None) -> None:
        key = {"pk": _s(tenant_partition_key(tenant_id)), "sk": _s(CONFIG_SK)}
        if days is None:
            self._call(
                self._client.update_item, TableName=self._table, Key=key, UpdateExpression="REMOVE retention_days"
            )
            return
        self._call(
            self._client.update_item,
            TableName=self._table,
            Key=key,
            UpdateExpression="SET retention_days = :days, tenant_id = :tenant",
            ExpressionAttributeValues={":days": _n(days), ":tenant": _s(tenant_id)},
        )

    def _put_if_absent(self, item: dict[str, Any]) -> bool:
        try:
            self._call(
                self._client.put_item, TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- delete ---------------------------------------------------------------------------------

    def delete_session(self, session: SessionRef, *, retention_s: int | None = None) -> int:
        """The tombstone first (it replaces the head: an append racing this deletion fails its head
        condition and then sees the tombstone), then every other item of the partition. Idempotent."""
        pk = partition_key(session)
        now = int(self._now())
        tombstone: dict[str, Any] = {
            "pk": _s(pk),
            "sk": _s(HEAD_SK),
            "kind": _s(DELETED_KIND),
            "tenant_id": _s(session.tenant_id),
            "session_id": _s(session.session_id),
            "deleted_at": _n(now),
        }
        expiry = self._expiry(now, retention_s)
        if expiry is not None:
            tombstone["expires_at"] = _n(expiry)
        self._call(self._client.put_item, TableName=self._table, Item=tombstone)
        deleted = 0
        pending: list[dict[str, Any]] = []
        for item in self._paginate(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _s(pk)},
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
        ):
            if item["sk"]["S"] == HEAD_SK:
                continue  # the tombstone stays
            pending.append({"DeleteRequest": {"Key": {"pk": item["pk"], "sk": item["sk"]}}})
            if len(pending) == BATCH_WRITE_LIMIT:
                deleted += self._batch_delete(pending)
                pending = []
        if pending:
            deleted += self._batch_delete(pending)
        return deleted

    def _batch_delete(self, requests: list[dict[str, Any]]) -> int:
        remaining = requests
        for attempt in range(self._max_attempts):
            response = self._call(self._client.batch_write_item, RequestItems={self._table: remaining})
            remaining = response.get("UnprocessedItems", {}).get(self._table, [])
            if not remaining:
                return len(requests)
            self._backoff(attempt)
        raise StoreUnavailable(f"{len(remaining)} deletes still unprocessed after {self._max_attempts} attempts")

    # -- errors ---------------------------------------------------------------------------------

    def _call(self, operation: Callable[..., Any], **kwargs: Any) -> Any:
        """Run one DynamoDB call, turning "not now" failures (after botocore's own retries) into
        `StoreUnavailable`; every other error propagates unchanged."""
        try:
            return operation(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES:
                raise StoreUnavailable(f"DynamoDB: {exc.response['Error']['Code']}") from exc
            raise
        except (BotocoreConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
            raise StoreUnavailable(f"DynamoDB unreachable: {type(exc).__name__}") from exc
