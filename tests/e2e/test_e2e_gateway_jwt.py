"""OIDC bearer tokens against a running gateway configured with an issuer and its JWKS (a local file:
no network). Its own small stack (the gateway alone), since the issuer is deployment configuration."""

from __future__ import annotations

import json
import time
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
def jwt_gateway(tmp_path_factory: pytest.TempPathFactory, signing_key: Any) -> Iterator[str]:
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
        yield stack.gateway_url


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
