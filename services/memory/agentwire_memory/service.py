"""The memory service's use cases: serve a context request (append, state, summary, window, claim check),
answer a remote tool call (remember, forget), record a failed run or a capped tool output beside the
transcript, forget a session, export a session.

Pure application logic over the ports (no boto3 here).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from agentwire_contracts import telemetry
from agentwire_contracts.agents import DEFAULT_AGENT, AgentCatalog, UnknownAgent, load_catalog
from agentwire_contracts.consumer import StepError, failure_answer
from agentwire_contracts.content import Message, PayloadRef, ToolResultBlock, canonical_args_hash
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.memory import (
    AgentStateEntry,
    CompactionRequest,
    MemoryContextFailed,
    MemoryContextReady,
    MemoryContextRequested,
    MemoryMessageAppended,
    SequencedMessage,
)
from agentwire_contracts.events.run import RunFailed
from agentwire_contracts.events.session import SessionDeleted
from agentwire_contracts.events.tool import ToolInvocationCompleted, ToolInvocationRequested
from agentwire_contracts.payload import PayloadError, PayloadNotFound, json_size, session_prefix
from agentwire_contracts.remote_tools import ForgetInput, ReadStateInput, RememberInput, WriteStateInput
from agentwire_contracts.tokens import estimate_text_tokens
from pydantic import ValidationError

from agentwire_memory.ports import (
    PayloadStorePort,
    Publisher,
    SessionGone,
    StoredSummary,
    StoreUnavailable,
    TranscriptStore,
)
from agentwire_memory.transcript import (
    COMPACTION_SYSTEM,
    DEFAULT_MAX_CONTEXT_BYTES,
    MAX_COMPACTION_CHARS,
    MAX_MESSAGES_PER_APPEND,
    AppendKey,
    AppendOutcome,
    Fact,
    SessionRef,
    TranscriptEntry,
    WindowBuilder,
    assemble_context,
    assemble_system,
    compaction_chunk,
    compaction_prompt,
    fact_id_of,
    facts_for_prompt,
    is_clean_start,
    matching_facts,
    message_bytes,
    shrink_turn,
    total_tokens,
)

UNAVAILABLE = "Memory.Unavailable"
APPEND_TOO_LARGE = "Memory.AppendTooLarge"
CONTEXT_TOO_LARGE = "Memory.ContextTooLarge"
INVALID_SUMMARY = "Memory.InvalidSummary"
#: The session was deleted (its tombstone stands): nothing is written, and retrying cannot help.
SESSION_DELETED = "Memory.SessionDeleted"

#: The tools service's audit names for the same decisions (`agentwire_tools.service`, the Cedar policy ids of
#: `policies/default.cedar`): memory applies the same rule to the tools it serves.
POLICY_AGENT_OFFERS_TOOL = "agent-offers-tool"
POLICY_DEFAULT_DENY = "default-deny"
POLICY_UNKNOWN_AGENT = "agentwire.unknown-agent"
POLICY_APPROVAL_REQUIRED = "agentwire.approval-required"


@dataclass(frozen=True)
class ContextConfig:
    """How contexts are assembled (from `MemorySettings`)."""

    #: The budget when a request names none (reads must stay bounded even then).
    default_max_context_tokens: int = 100_000
    #: A context whose messages exceed this many bytes of JSON goes by claim check (payload bucket).
    inline_context_bytes: int = 64 * 1024
    #: Without a payload bucket, the inline context is trimmed (oldest clean turns first) to this size.
    max_context_bytes: int | None = DEFAULT_MAX_CONTEXT_BYTES
    #: First page of the newest-first window query.
    page_size: int = 50
    #: Most messages read for one compaction request.
    compaction_read_limit: int = 200
    compaction_max_chars: int = MAX_COMPACTION_CHARS
    summary_max_tokens: int = 1024
    #: Retention of a tenant without its own setting (None: keep until deleted).
    default_retention_days: int | None = None


class RetentionPolicy:
    """Per-tenant transcript retention, read from the table and cached briefly per Lambda container."""

    def __init__(
        self,
        store: TranscriptStore,
        default_days: int | None,
        *,
        cache_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._store = store
        self._default = default_days
        self._cache_s = cache_s
        self._clock = clock
        self._cached: dict[str, tuple[float, int | None]] = {}

    def retention_s(self, tenant_id: str) -> int | None:
        now = self._clock()
        hit = self._cached.get(tenant_id)
        if hit is None or now - hit[0] > self._cache_s:
            days = self._store.get_retention_days(tenant_id)
            hit = (now, days)
            self._cached[tenant_id] = hit
        days = hit[1] if hit[1] is not None else self._default
        return days * 86400 if days else None


@dataclass(frozen=True)
class ContextResult:
    """What serving one request produced: the answer data and, when messages were appended, their event."""

    ready: MemoryContextReady
    appended: MemoryMessageAppended | None
    outcome: AppendOutcome
    #: Oldest messages left out only so the answer fits inline (no payload bucket configured).
    dropped_for_size: int = 0
    #: DynamoDB items read for the window (bounded by the budget, not the session length).
    items_read: int = 0
    #: True when the newest turn alone exceeded the budget and was shortened for the model.
    shrunk: bool = False
    stored_summary: StoredSummary | None = None
    by_reference: bool = False


@dataclass
class Window:
    system: str
    entries: list[TranscriptEntry]
    tokens: int
    summary: StoredSummary | None
    facts_count: int
    compaction: CompactionRequest | None = None
    #: The budget the window was assembled to (see `context_budget`).
    budget: int = 0
    items_read: int = 0
    shrunk: bool = False
    messages_ref: PayloadRef | None = None
    dropped_for_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def session_of(event: Event[Any]) -> SessionRef:
    # The tenant comes from the envelope the gateway stamped from the verified credential, never the data.
    return SessionRef(tenant_id=event.metadata.tenant_id, session_id=event.data.session_id)


def run_id_of(event: Event[Any]) -> str:
    # The state machine always sets run_id; without one, only redeliveries of this very event are deduped.
    return event.metadata.run_id or f"event-{event.metadata.event_id}"


def append_key_of(event: Event[MemoryContextRequested]) -> AppendKey:
    return AppendKey(run_id=run_id_of(event), step=event.data.step)


def serve_context_request(
    event: Event[MemoryContextRequested],
    store: TranscriptStore,
    *,
    payloads: PayloadStorePort | None = None,
    config: ContextConfig | None = None,
    retention: RetentionPolicy | None = None,
    clock: Callable[[], float] = time.perf_counter,
    max_context_bytes: int | None = DEFAULT_MAX_CONTEXT_BYTES,
) -> ContextResult:
    """Append what the step produced, apply state writes, store a summary (phase compaction), then
    assemble the context window. Raises `StepError` when expected."""
    config = config or ContextConfig(max_context_bytes=max_context_bytes)
    started = clock()
    request = event.data
    session = session_of(event)
    if len(request.append) > MAX_MESSAGES_PER_APPEND:
        raise StepError(
            APPEND_TOO_LARGE,
            f"{len(request.append)} messages in one append (at most {MAX_MESSAGES_PER_APPEND})",
        )
    if request.include_context:
        # A window the model's limit leaves no room for fails before anything is written.
        context_budget(request, config.default_max_context_tokens)
    try:
        retention_s = retention.retention_s(session.tenant_id) if retention else None
        if request.append:
            outcome = store.append(session, append_key_of(event), request.append, retention_s=retention_s)
            token_count = outcome.entries[-1].cum_tokens if outcome.entries else None
        else:
            head = store.head(session)
            outcome = AppendOutcome(entries=(), message_count=head.message_count)
            token_count = head.token_count
        stored_summary = None
        if request.phase == "compaction" and request.summary is not None:
            stored_summary = _store_summary(event, store, outcome.message_count, retention_s)
        state, conflicts = _apply_state(event, store, retention_s)
        window = (
            _assemble(event, store, outcome.message_count, token_count, config, payloads)
            if request.include_context
            else Window(system=request.system, entries=[], tokens=0, summary=None, facts_count=0)
        )
    except StoreUnavailable as exc:
        raise StepError(UNAVAILABLE, str(exc), retryable=True) from exc
    except SessionGone as exc:
        raise StepError(SESSION_DELETED, f"session {request.session_id!r} was deleted; nothing was written") from exc

    ready = MemoryContextReady(
        session_id=request.session_id,
        step=request.step,
        messages=[] if window.messages_ref else [entry.message for entry in window.entries],
        messages_ref=window.messages_ref,
        system=window.system,
        context_tokens=window.tokens,
        budget_tokens=window.budget,
        compaction=window.compaction,
        appended=len(outcome.entries),
        message_count=outcome.message_count,
        summary_through_seq=window.summary.through_seq if window.summary else None,
        facts_count=window.facts_count,
        state=state,
        state_conflicts=conflicts,
        duration_ms=round((clock() - started) * 1000, 3),
    )
    appended = None
    if outcome.entries:
        appended = MemoryMessageAppended(
            session_id=request.session_id,
            messages=[SequencedMessage(seq=entry.seq, message=entry.message) for entry in outcome.entries],
        )
    return ContextResult(
        ready=ready,
        appended=appended,
        outcome=outcome,
        dropped_for_size=window.dropped_for_size,
        items_read=window.items_read,
        shrunk=window.shrunk,
        stored_summary=stored_summary,
        by_reference=window.messages_ref is not None,
    )


def _store_summary(
    event: Event[MemoryContextRequested], store: TranscriptStore, message_count: int, retention_s: int | None
) -> StoredSummary:
    summary = event.data.summary
    assert summary is not None
    if summary.through_seq > message_count:
        raise StepError(
            INVALID_SUMMARY, f"summary through seq {summary.through_seq} but the transcript has {message_count}"
        )
    session = session_of(event)
    stored = StoredSummary(
        text=summary.text,
        through_seq=summary.through_seq,
        through_cum_tokens=store.cum_tokens_at(session, summary.through_seq),
        usage=summary.usage.model_dump(mode="json"),
        cost_microusd=summary.cost_microusd,
        run_id=run_id_of(event),
        step=event.data.step,
    )
    store.put_summary(session, stored, retention_s=retention_s)
    return stored


def _apply_state(
    event: Event[MemoryContextRequested], store: TranscriptStore, retention_s: int | None
) -> tuple[list[AgentStateEntry], list[str]]:
    request = event.data
    if not request.state_updates and not request.include_state:
        return [], []
    session = session_of(event)
    writer = f"{run_id_of(event)}#{request.step}#{request.phase}"
    conflicts: list[str] = []
    for update in request.state_updates:
        value_json = None if update.delete else json.dumps(update.value, sort_keys=True, separators=(",", ":"))
        written = store.write_state(
            session,
            update.key,
            value_json,
            expected_version=update.expected_version,
            writer=writer,
            retention_s=retention_s,
        )
        if not written.applied:
            conflicts.append(update.key)
    state = [
        AgentStateEntry(key=item.key, value=json.loads(item.value_json), version=item.version)
        for item in sorted(store.get_state(session), key=lambda item: item.key)
    ]
    return state, conflicts


def _assemble(
    event: Event[MemoryContextRequested],
    store: TranscriptStore,
    message_count: int,
    token_count: int | None,
    config: ContextConfig,
    payloads: PayloadStorePort | None,
) -> Window:
    request = event.data
    session = session_of(event)
    summary = store.latest_summary(session)
    if summary is not None and summary.through_seq > message_count:
        summary = None  # a redelivery of an earlier step: answer as that step was answered (no later summary)
    facts = facts_for_prompt(store.list_facts(session.tenant_id, request.user_id)) if request.user_id else []
    system = assemble_system(request.system, facts, summary.text if summary else None)
    budget_total = context_budget(request, config.default_max_context_tokens)
    system_tokens = estimate_text_tokens(system)
    budget = budget_total - system_tokens
    if budget <= 0:
        raise StepError(
            CONTEXT_TOO_LARGE, f"the system prompt alone (~{system_tokens} tokens) exceeds {budget_total} tokens"
        )
    floor = summary.through_seq if summary else 0
    builder = WindowBuilder(budget)
    items_read = store.read_window(
        session,
        builder,
        up_to_seq=message_count,
        after_seq=floor,
        page_size=_first_page(budget, message_count, token_count, config),
    )
    entries = builder.window
    shrunk = False
    if not entries and builder.newest_turn:
        shrunk_turn = shrink_turn(builder.newest_turn, budget)
        if shrunk_turn is None:
            raise StepError(CONTEXT_TOO_LARGE, f"the newest turn cannot be cut down to {budget} tokens")
        entries, shrunk = shrunk_turn, True
    window = Window(
        system=system,
        entries=entries,
        tokens=system_tokens + total_tokens(entries),
        budget=budget_total,
        summary=summary,
        facts_count=len(facts),
        items_read=items_read,
        shrunk=shrunk,
    )
    if request.phase == "turn" and request.compaction_threshold_tokens and entries and not shrunk:
        window.compaction = _compaction(
            session, store, summary, entries[0], request.compaction_threshold_tokens, config
        )
    _fit_for_transport(event, window, config, payloads)
    return window


def context_budget(request: MemoryContextRequested, default_max_context_tokens: int) -> int:
    """The tokens the window may take: the agent's budget, capped by what the model's context window
    leaves once the answer (`max_tokens`) and the tool specs have their room; a provider rejects a
    request whose input and output together exceed the window, so memory must not assemble one."""
    budget = request.max_context_tokens or default_max_context_tokens
    if request.model_context_tokens is None:
        return budget
    reserved = (request.max_output_tokens or 0) + (request.tools_tokens or 0)
    room = request.model_context_tokens - reserved
    if room <= 0:
        raise StepError(
            CONTEXT_TOO_LARGE,
            f"the answer ({request.max_output_tokens or 0} tokens) and the tool specs ({request.tools_tokens or 0} "
            f"tokens) leave no room in the model's {request.model_context_tokens}-token window",
        )
    return min(budget, room)


def _first_page(budget: int, message_count: int, token_count: int | None, config: ContextConfig) -> int:
    """Size the first page from the session's average message size, so a window usually takes one query
    that reads little more than the window itself."""
    if not token_count or not message_count:
        return config.page_size
    average = max(1.0, token_count / message_count)
    return max(4, min(400, int(budget / average * 1.25) + 2))


def _compaction(
    session: SessionRef,
    store: TranscriptStore,
    summary: StoredSummary | None,
    window_start: TranscriptEntry,
    threshold: int,
    config: ContextConfig,
) -> CompactionRequest | None:
    """Ask for a summary when the transcript between the latest summary and the window passes `threshold`.

    The running token totals recorded at append time make this O(1): nothing beyond the window is read
    unless compaction is due, and then at most `compaction_read_limit` messages."""
    floor = summary.through_seq if summary else 0
    floor_tokens = summary.through_cum_tokens if summary else 0
    if window_start.seq <= floor + 1 or window_start.cum_tokens is None:
        return None
    start_tokens = window_start.tokens if window_start.tokens is not None else 0
    beyond = window_start.cum_tokens - start_tokens - floor_tokens
    if beyond <= threshold:
        return None
    older = store.read_range(session, floor + 1, window_start.seq - 1, limit=config.compaction_read_limit)
    fits = len(compaction_chunk(older, config.compaction_max_chars))
    # End the chunk just before a clean turn, so that after the summary no tool pair loses a half (messages
    # between the summary and the next clean start would be neither summarized nor shown).
    boundaries = [
        index
        for index, entry in enumerate(older)
        if entry.seq == window_start.seq - 1 or (index + 1 < len(older) and is_clean_start(older[index + 1].message))
    ]
    within = [index for index in boundaries if index < fits]
    beyond_cap = [index for index in boundaries if index >= fits]
    if within:
        end = within[-1]
    elif beyond_cap:
        end = beyond_cap[0]  # one turn larger than the cap: take it whole (blocks are clipped when rendered)
    else:
        return None  # a single turn longer than the read limit: keep the transcript as it is
    chunk = older[: end + 1]
    return CompactionRequest(
        system=COMPACTION_SYSTEM,
        messages=[compaction_prompt(summary.text if summary else None, chunk)],
        through_seq=chunk[-1].seq,
        max_tokens=config.summary_max_tokens,
    )


def _fit_for_transport(
    event: Event[MemoryContextRequested], window: Window, config: ContextConfig, payloads: PayloadStorePort | None
) -> None:
    """A context too large to travel inline goes by claim check; without a bucket it is trimmed instead."""
    messages = [entry.message.model_dump(mode="json") for entry in window.entries]
    size = json_size(messages)
    if payloads is not None:
        if size > config.inline_context_bytes:
            window.messages_ref = payloads.put_json(
                messages, tenant_id=event.metadata.tenant_id, session_id=event.data.session_id, kind="context"
            )
        return
    if config.max_context_bytes is not None and size > config.max_context_bytes:
        fitting = assemble_context(window.entries, config.max_context_bytes, estimate=message_bytes)
        window.dropped_for_size = len(window.entries) - len(fitting)
        window.entries = fitting
        window.tokens = estimate_text_tokens(window.system) + total_tokens(fitting)


def answer_context_request(
    event: Event[MemoryContextRequested],
    store: TranscriptStore,
    publisher: Publisher,
    *,
    payloads: PayloadStorePort | None = None,
    config: ContextConfig | None = None,
    retention: RetentionPolicy | None = None,
    clock: Callable[[], float] = time.perf_counter,
    max_context_bytes: int | None = DEFAULT_MAX_CONTEXT_BYTES,
) -> tuple[list[Event[Any]], ContextResult | None]:
    """Serve the request and publish, in one call, the appended event (if any) and the answer.

    A redelivered request re-publishes the same appended event, because the first delivery may have
    stopped between the write and the publish; consumers dedupe on (session, seq).
    """
    try:
        result = serve_context_request(
            event,
            store,
            payloads=payloads,
            config=config,
            retention=retention,
            clock=clock,
            max_context_bytes=max_context_bytes,
        )
    except StepError as error:
        failed = failure_answer(event.metadata, MemoryContextFailed, error)
        publisher.publish([failed])
        return [failed], None
    events: list[Event[Any]] = []
    if result.appended is not None:
        # A fact, not an answer: no task token, so nothing mistakes it for the step's completion.
        events.append(
            Event.create(
                result.appended,
                tenant_id=event.metadata.tenant_id,
                run_id=event.metadata.run_id,
                causation_id=event.metadata.event_id,
                **telemetry.trace_fields(event.metadata),
            )
        )
    events.append(telemetry.answer(event, result.ready))
    publisher.publish(events)
    return events, result


# -- remote tools: remember / forget -----------------------------------------------------------------


@cache
def deployment_agents() -> AgentCatalog:
    """The deployment's agent definitions (`AGENTWIRE_AGENTS_DIR`, else the packaged defaults), read once:
    the same files the orchestrator pins a run's agent from and the tools service authorizes with."""
    return load_catalog()


@dataclass(frozen=True)
class ToolDecision:
    """Whether a remember/forget call may run, and why (names and policy only, never the input)."""

    allowed: bool
    #: The agent the call was judged as (`name@version`), or the ref it named when there is no such agent.
    agent: str
    policy: str
    reason: str


def authorize_tool_call(
    event: Event[ToolInvocationRequested], agents: AgentCatalog, *, assume_agent: str = DEFAULT_AGENT
) -> ToolDecision:
    """The tools service's rule for the tools memory serves: default deny; a call runs only when the agent
    definition the run pinned (`agent`, `name@version`) offers the tool, and with a matching approval proof
    when that agent requires one for it. A call naming no agent is judged as the default agent, as there.
    Nothing the model or a tool result says can change the definition, so an injected call is refused."""
    request = event.data
    name = request.tool_call.name
    ref = request.agent or assume_agent
    try:
        agent = agents.get_ref(ref)
    except UnknownAgent:
        return ToolDecision(False, ref, POLICY_UNKNOWN_AGENT, f"no agent {ref!r} in this deployment")
    if name not in agent.tools:
        return ToolDecision(False, agent.ref, POLICY_DEFAULT_DENY, f"agent {agent.ref} does not offer {name!r}")
    if name in agent.approval.require_for and name not in agent.approval.waive_for:
        proof = request.approval
        if proof is None or proof.args_hash != canonical_args_hash(request.tool_call.input):
            reason = (
                "the approval was given for different arguments"
                if proof is not None
                else "the call needs a human approval and none came with it"
            )
            return ToolDecision(False, agent.ref, POLICY_APPROVAL_REQUIRED, reason)
    return ToolDecision(True, agent.ref, POLICY_AGENT_OFFERS_TOOL, "allowed")


def denied_result(call_id: str, tool_name: str, decision: ToolDecision) -> ToolResultBlock:
    """The result the model sees for a refused call: the tools service's wording for the same refusal."""
    if decision.policy == POLICY_APPROVAL_REQUIRED:
        text = f"The call to {tool_name} was not run: {decision.reason}."
    else:
        text = (
            f"The call to {tool_name} was refused by policy ({decision.policy}) and was not run. "
            "Do not retry it; tell the user it is not allowed if that matters to them."
        )
    return _error(call_id, text)


def serve_tool_call(
    event: Event[ToolInvocationRequested],
    store: TranscriptStore,
    *,
    agents: AgentCatalog | None = None,
    on_decision: Callable[[ToolDecision], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    retention: RetentionPolicy | None = None,
) -> ToolInvocationCompleted:
    """Answer one memory tool call (remember, forget, read_state, write_state) exactly like the tools
    service answers its tools: authorized
    first (default deny, see `authorize_tool_call`; a refusal is an `is_error` result), then a result the
    model sees (invalid input or a misrouted tool → `is_error`), idempotent per (run_id, tool_call.id).
    `on_decision` is told each decision (not on a redelivery, which gets the recorded answer back).
    A call for a deleted session writes nothing and raises `StepError` `Memory.SessionDeleted`."""
    started = clock()
    request = event.data
    call = request.tool_call
    session = session_of(event)
    run_id = run_id_of(event)
    try:
        previous = store.get_tool_result(session, run_id, call.id)
        if previous is not None:
            result = ToolResultBlock.model_validate_json(previous)
        else:
            if store.is_deleted(session):
                raise SessionGone(session.session_id)
            decision = authorize_tool_call(event, agents if agents is not None else deployment_agents())
            if on_decision is not None:
                on_decision(decision)
            retention_s = retention.retention_s(session.tenant_id) if retention else None
            result = (
                _run_tool(event, store, retention_s)
                if decision.allowed
                else denied_result(call.id, call.name, decision)
            )
            result = ToolResultBlock.model_validate_json(
                store.put_tool_result(session, run_id, call.id, result.model_dump_json())
            )
    except StoreUnavailable as exc:
        raise StepError(UNAVAILABLE, str(exc), retryable=True) from exc
    except SessionGone as exc:
        raise StepError(SESSION_DELETED, f"session {request.session_id!r} was deleted; the call was not run") from exc
    return ToolInvocationCompleted(
        session_id=request.session_id,
        step=request.step,
        tool_name=call.name,
        result=result,
        duration_ms=round((clock() - started) * 1000, 3),
    )


def _error(call_id: str, text: str) -> ToolResultBlock:
    return ToolResultBlock(tool_use_id=call_id, content=text, is_error=True)


def _run_tool(
    event: Event[ToolInvocationRequested], store: TranscriptStore, retention_s: int | None = None
) -> ToolResultBlock:
    request = event.data
    call = request.tool_call
    if call.name in ("read_state", "write_state"):
        return _run_state_tool(event, store, retention_s)
    if call.name not in ("remember", "forget"):
        return _error(call.id, f"memory does not serve the tool {call.name!r}")
    if not request.user_id:
        return _error(call.id, "there is no user to remember for in this session (no user_id)")
    tenant_id = event.metadata.tenant_id
    try:
        if call.name == "remember":
            remember = RememberInput.model_validate(call.input)
            text = " ".join(remember.fact.split())
            fact = Fact(fact_id=fact_id_of(text), text=text, created_at=int(time.time()))
            new = store.put_fact(
                tenant_id, request.user_id, fact, session_id=request.session_id, run_id=run_id_of(event)
            )
            return ToolResultBlock(tool_use_id=call.id, content="Saved." if new else "Already saved.")
        forget = ForgetInput.model_validate(call.input)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors())
        return _error(call.id, f"invalid input for {call.name}: {problems}")
    matched = matching_facts(store.list_facts(tenant_id, request.user_id), forget.fact)
    if not matched:
        return ToolResultBlock(tool_use_id=call.id, content="No saved fact matched; nothing was forgotten.")
    store.delete_facts(tenant_id, request.user_id, [fact.fact_id for fact in matched])
    return ToolResultBlock(tool_use_id=call.id, content=f"Forgot {len(matched)} saved fact(s).")


def _run_state_tool(
    event: Event[ToolInvocationRequested], store: TranscriptStore, retention_s: int | None
) -> ToolResultBlock:
    """read_state / write_state: the session's agent state (versioned keys), from inside the agent loop."""
    call = event.data.tool_call
    session = session_of(event)
    try:
        if call.name == "read_state":
            wanted = ReadStateInput.model_validate(call.input).key
            items = [item for item in store.get_state(session) if wanted is None or item.key == wanted]
            if not items:
                missing = f"No agent state under {wanted!r}." if wanted else "No agent state saved in this session."
                return ToolResultBlock(tool_use_id=call.id, content=missing)
            entries = [
                {"key": item.key, "value": json.loads(item.value_json), "version": item.version}
                for item in sorted(items, key=lambda item: item.key)
            ]
            return ToolResultBlock(tool_use_id=call.id, content=json.dumps(entries, sort_keys=True))
        update = WriteStateInput.model_validate(call.input)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors())
        return _error(call.id, f"invalid input for {call.name}: {problems}")
    value_json = None if update.delete else json.dumps(update.value, sort_keys=True, separators=(",", ":"))
    written = store.write_state(
        session,
        update.key,
        value_json,
        expected_version=update.expected_version,
        writer=f"{run_id_of(event)}#{call.id}",
        retention_s=retention_s,
    )
    if not written.applied:
        return _error(
            call.id,
            f"{update.key!r} is at version {written.version}, not {update.expected_version}: someone changed it "
            "since you read it; read_state again before writing.",
        )
    if update.delete:
        return ToolResultBlock(tool_use_id=call.id, content=f"Deleted {update.key!r}.")
    return ToolResultBlock(tool_use_id=call.id, content=f"Saved {update.key!r} (version {written.version}).")


# -- deletion and export -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forgotten:
    items: int
    payloads: int


def forget_session(
    event: Event[SessionDeleted],
    store: TranscriptStore,
    payloads: PayloadStorePort | None = None,
    retention: RetentionPolicy | None = None,
) -> Forgotten:
    """Delete everything memory keeps of the session: every table item and every payload, leaving only the
    session's tombstone (no content; kept for the tenant's retention), so a request arriving after the
    deletion (a late context request, a run.failed, a tool call) is refused instead of re-creating the
    session. Store errors propagate (SQS retries; both deletions are idempotent)."""
    session = session_of(event)
    retention_s = retention.retention_s(session.tenant_id) if retention else None
    items = store.delete_session(session, retention_s=retention_s)
    deleted_payloads = payloads.delete_session(session.tenant_id, session.session_id) if payloads else 0
    return Forgotten(items=items, payloads=deleted_payloads)


def record_run_failure(
    event: Event[RunFailed], store: TranscriptStore, retention: RetentionPolicy | None = None
) -> bool | None:
    """A failed run is recorded beside the session's transcript (code, message, how far it got), so an
    audit or an export shows why a user message has no answer. The transcript itself stays as the run
    left it: appends happen only with complete tool results, so it is consistent. Idempotent per run.
    True when recorded, False for a redelivery; None for a run of a deleted session, which is not recorded
    (the record would bring the session back)."""
    failure = {
        "run_id": run_id_of(event),
        "code": event.data.error.code,
        "message": event.data.error.message,
        "model_turns": event.data.model_turns,
        "tool_calls": event.data.tool_calls,
        "cost_microusd": event.data.cost_microusd,
        "occurred_at": event.detail()["metadata"]["occurred_at"],
    }
    session = session_of(event)
    if store.is_deleted(session):
        return None
    retention_s = retention.retention_s(session.tenant_id) if retention else None
    return store.put_run_failure(
        session, failure["run_id"], json.dumps(failure, sort_keys=True), retention_s=retention_s
    )


#: What `record_tool_output` did with one `tool.invocation.completed.v1`.
ToolOutputRecord = Literal["recorded", "duplicate", "no_reference", "session_deleted", "outside_session"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record_tool_output(
    event: Event[ToolInvocationCompleted], store: TranscriptStore, retention: RetentionPolicy | None = None
) -> ToolOutputRecord:
    """A tool result capped by the tools service (`result` is a truncated copy, `result_ref` the claim check of
    the whole output) is recorded beside the session's transcript, so an export shows what the tool really
    returned; the transcript and the model keep the capped copy. Write-once per (call id, run), kept as long
    as the transcript (the tenant's retention). A result without a reference (the common case, and memory's own
    remember/forget answers) touches nothing; a deleted session records nothing (it would come back); a
    reference outside the session's payload prefix is not recorded (an export must never read another
    session's payload)."""
    data = event.data
    ref = data.result_ref
    if ref is None:
        return "no_reference"
    session = session_of(event)
    if not ref.key.startswith(session_prefix(session.tenant_id, session.session_id)):
        return "outside_session"
    if store.is_deleted(session):
        return "session_deleted"
    run_id = run_id_of(event)
    output = {
        "tool_use_id": data.result.tool_use_id,
        "tool_name": data.tool_name,
        "run_id": run_id,
        "step": data.step,
        "is_error": data.result.is_error,
        # The capped copy the run appended: how an export finds the transcript block this output belongs to.
        "result_sha256": _sha256(data.result.content),
        "ref": ref.model_dump(mode="json"),
        "occurred_at": event.metadata.model_dump(mode="json")["occurred_at"],
    }
    retention_s = retention.retention_s(session.tenant_id) if retention else None
    new = store.put_tool_output(
        session, data.result.tool_use_id, run_id, json.dumps(output, sort_keys=True), retention_s=retention_s
    )
    return "recorded" if new else "duplicate"


def export_tool_outputs(
    session: SessionRef,
    entries: Sequence[TranscriptEntry],
    recorded: Sequence[dict[str, Any]],
    payloads: PayloadStorePort | None,
) -> list[dict[str, Any]]:
    """The recorded full outputs of capped tool results, each with the `seq` of the transcript message whose
    `tool_result` block it completes (same call id and the very capped content the run appended; None when
    the transcript has no such block, e.g. the run stopped before appending it), and its `content` resolved
    through the payload store. A payload that is gone (expired, deleted) is reported per output
    (`missing: true`), as is one that cannot be read as a tool output (`status: unreadable`); without a payload
    store the references are listed unresolved."""
    blocks: dict[tuple[str, str], deque[int]] = defaultdict(deque)
    for entry in entries:
        for block in entry.message.content:
            if isinstance(block, ToolResultBlock):
                blocks[(block.tool_use_id, _sha256(block.content))].append(entry.seq)
    outputs: list[dict[str, Any]] = []
    in_order = sorted(recorded, key=lambda o: (str(o.get("occurred_at", "")), o["tool_use_id"], o["run_id"]))
    for output in in_order:
        # A call id reused by a later run with the same capped content: each output takes the next block.
        matching = blocks.get((output["tool_use_id"], output.get("result_sha256", "")))
        ref = PayloadRef.model_validate(output["ref"])
        outputs.append(
            {
                "tool_use_id": output["tool_use_id"],
                "tool_name": output["tool_name"],
                "seq": matching.popleft() if matching else None,
                "run_id": output["run_id"],
                "step": output["step"],
                "is_error": output["is_error"],
                "occurred_at": output.get("occurred_at"),
                "ref": ref.model_dump(mode="json"),
                **_resolve_tool_output(session, ref, payloads),
            }
        )
    return sorted(outputs, key=lambda o: (o["seq"] is None, o["seq"] or 0))


def _resolve_tool_output(session: SessionRef, ref: PayloadRef, payloads: PayloadStorePort | None) -> dict[str, Any]:
    def unread(status: str, error: str | None = None, *, missing: bool = False) -> dict[str, Any]:
        return {"content": None, "missing": missing, "status": status, "error": error}

    if payloads is None:
        return unread("unresolved")
    if not ref.key.startswith(session_prefix(session.tenant_id, session.session_id)):
        return unread("unreadable", "the reference is outside the session's payloads")
    try:
        value = payloads.get_json(ref)
    except PayloadNotFound as exc:
        return unread("missing", f"{exc.code}: {exc}", missing=True)
    except (PayloadError, ValueError) as exc:
        return unread("unreadable", f"{getattr(exc, 'code', 'Payload.Error')}: {exc}")
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, str):
        return unread("unreadable", "the payload is not a tool output ({tool_name, content})")
    return {"content": content, "missing": False, "status": "resolved", "error": None}


def export_session(
    store: TranscriptStore, session: SessionRef, payloads: PayloadStorePort | None = None
) -> dict[str, Any]:
    """The full transcript of a session as JSON (audits, evaluation): every message with its seq, the
    compaction summaries, the agent state, the failed runs and the full outputs of capped tool results
    (`tool_outputs`, see `export_tool_outputs`; resolved through `payloads` when given). Summaries never
    replace messages here, and `messages` hold exactly what the model saw (the capped tool results)."""
    entries = store.read(session)
    return {
        "tenant_id": session.tenant_id,
        "session_id": session.session_id,
        "message_count": len(entries),
        "estimated_tokens": total_tokens(entries),
        "messages": [
            {"seq": entry.seq, **entry.message.model_dump(mode="json"), "estimated_tokens": entry.tokens}
            for entry in entries
        ],
        "summaries": [
            {
                "through_seq": summary.through_seq,
                "text": summary.text,
                "usage": summary.usage,
                "cost_microusd": summary.cost_microusd,
                "run_id": summary.run_id,
                "step": summary.step,
                "created_at": summary.created_at,
            }
            for summary in store.list_summaries(session)
        ],
        "state": [
            {"key": item.key, "value": json.loads(item.value_json), "version": item.version}
            for item in store.get_state(session)
        ],
        "failed_runs": store.list_run_failures(session),
        "tool_outputs": export_tool_outputs(session, entries, store.list_tool_outputs(session), payloads),
    }


def messages_of(export: dict[str, Any]) -> list[Message]:
    """The messages of an export, as contract models (for evaluation tooling)."""
    return [Message.model_validate({"role": m["role"], "content": m["content"]}) for m in export["messages"]]
