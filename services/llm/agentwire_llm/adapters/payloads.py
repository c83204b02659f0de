"""Claim-checked contexts: `messages_ref` resolved through the shared payload store (S3)."""

from __future__ import annotations

import os

from agentwire_contracts.content import Message, PayloadRef
from agentwire_contracts.names import ENV_PAYLOAD_BUCKET
from agentwire_contracts.payload import (
    PayloadError,
    PayloadIntegrityError,
    PayloadNotFound,
    PayloadStore,
    tenant_prefix,
)
from pydantic import TypeAdapter, ValidationError

from agentwire_llm import errors

_MESSAGES = TypeAdapter(list[Message])


class PayloadMessageStore:
    def __init__(self, store: PayloadStore) -> None:
        self._store = store

    def load_messages(self, tenant_id: str, ref: PayloadRef) -> list[Message]:
        if not ref.key.startswith(tenant_prefix(tenant_id)):
            # A reference into another tenant's payloads is refused, whatever the event says.
            raise errors.bad_request("messages_ref does not belong to the request's tenant")
        try:
            messages = _MESSAGES.validate_python(self._store.get_json(ref))
        except (PayloadNotFound, PayloadIntegrityError, ValidationError) as exc:
            raise errors.bad_request(f"messages_ref cannot be used: {type(exc).__name__}") from exc
        except PayloadError as exc:
            raise errors.unavailable(f"the payload store failed: {type(exc).__name__}") from exc
        if not messages:
            raise errors.bad_request("messages_ref holds no messages")
        return messages


def payload_message_store() -> PayloadMessageStore | None:
    """The store of `AGENTWIRE_PAYLOAD_BUCKET`, or None where no bucket is configured."""
    if not os.environ.get(ENV_PAYLOAD_BUCKET):
        return None
    return PayloadMessageStore(PayloadStore.from_env())
