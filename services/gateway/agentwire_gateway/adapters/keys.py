"""The single-table key layout. Every key of tenant data starts with the tenant.

    tenant#<T>                      tenant                  the tenant
    tenant#<T>                      apikey#<key_id>         a key's listing entry (hash, scopes, revoked_at)
    tenant#<T>#session#<S>          session                 a session
    tenant#<T>#session#<S>          message#<seq:010d>      the transcript view, in seq order
    tenant#<T>#run#<R>              run                     a run's status, output, usage
    tenant#<T>#run#<R>              step#<occurred_at>#<event_id>   the run's timeline, in time order
    tenant#<T>                      session#<created>#<S>   the tenant's sessions, newest last
    tenant#<T>#user#<U>             session#<created>#<S>   a user's sessions (what an end user lists)
    tenant#<T>#session#<S>          state                   active run, queue of waiting runs, version
    tenant#<T>#session#<S>          queued#<R>              a waiting run's run.requested event
    tenant#<T>#session#<S>          run#<R>                 the session's runs (what a delete removes)
    tenant#<T>#session#<S>          deleted                 tombstone: late events do not resurrect it
    tenant#<T>#run#<R>              eventseq                the timeline's counter
    tenant#<T>#run#<R>              event#<seq:010d>        the run's live events, in projection order
    tenant#<T>#run#<R>              eventid#<event_id>      dedupe marker: which seq an event got
    tenant#<T>#run#<R>              approval#<A>            an approval (pending or decided)
    tenant#<T>#idem#<sha256(key)>   idem                    an Idempotency-Key's request and answer
    tenant#<T>#rate#<minute>        rate                    the tenant's request count in a minute
    tenants                         tenant#<T>              the tenant listing (administration)
    apikey#<sha256>                 apikey                  authentication lookup

The lookup item is the one exception to "starts with the tenant": it is what *establishes* the tenant
from a presented key, so it can only be keyed by the key's hash. It holds no tenant data.
"""

from __future__ import annotations

from datetime import datetime

from agentwire_gateway.model import rfc3339

TENANT_SK = "tenant"
SESSION_SK = "session"
RUN_SK = "run"
APIKEY_LOOKUP_SK = "apikey"
MESSAGE_PREFIX = "message#"
STEP_PREFIX = "step#"
APIKEY_LISTING_PREFIX = "apikey#"
SESSION_LISTING_PREFIX = "session#"
SESSION_STATE_SK = "state"
SESSION_TOMBSTONE_SK = "deleted"
QUEUED_PREFIX = "queued#"
SESSION_RUN_PREFIX = "run#"
EVENT_SEQ_SK = "eventseq"
EVENT_PREFIX = "event#"
EVENT_ID_PREFIX = "eventid#"
APPROVAL_PREFIX = "approval#"
IDEMPOTENCY_SK = "idem"
RATE_SK = "rate"
TENANTS_PK = "tenants"
TENANT_LISTING_PREFIX = "tenant#"


def tenant_pk(tenant_id: str) -> str:
    return f"tenant#{tenant_id}"


def apikey_listing_sk(key_id: str) -> str:
    return f"{APIKEY_LISTING_PREFIX}{key_id}"


def apikey_lookup_pk(key_hash: str) -> str:
    return f"apikey#{key_hash}"


def session_pk(tenant_id: str, session_id: str) -> str:
    return f"tenant#{tenant_id}#session#{session_id}"


def message_sk(seq: int) -> str:
    return f"{MESSAGE_PREFIX}{seq:010d}"


def run_pk(tenant_id: str, run_id: str) -> str:
    return f"tenant#{tenant_id}#run#{run_id}"


def step_sk(occurred_at: datetime, event_id: str) -> str:
    return f"{STEP_PREFIX}{rfc3339(occurred_at)}#{event_id}"


def user_sessions_pk(tenant_id: str, user_id: str) -> str:
    return f"tenant#{tenant_id}#user#{user_id}"


def session_listing_sk(created_at: datetime, session_id: str) -> str:
    return f"{SESSION_LISTING_PREFIX}{rfc3339(created_at)}#{session_id}"


def queued_sk(run_id: str) -> str:
    return f"{QUEUED_PREFIX}{run_id}"


def session_run_sk(run_id: str) -> str:
    return f"{SESSION_RUN_PREFIX}{run_id}"


def event_sk(seq: int) -> str:
    return f"{EVENT_PREFIX}{seq:010d}"


def event_id_sk(event_id: str) -> str:
    return f"{EVENT_ID_PREFIX}{event_id}"


def approval_sk(approval_id: str) -> str:
    return f"{APPROVAL_PREFIX}{approval_id}"


def idempotency_pk(tenant_id: str, key_hash: str) -> str:
    return f"tenant#{tenant_id}#idem#{key_hash}"


def rate_pk(tenant_id: str, window: int) -> str:
    return f"tenant#{tenant_id}#rate#{window}"


def tenant_listing_sk(tenant_id: str) -> str:
    return f"{TENANT_LISTING_PREFIX}{tenant_id}"
