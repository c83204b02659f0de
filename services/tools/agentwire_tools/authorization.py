"""Who may call which tool with which arguments: Cedar policies, default deny, evaluated before a call runs.

`authorize` is pure: it turns a call (agent definition, tenant, user, tool, arguments, approval) into a
Cedar request, evaluates the policy set and returns a `Decision` naming the policies that made it. The
agent's tools and approval rules come from its versioned definition, so nothing the model says (or a
tool result makes it say) can widen them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cedarpy
from agentwire_contracts.agents import AgentDefinition

from agentwire_tools.registry import SideEffect

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent / "policies" / "default.cedar"
#: Named in the audit log when no policy permitted the call.
DEFAULT_DENY = "default-deny"
ACTION = 'Action::"call"'
#: Arguments deeper than this are cut off in the policy's view (a policy has no reason to look deeper).
MAX_ARG_DEPTH = 8


@dataclass(frozen=True)
class CallSubject:
    """Everything a policy may look at for one call."""

    agent: AgentDefinition
    tenant_id: str
    user_id: str | None
    session_id: str
    tool_name: str
    side_effect: SideEffect
    args: dict[str, Any]
    #: A valid approval proof came with the call (bound to these exact arguments).
    approved: bool = False


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Ids (`@id`) of the policies that decided: the permits for an allow, the forbids for a deny,
    #: `default-deny` when nothing permitted the call.
    policies: tuple[str, ...]
    #: Policy evaluation errors (a policy that failed to evaluate is skipped, as Cedar specifies).
    errors: tuple[str, ...] = field(default=())

    @property
    def deciding_policy(self) -> str:
        return ", ".join(self.policies) or DEFAULT_DENY


class Authorizer(Protocol):
    def authorize(self, subject: CallSubject) -> Decision: ...


class InvalidPolicies(ValueError):
    """The policy text does not parse (found at start-up, never at call time)."""


class CedarAuthorizer:
    """A parsed policy set; `authorize` evaluates one call against it."""

    def __init__(self, policy_text: str) -> None:
        try:
            self._policies = cedarpy.PolicySet.from_str(policy_text)
        except ValueError as exc:
            raise InvalidPolicies(str(exc)) from exc

    @classmethod
    def from_files(cls, paths: list[Path]) -> CedarAuthorizer:
        return cls("\n".join(path.read_text() for path in paths))

    @classmethod
    def from_directory(cls, directory: Path | None) -> CedarAuthorizer:
        """Every `*.cedar` file of the directory (sorted), or the packaged defaults without one."""
        if directory is None:
            return cls.from_files([DEFAULT_POLICY_FILE])
        files = sorted(directory.glob("*.cedar"))
        if not files:
            raise InvalidPolicies(f"no *.cedar files in {directory}")
        return cls.from_files(files)

    def authorize(self, subject: CallSubject) -> Decision:
        request = {
            "principal": {"type": "Agent", "id": subject.agent.name},
            "action": ACTION,
            "resource": {"type": "Tool", "id": subject.tool_name},
            "context": {
                "tenant": subject.tenant_id,
                "user_id": subject.user_id or "",
                "session_id": subject.session_id,
                "args": cedar_value(subject.args, 0),
                "approved": subject.approved,
            },
        }
        result = cedarpy.is_authorized(request, self._policies, entities(subject))
        diagnostics = result.diagnostics
        names = diagnostics.id_annotations_by_reason
        policies = tuple(sorted(names.get(reason) or reason for reason in diagnostics.reasons))
        allowed = result.decision is cedarpy.Decision.Allow
        if not allowed and not policies:
            policies = (DEFAULT_DENY,)
        return Decision(allowed=allowed, policies=policies, errors=tuple(diagnostics.errors))


def entities(subject: CallSubject) -> list[dict[str, Any]]:
    agent = subject.agent
    return [
        {
            "uid": {"type": "Agent", "id": agent.name},
            "attrs": {
                "name": agent.name,
                "version": agent.version,
                "tools": sorted(agent.tools),
                "approval_required": sorted(agent.approval.require_for),
                "approval_waived": sorted(agent.approval.waive_for),
            },
            "parents": [],
        },
        {
            "uid": {"type": "Tool", "id": subject.tool_name},
            "attrs": {"name": subject.tool_name, "side_effect": subject.side_effect.value},
            "parents": [{"type": "ToolClass", "id": subject.side_effect.value}],
        },
        {"uid": {"type": "ToolClass", "id": subject.side_effect.value}, "attrs": {}, "parents": []},
    ]


def cedar_value(value: Any, depth: int) -> Any:
    """JSON arguments as Cedar values: Cedar has no floats and no null, so floats become strings and
    nulls are dropped; lists become sets; nesting is bounded."""
    if depth > MAX_ARG_DEPTH:
        return "…"
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        # Cedar's Long is 64-bit.
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        # `__entity` / `__extn` keys are escapes in Cedar's JSON: an argument must never forge an entity.
        return {
            (f"arg{k}" if str(k).startswith("__") else str(k)): cedar_value(v, depth + 1)
            for k, v in value.items()
            if v is not None
        }
    if isinstance(value, list | tuple):
        return [cedar_value(v, depth + 1) for v in value if v is not None]
    return str(value)
