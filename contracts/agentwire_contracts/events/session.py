"""Session events."""

from __future__ import annotations

from agentwire_contracts.envelope import EventData
from agentwire_contracts.events.run import SESSION_ID
from agentwire_contracts.names import DetailType, Source


class SessionDeleted(EventData):
    detail_type = DetailType.SESSION_DELETED
    source = Source.GATEWAY
    description = "The session was deleted: every service removes what it keeps of it."

    session_id: str = SESSION_ID
