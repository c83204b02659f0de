"""TOOLS_HTTP_ALLOWLIST: JSON of tenant id (or "*") -> host patterns, read into http_fetch's policy."""

from __future__ import annotations

import pytest
from agentwire_tools.builtins.http_fetch import HttpFetchPolicy
from agentwire_tools.dependencies import build_registry
from agentwire_tools.settings import ToolsSettings
from pydantic import ValidationError
from pydantic_settings import SettingsError


def test_the_http_allowlist_is_parsed_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLS_HTTP_ALLOWLIST", '{"acme": ["docs.acme.com", "*.acme.org"], "*": ["status.example.com"]}')
    settings = ToolsSettings()
    assert settings.http_allowlist == {"acme": ["docs.acme.com", "*.acme.org"], "*": ["status.example.com"]}
    policy = HttpFetchPolicy(allowlist=settings.http_allowlist)
    assert policy.allows("acme", "docs.acme.com")
    assert policy.allows("acme", "api.acme.org")  # a subdomain pattern
    assert not policy.allows("acme", "acme.org.evil.test")
    assert not policy.allows("globex", "docs.acme.com")  # another tenant's entry
    assert policy.allows("globex", "status.example.com")  # every tenant's


def test_no_http_allowlist_allows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLS_HTTP_ALLOWLIST", raising=False)
    settings = ToolsSettings()
    assert settings.http_allowlist == {}
    assert not HttpFetchPolicy(allowlist=settings.http_allowlist).allows("acme", "docs.acme.com")


@pytest.mark.parametrize(
    "raw",
    [
        "docs.acme.com",  # not JSON
        '["docs.acme.com"]',  # not an object of tenants
        '{"acme": "docs.acme.com"}',  # a tenant's hosts must be a list
        '{"acme": [1]}',  # of strings
    ],
)
def test_a_malformed_http_allowlist_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("TOOLS_HTTP_ALLOWLIST", raw)
    # Not JSON at all is pydantic-settings' SettingsError; JSON of the wrong shape, a ValidationError.
    with pytest.raises((SettingsError, ValidationError)):
        ToolsSettings()


def test_the_registry_fetches_with_the_configured_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    """The setting reaches the http_fetch tool the handler registers: an allowlisted host passes the
    allowlist (and is then refused only because the fake DNS answer is loopback)."""
    from agentwire_tools.context import CallContext
    from agentwire_tools.execution import execute

    monkeypatch.setenv("TOOLS_HTTP_ALLOWLIST", '{"acme": ["docs.acme.com"]}')
    monkeypatch.setenv("TOOLS_LOAD_ENTRY_POINTS", "false")
    registry = build_registry(ToolsSettings())
    call = CallContext(tenant_id="acme", run_id="r", tool_call_id="c", session_id="s", agent="ops", user_id=None)
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("127.0.0.1", 80))])
    allowed = execute(registry, "http_fetch", {"url": "http://docs.acme.com/x"}, call=call)
    assert "loopback" in allowed.content and "allowlist" not in allowed.content
    refused = execute(registry, "http_fetch", {"url": "http://other.example/x"}, call=call)
    assert "not on this tenant's allowlist" in refused.content
