"""The production gateway against the local stack: live events, double texting, idempotency under
concurrency, limits, sessions, administration, and the chat client (offline model provider)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from agentwire_infra.local.client import GatewayClient, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("stack")]


def events_of(api: GatewayClient, run_id: str, *, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Every live event of a run, by long polling until it is done."""
    cursor, seen = "0", []

    def more() -> bool | None:
        nonlocal cursor
        page = api.request("GET", f"/v1/runs/{run_id}/events?after={cursor}&wait=5")
        assert page.status_code == 200, page.text
        body = page.json()
        seen.extend(body["events"])
        cursor = body["next_cursor"]
        return True if body["done"] else None

    wait_until(more, timeout_s=timeout_s, interval_s=0, what=f"run {run_id} done")
    return seen


def test_live_events_show_each_step_started_and_finished(api: GatewayClient) -> None:
    session_id = api.create_session()
    run_id = api.send_message(session_id, "What is 1234 * 5678?")["run_id"]
    events = events_of(api, run_id)
    types = [event["type"] for event in events]
    assert types[0] == "run.started", types
    assert types[-1] == "run.completed", types
    assert types.count("model.started") == types.count("model.finished") >= 2, types
    assert types.count("tool.started") == types.count("tool.finished") == 1, types
    assert types.index("tool.started") < types.index("tool.finished")
    cursors = [int(event["cursor"]) for event in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    tool = next(e for e in events if e["type"] == "tool.started")
    assert tool["data"]["name"] == "calculator"
    final = events[-1]["data"]
    assert "7006652" in final["output"]
    assert "cost_usd" in final["usage"]
    run = api.get_run(run_id)
    assert run["usage"]["cost_usd"] == final["usage"]["cost_usd"]
    # After the end: nothing new, done at once (no wait).
    rest = api.request("GET", f"/v1/runs/{run_id}/events?after={events[-1]['cursor']}&wait=5").json()
    assert rest["events"] == [] and rest["done"] is True


def test_long_poll_holds_while_nothing_is_new_returns_on_a_new_event_and_blocks_nothing(api: GatewayClient) -> None:
    # A run that waits for a human's approval is silent until the decision: the one state in which a poll
    # after its last event has nothing to answer for as long as we like (a finished run answers at once).
    session_id = api.create_session(agent="ops", user_id="u-long-poll")
    run_id = api.send_message(session_id, NOTIFY)["run_id"]

    def waiting_for_approval() -> tuple[str, str] | None:
        """The pending approval and the cursor after every event the run will have until it is decided."""
        page = api.request("GET", f"/v1/runs/{run_id}/events?after=0&limit=200").json()
        types = [event["type"] for event in page["events"]]
        approvals = api.request("GET", f"/v1/runs/{run_id}/approvals").json()["approvals"]
        # Every event before the wait is in (each model turn's answer too), so no straggler can end a poll.
        settled = "run.started" in types and types.count("model.started") == types.count("model.finished") >= 1
        if "approval.requested" in types and settled and approvals and approvals[0]["status"] == "pending":
            return approvals[0]["approval_id"], page["next_cursor"]
        return None

    approval_id, cursor = wait_until(waiting_for_approval, timeout_s=60, what=f"run {run_id} waiting for approval")
    poll = f"/v1/runs/{run_id}/events?after={cursor}"

    # Nothing new: the poll holds for about `wait` seconds, then answers an empty page.
    wait_s = 3
    started = time.monotonic()
    held = api.request("GET", f"{poll}&wait={wait_s}")
    held_s = time.monotonic() - started
    assert held.status_code == 200, held.text
    assert held.json()["events"] == [] and held.json()["done"] is False, held.json()
    assert held_s >= 0.8 * wait_s, held_s

    long_wait_s = 15
    with ThreadPoolExecutor(1) as pool:
        polling = pool.submit(api.request, "GET", f"{poll}&wait={long_wait_s}")
        time.sleep(1)  # the poll is in, waiting
        # Other requests are answered while it waits: the poll holds no lock the server needs.
        assert api.request("GET", "/healthz", authenticate=False).status_code == 200
        assert api.get_run(run_id)["status"] == "running"
        assert not polling.done(), "the poll answered before anything new happened"
        # Something new for the run (the decision's own live event): the poll answers early, with it.
        decided_at = time.monotonic()
        decided = api.request(
            "POST", f"/v1/runs/{run_id}/approvals/{approval_id}", json={"decision": "reject", "reason": "not now"}
        )
        assert decided.status_code == 200, decided.text
        page = polling.result(timeout=long_wait_s + 10)
        answered_s = time.monotonic() - decided_at
    assert page.status_code == 200, page.text
    types = [event["type"] for event in page.json()["events"]]
    assert "approval.decided" in types, types
    assert answered_s < long_wait_s - 5, answered_s  # early: not at the end of its wait
    api.wait_for_run(run_id)


def test_sse_streams_the_run_to_its_end(api: GatewayClient) -> None:
    session_id = api.create_session()
    run_id = api.send_message(session_id, "What is 12 * 12?")["run_id"]
    frames: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{api.base_url}/v1/runs/{run_id}/events",
        headers={"Authorization": f"Bearer {api.api_key}", "Accept": "text/event-stream"},
        timeout=60,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event_type = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event_type = line[len("event: ") :]
            elif line.startswith("data: ") and event_type != "end":
                frames.append(json.loads(line[len("data: ") :]))
            if event_type == "end":
                break
    types = [frame["type"] for frame in frames]
    assert types[0] == "run.started" and types[-1] == "run.completed", types
    assert "tool.started" in types


def test_double_texting_409_then_enqueue_runs_in_order(api: GatewayClient) -> None:
    session_id = api.create_session()
    first = api.send_message(session_id, "What is 3 * 7?")["run_id"]
    busy = api.request("POST", f"/v1/sessions/{session_id}/messages", json={"content": "and now?"})
    assert busy.status_code == 409, busy.text
    assert busy.json()["active_run_id"] == first
    queued = [
        api.request("POST", f"/v1/sessions/{session_id}/messages?on_busy=enqueue", json={"content": text})
        for text in ("My name is Ada.", "What is my name?")
    ]
    assert [q.status_code for q in queued] == [202, 202]
    assert [q.json()["position"] for q in queued] == [1, 2]
    session = api.request("GET", f"/v1/sessions/{session_id}").json()
    assert session["active_run_id"] == first
    assert session["queued_run_ids"] == [q.json()["run_id"] for q in queued]
    runs = [api.wait_for_run(run_id, timeout_s=90) for run_id in [first, *(q.json()["run_id"] for q in queued)]]
    assert [run["status"] for run in runs] == ["completed"] * 3, runs
    # In order: each started after the previous one ended.
    assert runs[0]["updated_at"] <= runs[1]["steps"][0]["occurred_at"]
    assert runs[1]["updated_at"] <= runs[2]["steps"][0]["occurred_at"]
    assert "Ada" in runs[2]["output"]


def test_cancel_a_waiting_run_takes_it_out_of_the_queue(api: GatewayClient) -> None:
    session_id = api.create_session()
    first = api.send_message(session_id, "What is 5 * 5?")["run_id"]
    waiting = api.request("POST", f"/v1/sessions/{session_id}/messages?on_busy=enqueue", json={"content": "hi"})
    waiting_id = waiting.json()["run_id"]
    cancelled = api.request("POST", f"/v1/runs/{waiting_id}/cancel", json={"reason": "changed my mind"})
    assert cancelled.status_code == 202
    assert api.get_run(waiting_id)["status"] == "cancelled"
    assert api.wait_for_run(first)["status"] == "completed"
    wait_until(
        lambda: api.request("GET", f"/v1/sessions/{session_id}").json()["active_run_id"] is None,
        timeout_s=20,
        what="session idle",
    )


def test_twenty_concurrent_identical_posts_start_one_run(api: GatewayClient, aws: Any) -> None:
    session_id = api.create_session()
    key = f"race-{uuid.uuid4().hex}"

    def post(_: int) -> httpx.Response:
        return api.request(
            "POST",
            f"/v1/sessions/{session_id}/messages",
            json={"content": "What is 6 * 7?"},
            headers={"Idempotency-Key": key},
        )

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert {r.status_code for r in responses} == {202}, [(r.status_code, r.text) for r in responses]
    run_ids = {r.json()["run_id"] for r in responses}
    assert len(run_ids) == 1
    run_id = run_ids.pop()
    assert api.wait_for_run(run_id)["status"] == "completed"
    # Exactly one run: the session has one, the orchestrator started one execution, one run.started.
    sessions_runs = [e for e in events_of(api, run_id) if e["type"] == "run.started"]
    assert len(sessions_runs) == 1
    executions = aws("stepfunctions").list_executions(
        stateMachineArn=aws("stepfunctions").list_state_machines()["stateMachines"][0]["stateMachineArn"],
        maxResults=1000,
    )["executions"]
    assert sum(1 for e in executions if e["name"] == run_id) == 1
    assert sum(1 for r in responses if r.headers.get("idempotent-replayed") == "true") == 19
    differs = api.request(
        "POST", f"/v1/sessions/{session_id}/messages", json={"content": "else"}, headers={"Idempotency-Key": key}
    )
    assert differs.status_code == 422


def test_limits_body_cap_and_message_cap(api: GatewayClient) -> None:
    session_id = api.create_session()
    huge = api.request("POST", f"/v1/sessions/{session_id}/messages", json={"content": "x" * 100_000})
    assert huge.status_code == 413, huge.text
    long = api.request("POST", f"/v1/sessions/{session_id}/messages", json={"content": "x" * 40_000})
    assert long.status_code == 422, long.text


def test_rate_limit_per_tenant_is_429_with_retry_after(local_stack: Any) -> None:
    from agentwire_gateway.admin import create_tenant

    tenant = f"slow-{uuid.uuid4().hex[:8]}"
    table = local_stack.topology.table("gateway", "main").table_name
    create_tenant(tenant, table_name=table, dynamodb_client=local_stack.client("dynamodb"), rate_limit_per_minute=5)
    with GatewayClient(local_stack.gateway_url, local_stack.create_api_key(tenant)) as slow:
        statuses = [slow.request("GET", "/v1/sessions").status_code for _ in range(8)]
        limited = slow.request("GET", "/v1/sessions")
    assert statuses.count(200) <= 5 and 429 in statuses, statuses
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_sessions_list_paginates_get_and_delete(api: GatewayClient, local_stack: Any) -> None:
    tenant = f"pages-{uuid.uuid4().hex[:8]}"
    with GatewayClient(local_stack.gateway_url, local_stack.create_api_key(tenant)) as client:
        created = [client.create_session() for _ in range(5)]
        seen: list[str] = []
        token = None
        while True:
            page = client.request("GET", "/v1/sessions?limit=2" + (f"&page_token={token}" if token else "")).json()
            assert len(page["sessions"]) <= 2
            seen.extend(s["session_id"] for s in page["sessions"])
            token = page["next_page_token"]
            if not token:
                break
        assert sorted(seen) == sorted(created) and len(seen) == 5
        assert seen == list(reversed(created))  # newest first
        victim = created[0]
        run = client.ask(victim, "Remember: my favourite colour is green.")
        assert run["status"] == "completed"
        assert client.request("DELETE", f"/v1/sessions/{victim}").status_code == 204
        assert client.request("GET", f"/v1/sessions/{victim}").status_code == 404
        assert client.request("GET", f"/v1/runs/{run['run_id']}").status_code == 404
        assert client.request("GET", f"/v1/sessions/{victim}/messages").status_code == 404
        assert victim not in [s["session_id"] for s in client.request("GET", "/v1/sessions").json()["sessions"]]


def test_admin_routes_manage_keys_with_the_admin_scope(local_stack: Any) -> None:
    from agentwire_gateway.admin import create_api_key

    table = local_stack.topology.table("gateway", "main").table_name
    tenant = f"adm-{uuid.uuid4().hex[:8]}"
    admin_key = create_api_key(
        tenant, table_name=table, dynamodb_client=local_stack.client("dynamodb"), scopes=["admin"]
    )
    with GatewayClient(local_stack.gateway_url, admin_key) as admin:
        created = admin.request(
            "POST", f"/v1/admin/tenants/{tenant}/keys", json={"scopes": ["runs:read"], "name": "reader"}
        )
        assert created.status_code == 201, created.text
        new_key, key_id = created.json()["api_key"], created.json()["key"]["key_id"]
        assert new_key.startswith("awk_")
        with GatewayClient(local_stack.gateway_url, new_key) as reader:
            assert reader.request("GET", "/v1/sessions").status_code == 200
            assert reader.request("POST", "/v1/sessions", json={}).status_code == 403
            listed = admin.request("GET", f"/v1/admin/tenants/{tenant}/keys").json()["keys"]
            mine = next(k for k in listed if k["key_id"] == key_id)
            assert mine["last_used_at"] is not None and "api_key" not in mine
            rotated = admin.request("POST", f"/v1/admin/tenants/{tenant}/keys/{key_id}/rotate")
            assert rotated.status_code == 201
            assert reader.request("GET", "/v1/sessions").status_code == 401
            with GatewayClient(local_stack.gateway_url, rotated.json()["api_key"]) as rotated_reader:
                assert rotated_reader.request("GET", "/v1/sessions").status_code == 200
                new_id = rotated.json()["key"]["key_id"]
                revoked = admin.request("POST", f"/v1/admin/tenants/{tenant}/keys/{new_id}/revoke")
                assert revoked.status_code == 200 and revoked.json()["revoked_at"]
                assert rotated_reader.request("GET", "/v1/sessions").status_code == 401
        # Another tenant's keys: not found; the tenant listing needs the operator tenant.
        assert admin.request("GET", "/v1/admin/tenants/acme/keys").status_code == 404
        assert admin.request("GET", "/v1/admin/tenants").status_code == 403
        # The runs scopes are not in an admin-only key.
        assert admin.request("GET", "/v1/sessions").status_code == 403


def test_chat_follows_a_conversation_from_piped_stdin(local_stack: Any) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentwire_infra.cli",
            "chat",
            "--url",
            local_stack.gateway_url,
            "--key",
            local_stack.api_key,
        ],
        input="Hi! My name is Ada. What is 1234 * 5678?\nWhat's my name?\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "→ calculator(" in out, out
    assert "← calculator done" in out, out
    assert out.count("assistant: ") == 2, out
    assert "7006652" in out and "Ada" in out.split("assistant: ")[2], out


NOTIFY = "Please notify the ops team: the nightly backup finished."


def chat(local_stack: Any, lines: str, *options: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """`agentwire chat` with `lines` piped to it; the process and the (first) run it started."""
    command = [sys.executable, "-m", "agentwire_infra.cli", "chat", "--url", local_stack.gateway_url]
    result = subprocess.run(
        [*command, "--key", local_stack.api_key, *options],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    run_id = result.stdout.split("(run ", 1)[1].split(":")[0] if "(run " in result.stdout else ""
    return result, run_id


def unanswered_tool_calls(messages: list[dict[str, Any]]) -> list[str]:
    """Tool calls of an assistant turn that the next message does not answer."""
    missing: list[str] = []
    for index, message in enumerate(messages):
        calls = [b["id"] for b in message["content"] if message["role"] == "assistant" and b["type"] == "tool_use"]
        following = messages[index + 1]["content"] if index + 1 < len(messages) else []
        answered = {b.get("tool_use_id") for b in following if b["type"] == "tool_result"}
        missing.extend(call for call in calls if call not in answered)
    return missing


def test_chat_asks_for_the_approval_a_run_waits_for_and_a_wrong_id_never_decides_it(
    local_stack: Any, api: GatewayClient
) -> None:
    result, run_id = chat(
        local_stack, f"{NOTIFY}\n/approve apr-not-this-one\n/reject\n/quit\n", "--agent", "ops", "--user", "u-chat"
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "? send_notification needs approval" in out and "args hash: " in out, out
    assert "apr-not-this-one is not the pending approval" in out, out
    assert "agentwire chat> /reject" in out and "reject: rejected" in out, out
    assert out.count("assistant: ") == 1, out
    session_id = api.get_run(run_id)["session_id"]
    approvals = api.request("GET", f"/v1/runs/{run_id}/approvals").json()["approvals"]
    assert [(a["status"], a["decision_reason"]) for a in approvals] == [("rejected", "rejected in agentwire chat")]
    # The model saw the rejection as the call's result: the call never ran.
    results = [
        block
        for message in api.messages(session_id)
        for block in message["content"]
        if block["type"] == "tool_result" and block["tool_use_id"] == approvals[0]["tool_call_id"]
    ]
    assert len(results) == 1 and results[0]["is_error"], results


def test_chat_cancels_a_run_that_waits_for_an_approval(local_stack: Any, api: GatewayClient) -> None:
    result, run_id = chat(local_stack, f"{NOTIFY}\n/cancel\n/quit\n", "--agent", "ops", "--user", "u-chat")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr  # the run did not complete
    assert "cancel: 202" in out and "run cancelled" in out, out
    run = api.get_run(run_id)
    assert run["status"] == "cancelled", run
    assert unanswered_tool_calls(api.messages(run["session_id"])) == []
