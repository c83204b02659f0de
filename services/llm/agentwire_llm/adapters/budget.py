"""Each tenant's daily dollar budget in DynamoDB: reserve before the call, settle after.

`pk = budget#<tenant>`, `sk = day#<YYYY-MM-DD>` (UTC), `reserved` = micro-dollars held or spent that
day. A reservation is one conditional `ADD` that fails when it would cross the limit, so concurrent
calls can never spend past it together (fail closed); settling adds the difference to the real cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from agentwire_llm.ports import Reservation

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: A day's record is kept a while for reporting, then the table's TTL removes it.
RETENTION_S = 35 * 24 * 3600


class DynamoDbTenantBudget:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        limit_of: Callable[[str], int | None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._table = table_name
        self._limit_of = limit_of
        self._clock = clock

    def applies_to(self, tenant_id: str) -> bool:
        return self._limit_of(tenant_id) is not None

    def reserve(self, tenant_id: str, microusd: int) -> Reservation | None:
        limit = self._limit_of(tenant_id)
        if limit is None:
            return Reservation(tenant_id, "", microusd)  # unlimited: nothing to keep
        if microusd > limit:
            return None
        day = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%d")
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(tenant_id, day),
                UpdateExpression="ADD reserved :amount, calls :one SET expires_at = :expires",
                ConditionExpression="attribute_not_exists(reserved) OR reserved <= :room",
                ExpressionAttributeValues={
                    ":amount": {"N": str(microusd)},
                    ":one": {"N": "1"},
                    ":room": {"N": str(limit - microusd)},
                    ":expires": {"N": str(int(self._clock()) + RETENTION_S)},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return Reservation(tenant_id, day, microusd)

    def settle(self, reservation: Reservation, actual_microusd: int) -> None:
        if not reservation.day:
            return
        self._client.update_item(
            TableName=self._table,
            Key=self._key(reservation.tenant_id, reservation.day),
            UpdateExpression="ADD reserved :delta, spent :actual",
            ExpressionAttributeValues={
                ":delta": {"N": str(actual_microusd - reservation.microusd)},
                ":actual": {"N": str(actual_microusd)},
            },
        )

    def spent(self, tenant_id: str, day: str) -> tuple[int, int]:
        """(reserved, spent) of a tenant's day, for reports and tests."""
        item = (
            self._client.get_item(TableName=self._table, Key=self._key(tenant_id, day), ConsistentRead=True).get("Item")
            or {}
        )
        return int(item.get("reserved", {}).get("N", 0)), int(item.get("spent", {}).get("N", 0))

    @staticmethod
    def _key(tenant_id: str, day: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": f"budget#{tenant_id}"}, "sk": {"S": f"day#{day}"}}
