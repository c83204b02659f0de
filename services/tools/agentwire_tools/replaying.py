"""Replay mode: tools that act on the world answer from a recording instead of running.

A replay re-drives a recorded run against another agent version for evaluation (`agentwire replay`). Its
model answers come from the recording (the scripted provider), so its tool calls carry the recorded
`tool_call.id`s. With `TOOLS_REPLAY_RESULTS` set to a JSON file of the recorded results
(`{tool_call_id: {"tool_name", "content", "is_error"}}`), every tool whose side effect is not read-only
answers with the recorded result of its call and never runs: a replay sends no second notification and
moves no money. A call the recording does not have (the agent under test asked for something new) is a
tool error the model sees, not an action. Read-only tools run as usual.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentwire_tools.context import current_call
from agentwire_tools.registry import SideEffect, Tool, ToolError, ToolRegistry


@dataclass(frozen=True)
class RecordedResult:
    tool_name: str
    content: str
    is_error: bool = False


def load_recorded_results(path: Path) -> dict[str, RecordedResult]:
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object of tool_call_id -> recorded result")
    return {call_id: RecordedResult(**result) for call_id, result in raw.items()}


def replaying(registry: ToolRegistry, results: dict[str, RecordedResult]) -> ToolRegistry:
    """The registry with every tool that is not read-only answering from `results`."""
    tools: list[Tool[Any]] = []
    for name in registry.names():
        tool = registry.get(name)
        if tool.side_effect is SideEffect.READ_ONLY:
            tools.append(tool)
        else:
            # The recorded content is what the model saw (already fenced if it was untrusted): verbatim.
            tools.append(dataclasses.replace(tool, run=_answer_from(name, results), untrusted_output=False))
    return ToolRegistry(tools)


def _answer_from(tool_name: str, results: dict[str, RecordedResult]) -> Any:
    def run(_validated: object) -> str:
        call_id = current_call().tool_call_id
        recorded = results.get(call_id)
        if recorded is None or recorded.tool_name != tool_name:
            raise ToolError(
                f"This is a replay: {tool_name} changes the world and call {call_id} is not in the recording, "
                "so it was not run."
            )
        if recorded.is_error:
            raise ToolError(recorded.content)
        return recorded.content

    return run
