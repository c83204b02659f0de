"""`current_time`: the current local time in an IANA time zone (the `tzdata` package supplies the
zone database, because Lambda's image has none)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from agentwire_tools.registry import SideEffect, Tool, ToolError

Clock = Callable[[], datetime]


class CurrentTimeInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        description="IANA time zone name, e.g. 'Europe/Paris' or 'America/New_York'. Defaults to UTC.",
    )


class CurrentTime(BaseModel):
    timezone: str
    #: ISO-8601 local time with its UTC offset, e.g. 2025-03-01T14:05:09+01:00.
    local_time: str
    utc_offset: str
    abbreviation: str


def utc_clock() -> datetime:
    return datetime.now(UTC)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: keys like '../etc/passwd' or absolute paths, which zoneinfo refuses outright.
        raise ToolError(
            f"Unknown time zone {name!r}. Use an IANA time zone name such as 'UTC', 'Europe/London' "
            "or 'America/Los_Angeles'."
        ) from None


def current_time_tool(clock: Clock = utc_clock) -> Tool[CurrentTimeInput]:
    """Built with the clock injected, so tests can pin the instant."""

    def run(call: CurrentTimeInput) -> CurrentTime:
        local = clock().astimezone(zone(call.timezone))
        offset = local.strftime("%z")
        return CurrentTime(
            timezone=call.timezone,
            local_time=local.isoformat(timespec="seconds"),
            utc_offset=f"{offset[:3]}:{offset[3:]}",
            abbreviation=local.tzname() or "",
        )

    return Tool(
        name="current_time",
        description=(
            "Get the current date and time in a time zone, as ISO-8601 local time with its UTC offset. "
            "Input: an IANA time zone name (default UTC)."
        ),
        input_model=CurrentTimeInput,
        run=run,
        timeout_s=2.0,
        max_output_chars=1_000,
        side_effect=SideEffect.READ_ONLY,
        # Computed by this code from the validated input: no third-party text to fence.
        untrusted_output=False,
    )
