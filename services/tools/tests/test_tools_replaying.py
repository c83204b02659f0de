"""Replay mode: a tool that acts on the world answers from the recording and never runs (unit, no network)."""

from __future__ import annotations

import json
from pathlib import Path

from agentwire_tools.builtins import builtin_tools
from agentwire_tools.builtins.notify import InMemoryNotificationStore
from agentwire_tools.context import CallContext
from agentwire_tools.execution import execute
from agentwire_tools.registry import ToolRegistry
from agentwire_tools.replaying import load_recorded_results, replaying

NOTIFY = {"channel": "ops", "message": "The deploy is done."}


def call(tool_call_id: str) -> CallContext:
    return CallContext(tenant_id="acme", run_id="replay_1", tool_call_id=tool_call_id)


def replay_registry(outbox: InMemoryNotificationStore, tmp_path: Path) -> ToolRegistry:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps({
            "toolu_sent": {"tool_name": "send_notification", "content": '{"status": "sent"}', "is_error": False},
            "toolu_refused": {"tool_name": "send_notification", "content": "Channel closed.", "is_error": True},
        })
    )  # fmt: skip
    return replaying(ToolRegistry(builtin_tools(notifications=outbox)), load_recorded_results(path))


def test_a_recorded_call_answers_with_its_recorded_result_and_sends_nothing(tmp_path: Path) -> None:
    outbox = InMemoryNotificationStore()
    registry = replay_registry(outbox, tmp_path)
    outcome = execute(registry, "send_notification", NOTIFY, call=call("toolu_sent"))
    assert (outcome.content, outcome.is_error) == ('{"status": "sent"}', False)
    refused = execute(registry, "send_notification", NOTIFY, call=call("toolu_refused"))
    assert (refused.content, refused.is_error) == ("Channel closed.", True)
    assert outbox.notifications == {}


def test_a_call_the_recording_does_not_have_is_an_error_not_an_action(tmp_path: Path) -> None:
    outbox = InMemoryNotificationStore()
    outcome = execute(replay_registry(outbox, tmp_path), "send_notification", NOTIFY, call=call("toolu_new"))
    assert outcome.is_error and "not in the recording" in outcome.content
    assert outbox.notifications == {}


def test_read_only_tools_still_run(tmp_path: Path) -> None:
    registry = replay_registry(InMemoryNotificationStore(), tmp_path)
    outcome = execute(registry, "calculator", {"expression": "6 * 7"}, call=call("toolu_calc"))
    assert (outcome.content, outcome.is_error) == ("42", False)
    assert registry.get("send_notification").spec == ToolRegistry(builtin_tools()).get("send_notification").spec
