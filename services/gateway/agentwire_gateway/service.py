"""The gateway's use cases: authenticate, open sessions, accept messages (one run at a time per session),
answer reads, cancel, decide approvals, and project bus events into the read model.

Pure logic over the ports (no boto3); the handler builds the adapters and the tests inject fakes.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from agentwire_contracts import telemetry
from agentwire_contracts.agents import AgentCatalog, UnknownAgent, load_catalog
from agentwire_contracts.content import ErrorInfo, Message, TextBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events import (
    RunApprovalDecided,
    RunCancelRequested,
    RunRequested,
    SessionDeleted,
)
from agentwire_contracts.publish import PublishError

from agentwire_gateway import auth, problems
from agentwire_gateway.model import (
    ApprovalRecord,
    ApprovalStatus,
    MessageRecord,
    Principal,
    RunRecord,
    RunStatus,
    RunTransition,
    SessionRecord,
    SessionState,
    TimelineEntry,
    TimelineEvent,
)
from agentwire_gateway.ports import ApiKeyStore, Publisher, ReadModel, TokenVerifier
from agentwire_gateway.projection import project
from agentwire_gateway.schemas import RunView

PUBLISH_FAILED_CODE = "Gateway.PublishFailed"
TERMINAL_EVENT_TYPES = frozenset({"run.completed", "run.failed", "run.cancelled"})
#: Optimistic-locking attempts on a session's state before giving up (503, the client retries).
STATE_ATTEMPTS = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


#: Lives of one Idempotency-Key looked through (each at least its TTL long, within the runs' retention).
MAX_KEY_GENERATIONS = 64


def idempotent_run_id(tenant_id: str, session_id: str, idempotency_key: str, generation: int = 0) -> str:
    """The same (tenant, session, Idempotency-Key) names the same run while the key lives, so a retried POST
    finds the run it already created instead of starting a second one. `generation` counts the key's
    earlier lives: a key reused after it expired names a new run (generation 0 keeps the original ids)."""
    material = f"{tenant_id}\x00{session_id}\x00{idempotency_key}"
    if generation:
        material += f"\x00{generation}"
    digest = hashlib.sha256(material.encode()).hexdigest()
    return f"run_{digest[:32]}"


@dataclass
class Authenticator:
    keys: ApiKeyStore
    #: Verifies OIDC bearer tokens; None when no issuer is configured (API keys only).
    tokens: TokenVerifier | None = None
    clock: Callable[[], datetime] = utc_now
    #: `last_used_at` is written at most this often per key (one write per key per minute, not per call).
    touch_interval: timedelta = timedelta(minutes=1)

    def authenticate(self, authorization: str | None) -> Principal:
        """The caller's principal, or a 401 problem. Never says which of missing/unknown/revoked it was."""
        token = auth.bearer_token(authorization)
        if token is None:
            raise problems.unauthorized()
        if auth.looks_like_api_key(token):
            return self._api_key(token)
        if self.tokens is not None and auth.looks_like_jwt(token):
            return self.tokens.verify(token)
        raise problems.unauthorized("the credential is not valid")

    def _api_key(self, token: str) -> Principal:
        record = self.keys.find_by_hash(auth.hash_api_key(token))
        if record is None or record.revoked or not auth.hashes_match(record.key_hash, token):
            raise problems.unauthorized("the credential is not valid")
        now = self.clock()
        if record.last_used_at is None or now - record.last_used_at >= self.touch_interval:
            self.keys.touch(record, at=now)
        return Principal(
            tenant_id=record.tenant_id,
            key_id=record.key_id,
            scopes=frozenset(record.scopes),
            user_id=record.key_id,
            kind="api_key",
        )


class OnBusy(StrEnum):
    REJECT = "reject"
    ENQUEUE = "enqueue"


@dataclass(frozen=True)
class Submitted:
    run: RunRecord
    #: False when an Idempotency-Key replay found the run a previous request created.
    created: bool
    #: 0 when the run starts now; n when n runs are ahead of it on the session.
    position: int = 0


@dataclass(frozen=True)
class TimelinePage:
    run: RunRecord
    events: list[TimelineEvent]
    next_cursor: int
    done: bool
    #: The run's status as of this page (its terminal event may be read before the status is written).
    status: RunStatus


@dataclass
class SessionScheduler:
    """One run at a time per session; the others wait in order (double texting).

    The session's state item is changed only by compare-and-set on its version, so concurrent submits
    and the projector's release never lose a queued run or start two at once.
    """

    read_model: ReadModel
    publisher: Publisher

    def claim_or_enqueue(self, run: RunRecord, event: Event[Any], *, on_busy: OnBusy) -> int:
        """0 if `run` is now the session's active run (publish it), else its place in the queue; or 409."""
        tenant, session_id = run.tenant_id, run.session_id
        for _ in range(STATE_ATTEMPTS):
            state = self.read_model.get_session_state(tenant, session_id)
            active = state.active_run_id
            if active is not None and active != run.run_id and self._finished(tenant, active):
                # The active run ended but its release never came (e.g. it could not be published): take over.
                active = None
            if active is None or active == run.run_id:
                new = SessionState(active_run_id=run.run_id, queue=state.queue, version=state.version + 1)
                if self.read_model.save_session_state(tenant, session_id, new, expected=state.version):
                    return 0
                continue
            if run.run_id in state.queue:
                return state.queue.index(run.run_id) + 1
            if on_busy is OnBusy.REJECT:
                raise problems.conflict(
                    f"the session is busy with run {active}; wait for it, cancel it, or send with ?on_busy=enqueue",
                    active_run_id=active,
                )
            self.read_model.put_queued_run(tenant, session_id, run.run_id, event.model_dump_json())
            queue = (*state.queue, run.run_id)
            new = SessionState(
                active_run_id=active, queue=queue, promoted_from=state.promoted_from, version=state.version + 1
            )
            if self.read_model.save_session_state(tenant, session_id, new, expected=state.version):
                return len(queue)
        raise problems.unavailable("the session is busy changing; try again")

    def _finished(self, tenant_id: str, run_id: str) -> bool:
        run = self.read_model.get_run(tenant_id, run_id)
        return run is None or run.status.is_terminal

    def release(self, tenant_id: str, session_id: str, run_id: str) -> str | None:
        """`run_id` ended: start the next waiting run of the session, if any (the one returned)."""
        self.read_model.delete_queued_run(tenant_id, session_id, run_id)
        for _ in range(STATE_ATTEMPTS):
            state = self.read_model.get_session_state(tenant_id, session_id)
            if state.active_run_id != run_id:
                if state.promoted_from == run_id and state.active_run_id:
                    # A redelivery of the end event: the promotion happened; publishing again is harmless.
                    self._publish_queued(tenant_id, session_id, state.active_run_id)
                return None
            queue = list(state.queue)
            promoted: str | None = None
            while queue:
                candidate = queue.pop(0)
                if not self._finished(tenant_id, candidate):
                    promoted = candidate
                    break
                self.read_model.delete_queued_run(tenant_id, session_id, candidate)
            new = SessionState(
                active_run_id=promoted,
                queue=tuple(queue),
                promoted_from=run_id if promoted else None,
                version=state.version + 1,
            )
            if self.read_model.save_session_state(tenant_id, session_id, new, expected=state.version):
                if promoted:
                    self._publish_queued(tenant_id, session_id, promoted)
                return promoted
        raise RuntimeError(f"could not release session {session_id} after {STATE_ATTEMPTS} attempts")

    def _publish_queued(self, tenant_id: str, session_id: str, run_id: str) -> None:
        stored = self.read_model.get_queued_run(tenant_id, session_id, run_id)
        if stored is not None:
            self.publisher.publish_one(Event[RunRequested].model_validate_json(stored))

    def dequeue(self, tenant_id: str, session_id: str, run_id: str) -> bool:
        """Take a waiting (never published) run out of the queue; False if it is not waiting."""
        for _ in range(STATE_ATTEMPTS):
            state = self.read_model.get_session_state(tenant_id, session_id)
            if run_id not in state.queue:
                return False
            new = SessionState(
                active_run_id=state.active_run_id,
                queue=tuple(r for r in state.queue if r != run_id),
                promoted_from=state.promoted_from,
                version=state.version + 1,
            )
            if self.read_model.save_session_state(tenant_id, session_id, new, expected=state.version):
                self.read_model.delete_queued_run(tenant_id, session_id, run_id)
                return True
        raise problems.unavailable("the session is busy changing; try again")


@dataclass
class Gateway:
    read_model: ReadModel
    publisher: Publisher
    run_retention: timedelta = timedelta(days=30)
    clock: Callable[[], datetime] = utc_now
    ids: Callable[[str], str] = field(default=new_id)
    catalog: Callable[[], AgentCatalog] = load_catalog
    #: How long an Idempotency-Key lives (the guard's TTL): a run older than this no longer answers its key.
    idempotency_ttl: timedelta = timedelta(hours=24)

    @property
    def scheduler(self) -> SessionScheduler:
        return SessionScheduler(self.read_model, self.publisher)

    # --- sessions ---------------------------------------------------------------------------------
    def create_session(self, principal: Principal, *, agent: str, user_id: str | None) -> SessionRecord:
        try:
            definition = self.catalog().get(agent)
        except UnknownAgent:
            raise problems.invalid_request(
                f"there is no agent {agent!r}",
                errors=[{"loc": ["body", "agent"], "type": "unknown_agent", "msg": "unknown agent"}],
            ) from None
        # A bearer token names its user, whatever the body says (the session and its user's long-term facts
        # are its own); an API key (a backend acting for its users) may say which user.
        user = principal.user_id if principal.is_end_user else user_id
        session = SessionRecord(
            tenant_id=principal.tenant_id,
            session_id=self.ids("ses"),
            agent=definition.name,
            agent_version=definition.version,
            user_id=user,
            created_at=self.clock(),
        )
        self.read_model.put_session(session)
        return session

    def session_of(self, principal: Principal, session_id: str) -> SessionRecord:
        """The session if the principal may see it; else 404, the same answer as for an id that does not
        exist, so another tenant's or another user's session does not even show that it exists. Every
        route on a session (and, through `run_of`, on a run) starts here."""
        session = self.read_model.get_session(principal.tenant_id, session_id)
        if session is None or not principal.may_see(session):
            raise problems.not_found("session")
        return session

    def list_sessions(
        self, principal: Principal, *, limit: int, after: str | None
    ) -> tuple[list[SessionRecord], str | None]:
        """The sessions the principal may see, newest first: an end user's own, or the whole tenant's."""
        owner = principal.user_id if principal.is_end_user else None
        if principal.is_end_user and not owner:
            return [], None
        sessions, last = self.read_model.list_sessions(principal.tenant_id, limit=limit, after=after, user_id=owner)
        # The read model lists by owner already; checking again costs nothing and keeps this the rule's
        # only place even if a listing entry were ever stale.
        return [s for s in sessions if principal.may_see(s)], last

    def session_state(self, session: SessionRecord) -> SessionState:
        """Takes the record `session_of` returned, so there is no way to read a state without the check."""
        return self.read_model.get_session_state(session.tenant_id, session.session_id)

    def delete_session(self, principal: Principal, session_id: str, *, trace_header: str | None = None) -> None:
        """Stop what runs, tell every service (session.deleted), then forget the session here."""
        session = self.session_of(principal, session_id)
        state = self.read_model.get_session_state(principal.tenant_id, session_id)
        events: list[Event[Any]] = []
        if state.active_run_id:
            events.append(
                Event.create(
                    RunCancelRequested(session_id=session_id, reason="session deleted"),
                    tenant_id=principal.tenant_id,
                    run_id=state.active_run_id,
                    **trace_of(trace_header),
                )
            )
        events.append(
            Event.create(SessionDeleted(session_id=session_id), tenant_id=principal.tenant_id, **trace_of(trace_header))
        )
        try:
            self.publisher.publish(events)
        except PublishError as exc:
            raise problems.unavailable("the deletion could not be sent; try again") from exc
        self.read_model.delete_session(session)

    # --- runs -------------------------------------------------------------------------------------
    def submit_message(
        self,
        principal: Principal,
        session_id: str,
        *,
        content: str,
        idempotency_key: str | None = None,
        trace_header: str | None = None,
        on_busy: OnBusy = OnBusy.REJECT,
    ) -> Submitted:
        """Start a run for the message now, or queue it behind the session's active run, or 409.

        The read model is written before anything is published, so the client can poll the run the
        moment it gets the 202, whatever the orchestrator is doing."""
        session = self.session_of(principal, session_id)
        now = self.clock()
        run_id, existing = (
            self._run_of_key(principal.tenant_id, session_id, idempotency_key, now)
            if idempotency_key
            else (self.ids("run"), None)
        )
        if existing is not None:
            if existing.session_id != session_id:
                raise problems.conflict("this Idempotency-Key was already used for another session")
            return Submitted(existing, created=False)
        run = RunRecord(
            tenant_id=principal.tenant_id,
            run_id=run_id,
            session_id=session_id,
            status=RunStatus.QUEUED,
            created_at=now,
            updated_at=now,
        )
        event = Event.create(
            RunRequested(
                session_id=session_id,
                input=Message(role="user", content=[TextBlock(text=content)]),
                agent=session.agent,
                agent_version=session.agent_version,
                user_id=session.user_id,
            ),
            tenant_id=principal.tenant_id,
            run_id=run_id,
            **trace_of(trace_header),
        )
        position = self.scheduler.claim_or_enqueue(run, event, on_busy=on_busy)
        created = self.read_model.put_run(run, expires_at=now + self.run_retention)
        if position > 0:
            return Submitted(run, created=created, position=position)
        try:
            self.publisher.publish_one(event)
        except PublishError as exc:
            self._fail_unpublished(run)
            raise problems.unavailable("the run could not be queued; try again") from exc
        return Submitted(run, created=created)

    def _fail_unpublished(self, run: RunRecord) -> None:
        self.read_model.apply_transition(
            RunTransition(
                tenant_id=run.tenant_id,
                run_id=run.run_id,
                session_id=run.session_id,
                status=RunStatus.FAILED,
                occurred_at=self.clock(),
                error=ErrorInfo(code=PUBLISH_FAILED_CODE, message="the run could not be queued"),
            ),
            expires_at=self.clock() + self.run_retention,
        )
        # If the next run cannot be published either, the next submit takes over the session.
        with contextlib.suppress(PublishError):
            self.scheduler.release(run.tenant_id, run.session_id, run.run_id)

    def _run_of_key(
        self, tenant_id: str, session_id: str, idempotency_key: str, now: datetime
    ) -> tuple[str, RunRecord | None]:
        """The run this key names now, and its record if it was already created in the key's current life.
        Runs the key named in lives that have expired are skipped (their records outlive the key)."""
        for generation in range(MAX_KEY_GENERATIONS):
            run_id = idempotent_run_id(tenant_id, session_id, idempotency_key, generation)
            existing = self.read_model.get_run(tenant_id, run_id)
            if existing is None or existing.created_at + self.idempotency_ttl > now:
                return run_id, existing
        raise problems.conflict("this Idempotency-Key was reused too many times; use a new key")

    def run_of(self, principal: Principal, run_id: str) -> RunRecord:
        """The run if the principal may see its session; else 404, as for a run that does not exist. Every
        route on a run (events, cancel, approvals) starts here."""
        run = self.read_model.get_run(principal.tenant_id, run_id)
        if run is None or not self._may_see_run(principal, run):
            raise problems.not_found("run")
        return run

    def _may_see_run(self, principal: Principal, run: RunRecord) -> bool:
        if not principal.is_end_user:
            return run.tenant_id == principal.tenant_id
        # A run belongs to whoever owns its session (a session's user never changes, and deleting the
        # session deletes its runs), so the session decides. Only end users pay for this extra read.
        session = self.read_model.get_session(principal.tenant_id, run.session_id)
        return session is not None and principal.may_see(session)

    def request_cancel(
        self, principal: Principal, run_id: str, *, reason: str, trace_header: str | None = None
    ) -> RunRecord:
        """Ask the orchestrator to stop the run; a run still waiting on its session is cancelled here."""
        run = self.run_of(principal, run_id)
        if run.status.is_terminal:
            raise problems.conflict(f"the run is already {run.status.value}")
        if self.scheduler.dequeue(principal.tenant_id, run.session_id, run_id):
            now = self.clock()
            self.read_model.append_timeline(
                TimelineEntry(
                    tenant_id=run.tenant_id,
                    run_id=run_id,
                    event_id=f"cancel-{run_id}",
                    type="run.cancelled",
                    occurred_at=now,
                    data={"reason": reason, "stage": "queued"},
                ),
                expires_at=now + self.run_retention,
            )
            self.read_model.apply_transition(
                RunTransition(
                    tenant_id=run.tenant_id,
                    run_id=run_id,
                    session_id=run.session_id,
                    status=RunStatus.CANCELLED,
                    occurred_at=now,
                ),
                expires_at=now + self.run_retention,
            )
            return self.run_of(principal, run_id)
        event = Event.create(
            RunCancelRequested(session_id=run.session_id, reason=reason),
            tenant_id=principal.tenant_id,
            run_id=run_id,
            **trace_of(trace_header),
        )
        try:
            self.publisher.publish_one(event)
        except PublishError as exc:
            raise problems.unavailable("the cancellation could not be sent; try again") from exc
        return run

    def run_view(self, principal: Principal, run_id: str) -> RunView:
        run = self.run_of(principal, run_id)
        return RunView.of(run, self.read_model.list_steps(principal.tenant_id, run_id))

    def timeline(self, principal: Principal, run_id: str, *, after: int, limit: int) -> TimelinePage:
        run = self.run_of(principal, run_id)
        events = self.read_model.list_timeline(principal.tenant_id, run_id, after=after, limit=limit)
        next_cursor = events[-1].seq if events else after
        ended = next((event for event in events if event.type in TERMINAL_EVENT_TYPES), None)
        done = ended is not None or (run.status.is_terminal and not events)
        status = RunStatus(ended.type.removeprefix("run.")) if ended is not None else run.status
        return TimelinePage(run=run, events=events, next_cursor=next_cursor, done=done, status=status)

    def messages(self, principal: Principal, session_id: str, *, after_seq: int, limit: int) -> list[MessageRecord]:
        self.session_of(principal, session_id)
        return self.read_model.list_messages(principal.tenant_id, session_id, after_seq=after_seq, limit=limit)

    # --- approvals --------------------------------------------------------------------------------
    def approvals(self, principal: Principal, run_id: str) -> list[ApprovalRecord]:
        self.run_of(principal, run_id)
        return sorted(self.read_model.list_approvals(principal.tenant_id, run_id), key=lambda a: a.requested_at)

    def decide(
        self,
        principal: Principal,
        run_id: str,
        approval_id: str,
        *,
        approve: bool,
        reason: str,
        trace_header: str | None = None,
    ) -> ApprovalRecord:
        self.run_of(principal, run_id)
        approval = self.read_model.get_approval(principal.tenant_id, run_id, approval_id)
        if approval is None:
            raise problems.not_found("approval")
        if approval.status is not ApprovalStatus.PENDING:
            raise problems.conflict(f"the approval was already decided: {approval.status.value}")
        now = self.clock()
        if now > approval.requested_at + timedelta(seconds=approval.timeout_s):
            raise problems.conflict("the approval timed out; the run went on without it")
        decided = approval.model_copy(
            update={
                "status": ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED,
                "decided_by": principal.user_id[:128],
                "decided_at": now,
                "decision_reason": reason,
            }
        )
        if not self.read_model.decide_approval(decided):
            raise problems.conflict("the approval was already decided")
        event = Event.create(
            RunApprovalDecided(
                session_id=approval.session_id,
                approval_id=approval.approval_id,
                tool_call_id=approval.tool_call_id,
                args_hash=approval.args_hash,
                decision="approve" if approve else "reject",
                reason=reason,
                decided_by=principal.user_id[:128],
            ),
            tenant_id=principal.tenant_id,
            run_id=run_id,
            **trace_of(trace_header),
            task_token=approval.task_token,
        )
        try:
            self.publisher.publish_one(event)
        except PublishError as exc:
            self.read_model.reopen_approval(decided)
            raise problems.unavailable("the decision could not be sent; try again") from exc
        return decided


def trace_of(trace_header: str | None) -> dict[str, str | None]:
    """The trace fields of an event the gateway publishes now: the current span's (the local HTTP server's
    SERVER span; the ADOT layer's on AWS), else this invocation's X-Ray header in both forms."""
    return telemetry.trace_fields(
        {"trace_header": trace_header, "traceparent": telemetry.xray_to_traceparent(trace_header)}
    )


@dataclass(frozen=True)
class ProjectionResult:
    """How many records an event wrote; 0 means it was a duplicate or stale (and that is fine)."""

    written: int
    skipped: int
    #: A queued run this event's end of run started.
    promoted: str | None = None
    #: The run's end, when this event (not a redelivery) recorded it: the run metrics count it once.
    finished: RunTransition | None = None
    #: The approval this event recorded (not a redelivery).
    approval: ApprovalRecord | None = None


@dataclass
class Projector:
    read_model: ReadModel
    run_retention: timedelta = timedelta(days=30)
    clock: Callable[[], datetime] = utc_now
    publisher: Publisher | None = None

    def apply(self, event: Event[Any], *, source: str | None = None) -> ProjectionResult:
        projection = project(event, source=source)
        expires_at = self.clock() + self.run_retention
        outcomes: list[bool] = []
        # The timeline first: once a run's status is terminal, its terminal live event exists too. An
        # answer's request entry before the answer's own (see `started_entry`): cursors follow causality.
        if projection.started is not None and projection.timeline is not None:
            self.read_model.append_timeline(projection.started, expires_at=expires_at)
        if projection.timeline is not None:
            outcomes.append(self.read_model.append_timeline(projection.timeline, expires_at=expires_at) is not None)
        approval = finished = None
        if projection.approval is not None:
            approval_expiry = max(
                expires_at, projection.approval.requested_at + timedelta(seconds=projection.approval.timeout_s)
            )
            outcomes.append(self.read_model.put_approval(projection.approval, expires_at=approval_expiry))
            approval = projection.approval if outcomes[-1] else None
        if projection.transition is not None:
            outcomes.append(self.read_model.apply_transition(projection.transition, expires_at=expires_at))
            finished = projection.transition if outcomes[-1] and projection.transition.status.is_terminal else None
        if projection.step is not None:
            outcomes.append(self.read_model.put_step(projection.step, expires_at=expires_at))
        if projection.messages and not self.read_model.session_deleted(
            projection.messages[0].tenant_id, projection.messages[0].session_id
        ):
            outcomes.extend(self.read_model.put_message(message) for message in projection.messages)
        promoted = None
        transition = projection.transition
        if transition is not None and transition.status.is_terminal and self.publisher is not None:
            # Idempotent: only the session's active run releases it (a redelivery re-publishes, harmlessly).
            promoted = SessionScheduler(self.read_model, self.publisher).release(
                transition.tenant_id, transition.session_id, transition.run_id
            )
        written = sum(outcomes)
        return ProjectionResult(
            written=written, skipped=len(outcomes) - written, promoted=promoted, finished=finished, approval=approval
        )
