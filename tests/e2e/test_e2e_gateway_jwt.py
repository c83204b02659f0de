"""OIDC bearer tokens against a running gateway configured with an issuer and its JWKS (a local file:
no network). Its own small stack (the gateway alone), since the issuer is deployment configuration."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from agentwire_infra.local.stack import LocalStack, StackSettings
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("jwt")]

ISSUER = "https://login.example.test/realms/agentwire"


@pytest.fixture(scope="module")
def signing_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwt_stack(tmp_path_factory: pytest.TempPathFactory, signing_key: Any) -> Iterator[LocalStack]:
    workdir: Path = tmp_path_factory.mktemp("jwt-stack")
    public = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key()))
    public.update({"kid": "local-1", "alg": "RS256", "use": "sig"})
    jwks = workdir / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    settings = StackSettings(
        workdir=workdir,
        services=("gateway",),
        dev_tenant=None,
        write_local_json=False,
        worker_env={
            "AGENTWIRE_GATEWAY_JWT_ISSUER": ISSUER,
            "AGENTWIRE_GATEWAY_JWT_JWKS_URL": jwks.as_uri(),
            "AGENTWIRE_GATEWAY_JWT_AUDIENCE": "agentwire-api",
            "AGENTWIRE_GATEWAY_JWT_TENANT_CLAIM": "org",
        },
    )
    with LocalStack(settings) as stack:
        yield stack


@pytest.fixture(scope="module")
def jwt_gateway(jwt_stack: LocalStack) -> str:
    return jwt_stack.gateway_url


def bearer(key: Any, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "agentwire-api", "sub": "alice", "org": "initech", "exp": now + 300, **claims}
    return {"Authorization": "Bearer " + jwt.encode(body, key, algorithm="RS256", headers={"kid": "local-1"})}


def test_a_token_from_the_issuer_opens_a_session_for_its_user(jwt_gateway: str, signing_key: Any) -> None:
    with httpx.Client(base_url=jwt_gateway, timeout=10) as client:
        created = client.post("/v1/sessions", json={}, headers=bearer(signing_key))
        assert created.status_code == 201, created.text
        session_id = created.json()["session_id"]
        session = client.get(f"/v1/sessions/{session_id}", headers=bearer(signing_key)).json()
        assert session["user_id"] == "alice"
        # Same issuer, another organisation: another tenant, so the session does not exist for it.
        other = client.get(f"/v1/sessions/{session_id}", headers=bearer(signing_key, org="globex"))
        assert other.status_code == 404
        forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert client.get("/v1/sessions", headers=bearer(forged)).status_code == 401
        assert client.get("/v1/sessions", headers=bearer(signing_key, exp=int(time.time()) - 600)).status_code == 401
        assert client.get("/v1/sessions", headers=bearer(signing_key, aud="other")).status_code == 401


def test_a_user_of_the_tenant_never_reaches_another_users_session_but_the_tenants_key_does(
    jwt_stack: LocalStack, jwt_gateway: str, signing_key: Any
) -> None:
    # Users of their own: the module's other test opens sessions as "alice" in the same tenant.
    ann, ben = f"ann-{uuid.uuid4().hex[:8]}", f"ben-{uuid.uuid4().hex[:8]}"
    alice, bob = bearer(signing_key, sub=ann), bearer(signing_key, sub=ben)
    api_key = {"Authorization": "Bearer " + jwt_stack.create_api_key("initech")}
    with httpx.Client(base_url=jwt_gateway, timeout=10) as client:
        session_id = client.post("/v1/sessions", json={}, headers=alice).json()["session_id"]
        posted = client.post(f"/v1/sessions/{session_id}/messages", json={"content": "hi"}, headers=alice)
        assert posted.status_code == 202, posted.text
        run_id = posted.json()["run_id"]
        # The body cannot make bob's session alice's (nor anyone else's).
        bobs = client.post("/v1/sessions", json={"user_id": ann}, headers=bob).json()["session_id"]

        def status(method: str, path: str, headers: dict[str, str], **options: Any) -> int:
            return client.request(method, path, headers=headers, **options).status_code

        # Bob: alice's session and run do not exist for him, on every kind of route, and he lists only his own.
        assert status("GET", f"/v1/sessions/{session_id}", bob) == 404
        assert status("GET", f"/v1/sessions/{session_id}/messages", bob) == 404
        assert status("POST", f"/v1/sessions/{session_id}/messages", bob, json={"content": "as alice"}) == 404
        assert status("GET", f"/v1/runs/{run_id}", bob) == 404
        assert status("GET", f"/v1/runs/{run_id}/events", bob) == 404
        assert status("GET", f"/v1/runs/{run_id}/approvals", bob) == 404
        assert status("POST", f"/v1/runs/{run_id}/cancel", bob, json={}) == 404
        assert status("DELETE", f"/v1/sessions/{session_id}", bob) == 404
        unknown = client.get("/v1/runs/run_does_not_exist", headers=bob).json()
        foreign = client.get(f"/v1/runs/{run_id}", headers=bob).json()
        assert (foreign["title"], foreign["detail"]) == (unknown["title"], unknown["detail"])
        listed = [s["session_id"] for s in client.get("/v1/sessions", headers=bob).json()["sessions"]]
        assert listed == [bobs]
        # Alice still has her session and her run (queued: this stack has no orchestrator), untouched.
        assert client.get(f"/v1/runs/{run_id}", headers=alice).json()["status"] == "queued"
        assert [s["session_id"] for s in client.get("/v1/sessions", headers=alice).json()["sessions"]] == [session_id]
        # The tenant's API key (its backend) sees every user's sessions and runs.
        assert client.get(f"/v1/sessions/{session_id}", headers=api_key).json()["user_id"] == ann
        assert client.get(f"/v1/sessions/{bobs}", headers=api_key).json()["user_id"] == ben
        assert client.get(f"/v1/runs/{run_id}", headers=api_key).status_code == 200
        everyone = {s["session_id"] for s in client.get("/v1/sessions", headers=api_key).json()["sessions"]}
        assert everyone >= {session_id, bobs}
