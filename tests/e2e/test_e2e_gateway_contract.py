"""The HTTP API against its OpenAPI document, on the local stack: schemathesis (no server errors, every
answer conforms to the document, no route works without credentials), every route without credentials
→ 401, tenant isolation over every read and write route, and nothing secret in the logs."""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from agentwire_infra.local.client import GatewayClient, wait_until
from hypothesis import HealthCheck, settings

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("stack")]

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "services" / "gateway" / "openapi.json"
DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
schema = schemathesis.openapi.from_dict(DOCUMENT)
PUBLIC = {("GET", "/healthz"), ("GET", "/openapi.json")}


@pytest.fixture(scope="module")
def fuzz_credentials(local_stack: Any) -> tuple[str, str]:
    """A tenant of its own, with every scope and a rate limit that fuzzing does not reach."""
    from agentwire_gateway.admin import create_api_key, create_tenant

    tenant = f"fuzz-{uuid.uuid4().hex[:8]}"
    table = local_stack.topology.table("gateway", "main").table_name
    client = local_stack.client("dynamodb")
    create_tenant(tenant, table_name=table, dynamodb_client=client, rate_limit_per_minute=1_000_000)
    key = create_api_key(tenant, table_name=table, dynamodb_client=client, scopes=["runs:write", "runs:read", "admin"])
    return local_stack.gateway_url, key


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_conforms_to_its_openapi_document(case: Any, fuzz_credentials: tuple[str, str]) -> None:
    url, key = fuzz_credentials
    case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        # Random ids name nothing (404) and a fresh key lacks the operator tenant (403): valid requests
        # are not expected to succeed, only to be answered as documented.
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
        timeout=30,
    )


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: f"x{uuid.uuid4().hex[:12]}", path)


def operations() -> list[tuple[str, str]]:
    return [(method.upper(), path) for path, ops in DOCUMENT["paths"].items() for method in ops]


def test_every_route_without_credentials_is_401(api: GatewayClient) -> None:
    checked = 0
    for method, path in operations():
        if (method, path) in PUBLIC:
            continue
        for headers in ({}, {"Authorization": "Bearer awk_" + "x" * 43}, {"Authorization": "Basic Zm9vOmJhcg=="}):
            response = api.request(method, _concrete(path), json={}, headers=headers, authenticate=False)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 15


def test_tenant_isolation_over_every_route(api: GatewayClient, other_tenant_api: GatewayClient) -> None:
    """Tenant B tries every read and write route with tenant A's real ids: always 404, the same answer
    as for ids that do not exist, and A's data is unchanged."""
    session_id = api.create_session()
    run = api.ask(session_id, "What is 1234 * 5678?")
    run_id = run["run_id"]
    ids = {
        "session_id": session_id,
        "run_id": run_id,
        "approval_id": "apr_" + uuid.uuid4().hex,
        "tenant_id": "acme",
        "key_id": "key_" + uuid.uuid4().hex[:16],
    }
    bodies = {"/messages": {"content": "hello"}, "/approvals/{approval_id}": {"decision": "approve"}}
    tried = []
    for method, template in operations():
        if (method, template) in PUBLIC or template in ("/v1/sessions", "/v1/agents", "/v1/admin/tenants"):
            continue  # routes without ids: they only ever show the caller's own tenant
        path = template
        for name, value in ids.items():
            path = path.replace("{" + name + "}", value)
        body = next((b for suffix, b in bodies.items() if template.endswith(suffix)), {})
        client = other_tenant_api
        if template.startswith("/v1/admin/"):
            # An admin key of the other tenant: still not acme's keys.
            continue
        theirs = client.request(method, path, json=body)
        missing = client.request(
            method,
            path.replace(session_id, "ses_" + uuid.uuid4().hex).replace(run_id, "run_" + uuid.uuid4().hex),
            json=body,
        )
        assert theirs.status_code == 404, (method, template, theirs.text)
        assert missing.status_code == 404, (method, template, missing.text)
        strip = ("instance",)
        assert {k: v for k, v in theirs.json().items() if k not in strip} == {
            k: v for k, v in missing.json().items() if k not in strip
        }, (method, template)
        tried.append((method, template))
    assert len(tried) >= 9, tried
    # The owner still sees everything, untouched.
    assert api.get_run(run_id)["status"] == "completed"
    assert api.request("GET", f"/v1/sessions/{session_id}").status_code == 200
    assert len(api.messages(session_id)) >= 2
    listed = other_tenant_api.request("GET", "/v1/sessions?limit=100").json()["sessions"]
    assert session_id not in [s["session_id"] for s in listed]


def test_another_tenant_cannot_see_or_decide_a_real_pending_approval(
    api: GatewayClient, other_tenant_api: GatewayClient
) -> None:
    from agentwire_infra.demo import APPROVAL_AGENT, APPROVAL_REQUEST, pending_approval

    session_id = api.create_session(agent=APPROVAL_AGENT, user_id="u-isolation")
    run_id = str(api.send_message(session_id, APPROVAL_REQUEST)["run_id"])
    approval = wait_until(lambda: pending_approval(api, run_id), timeout_s=60, interval_s=0.1, what="an approval")
    path = f"/v1/runs/{run_id}/approvals/{approval['approval_id']}"
    assert other_tenant_api.request("GET", f"/v1/runs/{run_id}/approvals").status_code == 404
    for decision in ("approve", "reject"):
        refused = other_tenant_api.request("POST", path, json={"decision": decision})
        assert refused.status_code == 404, refused.text
    assert other_tenant_api.request("POST", f"/v1/runs/{run_id}/cancel").status_code == 404
    # Still A's to decide, and still waiting.
    assert pending_approval(api, run_id) == approval
    assert api.request("POST", path, json={"decision": "reject", "reason": "test over"}).status_code == 200
    assert api.wait_for_run(run_id, timeout_s=60)["status"] == "completed"


def test_admin_isolation(local_stack: Any) -> None:
    from agentwire_gateway.admin import create_api_key

    table = local_stack.topology.table("gateway", "main").table_name
    admin_b = create_api_key(
        "globex", table_name=table, dynamodb_client=local_stack.client("dynamodb"), scopes=["admin"]
    )
    with GatewayClient(local_stack.gateway_url, admin_b) as admin:
        for method, path in (
            ("GET", "/v1/admin/tenants/acme/keys"),
            ("POST", "/v1/admin/tenants/acme/keys"),
            ("POST", "/v1/admin/tenants/acme/keys/key_0123456789abcdef/revoke"),
            ("POST", "/v1/admin/tenants/acme/keys/key_0123456789abcdef/rotate"),
        ):
            assert admin.request(method, path, json={}).status_code == 404, (method, path)


def test_no_key_token_or_message_content_in_the_logs(api: GatewayClient, local_stack: Any) -> None:
    secret_text = f"my secret passphrase is {uuid.uuid4().hex}"
    session_id = api.create_session()
    run = api.ask(session_id, secret_text)
    assert run["status"] == "completed"
    api.request("GET", f"/v1/runs/{run['run_id']}/events?after=0")
    bad_key = "awk_" + uuid.uuid4().hex + uuid.uuid4().hex[:11]
    api.request("GET", "/v1/sessions", api_key=bad_key)
    # A bearer JWT (not one this stack's issuer signed): refused, and never written down either.
    claims = base64.urlsafe_b64encode(json.dumps({"sub": uuid.uuid4().hex}).encode()).decode().rstrip("=")
    token = f"eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.{claims}.{uuid.uuid4().hex}"
    assert api.request("GET", "/v1/sessions", api_key=token).status_code == 401
    logs = "\n".join(path.read_text(errors="replace") for path in Path(local_stack.logs_dir).glob("*.log"))
    assert logs, "no logs captured"
    assert local_stack.api_key not in logs
    assert bad_key not in logs
    assert token not in logs and claims not in logs
    assert secret_text not in logs
    assert "passphrase" not in logs
