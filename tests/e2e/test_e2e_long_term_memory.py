"""Long-term memory through the HTTP API on the shared stack (offline model, the packaged default agent):
a fact a user asks to be remembered in one session is known in that user's later sessions, never in
another user's, and is gone once the user asks to forget it. The model calls memory's remember/forget
tools, routed to the memory service through the bus; memory injects the facts into the system prompt."""

from __future__ import annotations

import uuid

import pytest
from agentwire_infra.local.client import GatewayClient

pytestmark = pytest.mark.e2e


def ask_as(api: GatewayClient, user_id: str, text: str) -> dict[str, object]:
    session_id = api.create_session(user_id=user_id)
    run = api.ask(session_id, text, timeout_s=60)
    assert run["status"] == "completed", run
    return run


def test_a_remembered_fact_reaches_the_users_later_sessions_and_only_theirs(api: GatewayClient) -> None:
    user, stranger = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    saved = ask_as(api, user, "Please remember that I prefer green tea.")
    assert saved["output"] == "I'll remember that: I prefer green tea.", saved
    assert any(step.get("kind") == "tool" and "remember" in str(step.get("detail")) for step in saved["steps"]), saved

    assert ask_as(api, user, "What do you know about me?")["output"] == "You asked me to remember: I prefer green tea."
    assert ask_as(api, stranger, "What do you know about me?")["output"] == "I have nothing saved about you."

    forgot = ask_as(api, user, "Forget that I prefer green tea.")
    assert forgot["output"] == "Forgot 1 saved fact(s).", forgot
    assert ask_as(api, user, "What do you know about me?")["output"] == "I have nothing saved about you."
