"""Approvals and the session queue through the projector and the HTTP handler (moto, in-memory bus)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agentwire_contracts.content import Message, TextBlock, ToolCall, Usage, canonical_args_hash
from agentwire_contracts.envelope import Event
from agentwire_contracts.events import RunApprovalRequested, RunCompleted, RunStarted

from services.gateway.tests.test_gateway_projector import deliver


def _event(data, *, tenant: str, run_id: str, token: str | None = None) -> str:
    event = Event.create(data, tenant_id=tenant, run_id=run_id, task_token=token)
    return json.dumps(
        {
            "version": "0",
            "id": "x",
            "detail-type": data.detail_type,
            "source": data.source,
            "account": "1",
            "time": datetime.now(UTC).isoformat(),
            "region": "us-east-1",
            "resources": [],
            "detail": event.detail(),
        }
    )


def _run(http, key) -> tuple[str, str]:
    session_id = http.post("/v1/sessions", api_key=key).body["session_id"]
    run_id = http.post(f"/v1/sessions/{session_id}/messages", api_key=key, json_body={"content": "go"}).body["run_id"]
    return session_id, run_id


def test_an_approval_is_listed_decided_once_and_answers_with_the_task_token(http, key_a, key_b, publisher):
    session_id, run_id = _run(http, key_a)
    call = ToolCall(id="toolu_1", name="send_email", input={"to": "a@example.test"})
    args_hash = canonical_args_hash(call.input)
    requested = RunApprovalRequested(
        session_id=session_id,
        approval_id="apr_1",
        tool_call=call,
        args_hash=args_hash,
        timeout_s=3600,
        reason="sends mail",
    )
    assert deliver(_event(requested, tenant="tenant-a", run_id=run_id, token="opaque-token")) == {
        "batchItemFailures": []
    }
    listed = http.get(f"/v1/runs/{run_id}/approvals", api_key=key_a).body["approvals"]
    assert [(a["approval_id"], a["status"], a["tool_name"]) for a in listed] == [("apr_1", "pending", "send_email")]
    assert "task_token" not in json.dumps(listed)
    # Another tenant: 404 for the list and the decision, nothing published.
    http.get(f"/v1/runs/{run_id}/approvals", api_key=key_b).problem(404)
    http.post(f"/v1/runs/{run_id}/approvals/apr_1", api_key=key_b, json_body={"decision": "approve"}).problem(404)
    before = len(publisher.events)
    decided = http.post(
        f"/v1/runs/{run_id}/approvals/apr_1", api_key=key_a, json_body={"decision": "reject", "reason": "not today"}
    )
    assert decided.status == 200, decided.body
    assert decided.body["status"] == "rejected"
    event = publisher.events[before]
    assert event.detail_type == "run.approval.decided.v1"
    assert event.metadata.task_token == "opaque-token"
    assert (event.data.approval_id, event.data.tool_call_id, event.data.args_hash) == ("apr_1", "toolu_1", args_hash)
    assert event.data.decision == "reject" and event.data.decided_by.startswith("key_")
    again = http.post(f"/v1/runs/{run_id}/approvals/apr_1", api_key=key_a, json_body={"decision": "approve"})
    again.problem(409)
    assert len(publisher.events) == before + 1
    http.post(f"/v1/runs/{run_id}/approvals/apr_missing", api_key=key_a, json_body={"decision": "approve"}).problem(404)
    types = [e["type"] for e in http.get(f"/v1/runs/{run_id}/events", api_key=key_a).body["events"]]
    assert types == ["approval.requested"]


def test_the_end_of_a_run_starts_the_next_queued_one(http, key_a, publisher):
    session_id, first = _run(http, key_a)
    queued = http.post(
        f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "next"}, query="on_busy=enqueue"
    ).body
    assert queued["position"] == 1
    assert [e.metadata.run_id for e in publisher.events] == [first]
    done = RunCompleted(
        session_id=session_id,
        output=Message(role="assistant", content=[TextBlock(text="ok")]),
        usage=Usage(input_tokens=1),
        cost_microusd=5,
    )
    started = RunStarted(session_id=session_id)
    body = _event(done, tenant="tenant-a", run_id=first)
    deliver(_event(started, tenant="tenant-a", run_id=first), body)
    assert [e.metadata.run_id for e in publisher.events] == [first, queued["run_id"]]
    assert publisher.events[1].data.input.content[0].text == "next"
    # A redelivered end event publishes the promoted run again (harmless: the execution name is the run id).
    deliver(body)
    assert [e.metadata.run_id for e in publisher.events][-1] == queued["run_id"]
    session = http.get(f"/v1/sessions/{session_id}", api_key=key_a).body
    assert session["active_run_id"] == queued["run_id"] and session["queued_run_ids"] == []


def test_each_approval_request_is_counted_once_by_tool(http, key_a, capsys):
    from services.gateway.tests.test_gateway_projector import emitted_metrics, values

    session_id, run_id = _run(http, key_a)
    call = ToolCall(id="toolu_m", name="send_email", input={"to": "a@example.test"})
    requested = RunApprovalRequested(
        session_id=session_id,
        approval_id="apr_m",
        tool_call=call,
        args_hash=canonical_args_hash(call.input),
        timeout_s=60,
        reason="sends mail",
    )
    body = _event(requested, tenant="tenant-a", run_id=run_id, token="opaque-token")
    capsys.readouterr()
    deliver(body)
    deliver(body)  # a redelivery counts nothing
    blobs = emitted_metrics(capsys.readouterr().out)
    assert values(blobs, "ApprovalsRequested", tool="send_email") == [1.0]
