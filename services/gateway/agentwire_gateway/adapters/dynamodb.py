"""The DynamoDB adapter of the read model and of API keys (one table, string keys `pk`/`sk`).

Every projection is a conditional write, so redelivered and out-of-order events are harmless: a
duplicate fails its condition and is skipped, a stale status change fails `status_rank < :rank`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agentwire_contracts.content import ErrorInfo, Message, Usage
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from agentwire_gateway.adapters import keys
from agentwire_gateway.model import (
    ApiKeyRecord,
    ApprovalRecord,
    ApprovalStatus,
    MessageRecord,
    RunRecord,
    RunStatus,
    RunTransition,
    SessionRecord,
    SessionState,
    StepRecord,
    TimelineEntry,
    TimelineEvent,
    rfc3339,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _plain_to_dynamo(value: Any) -> Any:
    """DynamoDB numbers must be Decimal; JSON-ish Python values otherwise map directly."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {k: _plain_to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain_to_dynamo(v) for v in value]
    return value


def _dynamo_to_plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _dynamo_to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamo_to_plain(v) for v in value]
    return value


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in _plain_to_dynamo(values).items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _dynamo_to_plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in {
        "ConditionalCheckFailedException",
        "TransactionCanceledException",
    }


def _key_condition(pk: str, sk_prefix: str) -> dict[str, Any]:
    if not sk_prefix:  # begins_with needs a non-empty prefix
        return {"KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": pk}}}
    return {
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": {"S": pk}, ":prefix": {"S": sk_prefix}},
    }


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


class DynamoTable:
    """The table and a client; shared by the adapters below."""

    def __init__(self, client: DynamoDBClient, table_name: str):
        self.client = client
        self.table_name = table_name

    def put_if_absent(self, values: Mapping[str, Any]) -> bool:
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(values),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self.client.get_item(TableName=self.table_name, Key=_key(pk, sk), ConsistentRead=True)
        item = response.get("Item")
        return from_item(item) if item else None

    def put(self, values: Mapping[str, Any]) -> None:
        self.client.put_item(TableName=self.table_name, Item=to_item(values))

    def delete(self, pk: str, sk: str) -> None:
        self.client.delete_item(TableName=self.table_name, Key=_key(pk, sk))

    def query_page(
        self, pk: str, sk_prefix: str, *, limit: int, after_sk: str | None = None, forward: bool = True
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` items of a partition under `sk_prefix` after `after_sk`; and the sk to go on from."""
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            **_key_condition(pk, sk_prefix),
            "ConsistentRead": True,
            "ScanIndexForward": forward,
            "Limit": limit,
        }
        if after_sk:
            kwargs["ExclusiveStartKey"] = _key(pk, after_sk)
        items: list[dict[str, Any]] = []
        while len(items) < limit:
            kwargs["Limit"] = limit - len(items)
            response = self.client.query(**kwargs)
            items.extend(from_item(item) for item in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if not last:
                return items, None
            kwargs["ExclusiveStartKey"] = last
        return items, str(items[-1]["sk"]) if items else None

    def delete_partition(self, pk: str, sk_prefix: str = "") -> int:
        deleted = 0
        for item in list(self.query_prefix(pk, sk_prefix)):
            self.delete(pk, str(item["sk"]))
            deleted += 1
        return deleted

    def query_prefix(self, pk: str, sk_prefix: str) -> Iterator[dict[str, Any]]:
        """Every item of a partition whose sort key starts with `sk_prefix`, in sort key order."""
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": True, **_key_condition(pk, sk_prefix)}
        while True:
            response = self.client.query(**kwargs)
            for item in response.get("Items", []):
                yield from_item(item)
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last


class DynamoReadModel:
    """Implements `ports.ReadModel`."""

    def __init__(self, table: DynamoTable):
        self.table = table

    # --- sessions -------------------------------------------------------------------------------
    def put_session(self, session: SessionRecord) -> None:
        values = {
            "tenant_id": session.tenant_id,
            "session_id": session.session_id,
            "agent": session.agent,
            "agent_version": session.agent_version,
            "user_id": session.user_id,
            "created_at": rfc3339(session.created_at),
        }
        self.table.put_if_absent(
            {"pk": keys.session_pk(session.tenant_id, session.session_id), "sk": keys.SESSION_SK, **values}
        )
        for listing_pk in self._listing_pks(session):
            self.table.put(
                {"pk": listing_pk, "sk": keys.session_listing_sk(session.created_at, session.session_id), **values}
            )

    @staticmethod
    def _listing_pks(session: SessionRecord) -> list[str]:
        """The tenant's listing, and its user's (an end user's list is one Query, not a filtered scan of
        the tenant's sessions)."""
        pks = [keys.tenant_pk(session.tenant_id)]
        if session.user_id:
            pks.append(keys.user_sessions_pk(session.tenant_id, session.user_id))
        return pks

    def list_sessions(
        self, tenant_id: str, *, limit: int, after: str | None, user_id: str | None = None
    ) -> tuple[list[SessionRecord], str | None]:
        """Newest first; `after` is the opaque position the previous page ended at."""
        pk = keys.user_sessions_pk(tenant_id, user_id) if user_id is not None else keys.tenant_pk(tenant_id)
        items, last = self.table.query_page(pk, keys.SESSION_LISTING_PREFIX, limit=limit, after_sk=after, forward=False)
        records = [SessionRecord.model_validate({k: v for k, v in i.items() if k not in ("pk", "sk")}) for i in items]
        return records, last

    def delete_session(self, session: SessionRecord) -> None:
        """Remove the session, its transcript view, its runs and their timelines; leave a tombstone."""
        tenant, session_id = session.tenant_id, session.session_id
        session_pk = keys.session_pk(tenant, session_id)
        self.table.put({"pk": session_pk, "sk": keys.SESSION_TOMBSTONE_SK, "tenant_id": tenant})
        for item in list(self.table.query_prefix(session_pk, keys.SESSION_RUN_PREFIX)):
            self.table.delete_partition(keys.run_pk(tenant, str(item["run_id"])))
        for item in list(self.table.query_prefix(session_pk, "")):
            if item["sk"] != keys.SESSION_TOMBSTONE_SK:
                self.table.delete(session_pk, str(item["sk"]))
        for listing_pk in self._listing_pks(session):
            self.table.delete(listing_pk, keys.session_listing_sk(session.created_at, session_id))

    def session_deleted(self, tenant_id: str, session_id: str) -> bool:
        return self.table.get(keys.session_pk(tenant_id, session_id), keys.SESSION_TOMBSTONE_SK) is not None

    def get_session_state(self, tenant_id: str, session_id: str) -> SessionState:
        item = self.table.get(keys.session_pk(tenant_id, session_id), keys.SESSION_STATE_SK)
        if item is None:
            return SessionState()
        return SessionState(
            active_run_id=item.get("active_run_id"),
            queue=tuple(item.get("queue") or ()),
            promoted_from=item.get("promoted_from"),
            version=int(item.get("version", 0)),
        )

    def save_session_state(self, tenant_id: str, session_id: str, state: SessionState, *, expected: int) -> bool:
        """Write `state` (whose version is expected + 1) if the stored version is still `expected`."""
        values = {
            "pk": keys.session_pk(tenant_id, session_id),
            "sk": keys.SESSION_STATE_SK,
            "active_run_id": state.active_run_id,
            "queue": list(state.queue),
            "promoted_from": state.promoted_from,
            "version": state.version,
        }
        try:
            self.table.client.put_item(
                TableName=self.table.table_name,
                Item=to_item(values),
                ConditionExpression="attribute_not_exists(pk) OR version = :expected",
                ExpressionAttributeValues=to_item({":expected": expected}),
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    def put_queued_run(self, tenant_id: str, session_id: str, run_id: str, event_json: str) -> None:
        self.table.put(
            {"pk": keys.session_pk(tenant_id, session_id), "sk": keys.queued_sk(run_id), "event_json": event_json}
        )

    def get_queued_run(self, tenant_id: str, session_id: str, run_id: str) -> str | None:
        item = self.table.get(keys.session_pk(tenant_id, session_id), keys.queued_sk(run_id))
        return str(item["event_json"]) if item else None

    def delete_queued_run(self, tenant_id: str, session_id: str, run_id: str) -> None:
        self.table.delete(keys.session_pk(tenant_id, session_id), keys.queued_sk(run_id))

    def get_session(self, tenant_id: str, session_id: str) -> SessionRecord | None:
        item = self.table.get(keys.session_pk(tenant_id, session_id), keys.SESSION_SK)
        if item is None:
            return None
        return SessionRecord.model_validate(item)

    # --- runs -----------------------------------------------------------------------------------
    def put_run(self, run: RunRecord, *, expires_at: datetime) -> bool:
        self.table.put(
            {
                "pk": keys.session_pk(run.tenant_id, run.session_id),
                "sk": keys.session_run_sk(run.run_id),
                "run_id": run.run_id,
                "expires_at": _epoch(expires_at),
            }
        )
        return self.table.put_if_absent(
            {
                "pk": keys.run_pk(run.tenant_id, run.run_id),
                "sk": keys.RUN_SK,
                "tenant_id": run.tenant_id,
                "run_id": run.run_id,
                "session_id": run.session_id,
                "status": run.status.value,
                "status_rank": run.status.rank,
                "usage": run.usage.model_dump(),
                "created_at": rfc3339(run.created_at),
                "updated_at": rfc3339(run.updated_at),
                "expires_at": _epoch(expires_at),
            }
        )

    def get_run(self, tenant_id: str, run_id: str) -> RunRecord | None:
        item = self.table.get(keys.run_pk(tenant_id, run_id), keys.RUN_SK)
        if item is None:
            return None
        return RunRecord(
            tenant_id=item["tenant_id"],
            run_id=item["run_id"],
            session_id=item["session_id"],
            status=RunStatus(item["status"]),
            output=item.get("output"),
            error=ErrorInfo.model_validate(item["error"]) if item.get("error") else None,
            usage=Usage.model_validate(item.get("usage") or {}),
            cost_microusd=int(item.get("cost_microusd") or 0),
            model_turns=int(item.get("model_turns") or 0),
            tool_calls=int(item.get("tool_calls") or 0),
            created_at=item["created_at"],
            updated_at=item["updated_at"],
        )

    def apply_transition(self, transition: RunTransition, *, expires_at: datetime) -> bool:
        status = transition.status
        names = {"#status": "status"}
        values: dict[str, Any] = {
            ":tenant": transition.tenant_id,
            ":run": transition.run_id,
            ":session": transition.session_id,
            ":status": status.value,
            ":rank": status.rank,
            ":at": rfc3339(transition.occurred_at),
            ":expires": _epoch(expires_at),
        }
        updates = [
            "tenant_id = :tenant",
            "run_id = :run",
            "session_id = if_not_exists(session_id, :session)",
            "#status = :status",
            "status_rank = :rank",
            "created_at = if_not_exists(created_at, :at)",
            "updated_at = :at",
            "expires_at = :expires",
        ]
        if transition.output is not None:
            updates.append("#output = :output")
            names["#output"] = "output"
            values[":output"] = transition.output
        if transition.error is not None:
            updates.append("#error = :error")
            names["#error"] = "error"
            values[":error"] = transition.error.model_dump()
        if transition.usage is not None:
            updates.append("#usage = :usage")
            names["#usage"] = "usage"
            values[":usage"] = transition.usage.model_dump()
        for name in ("cost_microusd", "model_turns", "tool_calls"):
            value = getattr(transition, name)
            if value is not None:
                updates.append(f"{name} = :{name}")
                values[f":{name}"] = value
        try:
            self.table.client.update_item(
                TableName=self.table.table_name,
                Key=_key(keys.run_pk(transition.tenant_id, transition.run_id), keys.RUN_SK),
                UpdateExpression="SET " + ", ".join(updates),
                # Monotonic: a late run.started never overwrites a terminal status, and the first
                # terminal event wins over any other (terminal statuses share a rank). Only runs the gateway
                # recorded: a late event of a deleted session's run does not bring it back.
                ConditionExpression="attribute_exists(pk) AND status_rank < :rank",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    # --- steps ----------------------------------------------------------------------------------
    def put_step(self, step: StepRecord, *, expires_at: datetime) -> bool:
        return self.table.put_if_absent(
            {
                "pk": keys.run_pk(step.tenant_id, step.run_id),
                "sk": keys.step_sk(step.occurred_at, step.event_id),
                **step.model_dump(mode="json", exclude_none=True),
                "occurred_at": rfc3339(step.occurred_at),
                "expires_at": _epoch(expires_at),
            }
        )

    def list_steps(self, tenant_id: str, run_id: str) -> list[StepRecord]:
        return [
            StepRecord.model_validate(item)
            for item in self.table.query_prefix(keys.run_pk(tenant_id, run_id), keys.STEP_PREFIX)
        ]

    # --- transcript view ------------------------------------------------------------------------
    def put_message(self, message: MessageRecord) -> bool:
        return self.table.put_if_absent(
            {
                "pk": keys.session_pk(message.tenant_id, message.session_id),
                "sk": keys.message_sk(message.seq),
                "tenant_id": message.tenant_id,
                "session_id": message.session_id,
                "seq": message.seq,
                "run_id": message.run_id,
                # Stored as JSON text: tool inputs are arbitrary JSON (floats, nesting) that DynamoDB's
                # number type would otherwise reshape.
                "message_json": message.message.model_dump_json(),
            }
        )

    def list_messages(
        self, tenant_id: str, session_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[MessageRecord]:
        after = keys.message_sk(after_seq) if after_seq > 0 else None
        items, _ = self.table.query_page(
            keys.session_pk(tenant_id, session_id), keys.MESSAGE_PREFIX, limit=limit, after_sk=after
        )
        return [
            MessageRecord(
                tenant_id=item["tenant_id"],
                session_id=item["session_id"],
                seq=item["seq"],
                run_id=item.get("run_id"),
                message=Message.model_validate(json.loads(item["message_json"])),
            )
            for item in items
        ]

    # --- the live timeline ----------------------------------------------------------------------
    def append_timeline(self, entry: TimelineEntry, *, expires_at: datetime) -> TimelineEvent | None:
        """Give the entry the run's next sequence number and store it; None if this event already has one.
        A crash between the steps leaves at most a gap in the numbers, never a duplicate or a loss."""
        pk = keys.run_pk(entry.tenant_id, entry.run_id)
        marker = self.table.get(pk, keys.event_id_sk(entry.event_id))
        if marker is not None and marker.get("stored"):
            return None
        if marker is not None:
            seq = int(marker["seq"])
        else:
            response = self.table.client.update_item(
                TableName=self.table.table_name,
                Key=_key(pk, keys.EVENT_SEQ_SK),
                UpdateExpression="ADD seq :one SET expires_at = :expires",
                ExpressionAttributeValues=to_item({":one": 1, ":expires": _epoch(expires_at)}),
                ReturnValues="UPDATED_NEW",
            )
            seq = int(response["Attributes"]["seq"]["N"])
            if not self.table.put_if_absent(
                {"pk": pk, "sk": keys.event_id_sk(entry.event_id), "seq": seq, "expires_at": _epoch(expires_at)}
            ):
                existing = self.table.get(pk, keys.event_id_sk(entry.event_id)) or {}
                if existing.get("stored"):
                    return None
                seq = int(existing.get("seq", seq))
        event = TimelineEvent(**entry.model_dump(), seq=seq)
        self.table.put_if_absent(
            {
                "pk": pk,
                "sk": keys.event_sk(seq),
                "tenant_id": event.tenant_id,
                "run_id": event.run_id,
                "event_id": event.event_id,
                "type": event.type,
                "seq": seq,
                "occurred_at": rfc3339(event.occurred_at),
                "data_json": json.dumps(event.data, separators=(",", ":")),
                "expires_at": _epoch(expires_at),
            }
        )
        self.table.client.update_item(
            TableName=self.table.table_name,
            Key=_key(pk, keys.event_id_sk(entry.event_id)),
            UpdateExpression="SET #stored = :yes",
            ExpressionAttributeNames={"#stored": "stored"},
            ExpressionAttributeValues=to_item({":yes": True}),
        )
        return event

    def list_timeline(self, tenant_id: str, run_id: str, *, after: int, limit: int) -> list[TimelineEvent]:
        items, _ = self.table.query_page(
            keys.run_pk(tenant_id, run_id),
            keys.EVENT_PREFIX,
            limit=limit,
            after_sk=keys.event_sk(after) if after > 0 else None,
        )
        return [
            TimelineEvent(
                tenant_id=item["tenant_id"],
                run_id=item["run_id"],
                event_id=item["event_id"],
                type=item["type"],
                seq=int(item["seq"]),
                occurred_at=item["occurred_at"],
                data=json.loads(item["data_json"]),
            )
            for item in items
        ]

    # --- approvals ------------------------------------------------------------------------------
    def put_approval(self, approval: ApprovalRecord, *, expires_at: datetime) -> bool:
        return self.table.put_if_absent(
            {
                "pk": keys.run_pk(approval.tenant_id, approval.run_id),
                "sk": keys.approval_sk(approval.approval_id),
                **approval.model_dump(mode="json", exclude={"tool_input"}),
                "tool_input_json": json.dumps(approval.tool_input, separators=(",", ":")),
                "expires_at": _epoch(expires_at),
            }
        )

    @staticmethod
    def _approval(item: dict[str, Any]) -> ApprovalRecord:
        values = {k: v for k, v in item.items() if k not in ("pk", "sk", "expires_at", "tool_input_json")}
        return ApprovalRecord.model_validate({**values, "tool_input": json.loads(item.get("tool_input_json") or "{}")})

    def get_approval(self, tenant_id: str, run_id: str, approval_id: str) -> ApprovalRecord | None:
        item = self.table.get(keys.run_pk(tenant_id, run_id), keys.approval_sk(approval_id))
        return self._approval(item) if item else None

    def list_approvals(self, tenant_id: str, run_id: str) -> list[ApprovalRecord]:
        items = self.table.query_prefix(keys.run_pk(tenant_id, run_id), keys.APPROVAL_PREFIX)
        return [self._approval(item) for item in items]

    def decide_approval(self, approval: ApprovalRecord) -> bool:
        """Record the decision `approval` carries if the approval is still pending; False otherwise."""
        assert approval.decided_at is not None
        try:
            self.table.client.update_item(
                TableName=self.table.table_name,
                Key=_key(keys.run_pk(approval.tenant_id, approval.run_id), keys.approval_sk(approval.approval_id)),
                UpdateExpression="SET #status = :status, decided_by = :by, decided_at = :at, decision_reason = :why",
                ConditionExpression="attribute_exists(pk) AND #status = :pending",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":status": approval.status.value,
                        ":by": approval.decided_by or "",
                        ":at": rfc3339(approval.decided_at),
                        ":why": approval.decision_reason or "",
                        ":pending": ApprovalStatus.PENDING.value,
                    }
                ),
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    def reopen_approval(self, approval: ApprovalRecord) -> None:
        """Undo a decision whose event could not be published, so it can be decided again."""
        self.table.client.update_item(
            TableName=self.table.table_name,
            Key=_key(keys.run_pk(approval.tenant_id, approval.run_id), keys.approval_sk(approval.approval_id)),
            UpdateExpression="SET #status = :pending REMOVE decided_by, decided_at, decision_reason",
            ConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {":pending": ApprovalStatus.PENDING.value, ":status": approval.status.value}
            ),
        )


class DynamoApiKeyStore:
    """Implements `ports.ApiKeyStore`, plus the administrative writes used by `agentwire_gateway.admin`."""

    def __init__(self, table: DynamoTable):
        self.table = table

    def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        item = self.table.get(keys.apikey_lookup_pk(key_hash), keys.APIKEY_LOOKUP_SK)
        return ApiKeyRecord.model_validate(item) if item else None

    def create(self, record: ApiKeyRecord) -> None:
        """Store a new key's lookup and listing items, and the tenant item if it is new, atomically."""
        attributes = {
            "tenant_id": record.tenant_id,
            "key_id": record.key_id,
            "key_hash": record.key_hash,
            "display_prefix": record.display_prefix,
            "scopes": list(record.scopes),
            "created_at": rfc3339(record.created_at),
            "name": record.name,
        }
        lookup = {"pk": keys.apikey_lookup_pk(record.key_hash), "sk": keys.APIKEY_LOOKUP_SK, **attributes}
        listing = {
            "pk": keys.tenant_pk(record.tenant_id),
            "sk": keys.apikey_listing_sk(record.key_id),
            **attributes,
        }
        self.table.client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table.table_name,
                        "Key": _key(keys.tenant_pk(record.tenant_id), keys.TENANT_SK),
                        "UpdateExpression": "SET tenant_id = :tenant, created_at = if_not_exists(created_at, :at)",
                        "ExpressionAttributeValues": to_item(
                            {":tenant": record.tenant_id, ":at": rfc3339(record.created_at)}
                        ),
                    }
                },
                {
                    "Update": {
                        "TableName": self.table.table_name,
                        "Key": _key(keys.TENANTS_PK, keys.tenant_listing_sk(record.tenant_id)),
                        "UpdateExpression": "SET tenant_id = :tenant, created_at = if_not_exists(created_at, :at)",
                        "ExpressionAttributeValues": to_item(
                            {":tenant": record.tenant_id, ":at": rfc3339(record.created_at)}
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": self.table.table_name,
                        "Item": to_item(lookup),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.table.table_name,
                        "Item": to_item(listing),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )

    def list_for_tenant(self, tenant_id: str) -> list[ApiKeyRecord]:
        return [
            ApiKeyRecord.model_validate(item)
            for item in self.table.query_prefix(keys.tenant_pk(tenant_id), keys.APIKEY_LISTING_PREFIX)
        ]

    def get_tenant(self, tenant_id: str) -> dict[str, Any] | None:
        return self.table.get(keys.tenant_pk(tenant_id), keys.TENANT_SK)

    def revoke(self, tenant_id: str, key_id: str, *, revoked_at: datetime) -> bool:
        """Mark the key revoked in both items; False if the tenant has no such key."""
        listing = self.table.get(keys.tenant_pk(tenant_id), keys.apikey_listing_sk(key_id))
        if listing is None:
            return False
        at = to_item({":at": rfc3339(revoked_at)})
        lookup_pk = keys.apikey_lookup_pk(listing["key_hash"])
        self.table.client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table.table_name,
                        "Key": _key(pk, sk),
                        "UpdateExpression": "SET revoked_at = if_not_exists(revoked_at, :at)",
                        "ExpressionAttributeValues": at,
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                }
                for pk, sk in (
                    (keys.tenant_pk(tenant_id), keys.apikey_listing_sk(key_id)),
                    (lookup_pk, keys.APIKEY_LOOKUP_SK),
                )
            ]
        )
        return True

    def get_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        item = self.table.get(keys.tenant_pk(tenant_id), keys.apikey_listing_sk(key_id))
        return ApiKeyRecord.model_validate(item) if item else None

    def list_page(self, tenant_id: str, *, limit: int, after: str | None) -> tuple[list[ApiKeyRecord], str | None]:
        items, last = self.table.query_page(
            keys.tenant_pk(tenant_id), keys.APIKEY_LISTING_PREFIX, limit=limit, after_sk=after
        )
        return [ApiKeyRecord.model_validate(item) for item in items], last

    def touch(self, record: ApiKeyRecord, *, at: datetime) -> None:
        """Record when the key was last used (both items; the caller throttles how often)."""
        for pk, sk in (
            (keys.tenant_pk(record.tenant_id), keys.apikey_listing_sk(record.key_id)),
            (keys.apikey_lookup_pk(record.key_hash), keys.APIKEY_LOOKUP_SK),
        ):
            try:
                self.table.client.update_item(
                    TableName=self.table.table_name,
                    Key=_key(pk, sk),
                    UpdateExpression="SET last_used_at = :at",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues=to_item({":at": rfc3339(at)}),
                )
            except ClientError as error:
                if not _is_conditional_failure(error):
                    raise

    # --- tenants ----------------------------------------------------------------------------------
    def create_tenant(self, tenant_id: str, *, created_at: datetime, rate_limit_per_minute: int | None) -> bool:
        """False if the tenant exists already."""
        values = {
            "tenant_id": tenant_id,
            "created_at": rfc3339(created_at),
            "rate_limit_per_minute": rate_limit_per_minute,
        }
        created = self.table.put_if_absent({"pk": keys.tenant_pk(tenant_id), "sk": keys.TENANT_SK, **values})
        if created:
            self.table.put({"pk": keys.TENANTS_PK, "sk": keys.tenant_listing_sk(tenant_id), **values})
        return created

    def list_tenants(self, *, limit: int, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
        items, last = self.table.query_page(keys.TENANTS_PK, keys.TENANT_LISTING_PREFIX, limit=limit, after_sk=after)
        return [{k: v for k, v in item.items() if k not in ("pk", "sk")} for item in items], last


class DynamoIdempotencyStore:
    """Implements `ports.IdempotencyStore`: one item per (tenant, key), claimed by a conditional put."""

    def __init__(self, table: DynamoTable):
        self.table = table

    def claim(
        self,
        tenant_id: str,
        key_hash: str,
        *,
        fingerprint: str,
        now: datetime,
        expires_at: datetime,
        locked_until: datetime,
    ) -> bool:
        """True if this request owns the key now: it was unused, expired, or held by a request whose lease
        lapsed (its invocation died between the claim and the answer) and the same request takes it over."""
        try:
            self.table.client.put_item(
                TableName=self.table.table_name,
                Item=to_item(
                    {
                        "pk": keys.idempotency_pk(tenant_id, key_hash),
                        "sk": keys.IDEMPOTENCY_SK,
                        "fingerprint": fingerprint,
                        "state": "in_progress",
                        "locked_until": _epoch(locked_until),
                        "expires_at": _epoch(expires_at),
                    }
                ),
                ConditionExpression=(
                    "attribute_not_exists(pk) OR expires_at < :now OR "
                    "(#state = :in_progress AND locked_until < :now AND fingerprint = :fingerprint)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=to_item(
                    {":now": _epoch(now), ":in_progress": "in_progress", ":fingerprint": fingerprint}
                ),
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    def get(self, tenant_id: str, key_hash: str) -> dict[str, Any] | None:
        return self.table.get(keys.idempotency_pk(tenant_id, key_hash), keys.IDEMPOTENCY_SK)

    def complete(self, tenant_id: str, key_hash: str, *, response: dict[str, Any]) -> None:
        self.table.client.update_item(
            TableName=self.table.table_name,
            Key=_key(keys.idempotency_pk(tenant_id, key_hash), keys.IDEMPOTENCY_SK),
            UpdateExpression="SET #state = :done, response_json = :response",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues=to_item({":done": "done", ":response": json.dumps(response)}),
        )

    def release(self, tenant_id: str, key_hash: str) -> None:
        self.table.delete(keys.idempotency_pk(tenant_id, key_hash), keys.IDEMPOTENCY_SK)


class DynamoRateCounter:
    """Implements `ports.RateCounter`: one counter item per tenant and window, expiring by TTL."""

    def __init__(self, table: DynamoTable):
        self.table = table

    def increment(self, tenant_id: str, window: int, *, expires_at: datetime) -> int:
        response = self.table.client.update_item(
            TableName=self.table.table_name,
            Key=_key(keys.rate_pk(tenant_id, window), keys.RATE_SK),
            UpdateExpression="ADD hits :one SET expires_at = :expires",
            ExpressionAttributeValues=to_item({":one": 1, ":expires": _epoch(expires_at)}),
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["hits"]["N"])

    def tenant_limit(self, tenant_id: str) -> int | None:
        item = self.table.get(keys.tenant_pk(tenant_id), keys.TENANT_SK)
        value = item.get("rate_limit_per_minute") if item else None
        return int(value) if value else None
