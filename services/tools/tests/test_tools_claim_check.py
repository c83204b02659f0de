"""Output over a tool's cap: the model sees a capped copy, the whole output is kept by claim check."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from agentwire_contracts.content import PayloadRef, ToolCall
from agentwire_contracts.envelope import Event
from agentwire_contracts.events import ToolInvocationRequested
from agentwire_contracts.payload import PayloadStore
from agentwire_tools.registry import SideEffect, Tool, ToolRegistry
from agentwire_tools.service import ToolsService
from moto import mock_aws
from pydantic import BaseModel


class NoInput(BaseModel):
    pass


CAP = 100
WHOLE = "line of a long report\n" * 500


def chatty(_: NoInput) -> str:
    return WHOLE


def service_with(payloads: Any) -> ToolsService:
    registry = ToolRegistry()
    registry.register(
        Tool(
            name="report",
            description="A long report.",
            input_model=NoInput,
            run=chatty,
            side_effect=SideEffect.READ_ONLY,
            max_output_chars=CAP,
            untrusted_output=False,
        )
    )
    return ToolsService(registry, payloads=payloads, assume_agent=None)


def request() -> Event[ToolInvocationRequested]:
    return Event.create(
        ToolInvocationRequested(session_id="s1", step=1, tool_call=ToolCall(id="c1", name="report"), agent=""),
        tenant_id="acme",
        run_id="r1",
    )


@pytest.fixture
def store() -> Any:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="payloads")
        yield PayloadStore(client=s3, bucket="payloads")


def test_whole_output_goes_to_the_payload_store_and_the_model_sees_the_capped_copy(
    store: PayloadStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = service_with(store)
    monkeypatch.setattr(
        service,
        "decide_and_run",
        lambda req, key: service.claim_check(_execute(service), tenant_id="acme", session_id="s1"),
    )
    answer = service.invoke(request())
    assert not answer.result.is_error
    assert len(answer.result.content) < len(WHOLE) and "truncated" in answer.result.content
    assert isinstance(answer.result_ref, PayloadRef)
    assert store.get_json(answer.result_ref) == {"tool_name": "report", "content": WHOLE}
    assert answer.result_ref.key.startswith("t/acme/s/s1/")


def test_without_a_store_the_capped_copy_is_all_there_is() -> None:
    service = service_with(None)
    outcome = service.claim_check(_execute(service), tenant_id="acme", session_id="s1")
    assert outcome.truncated and outcome.result_ref is None and outcome.full_content is None


def _execute(service: ToolsService) -> Any:
    from agentwire_tools.execution import execute

    return execute(service.registry, "report", {})
