"""API keys: generation, hashing and the Bearer header. Pure (no I/O).

A key is `awk_` followed by 43 url-safe characters from `secrets` (256 bits), so it is recognisable in
a secret scanner and unguessable. Only its SHA-256 is stored: for a key with that much entropy a slow
password hash buys nothing, and a fast one keeps authentication a single GetItem.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

API_KEY_PREFIX = "awk_"
_RANDOM_BYTES = 32
_KEY_PATTERN = re.compile(r"^awk_[A-Za-z0-9_-]{32,128}$")
_BEARER_PATTERN = re.compile(r"^\s*Bearer\s+(\S+)\s*$", re.IGNORECASE)
DISPLAY_PREFIX_CHARS = len(API_KEY_PREFIX) + 4

SCOPE_RUNS_WRITE = "runs:write"
SCOPE_RUNS_READ = "runs:read"
DEFAULT_SCOPES: tuple[str, ...] = (SCOPE_RUNS_WRITE, SCOPE_RUNS_READ)


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def looks_like_api_key(candidate: str) -> bool:
    return bool(_KEY_PATTERN.match(candidate))


def hash_api_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id_for(key_hash: str) -> str:
    """A public, stable name for a key (for listing and revoking); derived from the hash, not the key."""
    return "key_" + key_hash[:16]


def display_prefix(api_key: str) -> str:
    return api_key[:DISPLAY_PREFIX_CHARS]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None if there is no such header."""
    if not authorization:
        return None
    match = _BEARER_PATTERN.match(authorization)
    return match.group(1) if match else None


def hashes_match(stored_hash: str, presented_key: str) -> bool:
    return hmac.compare_digest(stored_hash, hash_api_key(presented_key))


SCOPE_ADMIN = "admin"
ALL_SCOPES: tuple[str, ...] = (SCOPE_RUNS_WRITE, SCOPE_RUNS_READ, SCOPE_ADMIN)
_JWT_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def looks_like_jwt(candidate: str) -> bool:
    return len(candidate) <= 16_384 and bool(_JWT_PATTERN.match(candidate))
