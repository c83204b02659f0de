"""Administrative operations on tenants and API keys, used by the CLI and the local runtime.

A key is shown once, as the return value of `create_api_key`; only its SHA-256 is stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from pydantic import BaseModel

from agentwire_gateway import auth
from agentwire_gateway.adapters.dynamodb import DynamoApiKeyStore, DynamoTable
from agentwire_gateway.model import ApiKeyRecord, rfc3339

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

#: Tenant ids are embedded in table keys (`tenant#<id>#...`), so `#` and other separators are excluded.
TENANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KNOWN_SCOPES = frozenset(auth.ALL_SCOPES)


class ApiKeyInfo(BaseModel):
    """What may be shown about a key after its creation: never the key, never its hash."""

    key_id: str
    tenant_id: str
    display_prefix: str
    scopes: list[str]
    name: str = ""
    created_at: str
    revoked_at: str | None
    last_used_at: str | None = None

    @classmethod
    def of(cls, record: ApiKeyRecord) -> ApiKeyInfo:
        return cls(
            key_id=record.key_id,
            tenant_id=record.tenant_id,
            display_prefix=record.display_prefix,
            scopes=list(record.scopes),
            name=record.name,
            created_at=rfc3339(record.created_at),
            revoked_at=rfc3339(record.revoked_at) if record.revoked_at else None,
            last_used_at=rfc3339(record.last_used_at) if record.last_used_at else None,
        )


class TenantInfo(BaseModel):
    tenant_id: str
    created_at: str
    rate_limit_per_minute: int | None = None


def _store(table_name: str, dynamodb_client: Any | None) -> DynamoApiKeyStore:
    client: DynamoDBClient = dynamodb_client or boto3.client("dynamodb")
    return DynamoApiKeyStore(DynamoTable(client, table_name))


def _check_tenant(tenant_id: str) -> None:
    if not TENANT_ID_PATTERN.match(tenant_id):
        raise ValueError(f"invalid tenant id {tenant_id!r}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with _ . -)")


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    unknown = set(scopes) - KNOWN_SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(KNOWN_SCOPES)}; got {list(scopes)}")
    return tuple(dict.fromkeys(scopes))


def issue_key(
    store: DynamoApiKeyStore, tenant_id: str, *, scopes: Sequence[str], name: str = ""
) -> tuple[str, ApiKeyRecord]:
    """Create the tenant if it is new and a key for it: the plaintext key (shown only now) and its record."""
    _check_tenant(tenant_id)
    api_key = auth.generate_api_key()
    key_hash = auth.hash_api_key(api_key)
    record = ApiKeyRecord(
        key_id=auth.key_id_for(key_hash),
        tenant_id=tenant_id,
        key_hash=key_hash,
        display_prefix=auth.display_prefix(api_key),
        scopes=check_scopes(scopes),
        created_at=datetime.now(UTC),
        name=name,
    )
    store.create(record)
    return api_key, record


def rotate_key(store: DynamoApiKeyStore, tenant_id: str, key_id: str) -> tuple[str, ApiKeyRecord] | None:
    """A new key with the old one's scopes and name; the old one is revoked. None if there is no such key."""
    _check_tenant(tenant_id)
    old = store.get_key(tenant_id, key_id)
    if old is None or old.revoked:
        return None
    created = issue_key(store, tenant_id, scopes=old.scopes, name=old.name)
    store.revoke(tenant_id, key_id, revoked_at=datetime.now(UTC))
    return created


def create_api_key(
    tenant_id: str,
    *,
    table_name: str,
    dynamodb_client: Any | None = None,
    scopes: Sequence[str] = auth.DEFAULT_SCOPES,
    name: str = "",
) -> str:
    """Create the tenant if it is new and a key for it; return the plaintext key (shown only here)."""
    api_key, _ = issue_key(_store(table_name, dynamodb_client), tenant_id, scopes=scopes, name=name)
    return api_key


def rotate_api_key(tenant_id: str, key_id: str, *, table_name: str, dynamodb_client: Any | None = None) -> str | None:
    rotated = rotate_key(_store(table_name, dynamodb_client), tenant_id, key_id)
    return rotated[0] if rotated else None


def create_tenant(
    tenant_id: str, *, table_name: str, dynamodb_client: Any | None = None, rate_limit_per_minute: int | None = None
) -> bool:
    """False if the tenant exists already."""
    _check_tenant(tenant_id)
    return _store(table_name, dynamodb_client).create_tenant(
        tenant_id, created_at=datetime.now(UTC), rate_limit_per_minute=rate_limit_per_minute
    )


def list_tenants(*, table_name: str, dynamodb_client: Any | None = None) -> list[TenantInfo]:
    store = _store(table_name, dynamodb_client)
    tenants: list[TenantInfo] = []
    after: str | None = None
    while True:
        page, after = store.list_tenants(limit=100, after=after)
        tenants.extend(TenantInfo.model_validate(item) for item in page)
        if after is None:
            return tenants


def list_api_keys(tenant_id: str, *, table_name: str, dynamodb_client: Any | None = None) -> list[ApiKeyInfo]:
    _check_tenant(tenant_id)
    return [ApiKeyInfo.of(record) for record in _store(table_name, dynamodb_client).list_for_tenant(tenant_id)]


def revoke_api_key(tenant_id: str, key_id: str, *, table_name: str, dynamodb_client: Any | None = None) -> bool:
    """Revoke a key (takes effect on the next request); False if the tenant has no key with this id."""
    _check_tenant(tenant_id)
    return _store(table_name, dynamodb_client).revoke(tenant_id, key_id, revoked_at=datetime.now(UTC))
