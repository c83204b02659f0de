"""current_time answers ISO-8601 local time in an IANA zone, from the tzdata package."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from agentwire_tools.builtins.clock import CurrentTimeInput, current_time_tool
from agentwire_tools.execution import execute
from agentwire_tools.registry import ToolError, ToolRegistry

SUMMER = datetime(2025, 7, 1, 12, 30, 15, tzinfo=UTC)
WINTER = datetime(2025, 1, 15, 23, 5, 0, tzinfo=UTC)


def run(at: datetime, **call: str) -> dict[str, str]:
    result = current_time_tool(clock=lambda: at).run(CurrentTimeInput(**call))
    return json.loads(result.model_dump_json())  # type: ignore[attr-defined]


def test_tools_current_time_defaults_to_utc() -> None:
    answer = run(SUMMER)
    assert answer == {
        "timezone": "UTC",
        "local_time": "2025-07-01T12:30:15+00:00",
        "utc_offset": "+00:00",
        "abbreviation": "UTC",
    }


def test_tools_current_time_in_a_zone_with_daylight_saving() -> None:
    assert run(SUMMER, timezone="Europe/Paris")["local_time"] == "2025-07-01T14:30:15+02:00"
    assert run(WINTER, timezone="Europe/Paris")["local_time"] == "2025-01-16T00:05:00+01:00"
    assert run(SUMMER, timezone="America/New_York")["abbreviation"] == "EDT"


def test_tools_current_time_in_a_half_hour_zone() -> None:
    answer = run(SUMMER, timezone="Asia/Kolkata")
    assert answer["local_time"] == "2025-07-01T18:00:15+05:30"
    assert answer["utc_offset"] == "+05:30"
    assert datetime.fromisoformat(answer["local_time"]) == SUMMER


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe/Pariss", "../../etc/passwd", "/etc/localtime"])
def test_tools_current_time_refuses_an_unknown_zone(zone: str) -> None:
    with pytest.raises(ToolError, match="Unknown time zone"):
        run(SUMMER, timezone=zone)


def test_tools_current_time_unknown_zone_is_an_error_result_through_execution() -> None:
    registry = ToolRegistry([current_time_tool(clock=lambda: SUMMER)])
    outcome = execute(registry, "current_time", {"timezone": "Nowhere/Special"})
    assert outcome.is_error
    assert "Unknown time zone 'Nowhere/Special'" in outcome.content


def test_tools_current_time_uses_the_real_clock_by_default() -> None:
    answer = json.loads(current_time_tool().run(CurrentTimeInput(timezone="Asia/Tokyo")).model_dump_json())  # type: ignore[attr-defined]
    parsed = datetime.fromisoformat(answer["local_time"])
    assert abs((parsed - datetime.now(UTC)).total_seconds()) < 5
    assert answer["utc_offset"] == "+09:00"


def test_tools_current_time_works_without_a_system_zone_database() -> None:
    """Lambda's image has no /usr/share/zoneinfo: the tzdata package must be enough."""
    import zoneinfo

    saved = zoneinfo.TZPATH
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    try:
        assert run(SUMMER, timezone="Australia/Adelaide")["utc_offset"] == "+09:30"
    finally:
        zoneinfo.reset_tzpath(to=saved)
        zoneinfo.ZoneInfo.clear_cache()
