"""The ports the completion logic needs beyond the provider: limits, budgets, caches, payloads.

Each has a DynamoDB (or S3) adapter in `adapters/` and an in-memory or no-op stand-in here, so the
domain logic is tested without AWS and the adapters are tested against moto on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from agentwire_contracts.content import Message, PayloadRef

from agentwire_llm.model import Completion


@dataclass(frozen=True)
class Admission:
    admitted: bool
    #: When refused: seconds until a call of this size would be admitted.
    retry_after_s: float = 0.0
    #: Which limit refused ("requests", "tokens" or "provider").
    limit: str = ""


class RateLimiter(Protocol):
    def acquire(self, tenant_id: str, model: str, tokens: int) -> Admission: ...

    def cool_down(self, model: str, seconds: float) -> None:
        """The provider said to wait (429 `retry-after`): no tenant calls the model before then."""
        ...

    def settle(self, tenant_id: str, model: str, charged_tokens: int, used_tokens: int) -> None:
        """A call admitted with an estimate of `charged_tokens` used `used_tokens`: the tokens bucket is
        corrected by the difference (more drains it, fewer refill it, never past full)."""
        ...


class NoRateLimit:
    def acquire(self, tenant_id: str, model: str, tokens: int) -> Admission:
        return Admission(admitted=True)

    def cool_down(self, model: str, seconds: float) -> None:
        return None

    def settle(self, tenant_id: str, model: str, charged_tokens: int, used_tokens: int) -> None:
        return None


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    day: str
    microusd: int


class TenantBudget(Protocol):
    def applies_to(self, tenant_id: str) -> bool:
        """The tenant has a daily budget (so a call whose cost cannot be bounded must be refused)."""
        ...

    def reserve(self, tenant_id: str, microusd: int) -> Reservation | None:
        """Holds `microusd` of the tenant's daily budget; None when that would exceed it (fail closed)."""
        ...

    def settle(self, reservation: Reservation, actual_microusd: int) -> None:
        """Replaces the reserved amount by what the call cost (0 when it failed)."""
        ...


class NoTenantBudget:
    def applies_to(self, tenant_id: str) -> bool:
        return False

    def reserve(self, tenant_id: str, microusd: int) -> Reservation | None:
        return Reservation(tenant_id, "", microusd)

    def settle(self, reservation: Reservation, actual_microusd: int) -> None:
        return None


class ResponseCache(Protocol):
    def get(self, tenant_id: str, key: str) -> Completion | None: ...

    def put(self, tenant_id: str, key: str, completion: Completion) -> None: ...


class NoResponseCache:
    def get(self, tenant_id: str, key: str) -> Completion | None:
        return None

    def put(self, tenant_id: str, key: str, completion: Completion) -> None:
        return None


class ReasoningStore(Protocol):
    """The provider-native form of assistant turns the model reasoned in (see `Completion.native_content`),
    by tenant and `turn_digest`, with the model that produced it: only that model can read it back."""

    def get(self, tenant_id: str, digests: list[str]) -> dict[str, tuple[str, list[dict[str, Any]]]]: ...

    def put(self, tenant_id: str, digest: str, model: str, native: list[dict[str, Any]]) -> None: ...


class InMemoryReasoningStore:
    def __init__(self) -> None:
        self.turns: dict[tuple[str, str], tuple[str, list[dict[str, Any]]]] = {}

    def get(self, tenant_id: str, digests: list[str]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
        return {d: self.turns[(tenant_id, d)] for d in digests if (tenant_id, d) in self.turns}

    def put(self, tenant_id: str, digest: str, model: str, native: list[dict[str, Any]]) -> None:
        self.turns[(tenant_id, digest)] = (model, native)


class MessageStore(Protocol):
    def load_messages(self, tenant_id: str, ref: PayloadRef) -> list[Message]: ...
