"""Whole runs through the gateway's HTTP port, as a client sees them (offline model provider)."""

from __future__ import annotations

import json
import uuid

from agentwire_infra.local.client import GatewayClient


def test_healthz_needs_no_credentials(api: GatewayClient) -> None:
    response = api.request("GET", "/healthz", authenticate=False)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_requests_without_a_key_are_unauthorized(api: GatewayClient) -> None:
    response = api.request("POST", "/v1/sessions", json={}, authenticate=False)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_requests_with_a_wrong_key_are_unauthorized(api: GatewayClient) -> None:
    wrong = api.request("POST", "/v1/sessions", json={}, api_key=f"awk_{uuid.uuid4().hex}")
    assert wrong.status_code == 401
    run = api.request("GET", f"/v1/runs/run_{uuid.uuid4().hex}", api_key="not-a-key")
    assert run.status_code == 401


def test_another_tenant_cannot_see_a_session_or_its_run(api: GatewayClient, other_tenant_api: GatewayClient) -> None:
    session_id = api.create_session()
    accepted = api.send_message(session_id, "Hi! My name is Ada.")
    run_id = accepted["run_id"]
    assert api.wait_for_run(run_id)["status"] == "completed"

    assert other_tenant_api.request("GET", f"/v1/runs/{run_id}").status_code == 404
    assert other_tenant_api.request("GET", f"/v1/sessions/{session_id}/messages").status_code == 404
    posted = other_tenant_api.request("POST", f"/v1/sessions/{session_id}/messages", json={"content": "hello"})
    assert posted.status_code == 404
    # ...while its owner still sees both.
    assert api.request("GET", f"/v1/runs/{run_id}").status_code == 200


def test_a_two_turn_conversation_uses_a_tool_and_remembers(api: GatewayClient) -> None:
    session_id = api.create_session()
    first = api.ask(session_id, "Hi! My name is Ada. What is 1234 * 5678?")
    assert first["status"] == "completed", first
    assert "7006652" in first["output"]
    tool_steps = [step for step in first["steps"] if step["kind"] == "tool"]
    assert [step["detail"] for step in tool_steps] == ["calculator"], first["steps"]

    second = api.ask(session_id, "What's my name, and what was the last result you computed?")
    assert second["status"] == "completed", second
    assert "Ada" in second["output"]
    assert "7006652" in second["output"]
    # The second turn answered from memory: no tool ran again.
    assert not [step for step in second["steps"] if step["kind"] == "tool"], second["steps"]

    transcript = api.messages(session_id)
    roles = [message["role"] for message in transcript]
    assert roles[0] == "user" and roles[-1] == "assistant"
    blocks = [block for message in transcript for block in message["content"]]
    assert any(block["type"] == "tool_use" and block["name"] == "calculator" for block in blocks)
    assert any(block["type"] == "tool_result" and "7006652" in json.dumps(block) for block in blocks)
    texts = [
        block["text"]
        for message in transcript
        if message["role"] == "user"
        for block in message["content"]
        if block["type"] == "text"
    ]
    assert texts == [
        "Hi! My name is Ada. What is 1234 * 5678?",
        "What's my name, and what was the last result you computed?",
    ]
