"""The scripted provider's position, shared by every worker process: an atomic counter in DynamoDB."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: A script cursor outlives any test run that uses it, then the table's TTL removes it.
CURSOR_TTL_S = 7 * 24 * 3600


class DynamoDbScriptCursor:
    """`UpdateItem ADD` is atomic, so concurrent workers each get a different position."""

    def __init__(self, client: DynamoDBClient, table_name: str, script_fingerprint: str) -> None:
        self._client = client
        self._table_name = table_name
        self._key: dict[str, Any] = {"pk": {"S": "script-cursor"}, "sk": {"S": script_fingerprint}}

    def next_index(self) -> int:
        response = self._client.update_item(
            TableName=self._table_name,
            Key=self._key,
            UpdateExpression="ADD #calls :one SET #expires_at = :expires_at",
            ExpressionAttributeNames={"#calls": "calls", "#expires_at": "expires_at"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":expires_at": {"N": str(int(time.time()) + CURSOR_TTL_S)},
            },
            ReturnValues="UPDATED_NEW",
        )
        # `calls` counts this call too: the first caller sees 1 and replays entry 0.
        return int(response["Attributes"]["calls"]["N"]) - 1
