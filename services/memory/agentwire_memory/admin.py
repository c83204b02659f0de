"""Operator functions on the memory table (the `agentwire memory …` CLI calls these with a DynamoDB client
on the running stack's emulator; on AWS an operator runs them with their own credentials).

Long-term facts per (tenant, user) are listed and deleted here; a session's transcript is exported here;
a tenant's retention is set here.
"""

from __future__ import annotations

from typing import Any

from agentwire_memory.adapters.dynamodb import DynamoTranscriptStore
from agentwire_memory.ports import PayloadStorePort
from agentwire_memory.service import export_session
from agentwire_memory.transcript import SessionRef


def _store(table_name: str, dynamodb_client: Any) -> DynamoTranscriptStore:
    return DynamoTranscriptStore(dynamodb_client, table_name)


def list_facts(tenant_id: str, user_id: str, *, table_name: str, dynamodb_client: Any) -> list[dict[str, Any]]:
    """The user's saved facts, oldest first: `{"fact_id", "text", "created_at"}`."""
    facts = _store(table_name, dynamodb_client).list_facts(tenant_id, user_id)
    return [
        {"fact_id": fact.fact_id, "text": fact.text, "created_at": fact.created_at}
        for fact in sorted(facts, key=lambda f: (f.created_at, f.fact_id))
    ]


def delete_facts(
    tenant_id: str, user_id: str, fact_ids: list[str] | None = None, *, table_name: str, dynamodb_client: Any
) -> int:
    """Delete the given facts of the user (all of them when `fact_ids` is None); returns how many."""
    store = _store(table_name, dynamodb_client)
    ids = fact_ids if fact_ids is not None else [fact.fact_id for fact in store.list_facts(tenant_id, user_id)]
    known = {fact.fact_id for fact in store.list_facts(tenant_id, user_id)}
    existing = [fact_id for fact_id in ids if fact_id in known]
    return store.delete_facts(tenant_id, user_id, existing)


def export(
    tenant_id: str,
    session_id: str,
    *,
    table_name: str,
    dynamodb_client: Any,
    payloads: PayloadStorePort | None = None,
) -> dict[str, Any]:
    """The full transcript of the session as JSON (see `service.export_session`). With `payloads` (a
    `agentwire_contracts.payload.PayloadStore` on the payload bucket), the full outputs of capped tool results
    are read back whole; without it they are listed by reference only."""
    return export_session(_store(table_name, dynamodb_client), SessionRef(tenant_id, session_id), payloads)


def set_retention(tenant_id: str, days: int | None, *, table_name: str, dynamodb_client: Any) -> None:
    """Retention of the tenant's transcripts in days (None: back to the deployment's default)."""
    if days is not None and days < 1:
        raise ValueError("retention is at least one day")
    _store(table_name, dynamodb_client).set_retention_days(tenant_id, days)
