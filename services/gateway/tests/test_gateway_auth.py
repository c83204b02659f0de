"""API keys: format, storage (hash only), authentication over HTTP, scopes, listing and revocation."""

from __future__ import annotations

import os
import re

import pytest
from agentwire_gateway import admin, auth

TABLE_NAME = os.environ["GATEWAY_TABLE_NAME"]


def all_items(dynamodb) -> list[dict]:
    return dynamodb.scan(TableName=TABLE_NAME)["Items"]


def test_generated_keys_are_recognisable_and_unique():
    keys = {auth.generate_api_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"awk_[A-Za-z0-9_-]{32,}", key)
        assert auth.looks_like_api_key(key)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer awk_abc", "awk_abc"),
        ("bearer awk_abc", "awk_abc"),
        ("  Bearer   awk_abc  ", "awk_abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token_parsing(header, token):
    assert auth.bearer_token(header) == token


def test_create_api_key_stores_only_the_hash_and_a_tenant(dynamodb):
    key = admin.create_api_key("acme", table_name=TABLE_NAME, dynamodb_client=dynamodb)
    items = all_items(dynamodb)
    assert key not in str(items)
    assert auth.hash_api_key(key) in str(items)
    tenant_items = [i for i in items if i["pk"]["S"] == "tenant#acme" and i["sk"]["S"] == "tenant"]
    assert len(tenant_items) == 1
    # A second key for the same tenant keeps the one tenant item.
    admin.create_api_key("acme", table_name=TABLE_NAME, dynamodb_client=dynamodb)
    assert sum(1 for i in all_items(dynamodb) if i["sk"]["S"] == "tenant") == 1


def test_create_api_key_rejects_bad_tenant_ids_and_scopes(dynamodb):
    with pytest.raises(ValueError):
        admin.create_api_key("a#b", table_name=TABLE_NAME, dynamodb_client=dynamodb)
    with pytest.raises(ValueError):
        admin.create_api_key("", table_name=TABLE_NAME, dynamodb_client=dynamodb)
    with pytest.raises(ValueError):
        admin.create_api_key("acme", table_name=TABLE_NAME, dynamodb_client=dynamodb, scopes=("root",))
    assert all_items(dynamodb) == []


def test_missing_key_is_401_with_www_authenticate(http):
    result = http.post("/v1/sessions")
    result.problem(401)
    assert result.header("www-authenticate") == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer awk_" + "x" * 43,  # well-formed, unknown
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
def test_wrong_key_is_401(http, key_a, authorization):
    result = http.get("/v1/runs/run_x", headers={"Authorization": authorization})
    result.problem(401)
    assert result.header("www-authenticate") == "Bearer"


def test_a_key_one_character_off_is_401(http, key_a):
    tampered = key_a[:-1] + ("A" if key_a[-1] != "A" else "B")
    http.post("/v1/sessions", api_key=tampered).problem(401)
    assert http.post("/v1/sessions", api_key=key_a).status == 201


def test_auth_runs_before_validation(http):
    # An unauthenticated caller gets 401 even for a body that would be invalid: it learns no rules.
    result = http.post(
        "/v1/sessions/ses_x/messages", raw_body="{not json", headers={"content-type": "application/json"}
    )
    result.problem(401)


def test_revoked_key_is_401_and_other_keys_still_work(http, dynamodb, key_a):
    second = admin.create_api_key("tenant-a", table_name=TABLE_NAME, dynamodb_client=dynamodb)
    listed = admin.list_api_keys("tenant-a", table_name=TABLE_NAME, dynamodb_client=dynamodb)
    assert len(listed) == 2
    assert all(info.revoked_at is None for info in listed)
    assert key_a not in str([info.model_dump() for info in listed])
    first_id = auth.key_id_for(auth.hash_api_key(key_a))
    assert {info.key_id for info in listed} == {first_id, auth.key_id_for(auth.hash_api_key(second))}

    assert admin.revoke_api_key("tenant-a", first_id, table_name=TABLE_NAME, dynamodb_client=dynamodb)

    http.post("/v1/sessions", api_key=key_a).problem(401)
    assert http.post("/v1/sessions", api_key=second).status == 201
    revoked = {i.key_id: i for i in admin.list_api_keys("tenant-a", table_name=TABLE_NAME, dynamodb_client=dynamodb)}
    assert revoked[first_id].revoked_at is not None


def test_a_tenant_cannot_revoke_another_tenants_key(dynamodb, key_a):
    key_id = auth.key_id_for(auth.hash_api_key(key_a))
    assert not admin.revoke_api_key("tenant-b", key_id, table_name=TABLE_NAME, dynamodb_client=dynamodb)
    assert admin.list_api_keys("tenant-a", table_name=TABLE_NAME, dynamodb_client=dynamodb)[0].revoked_at is None


def test_read_only_key_cannot_post(http, dynamodb):
    reader = admin.create_api_key("tenant-r", table_name=TABLE_NAME, dynamodb_client=dynamodb, scopes=("runs:read",))
    http.post("/v1/sessions", api_key=reader).problem(403)
    http.get("/v1/runs/run_missing", api_key=reader).problem(404)
