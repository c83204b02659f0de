"""The response cache in DynamoDB: `pk = rcache#<tenant>`, `sk = <sha256 of model and prompt>`.

Only deterministic requests are stored (the service decides which); an entry past `expires_at` is a miss
even before the table's TTL deletes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydantic import ValidationError

from agentwire_llm.model import Completion

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


class DynamoDbResponseCache:
    def __init__(
        self, client: DynamoDBClient, table_name: str, ttl_s: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table_name
        self._ttl_s = ttl_s
        self._clock = clock

    def get(self, tenant_id: str, key: str) -> Completion | None:
        item = self._client.get_item(TableName=self._table, Key=self._key(tenant_id, key)).get("Item")
        if not item or int(item["expires_at"]["N"]) <= self._clock():
            return None
        try:
            return Completion.model_validate_json(item["completion"]["S"])
        except ValidationError:
            return None  # written by an older version: a miss, overwritten by the next answer

    def put(self, tenant_id: str, key: str, completion: Completion) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                **self._key(tenant_id, key),
                "completion": {"S": completion.model_dump_json()},
                "expires_at": {"N": str(int(self._clock()) + self._ttl_s)},
            },
        )

    @staticmethod
    def _key(tenant_id: str, key: str) -> dict[str, dict[str, str]]:
        return {"pk": {"S": f"rcache#{tenant_id}"}, "sk": {"S": key}}
