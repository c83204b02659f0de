"""The claim-check helper: round trip, integrity checks, key layout under tenant and session, deletion."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from agentwire_contracts.content import Message, PayloadRef, TextBlock
from agentwire_contracts.names import ENV_PAYLOAD_BUCKET
from agentwire_contracts.payload import (
    PayloadError,
    PayloadIntegrityError,
    PayloadNotFound,
    PayloadStore,
    json_size,
    session_prefix,
)
from moto import mock_aws

BUCKET = "agentwire-payloads"


@pytest.fixture
def s3() -> Iterator[Any]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {key: os.environ.get(key) for key in (*env, "AWS_ENDPOINT_URL")}
    os.environ.update(env)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def store(s3: Any) -> PayloadStore:
    return PayloadStore(client=s3, bucket=BUCKET)


def messages(n: int) -> list[dict[str, Any]]:
    return [
        Message(role="user", content=[TextBlock(text=f"message {i} ünïcode " + "x" * 100)]).model_dump(mode="json")
        for i in range(n)
    ]


def test_round_trip_returns_the_same_value_and_a_verifiable_ref(store: PayloadStore) -> None:
    value = messages(50)
    ref = store.put_json(value, tenant_id="acme", session_id="s-1", kind="context")
    assert ref.bucket == BUCKET
    assert ref.key.startswith(session_prefix("acme", "s-1") + "context/")
    assert ref.size_bytes == json_size(value)
    assert PayloadRef.model_validate_json(ref.model_dump_json()) == ref
    assert store.get_json(ref) == value


def test_same_content_is_the_same_object(store: PayloadStore, s3: Any) -> None:
    first = store.put_json({"a": 1, "b": [1, 2]}, tenant_id="acme", session_id="s-1")
    second = store.put_json({"b": [1, 2], "a": 1}, tenant_id="acme", session_id="s-1")
    assert first == second
    assert len(store.list_session("acme", "s-1")) == 1


def test_tampered_bytes_are_rejected(store: PayloadStore, s3: Any) -> None:
    ref = store.put_json({"x": "original"}, tenant_id="acme", session_id="s-1")
    s3.put_object(Bucket=BUCKET, Key=ref.key, Body=b'{"x":"tampered"}')
    with pytest.raises(PayloadIntegrityError):
        store.get_json(ref)
    same_size = b'{"x":"originaL"}'
    assert len(same_size) == ref.size_bytes
    s3.put_object(Bucket=BUCKET, Key=ref.key, Body=same_size)
    with pytest.raises(PayloadIntegrityError, match="sha256"):
        store.get_json(ref)


def test_oversized_refs_are_refused_before_reading(store: PayloadStore) -> None:
    ref = store.put_json({"x": "y" * 1000}, tenant_id="acme", session_id="s-1")
    with pytest.raises(PayloadIntegrityError):
        store.get_json(ref, max_bytes=100)


def test_a_missing_payload_is_not_found(store: PayloadStore) -> None:
    ref = store.put_json([1, 2, 3], tenant_id="acme", session_id="s-1")
    assert store.delete_session("acme", "s-1") == 1
    with pytest.raises(PayloadNotFound):
        store.get_json(ref)


def test_delete_session_removes_only_that_session(store: PayloadStore) -> None:
    for i in range(3):
        store.put_json({"i": i}, tenant_id="acme", session_id="s-1", kind="context")
    store.put_json({"i": 0}, tenant_id="acme", session_id="s-10")  # a prefix of s-1? no: "s-1/" vs "s-10/"
    store.put_json({"i": 0}, tenant_id="globex", session_id="s-1")
    assert store.delete_session("acme", "s-1") == 3
    assert store.list_session("acme", "s-1") == []
    assert len(store.list_session("acme", "s-10")) == 1
    assert len(store.list_session("globex", "s-1")) == 1


def test_ids_cannot_escape_their_prefix(store: PayloadStore) -> None:
    ref = store.put_json({"i": 1}, tenant_id="a/../b", session_id="s")
    assert ref.key.startswith("t/a%2F..%2Fb/s/s/")
    with pytest.raises(ValueError):
        session_prefix("", "s")


def test_from_env_reads_the_bucket(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PAYLOAD_BUCKET, raising=False)
    with pytest.raises(PayloadError):
        PayloadStore.from_env(client=s3)
    monkeypatch.setenv(ENV_PAYLOAD_BUCKET, BUCKET)
    assert PayloadStore.from_env(client=s3).bucket == BUCKET


def test_pydantic_models_are_stored_as_json(store: PayloadStore) -> None:
    message = Message(role="assistant", content=[TextBlock(text="hello")])
    ref = store.put_json(message, tenant_id="acme", session_id="s-1")
    assert Message.model_validate(store.get_json(ref)) == message
