"""The HTTP API end to end through `http_handler`: moto DynamoDB, the in-memory bus."""

from __future__ import annotations

from agentwire_contracts.events import RunRequested
from agentwire_contracts.names import DetailType, Source


def open_session(http, key: str, **body) -> str:
    result = http.post("/v1/sessions", api_key=key, json_body=body or None)
    assert result.status == 201, result.body
    return result.body["session_id"]


def test_healthz_needs_no_key(http):
    result = http.get("/healthz")
    assert result.status == 200
    assert result.body["status"] == "ok"


def test_create_session_returns_201_with_defaults(http, key_a):
    result = http.post("/v1/sessions", api_key=key_a)
    assert result.status == 201, result.body
    assert result.body["agent"] == "assistant"
    assert result.body["session_id"].startswith("ses_")
    assert result.body["created_at"].endswith("Z")
    assert result.header("location") == f"/v1/sessions/{result.body['session_id']}"


def test_create_session_with_agent(http, key_a):
    result = http.post("/v1/sessions", api_key=key_a, json_body={"agent": "assistant"})
    assert result.status == 201
    assert result.body["agent"] == "assistant"
    session = http.get(f"/v1/sessions/{result.body['session_id']}", api_key=key_a)
    assert session.body["agent_version"], session.body


def test_create_session_with_an_unknown_agent_is_422(http, key_a):
    body = http.post("/v1/sessions", api_key=key_a, json_body={"agent": "no-such-agent"}).problem(422)
    assert body["errors"][0]["loc"] == ["body", "agent"]


def test_post_message_queues_a_run_and_publishes_one_request(http, key_a, publisher):
    session_id = open_session(http, key_a, agent="assistant", user_id="user-7")

    result = http.post(
        f"/v1/sessions/{session_id}/messages",
        api_key=key_a,
        # The body's claim to another tenant must be ignored: the tenant comes from the key.
        json_body={"content": "What is the capital of France?", "tenant_id": "tenant-b"},
    )

    assert result.status == 202, result.body
    run_id = result.body["run_id"]
    assert result.body == {"run_id": run_id, "session_id": session_id, "status": "queued", "position": 0}
    assert result.header("location") == f"/v1/runs/{run_id}"

    assert len(publisher.events) == 1
    event = publisher.events[0]
    assert event.detail_type == DetailType.RUN_REQUESTED
    assert event.source == Source.GATEWAY
    assert event.metadata.tenant_id == "tenant-a"
    assert event.metadata.run_id == run_id
    assert isinstance(event.data, RunRequested)
    assert event.data.session_id == session_id
    assert event.data.agent == "assistant"
    assert event.data.agent_version
    assert event.data.user_id == "user-7"
    assert event.data.input.role == "user"
    assert [block.model_dump() for block in event.data.input.content] == [
        {"type": "text", "text": "What is the capital of France?"}
    ]

    run = http.get(f"/v1/runs/{run_id}", api_key=key_a)
    assert run.status == 200
    assert run.body["status"] == "queued"
    assert run.body["output"] is None
    assert run.body["error"] is None
    assert run.body["steps"] == []
    assert run.body["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cost_usd": 0.0,
    }
    assert set(run.body) == {
        "run_id",
        "session_id",
        "status",
        "output",
        "error",
        "usage",
        "model_turns",
        "tool_calls",
        "steps",
        "created_at",
        "updated_at",
    }


def test_post_message_to_unknown_session_is_404_and_publishes_nothing(http, key_a, publisher):
    result = http.post("/v1/sessions/ses_nope/messages", api_key=key_a, json_body={"content": "hi"})
    result.problem(404)
    assert publisher.events == []


def test_another_tenants_session_and_run_are_404(http, key_a, key_b, publisher):
    session_id = open_session(http, key_a)
    run_id = http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"}).body["run_id"]
    publisher.events.clear()

    http.get(f"/v1/runs/{run_id}", api_key=key_b).problem(404)
    http.get(f"/v1/sessions/{session_id}/messages", api_key=key_b).problem(404)
    http.post(f"/v1/sessions/{session_id}/messages", api_key=key_b, json_body={"content": "hi"}).problem(404)
    assert publisher.events == []

    # ...and the owner still sees both.
    assert http.get(f"/v1/runs/{run_id}", api_key=key_a).status == 200
    assert http.get(f"/v1/sessions/{session_id}/messages", api_key=key_a).status == 200


def test_cross_tenant_404_is_indistinguishable_from_missing(http, key_a, key_b):
    session_id = open_session(http, key_a)
    other = http.get(f"/v1/sessions/{session_id}/messages", api_key=key_b).problem(404)
    missing = http.get("/v1/sessions/ses_missing/messages", api_key=key_b).problem(404)
    assert other["detail"] == missing["detail"]
    assert other["type"] == missing["type"]


def test_malformed_json_is_422(http, key_a, publisher):
    session_id = open_session(http, key_a)
    result = http.post(
        f"/v1/sessions/{session_id}/messages",
        api_key=key_a,
        raw_body='{"content": "hi"',
        headers={"content-type": "application/json"},
    )
    body = result.problem(422)
    assert any(error["type"] == "json_invalid" for error in body["errors"])
    assert publisher.events == []


def test_missing_or_empty_content_is_422(http, key_a, publisher):
    session_id = open_session(http, key_a)
    path = f"/v1/sessions/{session_id}/messages"
    missing = http.post(path, api_key=key_a, json_body={"text": "hi"}).problem(422)
    assert any("content" in error["loc"] for error in missing["errors"])
    http.post(path, api_key=key_a, json_body={"content": ""}).problem(422)
    http.post(path, api_key=key_a, json_body={"content": "   "}).problem(422)
    http.post(path, api_key=key_a).problem(422)
    assert publisher.events == []


def test_content_length_bounds(http, key_a, publisher):
    session_id = open_session(http, key_a)
    path = f"/v1/sessions/{session_id}/messages"
    assert http.post(path, api_key=key_a, json_body={"content": "x" * 32_000}).status == 202
    too_long = http.post(path, api_key=key_a, json_body={"content": "y" * 32_001}).problem(422)
    # The problem names the field and the rule, never echoes the content back.
    assert "y" * 100 not in str(too_long)
    assert len(publisher.events) == 1


def test_base64_encoded_body_is_accepted(http, key_a):
    session_id = open_session(http, key_a)
    result = http.request(
        "POST",
        f"/v1/sessions/{session_id}/messages",
        api_key=key_a,
        json_body={"content": "encoded"},
        base64_body=True,
    )
    assert result.status == 202, result.body


def test_invalid_agent_name_is_422(http, key_a):
    http.post("/v1/sessions", api_key=key_a, json_body={"agent": "../etc"}).problem(422)


def test_unknown_route_is_404_problem(http, key_a):
    body = http.get("/v1/nothing-here", api_key=key_a).problem(404)
    assert body["instance"] == "/v1/nothing-here"
    http.get("/v1/nothing-here").problem(404)


def test_wrong_method_is_405_with_allow(http, key_a):
    result = http.request("DELETE", "/v1/runs/run_x", api_key=key_a)
    result.problem(405)
    assert result.header("allow") == "GET"
    put = http.request("PUT", "/v1/sessions", api_key=key_a)
    put.problem(405)
    assert put.header("allow") == "GET, POST"


def test_idempotency_key_replays_the_same_run(http, key_a, publisher):
    session_id = open_session(http, key_a)
    path = f"/v1/sessions/{session_id}/messages"
    headers = {"Idempotency-Key": "attempt-1"}
    first = http.post(path, api_key=key_a, json_body={"content": "hi"}, headers=headers)
    second = http.post(path, api_key=key_a, json_body={"content": "hi"}, headers=headers)
    other = http.post(
        path,
        api_key=key_a,
        json_body={"content": "hi"},
        headers={"Idempotency-Key": "attempt-2"},
        query="on_busy=enqueue",
    )
    assert first.status == second.status == other.status == 202
    assert first.body["run_id"] == second.body["run_id"]
    assert second.header("idempotent-replayed") == "true"
    assert other.body["run_id"] != first.body["run_id"]
    assert other.body["position"] == 1
    # One run.requested: the replay published nothing, the queued run waits for the first to end.
    assert len(publisher.events) == 1


def test_idempotency_key_does_not_republish_a_started_run(http, key_a, publisher, deps):
    from datetime import UTC, datetime

    from agentwire_gateway.model import RunStatus, RunTransition

    session_id = open_session(http, key_a)
    path = f"/v1/sessions/{session_id}/messages"
    first = http.post(path, api_key=key_a, json_body={"content": "hi"}, headers={"Idempotency-Key": "k"})
    deps.gateway.read_model.apply_transition(
        RunTransition(
            tenant_id="tenant-a",
            run_id=first.body["run_id"],
            session_id=session_id,
            status=RunStatus.RUNNING,
            occurred_at=datetime.now(UTC),
        ),
        expires_at=datetime.now(UTC),
    )
    again = http.post(path, api_key=key_a, json_body={"content": "hi"}, headers={"Idempotency-Key": "k"})
    # The original answer, replayed as it was; nothing published again.
    assert again.status == 202
    assert again.body == first.body
    assert again.header("idempotent-replayed") == "true"
    assert len(publisher.events) == 1


def test_an_idempotency_key_reused_after_it_expired_starts_a_new_run(http, key_a, deps):
    from datetime import UTC, datetime, timedelta

    session_id = open_session(http, key_a)
    path = f"/v1/sessions/{session_id}/messages"
    headers = {"Idempotency-Key": "daily-report"}
    first = http.post(path, api_key=key_a, json_body={"content": "report"}, headers=headers)
    # A day and an hour later the key has expired (24 h): the same key and body are a new request.
    later = datetime.now(UTC) + timedelta(hours=25)
    deps.idempotency.clock = deps.gateway.clock = lambda: later
    second = http.post(path, api_key=key_a, json_body={"content": "report"}, headers=headers, query="on_busy=enqueue")
    again = http.post(path, api_key=key_a, json_body={"content": "report"}, headers=headers, query="on_busy=enqueue")

    assert first.status == second.status == again.status == 202
    assert second.body["run_id"] != first.body["run_id"]
    assert second.header("idempotent-replayed") is None
    assert again.body["run_id"] == second.body["run_id"]  # and the key's new life replays its new run
    assert again.header("idempotent-replayed") == "true"


def test_idempotency_key_with_another_body_is_422(http, key_a, publisher):
    session_id = open_session(http, key_a)
    path = f"/v1/sessions/{session_id}/messages"
    http.post(path, api_key=key_a, json_body={"content": "hi"}, headers={"Idempotency-Key": "k2"})
    http.post(path, api_key=key_a, json_body={"content": "other"}, headers={"Idempotency-Key": "k2"}).problem(422)
    assert len(publisher.events) == 1


def test_publish_failure_is_503_and_the_run_is_marked_failed(http, key_a, publisher):
    session_id = open_session(http, key_a)
    publisher.fail = True
    result = http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"})
    result.problem(503)
    assert publisher.events == []


def test_openapi_document_lists_the_routes(http):
    result = http.get("/openapi.json")
    assert result.status == 200
    paths = result.body["paths"]
    assert "/v1/sessions/{session_id}/messages" in paths
    assert "/v1/runs/{run_id}" in paths
    assert "bearer" in result.body["components"]["securitySchemes"]


def test_publish_failure_marks_the_run_failed(http, key_a, publisher, dynamodb):
    import os

    session_id = open_session(http, key_a)
    publisher.fail = True
    http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"}).problem(503)
    runs = [
        item for item in dynamodb.scan(TableName=os.environ["GATEWAY_TABLE_NAME"])["Items"] if item["sk"]["S"] == "run"
    ]
    assert len(runs) == 1
    assert runs[0]["status"]["S"] == "failed"
    assert runs[0]["error"]["M"]["code"]["S"] == "Gateway.PublishFailed"


def test_idempotency_key_is_scoped_to_its_session(http, key_a, publisher):
    first = open_session(http, key_a)
    second = open_session(http, key_a)
    headers = {"Idempotency-Key": "same"}
    body = {"content": "a"}
    one = http.post(f"/v1/sessions/{first}/messages", api_key=key_a, json_body=body, headers=headers)
    # A key names one request of the tenant: the same key on another session is another request → 422.
    two = http.post(f"/v1/sessions/{second}/messages", api_key=key_a, json_body=body, headers=headers)
    assert one.status == 202
    two.problem(422)
    assert [e.data.session_id for e in publisher.events] == [first]


def test_malformed_session_body_is_422(http, key_a):
    http.post("/v1/sessions", api_key=key_a, raw_body="[", headers={"content-type": "application/json"}).problem(422)
    http.post("/v1/sessions", api_key=key_a, json_body={"agent": ""}).problem(422)


def test_get_session(http, key_a, key_b):
    session_id = open_session(http, key_a, agent="assistant", user_id="u-1")
    result = http.get(f"/v1/sessions/{session_id}", api_key=key_a)
    assert result.status == 200
    assert result.body["session_id"] == session_id
    assert result.body["agent"] == "assistant"
    assert result.body["user_id"] == "u-1"
    http.get(f"/v1/sessions/{session_id}", api_key=key_b).problem(404)


def test_cancel_publishes_a_request_for_an_active_run(http, key_a, key_b, publisher):
    session_id = open_session(http, key_a)
    run_id = http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"}).body["run_id"]
    publisher.events.clear()

    http.post(f"/v1/runs/{run_id}/cancel", api_key=key_b).problem(404)
    assert publisher.events == []

    result = http.post(f"/v1/runs/{run_id}/cancel", api_key=key_a, json_body={"reason": "changed my mind"})
    assert result.status == 202, result.body
    assert [e.detail_type for e in publisher.events] == ["run.cancel.requested.v1"]
    assert publisher.events[0].metadata.tenant_id == "tenant-a"
    assert publisher.events[0].metadata.run_id == run_id
    assert publisher.events[0].data.session_id == session_id


def test_auth_backend_failure_is_a_503_problem(http, deps):
    class BrokenKeys:
        def find_by_hash(self, key_hash):
            raise RuntimeError("table unreachable")

    deps.authenticator.keys = BrokenKeys()
    http.post("/v1/sessions", api_key="awk_" + "k" * 43).problem(503)


def test_delete_session_publishes_session_deleted_and_forgets_it(http, key_a, key_b, publisher):
    session_id = open_session(http, key_a)
    http.request("DELETE", f"/v1/sessions/{session_id}", api_key=key_b).problem(404)
    assert http.request("DELETE", f"/v1/sessions/{session_id}", api_key=key_a).status == 204
    assert [e.detail_type for e in publisher.events] == ["session.deleted.v1"]
    http.get(f"/v1/sessions/{session_id}", api_key=key_a).problem(404)
    http.request("DELETE", f"/v1/sessions/{session_id}", api_key=key_a).problem(404)


def test_run_requested_and_cancel_carry_the_invocation_trace_in_both_forms(http, key_a, publisher, monkeypatch):
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
    session_id = http.post("/v1/sessions", api_key=key_a).body["session_id"]
    run_id = http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"}).body["run_id"]
    http.post(f"/v1/runs/{run_id}/cancel", api_key=key_a, json_body={"reason": "changed my mind"})

    assert [event.detail_type for event in publisher.events] == [DetailType.RUN_REQUESTED, "run.cancel.requested.v1"]
    for event in publisher.events:
        assert event.metadata.trace_header == header
        assert event.metadata.traceparent == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


def test_every_post_honours_an_idempotency_key_and_the_document_says_so(http, key_a, publisher):
    from agentwire_gateway.api import openapi_schema

    # Opening a session twice with one key opens one session; another body under that key is refused.
    headers = {"Idempotency-Key": "open-1"}
    first = http.post("/v1/sessions", api_key=key_a, json_body={}, headers=headers)
    again = http.post("/v1/sessions", api_key=key_a, json_body={}, headers=headers)
    assert first.status == again.status == 201
    assert again.body["session_id"] == first.body["session_id"]
    assert again.header("idempotent-replayed") == "true"
    listed = http.get("/v1/sessions", api_key=key_a).body["sessions"]
    assert [s["session_id"] for s in listed].count(first.body["session_id"]) == 1
    http.post("/v1/sessions", api_key=key_a, json_body={"agent": "ops"}, headers=headers).problem(422)

    # A cancel retried with its key answers the first 202 and does nothing again.
    session_id = first.body["session_id"]
    run_id = http.post(f"/v1/sessions/{session_id}/messages", api_key=key_a, json_body={"content": "hi"}).body["run_id"]
    cancel = {"Idempotency-Key": "cancel-1"}
    assert http.post(f"/v1/runs/{run_id}/cancel", api_key=key_a, headers=cancel).status == 202
    published = len(publisher.events)
    replayed = http.post(f"/v1/runs/{run_id}/cancel", api_key=key_a, headers=cancel)
    assert replayed.status == 202 and replayed.header("idempotent-replayed") == "true"
    assert len(publisher.events) == published  # the replay did nothing again

    document = openapi_schema()
    for path, operations in document["paths"].items():
        if "post" in operations and operations["post"].get("security") != []:
            names = [p["name"].lower() for p in operations["post"].get("parameters", []) if p["in"] == "header"]
            assert "idempotency-key" in names, path


def test_a_claim_whose_request_died_is_taken_over_by_the_same_request_after_its_lease(deps):
    """A request that claimed its key and then died (its invocation crashed or timed out) must not hold the
    key for the whole 24 h: after the lease (longer than the function's timeout) the same request owns it."""
    from datetime import UTC, datetime, timedelta

    from agentwire_gateway.guards import Claim

    guard = deps.idempotency
    start = datetime.now(UTC)
    guard.clock = lambda: start
    dead = guard.begin("tenant-a", "charge-1", "fingerprint-1")
    assert dead.kind is Claim.NEW  # ... and its invocation dies before `finish`

    guard.clock = lambda: start + timedelta(seconds=30)
    assert guard.begin("tenant-a", "charge-1", "fingerprint-1").kind is Claim.IN_PROGRESS  # still leased
    guard.clock = lambda: start + guard.lease + timedelta(seconds=1)
    assert guard.begin("tenant-a", "charge-1", "another-body").kind is Claim.MISMATCH  # never another request
    retry = guard.begin("tenant-a", "charge-1", "fingerprint-1")
    assert retry.kind is Claim.NEW
    guard.finish("tenant-a", retry, {"statusCode": 202, "headers": {}, "body": '{"run_id": "r"}'})

    guard.clock = lambda: start + timedelta(hours=2)  # a finished answer is kept for the key's 24 h
    replay = guard.begin("tenant-a", "charge-1", "fingerprint-1")
    assert replay.kind is Claim.REPLAY and replay.response is not None and '"r"' in replay.response["body"]
