"""The claim check, written once: large JSON payloads go to the payload bucket, events carry a `PayloadRef`.

Every service that writes or resolves a claim check uses this module and nothing else, so the key layout,
the integrity check and the deletion rule are the same everywhere:

    store = PayloadStore.from_env()                      # bucket from AGENTWIRE_PAYLOAD_BUCKET
    ref = store.put_json(messages_json, tenant_id=t, session_id=s, kind="context")
    messages_json = store.get_json(ref)                  # sha256 and size verified

Keys are `t/<tenant>/s/<session>/<kind>/<sha256>.json`: under the tenant and the session, so deleting a
session (`delete_session`) finds every payload of it with one prefix listing, and content-addressed, so a
redelivered request that stores the same payload writes the same object (idempotent, no orphans).

    if json_size(value) > INLINE_LIMIT_BYTES: ref = store.put_json(...)   # the usual threshold test
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from agentwire_contracts.content import PayloadRef
from agentwire_contracts.names import ENV_PAYLOAD_BUCKET

CONTENT_TYPE = "application/json"
#: A conservative default for "too large to travel inline": events (and Step Functions state) are capped
#: at 256 KB, and a context shares its event with the rest of the answer.
INLINE_LIMIT_BYTES = 64 * 1024
#: Refuse to read more than this from a reference (a corrupt or hostile ref cannot exhaust memory).
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
_DELETE_BATCH = 1000


class PayloadError(RuntimeError):
    code = "Payload.Error"


class PayloadNotFound(PayloadError):
    """The referenced object does not exist (deleted with its session, or never written)."""

    code = "Payload.NotFound"


class PayloadIntegrityError(PayloadError):
    """The stored bytes do not match the reference's sha256 or size."""

    code = "Payload.IntegrityError"


def encode_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value (pydantic models are dumped in JSON mode first)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def json_size(value: Any) -> int:
    """Bytes `value` takes as JSON: compare with a threshold to decide whether to claim-check it."""
    return len(encode_json(value))


def _segment(value: str) -> str:
    # Ids are opaque: quote everything but unreserved characters, so no id can escape its prefix.
    if not value:
        raise ValueError("an empty id cannot name a payload prefix")
    return quote(value, safe="")


def session_prefix(tenant_id: str, session_id: str) -> str:
    """Where every payload of one session lives (what deleting the session removes)."""
    return f"t/{_segment(tenant_id)}/s/{_segment(session_id)}/"


def tenant_prefix(tenant_id: str) -> str:
    return f"t/{_segment(tenant_id)}/"


def payload_key(tenant_id: str, session_id: str, kind: str, sha256: str) -> str:
    return f"{session_prefix(tenant_id, session_id)}{_segment(kind)}/{sha256}.json"


@dataclass(frozen=True)
class PayloadStore:
    """The payload bucket through a boto3 S3 client (`put_object`, `get_object`, `list_objects_v2`,
    `delete_objects`)."""

    client: Any
    bucket: str

    @classmethod
    def from_env(cls, client: Any | None = None) -> PayloadStore:
        """The bucket named by `AGENTWIRE_PAYLOAD_BUCKET` (set for every service locally and on AWS)."""
        bucket = os.environ.get(ENV_PAYLOAD_BUCKET)
        if not bucket:
            raise PayloadError(f"{ENV_PAYLOAD_BUCKET} is not set")
        if client is None:
            import boto3

            client = boto3.client("s3")
        return cls(client=client, bucket=bucket)

    def put_json(self, value: Any, *, tenant_id: str, session_id: str, kind: str = "payload") -> PayloadRef:
        """Store `value` as JSON under the tenant and session; returns the claim check to put in an event."""
        body = encode_json(value)
        digest = hashlib.sha256(body).hexdigest()
        key = payload_key(tenant_id, session_id, kind, digest)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=CONTENT_TYPE,
            Metadata={"sha256": digest, "tenant-id": quote(tenant_id, safe=""), "session-id": session_id},
        )
        return PayloadRef(bucket=self.bucket, key=key, sha256=digest, size_bytes=len(body), content_type=CONTENT_TYPE)

    def get_bytes(self, ref: PayloadRef, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
        """The stored bytes, verified against the reference's size and sha256."""
        if ref.size_bytes > max_bytes:
            raise PayloadIntegrityError(f"payload of {ref.size_bytes} bytes exceeds the {max_bytes} byte limit")
        try:
            response = self.client.get_object(Bucket=ref.bucket, Key=ref.key)
        except Exception as exc:
            if _error_code(exc) in {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}:
                raise PayloadNotFound(f"no payload at s3://{ref.bucket}/{ref.key}") from exc
            raise
        body: bytes = response["Body"].read(max_bytes + 1)
        if len(body) != ref.size_bytes:
            raise PayloadIntegrityError(f"payload is {len(body)} bytes, the reference says {ref.size_bytes}")
        if hashlib.sha256(body).hexdigest() != ref.sha256:
            raise PayloadIntegrityError("payload sha256 does not match its reference")
        return body

    def get_json(self, ref: PayloadRef, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
        """Resolve a claim check: the JSON value, after checking size and sha256."""
        return json.loads(self.get_bytes(ref, max_bytes=max_bytes))

    def list_session(self, tenant_id: str, session_id: str) -> list[str]:
        """Keys of every payload of the session."""
        return self._list(session_prefix(tenant_id, session_id))

    def delete_session(self, tenant_id: str, session_id: str) -> int:
        """Delete every payload of the session; returns how many objects were deleted."""
        return self._delete_prefix(session_prefix(tenant_id, session_id))

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            response = self.client.list_objects_v2(**kwargs)
            keys.extend(item["Key"] for item in response.get("Contents", []))
            if not response.get("IsTruncated"):
                return keys
            kwargs["ContinuationToken"] = response["NextContinuationToken"]

    def _delete_prefix(self, prefix: str) -> int:
        keys = self._list(prefix)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
            errors = response.get("Errors") or []
            if errors:
                raise PayloadError(f"{len(errors)} payload(s) not deleted: {errors[0].get('Code')}")
        return len(keys)


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None
