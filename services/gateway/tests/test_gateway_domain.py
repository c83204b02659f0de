"""Pure logic: status ordering, the route table, what each event projects to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from agentwire_contracts.content import Message, TextBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events import LlmCompletionCompleted, RunRequested, RunStarted, ToolCatalogFailed
from agentwire_gateway.model import RunStatus, rfc3339
from agentwire_gateway.projection import NotProjectable, project
from agentwire_gateway.routing import MatchKind, RouteTable
from agentwire_gateway.service import idempotent_run_id


def test_status_ranks_are_monotonic_and_terminal_statuses_tie():
    assert RunStatus.QUEUED.rank < RunStatus.RUNNING.rank < RunStatus.COMPLETED.rank
    assert RunStatus.COMPLETED.rank == RunStatus.FAILED.rank == RunStatus.CANCELLED.rank
    assert {s for s in RunStatus if s.is_terminal} == {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}


def test_rfc3339_is_fixed_width_utc():
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 120000)) == "2026-01-02T03:04:05.120000Z"


def test_route_table_matches_templates_and_methods():
    table = RouteTable()
    table.add("GET", "/v1/runs/<run_id>", scope="runs:read")
    table.add("POST", "/v1/runs/<run_id>/cancel", scope="runs:write")
    table.add("GET", "/healthz", scope=None)

    found = table.match("get", "/v1/runs/run_1")
    assert found.kind is MatchKind.FOUND and found.requires_auth
    assert found.route is not None and found.route.scope == "runs:read"
    assert table.match("GET", "/healthz").requires_auth is False
    wrong = table.match("DELETE", "/v1/runs/run_1")
    assert wrong.kind is MatchKind.METHOD_NOT_ALLOWED and wrong.allowed_methods == ("GET",)
    assert table.match("GET", "/v1/runs/run_1/extra").kind is MatchKind.NOT_FOUND
    assert table.match("GET", "/v1/runs/").kind is MatchKind.NOT_FOUND


def test_idempotent_run_ids_are_scoped_to_tenant_and_session():
    assert idempotent_run_id("t", "s", "k") == idempotent_run_id("t", "s", "k")
    assert idempotent_run_id("t", "s", "k") != idempotent_run_id("u", "s", "k")
    assert idempotent_run_id("t", "s", "k") != idempotent_run_id("t", "s2", "k")


def test_run_requested_is_not_projected():
    event = Event.create(
        RunRequested(session_id="s", input=Message(role="user", content=[TextBlock(text="x")])),
        tenant_id="t",
        run_id="r",
    )
    with pytest.raises(NotProjectable):
        project(event)


def test_projection_takes_tenant_and_run_from_metadata():
    started = project(Event.create(RunStarted(session_id="s"), tenant_id="t1", run_id="r1"))
    assert started.transition is not None
    assert (started.transition.tenant_id, started.transition.run_id) == ("t1", "r1")
    assert started.transition.status is RunStatus.RUNNING

    model = project(
        Event.create(
            LlmCompletionCompleted(
                session_id="s",
                step=2,
                message=Message(role="assistant", content=[TextBlock(text="secret answer")]),
                stop_reason="end_turn",
                duration_ms=10,
            ),
            tenant_id="t1",
            run_id="r1",
        ),
        source="agentwire.llm",
    )
    assert model.step is not None
    assert (model.step.kind, model.step.detail, model.step.step, model.step.service) == (
        "model",
        "end_turn",
        2,
        "agentwire.llm",
    )
    assert "secret answer" not in model.step.model_dump_json()

    failed = project(Event.create(ToolCatalogFailed(code="Tools.UnknownTool"), tenant_id="t1", run_id="r1"))
    assert failed.step is not None
    assert (failed.step.kind, failed.step.error_code, failed.step.service) == (
        "catalog",
        "Tools.UnknownTool",
        "agentwire.tools",
    )


def test_a_tool_heartbeat_is_a_tool_running_live_event_and_nothing_else():
    from agentwire_contracts.events.tool import ToolInvocationHeartbeat

    beat = Event.create(
        ToolInvocationHeartbeat(
            session_id="s", step=3, tool_name="http_fetch", tool_call_id="toolu_1", elapsed_ms=15000
        ),
        tenant_id="t1",
        run_id="r1",
    )
    projected = project(beat)
    assert projected.transition is None and projected.step is None and not projected.messages
    assert projected.timeline is not None
    assert projected.timeline.type == "tool.running"
    assert projected.timeline.data == {"step": 3, "tool_call_id": "toolu_1", "name": "http_fetch", "elapsed_ms": 15000}
