"""A team's own tools package, as the README shows: a registration module, no service code touched."""

from __future__ import annotations

from agentwire_tools.context import current_call
from agentwire_tools.registry import SideEffect, Tool, ToolRegistry
from pydantic import BaseModel, ConfigDict, Field

ISSUED: dict[str, int] = {}


class RefundInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(pattern=r"^ord_[0-9]+$", description="The order to refund.")
    amount_cents: int = Field(gt=0, le=100_000)


def refund(call: RefundInput) -> dict[str, object]:
    # Honour the call's idempotency key: a retried or redelivered call refunds once.
    key = current_call().idempotency_key
    ISSUED.setdefault(key, call.amount_cents)
    return {"refunded": ISSUED[key], "order_id": call.order_id}


def register(registry: ToolRegistry) -> None:
    registry.register(
        Tool(
            name="issue_refund",
            description="Refund part or all of an order.",
            input_model=RefundInput,
            run=refund,
            timeout_s=20,
            side_effect=SideEffect.IDEMPOTENT,
            untrusted_output=False,
        )
    )
