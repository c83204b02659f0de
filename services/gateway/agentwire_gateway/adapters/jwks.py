"""Bearer JWTs from an OIDC issuer, verified against its JWKS (PyJWT). Implements `ports.TokenVerifier`.

On AWS the HTTP API's JWT authorizer checks the token first; this check is the one that counts (the
tenant, user and scopes come from its verified claims, never from the request).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from pathlib import Path
from typing import Any

import jwt

from agentwire_gateway import auth, problems
from agentwire_gateway.model import Principal
from agentwire_gateway.settings import GatewaySettings

#: Tenant ids end up in table keys: the same rule as the administration's.
_TENANT_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


class FileJwks:
    """A JWKS read from a local file (tests, air-gapped deployments); PyJWKClient only fetches http(s)."""

    def __init__(self, url: str):
        self.path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))

    def get_signing_key_from_jwt(self, token: str) -> jwt.PyJWK:
        kid = jwt.get_unverified_header(token).get("kid")
        keys = jwt.PyJWKSet.from_dict(json.loads(self.path.read_text())).keys
        for key in keys:
            if kid is None or key.key_id == kid:
                return key
        raise jwt.PyJWKClientError(f"no signing key with kid {kid!r}")


class JwksTokenVerifier:
    def __init__(self, settings: GatewaySettings, *, client: jwt.PyJWKClient | None = None):
        if not settings.jwt_issuer or not settings.jwt_jwks_url:
            raise ValueError("a JWT issuer and its JWKS URL are required")
        self.settings = settings
        self.issuer = settings.jwt_issuer
        self.algorithms = [a.strip() for a in settings.jwt_algorithms.split(",") if a.strip()]
        url = settings.jwt_jwks_url
        if client is not None:
            self.client: Any = client
        elif url.startswith("file://"):
            self.client = FileJwks(url)
        else:
            self.client = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)

    def verify(self, token: str) -> Principal:
        try:
            signing_key = self.client.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise problems.unavailable("the identity provider's keys cannot be fetched; try again") from exc
        except jwt.PyJWTError as exc:
            raise problems.unauthorized("the credential is not valid") from exc
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=self.algorithms,
                issuer=self.issuer,
                audience=self.settings.jwt_audience,
                options={"require": ["exp", "iss", "aud"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise problems.unauthorized("the credential is not valid") from exc
        tenant = claims.get(self.settings.jwt_tenant_claim)
        user = claims.get(self.settings.jwt_user_claim)
        if not isinstance(tenant, str) or not 0 < len(tenant) <= 64 or not set(tenant) <= _TENANT_CHARS:
            raise problems.unauthorized("the credential names no valid tenant")
        if not isinstance(user, str) or not 0 < len(user) <= 128:
            raise problems.unauthorized("the credential names no user")
        subject = hashlib.sha256(f"{self.issuer}\x00{user}".encode()).hexdigest()[:16]
        return Principal(
            tenant_id=tenant,
            key_id=f"jwt:{subject}",
            scopes=self._scopes(claims.get(self.settings.jwt_scope_claim)),
            user_id=user,
            kind="jwt",
        )

    @staticmethod
    def _scopes(value: Any) -> frozenset[str]:
        if value is None:
            return frozenset(auth.DEFAULT_SCOPES)
        names = value.split() if isinstance(value, str) else [v for v in value if isinstance(v, str)]
        return frozenset(names) & frozenset(auth.ALL_SCOPES)
