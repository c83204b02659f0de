"""The tools service's two steps, as functions of typed request events (no AWS here).

`describe` answers a catalog request. `invoke` answers an invocation request exactly once per
(tenant, run, call id) through the injected `CallOnce` port; inside it, in this order and before
anything runs: resolve the agent the run pinned, authorize the call with the Cedar policies (default
deny), check the approval proof of a call that needs one, write the decision to the audit log, take the
run's lease when the tool is not read-only, mark the attempt of a tool that is not safe to repeat, and
only then execute. Expected failures are `StepError`s the shared `answer_request` turns into `*.failed`
events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentwire_contracts.agents import DEFAULT_AGENT, AgentCatalog, AgentDefinition, UnknownAgent, load_catalog
from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import PayloadRef, ToolResultBlock, canonical_args_hash
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.tool import (
    ToolCatalogReady,
    ToolCatalogRequested,
    ToolInvocationCompleted,
    ToolInvocationRequested,
)
from agentwire_contracts.remote_tools import REMOTE_TOOLS
from agentwire_contracts.tokens import estimate_tool_specs_tokens

from agentwire_tools.attempts import AttemptLog, AttemptLogUnavailable, EarlierAttemptUnknown
from agentwire_tools.audit import AuditLog, AuditRecord, AuditUnavailable, InMemoryAuditLog
from agentwire_tools.authorization import Authorizer, CallSubject, CedarAuthorizer, Decision
from agentwire_tools.context import CallContext
from agentwire_tools.execution import CallUnavailable, Outcome, ToolOutcome, execute
from agentwire_tools.registry import SideEffect, Tool, ToolRegistry, UnknownTool
from agentwire_tools.serial import LeaseUnavailable, RunLease, wait_for_lease

logger = logging.getLogger(__name__)

UNKNOWN_TOOL = "Tools.UnknownTool"
#: Nothing ran (or the tool is safe to repeat): the state machine retries it.
UNAVAILABLE = "Tools.Unavailable"
#: A tool that is not safe to repeat (compensatable, irreversible) failed on its infrastructure: whether
#: the action happened is unknown, so it is NOT retried automatically; the run tells the model.
OUTCOME_UNKNOWN = "Tools.OutcomeUnknown"
#: Another call of the run that changes the world holds the run's lease; nothing ran, retry later.
BUSY = "Tools.Busy"
CONFLICTING_CALL = "Tools.ConflictingCall"

#: Audit policy names of the service's own checks (Cedar policies are named by their `@id`).
POLICY_UNKNOWN_AGENT = "agentwire.unknown-agent"
POLICY_UNKNOWN_TOOL = "agentwire.unknown-tool"
POLICY_APPROVAL_REQUIRED = "agentwire.approval-required"


@dataclass(frozen=True)
class CallKey:
    """What makes two deliveries the same call. The tenant leads, like every key in the system."""

    tenant_id: str
    run_id: str
    tool_call_id: str


@dataclass(frozen=True)
class CallRecord:
    """What was asked; a redelivery with the same key but a different call is refused, not replayed."""

    tool_name: str
    input: dict[str, object]


class CallOnce(Protocol):
    """Runs `call` at most once per key and returns the same outcome for every delivery of it."""

    def __call__(self, key: CallKey, record: CallRecord, call: Callable[[], ToolOutcome]) -> ToolOutcome: ...


class CallStoreUnavailable(Exception):
    """The idempotency store could not be reached: the call must not run unguarded."""


class CallInProgress(Exception):
    """Another delivery of this very call holds its claim (running, or crashed before its deadline)."""


class CallConflict(Exception):
    """The same call id arrived again with a different tool or input: a producer bug, never replayed."""


def run_every_time(key: CallKey, record: CallRecord, call: Callable[[], ToolOutcome]) -> ToolOutcome:
    """No de-duplication: for local experiments and tests that are not about idempotency."""
    return call()


def no_deadline() -> float | None:
    return None


class RunBusy(Exception):
    """The run's lease stayed held by another call that changes the world."""


class PayloadSink(Protocol):
    """The payload store (`agentwire_contracts.payload.PayloadStore` in production)."""

    def put_json(self, value: Any, *, tenant_id: str, session_id: str, kind: str = ...) -> PayloadRef: ...


@dataclass(frozen=True)
class Verdict:
    """The authorization of one call: the Cedar decision, then the service's approval check."""

    allowed: bool
    policies: tuple[str, ...]
    reason: str
    errors: tuple[str, ...] = ()


@dataclass
class ToolsService:
    registry: ToolRegistry
    call_once: CallOnce = run_every_time
    #: Seconds this invocation may still spend on a tool (None: only the tools' own timeouts apply).
    time_left_s: Callable[[], float | None] = no_deadline
    #: Default deny: the packaged default policies unless the caller injects its own.
    authorizer: Authorizer = field(default_factory=lambda: CedarAuthorizer.from_directory(None))
    agents: AgentCatalog = field(default_factory=load_catalog)
    audit: AuditLog = field(default_factory=InMemoryAuditLog)
    #: Serializes the calls of a run that are not read-only; None only where calls never overlap.
    lease: RunLease | None = None
    lease_wait_s: float = 20.0
    #: A lease outlives its holder by at most this much past the tool's own timeout.
    lease_margin_s: float = 30.0
    #: Marks the attempt of each compensatable/irreversible call before its tool runs, so a redelivery
    #: after a worker died mid-call answers `Tools.OutcomeUnknown` instead of acting again. None: no
    #: such protection (tests and local experiments that are not about it).
    attempts: AttemptLog | None = None
    #: Where output over a tool's cap is kept whole (claim check); None: the capped copy is all there is.
    payloads: PayloadSink | None = None
    #: Until the orchestrator sends `agent` on every invocation, a call without one is judged as the
    #: default agent (its tools only); None refuses such calls outright.
    assume_agent: str | None = DEFAULT_AGENT

    def describe(self, request: Event[ToolCatalogRequested]) -> ToolCatalogReady:
        wanted = request.data.tool_names
        remote = [REMOTE_TOOLS[name] for name in wanted if name in REMOTE_TOOLS and name not in self.registry]
        local = [name for name in wanted if name in self.registry or name not in REMOTE_TOOLS]
        try:
            specs = self.registry.catalog(local)
        except UnknownTool as exc:
            raise StepError(UNKNOWN_TOOL, str(exc)) from exc
        specs = sorted([*specs, *(tool.spec for tool in remote)], key=lambda spec: spec.name)
        approval = set(self.registry.approval_required(local))
        approval.update(tool.spec.name for tool in remote if tool.side_effect == SideEffect.IRREVERSIBLE.value)
        return ToolCatalogReady(
            session_id=request.data.session_id,
            tools=specs,
            approval_required=sorted(approval),
            tools_tokens=estimate_tool_specs_tokens(specs),
        )

    def invoke(self, request: Event[ToolInvocationRequested]) -> ToolInvocationCompleted:
        outcome = self.outcome_of(request)
        call = request.data.tool_call
        return ToolInvocationCompleted(
            session_id=request.data.session_id,
            step=request.data.step,
            tool_name=call.name,
            result=ToolResultBlock(tool_use_id=call.id, content=outcome.content, is_error=outcome.is_error),
            result_ref=outcome.result_ref,
            duration_ms=outcome.duration_ms,
        )

    def outcome_of(self, request: Event[ToolInvocationRequested]) -> ToolOutcome:
        call = request.data.tool_call
        key = CallKey(
            tenant_id=request.metadata.tenant_id,
            # A call outside a run (a console's "try this tool") is keyed by its own event.
            run_id=request.metadata.run_id or f"event:{request.metadata.event_id}",
            tool_call_id=call.id,
        )
        try:
            return self.call_once(
                key, CallRecord(tool_name=call.name, input=call.input), lambda: self.decide_and_run(request, key)
            )
        except CallUnavailable as exc:
            if exc.side_effect.retryable:
                raise StepError(UNAVAILABLE, str(exc), retryable=True) from exc
            raise StepError(
                OUTCOME_UNKNOWN,
                f"{exc}; a {exc.side_effect.value} action is not retried automatically (it may have happened)",
                retryable=False,
            ) from exc
        except EarlierAttemptUnknown as exc:
            raise StepError(OUTCOME_UNKNOWN, str(exc), retryable=False) from exc
        except CallStoreUnavailable as exc:
            raise StepError(UNAVAILABLE, f"idempotency store unavailable: {exc}", retryable=True) from exc
        except (AuditUnavailable, LeaseUnavailable, AttemptLogUnavailable) as exc:
            raise StepError(UNAVAILABLE, f"{exc} (the call did not run)", retryable=True) from exc
        except (RunBusy, CallInProgress) as exc:
            # Answered, not left to SQS: on AWS a redelivery comes only after the queue's visibility
            # timeout (minutes); the run retries Tools.Busy with backoff and gets the stored result, or,
            # once the crashed attempt's claim has lapsed, runs the call again if its tool is safe to
            # repeat, else answers Tools.OutcomeUnknown (see `begin_attempt`).
            raise StepError(BUSY, str(exc), retryable=True) from exc
        except CallConflict as exc:
            raise StepError(CONFLICTING_CALL, str(exc)) from exc

    # -- one call, decided then run (inside the idempotency guard) ---------------------------------------

    def decide_and_run(self, request: Event[ToolInvocationRequested], key: CallKey) -> ToolOutcome:
        started = time.perf_counter()
        data = request.data
        call = data.tool_call
        args_hash = canonical_args_hash(call.input)
        agent = self.resolve_agent(data.agent)
        tool = self.registry.get(call.name) if call.name in self.registry else None

        verdict = self.authorize(request, agent, tool, args_hash)
        self.audit.record(
            AuditRecord(
                tenant_id=key.tenant_id,
                run_id=key.run_id,
                tool_call_id=key.tool_call_id,
                session_id=data.session_id,
                step=data.step,
                agent=agent.name if agent else data.agent,
                agent_version=agent.version if agent else "",
                user_id=data.user_id,
                tool_name=call.name,
                side_effect=tool.side_effect.value if tool else "",
                args_hash=args_hash,
                decision="allow" if verdict.allowed else "deny",
                policies=list(verdict.policies),
                reason=verdict.reason,
                errors=list(verdict.errors),
                approval_id=data.approval.approval_id if data.approval else None,
                approved_by=data.approval.decided_by if data.approval else None,
            )
        )
        if not verdict.allowed or tool is None:
            return denied(call.name, verdict, started)

        context = CallContext(
            tenant_id=key.tenant_id,
            run_id=key.run_id,
            tool_call_id=key.tool_call_id,
            session_id=data.session_id,
            agent=agent.ref if agent else "",
            user_id=data.user_id,
        )

        def run() -> ToolOutcome:
            if not tool.retryable:
                self.begin_attempt(tool, key)
            outcome = execute(self.registry, call.name, call.input, time_left_s=self.time_left_s(), call=context)
            return self.claim_check(outcome, tenant_id=key.tenant_id, session_id=data.session_id)

        if tool.runs_in_parallel or self.lease is None:
            return run()
        return self.run_holding_lease(tool, key, run)

    def begin_attempt(self, tool: Tool[Any], key: CallKey) -> None:
        """Mark that a tool that is not safe to repeat is about to run; refuse when an earlier attempt of
        the same call already began it. Only reached when no result of the call is stored (the idempotency
        guard replays a stored one), so a mark means: an attempt died (or failed on its infrastructure)
        after it may have acted."""
        if self.attempts is None:
            return
        if not self.attempts.begin(key.tenant_id, key.run_id, key.tool_call_id):
            raise EarlierAttemptUnknown(
                f"an earlier attempt of tool call {key.tool_call_id!r} of run {key.run_id!r} began to run "
                f"{tool.name} and left no result; a {tool.side_effect.value} action is not run again "
                "automatically (it may have happened)"
            )

    def claim_check(self, outcome: ToolOutcome, *, tenant_id: str, session_id: str) -> ToolOutcome:
        """Keep a truncated output whole in the payload store, inside the call's idempotent result, so a
        redelivery answers the same reference and the record holds only the capped copy."""
        if outcome.full_content is None:
            return outcome
        ref = None
        if self.payloads is not None:
            ref = self.payloads.put_json(
                {"tool_name": outcome.tool_name, "content": outcome.full_content},
                tenant_id=tenant_id,
                session_id=session_id,
                kind="tool-result",
            )
        return outcome.model_copy(update={"full_content": None, "result_ref": ref})

    def resolve_agent(self, ref: str) -> AgentDefinition | None:
        if not ref:
            if self.assume_agent is None:
                return None
            logger.warning("invocation names no agent; judged as the default agent %r", self.assume_agent)
            ref = self.assume_agent
        try:
            return self.agents.get_ref(ref)
        except UnknownAgent:
            return None

    def authorize(
        self,
        request: Event[ToolInvocationRequested],
        agent: AgentDefinition | None,
        tool: Tool[Any] | None,
        args_hash: str,
    ) -> Verdict:
        data = request.data
        name = data.tool_call.name
        if agent is None:
            return Verdict(False, (POLICY_UNKNOWN_AGENT,), f"no agent {data.agent!r} in this deployment")
        if tool is None:
            return Verdict(False, (POLICY_UNKNOWN_TOOL,), f"no tool {name!r} is registered")
        proof = data.approval
        approved = proof is not None and proof.args_hash == args_hash
        decision: Decision = self.authorizer.authorize(
            CallSubject(
                agent=agent,
                tenant_id=request.metadata.tenant_id,
                user_id=data.user_id,
                session_id=data.session_id,
                tool_name=name,
                side_effect=tool.side_effect,
                args=data.tool_call.input,
                approved=approved,
            )
        )
        if not decision.allowed:
            return Verdict(False, decision.policies, "denied by policy", decision.errors)
        needs_approval = (tool.requires_approval or name in agent.approval.require_for) and (
            name not in agent.approval.waive_for
        )
        if needs_approval and not approved:
            reason = (
                "the approval was given for different arguments"
                if proof is not None
                else "the call needs a human approval and none came with it"
            )
            return Verdict(False, (POLICY_APPROVAL_REQUIRED,), reason, decision.errors)
        return Verdict(True, decision.policies, "allowed", decision.errors)

    def run_holding_lease(self, tool: Tool[Any], key: CallKey, run: Callable[[], ToolOutcome]) -> ToolOutcome:
        time_left = self.time_left_s()
        wait_s = self.lease_wait_s if time_left is None else min(self.lease_wait_s, max(time_left - tool.timeout_s, 0))
        assert self.lease is not None
        acquired = wait_for_lease(
            self.lease,
            key.tenant_id,
            key.run_id,
            key.tool_call_id,
            ttl_s=tool.timeout_s + self.lease_margin_s,
            wait_s=wait_s,
        )
        if not acquired:
            raise RunBusy(f"another call of run {key.run_id} that changes the world is still running")
        try:
            return run()
        finally:
            try:
                self.lease.release(key.tenant_id, key.run_id, key.tool_call_id)
            except LeaseUnavailable:
                logger.warning("could not release the run lease; it expires on its own")


def denied(tool_name: str, verdict: Verdict, started: float) -> ToolOutcome:
    if verdict.policies == (POLICY_APPROVAL_REQUIRED,):
        message = f"The call to {tool_name} was not run: {verdict.reason}."
    elif verdict.policies == (POLICY_UNKNOWN_TOOL,):
        message = f"Unknown tool {tool_name!r}; the call was not run."
    else:
        message = (
            f"The call to {tool_name} was refused by policy ({', '.join(verdict.policies)}) and was not run. "
            "Do not retry it; tell the user it is not allowed if that matters to them."
        )
    return ToolOutcome(
        tool_name=tool_name,
        content=message,
        is_error=True,
        outcome=Outcome.UNKNOWN_TOOL if verdict.policies == (POLICY_UNKNOWN_TOOL,) else Outcome.DENIED,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
