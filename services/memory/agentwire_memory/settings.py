"""The memory service's configuration, read once from the environment."""

from __future__ import annotations

from functools import cache

from agentwire_contracts.names import DEFAULT_BUS_NAME, ENV_EVENT_BUS_NAME, ENV_PAYLOAD_BUCKET
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentwire_memory.transcript import DEFAULT_MAX_CONTEXT_BYTES


class MemorySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMORY_", extra="ignore", populate_by_name=True)

    #: Physical name of the single table (env `MEMORY_TABLE_NAME`, set from the manifest).
    table_name: str = Field(min_length=3)
    event_bus_name: str = Field(default=DEFAULT_BUS_NAME, validation_alias=ENV_EVENT_BUS_NAME)
    #: Attempts at the head race before answering `Memory.Unavailable` (the state machine retries later).
    append_max_attempts: int = Field(default=8, ge=1, le=50)
    #: Append markers only have to outlive redeliveries and Step Functions retries of one step.
    marker_ttl_days: int = Field(default=30, ge=1)
    #: Default transcript retention (a tenant's own setting wins): each item expires this long after it was
    #: written (a message after its append); None keeps transcripts until the session is deleted.
    transcript_ttl_days: int | None = Field(default=None, ge=1)
    #: Without a payload bucket: largest context answered inline (older turns are left out beyond it).
    max_context_bytes: int = Field(default=DEFAULT_MAX_CONTEXT_BYTES, ge=1024, le=240 * 1024)
    #: The claim-check threshold: a context whose messages exceed this many bytes goes to the payload bucket.
    inline_context_bytes: int = Field(default=64 * 1024, ge=1024, le=200 * 1024)
    #: The token budget of a request that names none.
    default_max_context_tokens: int = Field(default=100_000, ge=256)
    #: The payload bucket (claim checks); unset: contexts are trimmed to fit inline.
    payload_bucket: str | None = Field(default=None, validation_alias=ENV_PAYLOAD_BUCKET)


@cache
def get_settings() -> MemorySettings:
    return MemorySettings()  # type: ignore[call-arg]  # table_name comes from the environment
