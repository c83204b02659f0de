"""The tools service's configuration, read from the environment once."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from agentwire_contracts.names import DEFAULT_BUS_NAME, ENV_EVENT_BUS_NAME
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ToolsSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    event_bus_name: str = Field(default=DEFAULT_BUS_NAME, validation_alias=AliasChoices(ENV_EVENT_BUS_NAME))
    #: The manifest's `idempotency` table. Required: running tools without de-duplication would let a
    #: redelivered request act on the world twice.
    idempotency_table_name: str = Field(min_length=1, validation_alias=AliasChoices("TOOLS_IDEMPOTENCY_TABLE_NAME"))
    #: How long a call's result is kept for replay: longer than any redelivery of its request can take.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, validation_alias=AliasChoices("TOOLS_IDEMPOTENCY_TTL_S"))
    #: Seconds of each invocation kept back from tools to record and publish the answer.
    answer_reserve_s: float = Field(default=5.0, ge=0, validation_alias=AliasChoices("TOOLS_ANSWER_RESERVE_S"))
    #: Seconds between heartbeats while a tool call runs (0: none). Keep it well under the orchestrator's
    #: tool heartbeat (`AGENTWIRE_ORCHESTRATOR_TOOL_HEARTBEAT_S`, default 90 s), which also covers queue wait.
    heartbeat_interval_s: float = Field(default=15.0, ge=0, validation_alias=AliasChoices("TOOLS_HEARTBEAT_INTERVAL_S"))
    #: Replay mode (evaluation): tools that are not read-only answer from this file of recorded results
    #: instead of running (see `replaying`). Never set in a deployment that serves users.
    replay_results: Path | None = Field(default=None, validation_alias=AliasChoices("TOOLS_REPLAY_RESULTS"))
    #: Load tools other packages declare in the `agentwire.tools` entry point group.
    load_entry_points: bool = Field(default=True, validation_alias=AliasChoices("TOOLS_LOAD_ENTRY_POINTS"))
    #: Comma-separated modules that register tools (`register(registry)` or a `TOOLS` list).
    registration_modules: str = Field(default="", validation_alias=AliasChoices("TOOLS_REGISTRATION_MODULES"))
    #: The manifest's `audit` table: every authorization decision. Required: no call runs unrecorded.
    audit_table_name: str = Field(min_length=1, validation_alias=AliasChoices("TOOLS_AUDIT_TABLE_NAME"))
    #: The manifest's `state` table: run leases and the notification outbox.
    state_table_name: str = Field(min_length=1, validation_alias=AliasChoices("TOOLS_STATE_TABLE_NAME"))
    #: A directory of `*.cedar` policy files replacing the packaged defaults.
    policy_dir: Path | None = Field(default=None, validation_alias=AliasChoices("TOOLS_POLICY_DIR"))
    #: How long a call that changes the world waits for its run's lease before answering `Tools.Busy`.
    lease_wait_s: float = Field(default=20.0, ge=0, validation_alias=AliasChoices("TOOLS_LEASE_WAIT_S"))
    #: http_fetch: tenant id (or "*") -> allowed host patterns, as JSON. Empty: nothing can be fetched.
    http_allowlist: dict[str, list[str]] = Field(
        default_factory=dict, validation_alias=AliasChoices("TOOLS_HTTP_ALLOWLIST")
    )
    http_max_bytes: int = Field(default=200_000, ge=1, validation_alias=AliasChoices("TOOLS_HTTP_MAX_BYTES"))
    http_timeout_s: float = Field(default=10.0, gt=0, le=50, validation_alias=AliasChoices("TOOLS_HTTP_TIMEOUT_S"))


@cache
def get_settings() -> ToolsSettings:
    return ToolsSettings()
