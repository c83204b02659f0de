"""OIDC bearer tokens: verified against the issuer's JWKS (a local file here: no network), tenant, user
and scopes from the configured claims, through the whole HTTP handler."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from agentwire_gateway.adapters.jwks import JwksTokenVerifier
from agentwire_gateway.settings import GatewaySettings
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://idp.example.test/"
AUDIENCE = "agentwire"


def new_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signing_key() -> Any:
    return new_key()


@pytest.fixture
def jwks_url(tmp_path: Path, signing_key: Any) -> str:
    public = json.loads(RSAAlgorithm.to_jwk(signing_key.public_key()))
    public.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public]}))
    return path.as_uri()


def token(key: Any, **overrides: Any) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "tenant_id": "tenant-a",
        "scope": "runs:read runs:write",
        "exp": int(time.time()) + 300,
        "iat": int(time.time()),
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def verifier(jwks_url: str) -> JwksTokenVerifier:
    settings = GatewaySettings(
        AGENTWIRE_GATEWAY_JWT_ISSUER=ISSUER,
        AGENTWIRE_GATEWAY_JWT_JWKS_URL=jwks_url,
        AGENTWIRE_GATEWAY_JWT_AUDIENCE=AUDIENCE,
    )
    return JwksTokenVerifier(settings)


def test_a_valid_token_names_tenant_user_and_scopes(verifier, signing_key):
    principal = verifier.verify(token(signing_key))
    assert principal.tenant_id == "tenant-a"
    assert principal.user_id == "user-42"
    assert principal.scopes == {"runs:read", "runs:write"}
    assert principal.kind == "jwt"
    assert principal.key_id.startswith("jwt:")


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.example.test/"},
        {"aud": "someone-else"},
        {"exp": int(time.time()) - 3600},
        {"tenant_id": None},
        {"tenant_id": "a#b"},
        {"sub": None},
    ],
)
def test_invalid_tokens_are_401(verifier, signing_key, overrides):
    from agentwire_gateway import problems

    with pytest.raises(problems.ProblemError) as raised:
        verifier.verify(token(signing_key, **overrides))
    assert raised.value.status == 401


def test_a_token_signed_by_another_key_is_401(verifier):
    from agentwire_gateway import problems

    with pytest.raises(problems.ProblemError) as raised:
        verifier.verify(token(new_key()))
    assert raised.value.status == 401


def test_unknown_scopes_are_dropped(verifier, signing_key):
    principal = verifier.verify(token(signing_key, scope="runs:read superuser"))
    assert principal.scopes == {"runs:read"}


def test_bearer_token_through_the_handler(http, deps, verifier, signing_key, publisher):
    deps.authenticator.tokens = verifier
    bearer = token(signing_key)
    created = http.post("/v1/sessions", api_key=bearer, json_body={"user_id": "spoofed"})
    assert created.status == 201, created.body
    session = http.get(f"/v1/sessions/{created.body['session_id']}", api_key=bearer).body
    assert session["user_id"] == "user-42"  # from the token, never from the body
    read_only = token(signing_key, scope="runs:read")
    http.post("/v1/sessions", api_key=read_only).problem(403)
    http.get("/v1/sessions", api_key=token(signing_key, iss="https://evil.example.test/")).problem(401)
    # Another tenant's token does not see it.
    other = token(signing_key, tenant_id="tenant-b")
    http.get(f"/v1/sessions/{created.body['session_id']}", api_key=other).problem(404)


def test_an_issuer_without_an_audience_is_refused_at_start(jwks_url: str) -> None:
    """Fail closed: without an audience, a token the issuer signed for any other application would pass."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="AGENTWIRE_GATEWAY_JWT_AUDIENCE is required"):
        GatewaySettings(AGENTWIRE_GATEWAY_JWT_ISSUER=ISSUER, AGENTWIRE_GATEWAY_JWT_JWKS_URL=jwks_url)
    assert not GatewaySettings().jwt_enabled  # no issuer: API keys only, nothing to check


def test_a_token_without_an_audience_is_refused(verifier, signing_key):
    from agentwire_gateway import problems

    with pytest.raises(problems.ProblemError) as raised:
        verifier.verify(token(signing_key, aud=None))
    assert raised.value.status == 401
