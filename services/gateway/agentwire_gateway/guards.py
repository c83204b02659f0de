"""Request guards around every route: idempotent POSTs and the per-tenant rate limit. Pure over ports."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from agentwire_gateway import problems
from agentwire_gateway.ports import IdempotencyStore, RateCounter

MAX_IDEMPOTENCY_KEY_CHARS = 256
#: Fields never kept in a stored answer (a new API key is shown once, even to a replay).
SECRET_FIELDS = ("api_key",)


def utc_now() -> datetime:
    return datetime.now(UTC)


def fingerprint(method: str, path: str, query: str, body: str | None) -> str:
    """What "the same request" means: method, path, query and the body (as canonical JSON if it is JSON)."""
    canonical = body or ""
    with contextlib.suppress(ValueError, TypeError):
        canonical = json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":"))
    material = "\n".join((method.upper(), path, "&".join(sorted(query.split("&"))) if query else "", canonical))
    return hashlib.sha256(material.encode()).hexdigest()


class Claim(Enum):
    NEW = "new"
    REPLAY = "replay"
    MISMATCH = "mismatch"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True)
class IdempotencyClaim:
    kind: Claim
    key_hash: str
    response: dict[str, Any] | None = None


@dataclass
class IdempotencyGuard:
    store: IdempotencyStore
    ttl: timedelta = timedelta(hours=24)
    clock: Callable[[], datetime] = utc_now
    #: How long a claim holds its key before the same request may take it over: longer than the gateway
    #: function's timeout (29 s at most), so only a request whose invocation died loses its claim.
    lease: timedelta = timedelta(seconds=60)

    @staticmethod
    def check_key(key: str) -> None:
        if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_CHARS or not key.isprintable():
            raise problems.invalid_request(
                f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_CHARS} printable characters",
                errors=[{"loc": ["header", "idempotency-key"], "type": "value_error", "msg": "invalid key"}],
            )

    def begin(self, tenant_id: str, key: str, request_fingerprint: str, *, owner: str = "") -> IdempotencyClaim:
        """Claim the key for this request (conditional write: one of many concurrent requests wins).

        `owner` gives a caller keys of its own within the tenant: an end user's key must never replay
        another user's answer (a run on a session it may not see) nor collide with another user's key.
        Empty for the tenant's API keys, which share the tenant's keys (and keep their stored hashes)."""
        self.check_key(key)
        key_hash = hashlib.sha256((f"{owner}\x00{key}" if owner else key).encode()).hexdigest()
        now = self.clock()
        if self.store.claim(
            tenant_id,
            key_hash,
            fingerprint=request_fingerprint,
            now=now,
            expires_at=now + self.ttl,
            locked_until=now + self.lease,
        ):
            return IdempotencyClaim(Claim.NEW, key_hash)
        record = self.store.get(tenant_id, key_hash)
        if record is None:  # released or expired between the two calls: the caller tries again
            return IdempotencyClaim(Claim.IN_PROGRESS, key_hash)
        if record.get("fingerprint") != request_fingerprint:
            return IdempotencyClaim(Claim.MISMATCH, key_hash)
        if record.get("state") == "done" and record.get("response_json"):
            return IdempotencyClaim(Claim.REPLAY, key_hash, json.loads(record["response_json"]))
        return IdempotencyClaim(Claim.IN_PROGRESS, key_hash)

    def finish(self, tenant_id: str, claim: IdempotencyClaim, response: dict[str, Any]) -> None:
        """Keep the answer for replays; a server error frees the key so the client can try again."""
        if int(response.get("statusCode", 500)) >= 500:
            self.store.release(tenant_id, claim.key_hash)
            return
        body = response.get("body") or ""
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict) and any(name in parsed for name in SECRET_FIELDS):
                body = json.dumps({k: (None if k in SECRET_FIELDS else v) for k, v in parsed.items()})
        except ValueError:
            pass
        kept = ("content-type", "location")
        headers = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() in kept}
        self.store.complete(
            tenant_id,
            claim.key_hash,
            response={"statusCode": response.get("statusCode"), "headers": headers, "body": body},
        )


@dataclass
class RateLimiter:
    """A fixed one-minute window per tenant, counted in the table (shared by every Lambda container)."""

    counter: RateCounter
    default_per_minute: int
    clock: Callable[[], datetime] = utc_now
    #: Per-tenant limits are cached this long per container.
    cache_ttl: timedelta = timedelta(seconds=30)
    _limits: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    def limit_of(self, tenant_id: str) -> int:
        now = self.clock()
        cached = self._limits.get(tenant_id)
        if cached is not None and now - cached[1] < self.cache_ttl:
            return cached[0]
        limit = self.counter.tenant_limit(tenant_id) or self.default_per_minute
        self._limits[tenant_id] = (limit, now)
        return limit

    def check(self, tenant_id: str) -> None:
        now = self.clock()
        epoch = int(now.timestamp())
        window = epoch // 60
        hits = self.counter.increment(tenant_id, window, expires_at=now + timedelta(minutes=2))
        if hits > self.limit_of(tenant_id):
            raise problems.rate_limited(max(1, 60 - epoch % 60))
