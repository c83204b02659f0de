"""DynamoDB adapters of the service's ports: the audit log, the run lease, the attempt log and the
notification outbox.

Tables (see `manifest.py`; keys lead with the tenant, like every key in the system):

| table | pk | sk | item |
|---|---|---|---|
| audit | `<tenant>#<run_id>` | `call#<tool_call_id>#<decided_at>` | one authorization decision |
| state | `<tenant>#run#<run_id>` | `lease` | the run's lease (holder, expires_at) |
| state | `<tenant>#run#<run_id>` | `attempt#<tool_call_id>` | a world-changing call's tool began to run |
| state | `<tenant>#notifications` | `<run_id>#<tool_call_id>` | one sent notification |
"""

from __future__ import annotations

import time
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from agentwire_tools.attempts import AttemptLogUnavailable
from agentwire_tools.audit import AuditRecord, AuditUnavailable
from agentwire_tools.builtins.notify import Notification, NotificationStoreUnavailable
from agentwire_tools.serial import LeaseUnavailable


def _table(table_name: str, resource: Any = None) -> Any:
    return (resource or boto3.resource("dynamodb")).Table(table_name)


def _conditional_failure(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException")


class DynamoAuditLog:
    def __init__(self, table_name: str, resource: Any = None) -> None:
        self.table = _table(table_name, resource)

    @staticmethod
    def partition(tenant_id: str, run_id: str) -> str:
        return f"{tenant_id}#{run_id}"

    def record(self, entry: AuditRecord) -> None:
        item = {k: v for k, v in entry.model_dump(mode="json").items() if v is not None}
        item["pk"] = self.partition(entry.tenant_id, entry.run_id)
        item["sk"] = f"call#{entry.tool_call_id}#{entry.decided_at}"
        try:
            self.table.put_item(Item=item)
        except (BotoCoreError, ClientError) as exc:
            raise AuditUnavailable(f"audit log: {exc}") from exc

    def decisions(self, tenant_id: str, run_id: str) -> list[AuditRecord]:
        """Every decision of a run, in call-id order (operators and tests read the log this way)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": self.partition(tenant_id, run_id)},
        }
        while True:
            page = self.table.query(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [AuditRecord.model_validate({k: _plain(v) for k, v in item.items()}) for item in items]


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class DynamoRunLease:
    def __init__(self, table_name: str, resource: Any = None) -> None:
        self.table = _table(table_name, resource)

    @staticmethod
    def key(tenant_id: str, run_id: str) -> dict[str, str]:
        return {"pk": f"{tenant_id}#run#{run_id}", "sk": "lease"}

    def acquire(self, tenant_id: str, run_id: str, holder: str, ttl_s: float) -> bool:
        now = time.time()
        try:
            self.table.put_item(
                Item={**self.key(tenant_id, run_id), "holder": holder, "expires_at": int(now + ttl_s) + 1},
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now OR holder = :me",
                ExpressionAttributeValues={":now": int(now), ":me": holder},
            )
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise LeaseUnavailable(f"run lease: {exc}") from exc
        except BotoCoreError as exc:
            raise LeaseUnavailable(f"run lease: {exc}") from exc
        return True

    def release(self, tenant_id: str, run_id: str, holder: str) -> None:
        try:
            self.table.delete_item(
                Key=self.key(tenant_id, run_id),
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={":me": holder},
            )
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise LeaseUnavailable(f"run lease: {exc}") from exc
        except BotoCoreError as exc:
            raise LeaseUnavailable(f"run lease: {exc}") from exc


class DynamoAttemptLog:
    """One item per call of a compensatable/irreversible tool, written once before the tool runs and
    kept as long as the call's idempotency record (`ttl_s`)."""

    def __init__(self, table_name: str, resource: Any = None, *, ttl_s: int = 24 * 3600) -> None:
        self.table = _table(table_name, resource)
        self.ttl_s = ttl_s

    @staticmethod
    def key(tenant_id: str, run_id: str, tool_call_id: str) -> dict[str, str]:
        return {"pk": f"{tenant_id}#run#{run_id}", "sk": f"attempt#{tool_call_id}"}

    def begin(self, tenant_id: str, run_id: str, tool_call_id: str) -> bool:
        now = time.time()
        try:
            self.table.put_item(
                Item={
                    **self.key(tenant_id, run_id, tool_call_id),
                    "began_at": int(now),
                    "expires_at": int(now + self.ttl_s),
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if _conditional_failure(exc):
                return False
            raise AttemptLogUnavailable(f"attempt log: {exc}") from exc
        except BotoCoreError as exc:
            raise AttemptLogUnavailable(f"attempt log: {exc}") from exc
        return True


class DynamoNotificationStore:
    """The outbox of `send_notification`: one item per idempotency key, written once."""

    def __init__(self, table_name: str, resource: Any = None) -> None:
        self.table = _table(table_name, resource)

    @staticmethod
    def key(tenant_id: str, run_id: str, tool_call_id: str) -> dict[str, str]:
        return {"pk": f"{tenant_id}#notifications", "sk": f"{run_id}#{tool_call_id}"}

    def send_once(self, notification: Notification) -> Notification:
        key = self.key(notification.tenant_id, notification.run_id, notification.tool_call_id)
        try:
            self.table.put_item(
                Item={**key, **notification.model_dump(mode="json")},
                ConditionExpression="attribute_not_exists(pk)",
            )
            return notification
        except ClientError as exc:
            if not _conditional_failure(exc):
                raise NotificationStoreUnavailable(str(exc)) from exc
        except BotoCoreError as exc:
            raise NotificationStoreUnavailable(str(exc)) from exc
        # Already sent under this idempotency key: answer what was sent, send nothing more.
        try:
            item = self.table.get_item(Key=key, ConsistentRead=True)["Item"]
        except (BotoCoreError, ClientError, KeyError) as exc:
            raise NotificationStoreUnavailable(str(exc)) from exc
        return Notification.model_validate({k: _plain(v) for k, v in item.items() if k not in ("pk", "sk")})

    def sent(self, tenant_id: str) -> list[Notification]:
        page = self.table.query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": f"{tenant_id}#notifications"}
        )
        return [
            Notification.model_validate({k: _plain(v) for k, v in item.items() if k not in ("pk", "sk")})
            for item in page.get("Items", [])
        ]
