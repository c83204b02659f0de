"""Replay of a recorded run (issue 8): the recording from the local recorder, the scripted model fed the
recorded answers, a fresh stack, and the diff — plus the runs it refuses to replay."""

from __future__ import annotations

from pathlib import Path

import pytest
from agentwire_infra.demo import (
    APPROVAL_AGENT,
    APPROVAL_REQUEST,
    APPROVAL_TOOL,
    APPROVAL_USER,
    decide,
    pending_approval,
)
from agentwire_infra.local.client import GatewayClient, wait_until
from agentwire_infra.local.recorder import EVENTS_DIR
from agentwire_infra.local.stack import LocalStack
from agentwire_infra.replay import (
    Recording,
    Replayed,
    ReplayError,
    ToolCallSeen,
    diff,
    load_recording,
    refusal,
    replay,
    report,
)


def test_a_recorded_run_replays_to_the_same_tool_calls_and_answer(
    api: GatewayClient, local_stack: LocalStack, tmp_path: Path
) -> None:
    run = api.ask(api.create_session(), "What is 1234 * 5678?", timeout_s=60)
    assert run["status"] == "completed", run
    recording = load_recording(local_stack.workdir / EVENTS_DIR, run["run_id"])
    assert recording.status == "completed" and recording.output_text == run["output"]
    assert [call.name for call in recording.tool_calls] == ["calculator"]
    script = recording.script()
    assert [entry["stop_reason"] for entry in script] == ["tool_use", "end_turn"]
    assert refusal(recording) is None

    lines: list[str] = []
    replayed = replay(recording, agent="assistant@1", workdir=tmp_path / "replay", out=lines.append)

    assert replayed.status == "completed", replayed
    assert replayed.run_id != recording.run_id and replayed.agent == "assistant@1"
    assert [call.key() for call in replayed.tool_calls] == [call.key() for call in recording.tool_calls]
    assert replayed.output_text == recording.output_text
    assert diff(recording, replayed) == []
    assert "no difference" in "\n".join(report(recording, replayed))


def recording(*calls: ToolCallSeen, status: str = "completed", approvals: int = 0) -> Recording:
    return Recording(
        run_id="run-1", tenant_id="t", user_id=None, agent="ops", agent_version="1",
        input={"role": "user", "content": [{"type": "text", "text": "hi"}]}, tool_calls=list(calls),
        approvals=approvals, status=status, output_text="Done.", model_turns=2,
    )  # fmt: skip


def test_a_run_that_waited_for_an_approval_and_acted_on_the_world_replays_without_acting_again(
    api: GatewayClient, local_stack: LocalStack, tmp_path: Path
) -> None:
    session = api.create_session(agent=APPROVAL_AGENT, user_id=APPROVAL_USER)
    run_id = str(api.send_message(session, APPROVAL_REQUEST)["run_id"])
    approval = wait_until(lambda: pending_approval(api, run_id), timeout_s=60, interval_s=0.1, what="an approval")
    decide(api, run_id, approval["approval_id"], "approve", "approved for the replay test")
    assert api.wait_for_run(run_id, timeout_s=60)["status"] == "completed"

    recording = load_recording(local_stack.workdir / EVENTS_DIR, run_id)
    [call] = recording.tool_calls
    assert call.name == APPROVAL_TOOL and recording.approvals == 1
    assert recording.decisions[call.tool_call_id]["decision"] == "approve"
    sent = recording.tool_results[call.tool_call_id]
    assert sent["is_error"] is False and "ntf_" in sent["content"], sent

    replayed = replay(recording, agent=APPROVAL_AGENT, workdir=tmp_path / "replay", out=lambda _: None)

    assert replayed.status == "completed", replayed
    assert diff(recording, replayed) == []
    # The notification id is derived from the run's idempotency key, and the replay is another run: a
    # notification sent by the replay would carry another id. The replay answered with the recorded one.
    assert replayed.tool_results[call.tool_call_id] == sent


def test_only_a_completed_run_can_be_replayed() -> None:
    assert "did not complete" in (refusal(recording(status="failed")) or "")
    with pytest.raises(ReplayError, match="did not complete"):
        replay(recording(status="failed"))


def test_a_run_without_a_recording_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no recorded events"):
        load_recording(tmp_path, "run-unknown")


def test_the_diff_names_the_calls_and_the_answer_that_changed() -> None:
    recorded = recording(ToolCallSeen("toolu_1", "calculator", "a" * 64))
    replayed = Replayed(
        run_id="r2", agent="ops@2", status="completed", output_text="Other.", model_turns=2,
        tool_calls=[ToolCallSeen("toolu_1", "current_time", "b" * 64)],
    )  # fmt: skip
    lines = diff(recorded, replayed)
    assert "  - calculator aaaaaaaaaaaa" in lines and "  + current_time bbbbbbbbbbbb" in lines
    assert "  - 'Done.'" in lines and "  + 'Other.'" in lines
