"""The native form of reasoned assistant turns in DynamoDB: `pk = turn#<tenant>`, `sk = <turn digest>`.

Written once per turn the model reasoned in (the content is the provider's, thinking signatures included)
and read when that turn is sent back in the same tool loop. Kept `ttl_s` (longer than a run can wait for
an approval); a turn whose item expired is sent in its neutral form.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: BatchGetItem's limit of keys per call.
BATCH_GET_LIMIT = 100


class DynamoDbReasoningStore:
    def __init__(
        self, client: DynamoDBClient, table_name: str, ttl_s: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table_name
        self._ttl_s = ttl_s
        self._clock = clock

    def get(self, tenant_id: str, digests: list[str]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        wanted = sorted(set(digests))
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys: list[Any] = [self._key(tenant_id, digest) for digest in wanted[start : start + BATCH_GET_LIMIT]]
            request: Any = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    if int(item["expires_at"]["N"]) > self._clock():
                        found[item["sk"]["S"]] = (item["model"]["S"], json.loads(item["native"]["S"]))
                request = response.get("UnprocessedKeys") or {}
        return found

    def put(self, tenant_id: str, digest: str, model: str, native: list[dict[str, Any]]) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                **self._key(tenant_id, digest),
                "model": {"S": model},
                "native": {"S": json.dumps(native, separators=(",", ":"), ensure_ascii=False)},
                "expires_at": {"N": str(int(self._clock()) + self._ttl_s)},
            },
        )

    @staticmethod
    def _key(tenant_id: str, digest: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": f"turn#{tenant_id}"}, "sk": {"S": digest}}
