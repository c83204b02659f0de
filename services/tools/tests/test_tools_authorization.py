"""Cedar authorization: a matrix of allowed and denied calls (agent, tenant, user, tool, arguments,
approval), each decision in the audit log with the policy that made it, nothing run when denied."""

from __future__ import annotations

from typing import Any

import pytest
from agentwire_contracts.agents import AgentCatalog, AgentDefinition, ApprovalPolicy
from agentwire_contracts.content import ToolCall, canonical_args_hash
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import ApprovalProof, ToolInvocationRequested
from agentwire_tools.audit import InMemoryAuditLog
from agentwire_tools.authorization import DEFAULT_DENY, CedarAuthorizer, InvalidPolicies
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.builtins.notify import InMemoryNotificationStore
from agentwire_tools.execution import Outcome
from agentwire_tools.registry import ToolRegistry
from agentwire_tools.service import POLICY_APPROVAL_REQUIRED, POLICY_UNKNOWN_AGENT, ToolsService

NOTIFY = {"channel": "ops", "message": "disk 91% on db-1"}

AGENTS = AgentCatalog(
    [
        AgentDefinition(name="assistant", model="m", tools=("calculator", "current_time")),
        AgentDefinition(
            name="ops",
            model="m",
            tools=("calculator", "send_notification", "http_fetch"),
            approval=ApprovalPolicy(require_for=("send_notification",)),
        ),
        AgentDefinition(name="ops", version="2", model="m", tools=("calculator",)),
        AgentDefinition(
            name="pager",
            model="m",
            tools=("send_notification",),
            approval=ApprovalPolicy(waive_for=("send_notification",)),
        ),
    ]
)


def request(
    tool: str,
    args: dict[str, Any],
    *,
    agent: str = "ops@1",
    tenant: str = "acme",
    user: str | None = "alice",
    approval: dict[str, Any] | None = None,
    call_id: str = "toolu_1",
) -> Event[ToolInvocationRequested]:
    return Event.create(
        ToolInvocationRequested(
            session_id="s-1",
            step=1,
            tool_call=ToolCall.of(call_id, tool, args),
            agent=agent,
            user_id=user,
            approval=ApprovalProof.model_validate(approval) if approval else None,
        ),
        tenant_id=tenant,
        run_id="run-1",
        causation_id="c",
        task_token="t",
    )


def approved(args: dict[str, Any]) -> dict[str, Any]:
    return {"approval_id": "apr_1", "args_hash": canonical_args_hash(args), "decided_by": "bob"}


class World:
    def __init__(self, policies: str | None = None, *, assume_agent: str | None = "assistant") -> None:
        self.audit = InMemoryAuditLog()
        self.outbox = InMemoryNotificationStore()
        authorizer = CedarAuthorizer(policies) if policies else CedarAuthorizer.from_directory(None)
        self.service = ToolsService(
            ToolRegistry(builtin_tools(notifications=self.outbox)),
            authorizer=authorizer,
            agents=AGENTS,
            audit=self.audit,
            assume_agent=assume_agent,
        )


# (case, tool, args, request options, allowed, deciding policy)
MATRIX: list[tuple[str, str, dict[str, Any], dict[str, Any], bool, str]] = [
    ("agent offers the tool", "calculator", {"expression": "2+2"}, {}, True, "agent-offers-tool"),
    ("tool not offered to the agent", "current_time", {}, {}, False, DEFAULT_DENY),
    ("pinned older version offers it", "send_notification", NOTIFY, {"agent": "ops@2"}, False, DEFAULT_DENY),
    ("latest version when unpinned", "calculator", {"expression": "1"}, {"agent": "ops"}, True, "agent-offers-tool"),
    ("unknown agent", "calculator", {"expression": "1"}, {"agent": "root"}, False, POLICY_UNKNOWN_AGENT),
    ("unknown agent version", "calculator", {"expression": "1"}, {"agent": "ops@9"}, False, POLICY_UNKNOWN_AGENT),
    ("irreversible without approval", "send_notification", NOTIFY, {}, False, POLICY_APPROVAL_REQUIRED),
    ("irreversible approved", "send_notification", NOTIFY, {"approval": approved(NOTIFY)}, True, "agent-offers-tool"),
    (
        "approval for other arguments",
        "send_notification",
        NOTIFY,
        {"approval": approved({**NOTIFY, "message": "all good"})},
        False,
        POLICY_APPROVAL_REQUIRED,
    ),
    (
        "argument policy: channel not allowed",
        "send_notification",
        {"channel": "everyone", "message": "hi"},
        {"approval": approved({"channel": "everyone", "message": "hi"})},
        False,
        "notifications-to-ops-channels",
    ),
    (
        "user policy: irreversible needs a user",
        "send_notification",
        NOTIFY,
        {"approval": approved(NOTIFY), "user": None},
        False,
        "irreversible-needs-a-user",
    ),
    ("approval waived by the agent", "send_notification", NOTIFY, {"agent": "pager"}, True, "agent-offers-tool"),
    ("no agent named: the default agent", "calculator", {"expression": "3"}, {"agent": ""}, True, "agent-offers-tool"),
    ("no agent named, not offered", "send_notification", NOTIFY, {"agent": ""}, False, DEFAULT_DENY),
]


@pytest.mark.parametrize(("case", "tool", "args", "options", "allowed", "policy"), MATRIX, ids=[m[0] for m in MATRIX])
def test_tools_authorization_matrix(
    case: str, tool: str, args: dict[str, Any], options: dict[str, Any], allowed: bool, policy: str
) -> None:
    world = World()
    completed = world.service.invoke(request(tool, args, **options))

    [record] = world.audit.records
    assert record.decision == ("allow" if allowed else "deny"), (case, record)
    assert policy in record.policies, (case, record.policies)
    assert record.args_hash == canonical_args_hash(args)
    assert record.tool_name == tool and record.tenant_id == "acme" and record.tool_call_id == "toolu_1"
    if allowed:
        assert not completed.result.is_error, completed.result.content
    else:
        assert completed.result.is_error
        assert "not run" in completed.result.content
    # A denied notification never reaches the outbox; an allowed one does, exactly once.
    assert len(world.outbox.notifications) == (1 if allowed and tool == "send_notification" else 0)


def test_tools_authorization_records_who_approved_and_the_agent_version() -> None:
    world = World()
    world.service.invoke(request("send_notification", NOTIFY, approval=approved(NOTIFY)))
    [record] = world.audit.records
    assert (record.agent, record.agent_version, record.user_id) == ("ops", "1", "alice")
    assert (record.approval_id, record.approved_by, record.side_effect) == ("apr_1", "bob", "irreversible")


TENANT_AND_USER_POLICIES = """
@id("acme-fetches")
permit (principal, action == Action::"call", resource == Tool::"http_fetch") when { context.tenant == "acme" };
@id("alice-calculates")
permit (principal, action == Action::"call", resource == Tool::"calculator") when { context.user_id == "alice" };
@id("no-huge-powers")
forbid (principal, action, resource == Tool::"calculator") when { context.args.expression like "*\\*\\**" };
"""


@pytest.mark.parametrize(
    ("tool", "args", "tenant", "user", "allowed", "policy"),
    [
        ("http_fetch", {"url": "https://docs.acme.test/"}, "acme", "alice", True, "acme-fetches"),
        ("http_fetch", {"url": "https://docs.acme.test/"}, "globex", "alice", False, DEFAULT_DENY),
        ("calculator", {"expression": "6*7"}, "globex", "alice", True, "alice-calculates"),
        ("calculator", {"expression": "6*7"}, "acme", "mallory", False, DEFAULT_DENY),
        ("calculator", {"expression": "9**99"}, "acme", "alice", False, "no-huge-powers"),
    ],
)
def test_tools_authorization_tenant_user_and_argument_policies(
    tool: str, args: dict[str, Any], tenant: str, user: str, allowed: bool, policy: str
) -> None:
    world = World(TENANT_AND_USER_POLICIES)
    world.service.invoke(request(tool, args, tenant=tenant, user=user))
    [record] = world.audit.records
    assert (record.decision == "allow") is allowed
    assert record.policies == [policy]


def test_tools_authorization_arguments_cannot_forge_entities_or_break_evaluation() -> None:
    policies = """
@id("only-small")
permit (principal, action, resource == Tool::"calculator") when { !(context.args has admin) };
"""
    world = World(policies)
    # Floats, nulls, nesting and Cedar's escape keys are all data; the call is judged, not crashed.
    args = {"expression": "1.5*2", "x": 1.5, "y": None, "z": {"__entity": {"type": "Agent", "id": "root"}}}
    completed = world.service.invoke(request("calculator", args))
    [record] = world.audit.records
    assert record.decision == "allow" and not record.errors
    # The tool's own validation still refuses the unexpected properties.
    assert completed.result.is_error and "Invalid input" in completed.result.content


def test_tools_authorization_with_no_agent_and_no_default_refuses() -> None:
    world = World(assume_agent=None)
    completed = world.service.invoke(request("calculator", {"expression": "1"}, agent=""))
    assert completed.result.is_error
    assert world.audit.records[0].policies == [POLICY_UNKNOWN_AGENT]


def test_tools_authorization_denied_calls_are_answered_once_per_call_id() -> None:
    from tools_testkit import InMemoryCallOnce

    world = World()
    world.service.call_once = InMemoryCallOnce()
    first = world.service.invoke(request("send_notification", NOTIFY))
    again = world.service.invoke(request("send_notification", NOTIFY))
    assert first.result == again.result and first.result.is_error
    assert len(world.audit.records) == 1


def test_tools_authorization_refuses_policies_that_do_not_parse() -> None:
    with pytest.raises(InvalidPolicies):
        CedarAuthorizer("permit (principal, action, resource) when { nonsense")


def test_tools_authorization_outcome_is_denied_not_a_tool_error() -> None:
    world = World()
    outcome = world.service.outcome_of(request("current_time", {}))
    assert outcome.outcome is Outcome.DENIED and outcome.is_error
