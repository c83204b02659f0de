"""Token buckets per (tenant, model) in DynamoDB, correct under any number of concurrent Lambdas.

Each bucket is kept as one number, its *theoretical arrival time* (GCRA, the generic cell rate
algorithm, which is a token bucket measured in time): a bucket of `rate` units per minute, full at one
minute's worth, admits a call of `cost` units at `now` iff `max(tat, now) + cost * 60s/rate <= now + 60s`,
and then moves `tat` to that sum. Both branches of the `max` are single conditional `UpdateItem`s, so
admission needs no lock and no read-modify-write race: `tat` only grows, so a refusal observed
against `now` is final, and every request ends admitted or refused after at most three writes.

The tokens bucket is charged the call's estimated input at admission (the only figure known then) and
settled after a completed call with what it really used (input, output, cache writes and reads): a
conditional move of `tat` by the difference, forward from `max(tat, now)`, backward never below `now`
(a full bucket). A failed call is not settled (it keeps its estimate).

Items: `pk = ratelimit#<tenant>`, `sk = <model>#requests|tokens`; the provider's own `retry-after` is
kept in `pk = cooldown`, `sk = <model>` for every tenant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from agentwire_llm.ports import Admission
from agentwire_llm.settings import RateLimit

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

MICROS = 1_000_000
WINDOW_US = 60 * MICROS
_CONDITION_FAILED = "ConditionalCheckFailedException"


def _now_us() -> int:
    return int(time.time() * MICROS)


class DynamoDbRateLimiter:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        limits: Callable[[str], RateLimit | None],
        *,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self._client = client
        self._table = table_name
        self._limits = limits
        self._clock_us = clock_us

    # -- the port ---------------------------------------------------------------------------------------

    def acquire(self, tenant_id: str, model: str, tokens: int) -> Admission:
        now = self._clock_us()
        cooldown = self._cooldown_until(model)
        if cooldown > now:
            return Admission(False, (cooldown - now) / MICROS, "provider")
        limit = self._limits(model)
        if limit is None:
            return Admission(True)
        pk = f"ratelimit#{tenant_id}"
        requests = self._take(pk, f"{model}#requests", 1, limit.requests_per_minute, now)
        if requests is not None:
            return Admission(False, requests / MICROS, "requests")
        if limit.tokens_per_minute is not None:
            waiting = self._take(pk, f"{model}#tokens", max(1, tokens), limit.tokens_per_minute, now)
            if waiting is not None:
                self._give_back(pk, f"{model}#requests", self._increment(1, limit.requests_per_minute))
                return Admission(False, waiting / MICROS, "tokens")
        return Admission(True)

    def cool_down(self, model: str, seconds: float) -> None:
        until = self._clock_us() + int(seconds * MICROS)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key("cooldown", model),
                UpdateExpression="SET #until = :until, expires_at = :expires",
                ConditionExpression="attribute_not_exists(#until) OR #until < :until",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues={
                    ":until": {"N": str(until)},
                    ":expires": {"N": str(until // MICROS + 3600)},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != _CONDITION_FAILED:  # a later cooldown is already set
                raise

    def settle(self, tenant_id: str, model: str, charged_tokens: int, used_tokens: int) -> None:
        limit = self._limits(model)
        if limit is None or limit.tokens_per_minute is None:
            return
        rate = limit.tokens_per_minute
        delta = self._increment(max(1, used_tokens), rate) - self._increment(max(1, charged_tokens), rate)
        if delta == 0:
            return
        key, now = self._key(f"ratelimit#{tenant_id}", f"{model}#tokens"), self._clock_us()
        try:
            if delta > 0:
                self._charge_more(key, delta, now)
            else:
                self._refund(key, -delta, now)
        except ClientError as exc:  # a correction lost to contention is the estimate kept, never an error
            if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                raise

    def _charge_more(self, key: dict[str, Any], increment: int, now: int) -> None:
        for _ in range(3):
            try:  # partly drained: tat moves on
                self._client.update_item(
                    TableName=self._table, Key=key, UpdateExpression="SET tat = tat + :inc",
                    ConditionExpression="tat > :now", ExpressionAttributeValues={
                        ":inc": {"N": str(increment)}, ":now": {"N": str(now)}},
                )  # fmt: skip
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                    raise
            try:  # full again (or never used): the extra starts from now
                self._client.update_item(
                    TableName=self._table, Key=key, UpdateExpression="SET tat = :start, expires_at = :expires",
                    ConditionExpression="attribute_not_exists(tat) OR tat <= :now", ExpressionAttributeValues={
                        ":start": {"N": str(now + increment)}, ":now": {"N": str(now)},
                        ":expires": {"N": str((now + 2 * WINDOW_US) // MICROS + 60)}},
                )  # fmt: skip
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                    raise

    def _refund(self, key: dict[str, Any], increment: int, now: int) -> None:
        try:  # enough drained to give it all back without passing full
            self._client.update_item(
                TableName=self._table, Key=key, UpdateExpression="SET tat = tat - :inc",
                ConditionExpression="tat >= :floor", ExpressionAttributeValues={
                    ":inc": {"N": str(increment)}, ":floor": {"N": str(now + increment)}},
            )  # fmt: skip
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                raise
        # Less drained than the refund: the bucket is full (tat = now), unless it already is.
        self._client.update_item(
            TableName=self._table, Key=key, UpdateExpression="SET tat = :now",
            ConditionExpression="tat > :now", ExpressionAttributeValues={":now": {"N": str(now)}},
        )  # fmt: skip

    # -- GCRA ---------------------------------------------------------------------------------------

    @staticmethod
    def _increment(cost: int, per_minute: int) -> int:
        # A call larger than the whole bucket is admitted only into a full one (it could never fit otherwise).
        return min(WINDOW_US, math.ceil(cost * WINDOW_US / per_minute))

    def _take(self, pk: str, sk: str, cost: int, per_minute: int, now: int) -> int | None:
        """None when admitted; else microseconds until this cost would be."""
        increment = self._increment(cost, per_minute)
        latest_start = now + WINDOW_US - increment  # the highest `tat` that still admits this call
        expires = {":expires": {"N": str((now + 2 * WINDOW_US) // MICROS + 60)}}
        for _ in range(4):
            try:  # the bucket is partly drained: tat moves on by the increment
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(pk, sk),
                    UpdateExpression="SET tat = tat + :inc, expires_at = :expires",
                    ConditionExpression="tat > :now AND tat <= :latest",
                    ExpressionAttributeValues={
                        ":inc": {"N": str(increment)},
                        ":now": {"N": str(now)},
                        ":latest": {"N": str(latest_start)},
                        **expires,
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except ClientError as exc:
                if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                    raise
                tat = self._tat_of(exc.response.get("Item"), pk, sk)  # type: ignore[arg-type]
            if tat is not None and tat > latest_start:
                return tat - latest_start  # tat never decreases (but for refunds): final for this `now`
            try:  # the bucket is full (idle since tat): it starts again from now
                self._client.update_item(
                    TableName=self._table,
                    Key=self._key(pk, sk),
                    UpdateExpression="SET tat = :start, expires_at = :expires",
                    ConditionExpression="attribute_not_exists(tat) OR tat <= :now",
                    ExpressionAttributeValues={
                        ":start": {"N": str(now + increment)},
                        ":now": {"N": str(now)},
                        **expires,
                    },
                )
                return None
            except ClientError as exc:
                if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                    raise
            # Someone else just started the bucket: it is now partly drained, try that branch again.
        return WINDOW_US // per_minute  # contention beyond reason: refuse with one interval's wait

    def _give_back(self, pk: str, sk: str, increment: int) -> None:
        self._client.update_item(
            TableName=self._table,
            Key=self._key(pk, sk),
            UpdateExpression="SET tat = tat - :inc",
            ConditionExpression="attribute_exists(tat)",
            ExpressionAttributeValues={":inc": {"N": str(increment)}},
        )

    def _tat_of(self, item: dict[str, Any] | None, pk: str, sk: str) -> int | None:
        if item is None:
            # Older emulators do not return the item on a failed condition: read it (consistently).
            item = self._client.get_item(TableName=self._table, Key=self._key(pk, sk), ConsistentRead=True).get("Item")
        if not item or "tat" not in item:
            return None
        return int(item["tat"]["N"])

    def _cooldown_until(self, model: str) -> int:
        item = self._client.get_item(TableName=self._table, Key=self._key("cooldown", model)).get("Item")
        return int(item["until"]["N"]) if item and "until" in item else 0

    @staticmethod
    def _key(pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}
