"""Users inside one tenant: a JWT speaks for one end user, who sees only its own sessions and their runs,
events, approvals and transcript (anything else answers 404, like an id that does not exist), while the
tenant's API keys keep seeing the whole tenant. Through the whole HTTP handler, with real signed tokens."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from agentwire_contracts.content import ToolCall, canonical_args_hash
from agentwire_contracts.events import RunApprovalRequested
from agentwire_gateway.adapters.jwks import JwksTokenVerifier
from agentwire_gateway.model import Principal, SessionRecord
from agentwire_gateway.settings import GatewaySettings
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.gateway.tests.test_gateway_approvals import _event
from services.gateway.tests.test_gateway_projector import deliver

ISSUER = "https://idp.example.test/"
TENANT = "tenant-a"


@pytest.fixture(scope="module")
def signing_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def tokens(deps, tmp_path: Path, signing_key: Any) -> None:
    """The gateway verifies bearer JWTs against a local JWKS file (no network)."""
    public = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key()))
    public.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    settings = GatewaySettings(
        AGENTWIRE_GATEWAY_JWT_ISSUER=ISSUER,
        AGENTWIRE_GATEWAY_JWT_JWKS_URL=jwks.as_uri(),
        AGENTWIRE_GATEWAY_JWT_AUDIENCE="agentwire-api",
    )
    deps.authenticator.tokens = JwksTokenVerifier(settings)


def bearer(key: Any, user: str, tenant: str = TENANT) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER, "aud": "agentwire-api", "sub": user, "tenant_id": tenant,
        "scope": "runs:read runs:write", "exp": now + 300,
    }  # fmt: skip
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def alice(tokens, signing_key) -> str:
    return bearer(signing_key, "alice")


@pytest.fixture
def bob(tokens, signing_key) -> str:
    return bearer(signing_key, "bob")


@pytest.fixture
def alices_run(http, alice) -> tuple[str, str]:
    """A session of alice's (her body's user_id ignored), a run on it, and a pending approval of the run."""
    created = http.post("/v1/sessions", api_key=alice, json_body={"user_id": "bob"})
    assert created.status == 201, created.body
    session_id = created.body["session_id"]
    posted = http.post(f"/v1/sessions/{session_id}/messages", api_key=alice, json_body={"content": "hi"})
    assert posted.status == 202, posted.body
    run_id = posted.body["run_id"]
    call = ToolCall(id="toolu_1", name="send_email", input={"to": "a@example.test"})
    requested = RunApprovalRequested(
        session_id=session_id,
        approval_id="apr_1",
        tool_call=call,
        args_hash=canonical_args_hash(call.input),
        timeout_s=3600,
    )
    assert deliver(_event(requested, tenant=TENANT, run_id=run_id, token="t")) == {"batchItemFailures": []}
    return session_id, run_id


#: A valid body for each route that needs one, so a 404 can only come from the ownership check.
BODIES = {
    ("POST", "/v1/sessions/<session_id>/messages"): {"content": "do it as alice"},
    ("POST", "/v1/runs/<run_id>/approvals/<approval_id>"): {"decision": "approve"},
    ("POST", "/v1/runs/<run_id>/cancel"): {"reason": "not mine"},
}


def owned_routes() -> list[tuple[str, str]]:
    """Every route on a session or a run: read from the route table, so a route added later is covered."""
    from agentwire_gateway.api import ROUTES

    return [
        (route.method, route.template)
        for route in ROUTES.routes
        if route.scope is not None and ("<session_id>" in route.template or "<run_id>" in route.template)
    ]


def test_the_route_table_has_the_routes_this_file_checks():
    # If a route class disappeared from the table, the test below would silently check less.
    assert set(owned_routes()) >= {
        ("GET", "/v1/sessions/<session_id>"),
        ("DELETE", "/v1/sessions/<session_id>"),
        ("GET", "/v1/sessions/<session_id>/messages"),
        ("POST", "/v1/sessions/<session_id>/messages"),
        ("GET", "/v1/runs/<run_id>"),
        ("GET", "/v1/runs/<run_id>/events"),
        ("POST", "/v1/runs/<run_id>/cancel"),
        ("GET", "/v1/runs/<run_id>/approvals"),
        ("POST", "/v1/runs/<run_id>/approvals/<approval_id>"),
    }


def _path(template: str, session_id: str, run_id: str) -> str:
    values = {"session_id": session_id, "run_id": run_id, "approval_id": "apr_1"}
    return re.sub(r"<(\w+)>", lambda m: values[m.group(1)], template)


@pytest.mark.parametrize(("method", "template"), owned_routes())
def test_another_user_of_the_tenant_gets_404_exactly_as_for_an_unknown_id(
    http, alice, bob, alices_run, publisher, method, template
):
    session_id, run_id = alices_run
    body = BODIES.get((method, template))
    published = len(publisher.events)
    foreign = http.request(method, _path(template, session_id, run_id), api_key=bob, json_body=body)
    unknown = http.request(method, _path(template, "ses_nope", "run_nope"), api_key=bob, json_body=body)
    foreign.problem(404)
    unknown.problem(404)
    # Same type, title and detail: the answer says nothing about whether alice's id exists.
    assert {k: v for k, v in foreign.body.items() if k != "instance"} == {
        k: v for k, v in unknown.body.items() if k != "instance"
    }
    assert len(publisher.events) == published  # nothing was sent on bob's behalf
    # Alice's things are untouched: her session is there, her run not cancelled, her approval pending.
    assert http.get(f"/v1/sessions/{session_id}", api_key=alice).status == 200
    run = http.get(f"/v1/runs/{run_id}", api_key=alice).body
    assert run["status"] == "queued"
    approvals = http.get(f"/v1/runs/{run_id}/approvals", api_key=alice).body["approvals"]
    assert [a["status"] for a in approvals] == ["pending"]


def test_the_owner_and_the_tenants_api_key_reach_every_route(http, alice, key_a, alices_run):
    # The other side of the 404s above: the same requests succeed for the session's user and for the
    # tenant's service credential (so those 404s come from ownership, not from a broken request).
    session_id, run_id = alices_run
    for credential in (alice, key_a):
        assert http.get(f"/v1/sessions/{session_id}", api_key=credential).status == 200
        assert http.get(f"/v1/sessions/{session_id}/messages", api_key=credential).status == 200
        assert http.get(f"/v1/runs/{run_id}", api_key=credential).status == 200
        assert http.get(f"/v1/runs/{run_id}/events", api_key=credential).status == 200
        assert http.get(f"/v1/runs/{run_id}/approvals", api_key=credential).status == 200
    decided = http.post(f"/v1/runs/{run_id}/approvals/apr_1", api_key=key_a, json_body={"decision": "approve"})
    assert decided.status == 200, decided.body
    # A session's second message is refused for being busy (409), not hidden: the run is alice's.
    http.post(f"/v1/sessions/{session_id}/messages", api_key=alice, json_body={"content": "again"}).problem(409)
    assert http.post(f"/v1/runs/{run_id}/cancel", api_key=alice).status == 202
    assert http.request("DELETE", f"/v1/sessions/{session_id}", api_key=alice).status == 204


def test_a_jwt_user_lists_only_its_own_sessions_page_by_page(http, alice, bob, key_a):
    mine: list[str] = []
    theirs: list[str] = []
    for _ in range(3):  # interleaved, so a page of the tenant's listing would mix them
        mine.append(http.post("/v1/sessions", api_key=bob).body["session_id"])
        theirs.append(http.post("/v1/sessions", api_key=alice, json_body={"user_id": "bob"}).body["session_id"])
    seen: list[str] = []
    token = None
    while True:
        page = http.get("/v1/sessions", api_key=bob, query="limit=2" + (f"&page_token={token}" if token else "")).body
        assert len(page["sessions"]) <= 2
        assert {s["user_id"] for s in page["sessions"]} <= {"bob"}
        seen.extend(s["session_id"] for s in page["sessions"])
        token = page["next_page_token"]
        if not token:
            break
    assert seen == list(reversed(mine))  # all of bob's, newest first, and nothing of alice's
    listed = [s["session_id"] for s in http.get("/v1/sessions", api_key=key_a, query="limit=100").body["sessions"]]
    assert set(listed) >= {*mine, *theirs}  # the tenant's API key sees everyone's
    # A deleted session leaves its user's listing too.
    assert http.request("DELETE", f"/v1/sessions/{mine[0]}", api_key=bob).status == 204
    assert mine[0] not in [s["session_id"] for s in http.get("/v1/sessions", api_key=bob).body["sessions"]]


def test_a_session_an_api_key_opened_for_a_user_is_that_users(http, key_a, alice, bob):
    # A backend opens sessions for its users; the user, signed in with a token, then owns them.
    session_id = http.post("/v1/sessions", api_key=key_a, json_body={"user_id": "bob"}).body["session_id"]
    assert http.get(f"/v1/sessions/{session_id}", api_key=bob).body["user_id"] == "bob"
    assert session_id in [s["session_id"] for s in http.get("/v1/sessions", api_key=bob).body["sessions"]]
    http.get(f"/v1/sessions/{session_id}", api_key=alice).problem(404)
    assert session_id not in [s["session_id"] for s in http.get("/v1/sessions", api_key=alice).body["sessions"]]


def test_a_message_to_another_users_session_never_runs_as_that_user(http, alice, bob, publisher):
    session_id = http.post("/v1/sessions", api_key=alice).body["session_id"]
    http.post(f"/v1/sessions/{session_id}/messages", api_key=bob, json_body={"content": "my facts?"}).problem(404)
    assert publisher.events == []  # no run.requested: nothing reached alice's memory
    assert http.get(f"/v1/sessions/{session_id}", api_key=alice).body["active_run_id"] is None


def test_an_idempotency_key_never_replays_another_users_answer(http, alice, bob, publisher):
    session_id = http.post("/v1/sessions", api_key=alice).body["session_id"]
    request = {"json_body": {"content": "hi"}, "headers": {"Idempotency-Key": "k-1"}}
    first = http.post(f"/v1/sessions/{session_id}/messages", api_key=alice, **request)
    assert first.status == 202
    # The very same request by bob: not alice's stored 202 (which would name her run), but a 404.
    replayed = http.post(f"/v1/sessions/{session_id}/messages", api_key=bob, **request)
    replayed.problem(404)
    assert replayed.header("idempotent-replayed") is None
    # Alice's own retry still replays her answer.
    again = http.post(f"/v1/sessions/{session_id}/messages", api_key=alice, **request)
    assert again.header("idempotent-replayed") == "true" and again.body["run_id"] == first.body["run_id"]
    # Bob's keys are his own: a key alice used, on his own session, is a new request (not a 422 mismatch).
    other = {"json_body": {"content": "hello"}, "headers": {"Idempotency-Key": "k-2"}}
    alices_second = http.post("/v1/sessions", api_key=alice).body["session_id"]
    assert http.post(f"/v1/sessions/{alices_second}/messages", api_key=alice, **other).status == 202
    own = http.post("/v1/sessions", api_key=bob).body["session_id"]
    assert http.post(f"/v1/sessions/{own}/messages", api_key=bob, **other).status == 202
    assert [e.data.session_id for e in publisher.events] == [session_id, alices_second, own]


def _session(user_id: str | None, tenant: str = TENANT) -> SessionRecord:
    return SessionRecord(
        tenant_id=tenant, session_id="ses_1", agent="assistant", user_id=user_id, created_at=datetime.now(UTC)
    )


def test_the_ownership_rule():
    api_key = Principal(tenant_id=TENANT, key_id="key_1", scopes=frozenset(), user_id="key_1", kind="api_key")
    alice = Principal(tenant_id=TENANT, key_id="jwt:a", scopes=frozenset(), user_id="alice", kind="jwt")
    nobody = Principal(tenant_id=TENANT, key_id="jwt:n", scopes=frozenset(), user_id="", kind="jwt")
    assert api_key.may_see(_session(None)) and api_key.may_see(_session("alice"))
    assert alice.may_see(_session("alice"))
    assert not alice.may_see(_session("bob")) and not alice.may_see(_session(None))
    assert not alice.may_see(_session("alice", tenant="tenant-b"))
    assert not api_key.may_see(_session("alice", tenant="tenant-b"))
    assert not nobody.may_see(_session(None)) and not nobody.may_see(_session(""))
