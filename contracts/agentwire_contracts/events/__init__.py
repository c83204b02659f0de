"""The v1 events of the run flow, grouped by domain, and the registry of every detail-type."""

from __future__ import annotations

from agentwire_contracts.envelope import EventData
from agentwire_contracts.events.llm import LlmCompletionCompleted, LlmCompletionFailed, LlmCompletionRequested
from agentwire_contracts.events.memory import (
    MemoryContextFailed,
    MemoryContextReady,
    MemoryContextRequested,
    MemoryMessageAppended,
)
from agentwire_contracts.events.run import (
    RunApprovalDecided,
    RunApprovalRequested,
    RunCancelled,
    RunCancelRequested,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
)
from agentwire_contracts.events.session import SessionDeleted
from agentwire_contracts.events.tool import (
    ToolCatalogFailed,
    ToolCatalogReady,
    ToolCatalogRequested,
    ToolInvocationCompleted,
    ToolInvocationFailed,
    ToolInvocationHeartbeat,
    ToolInvocationRequested,
)

ALL_EVENTS: tuple[type[EventData], ...] = (
    RunRequested,
    RunStarted,
    RunCompleted,
    RunFailed,
    RunCancelRequested,
    RunCancelled,
    RunApprovalRequested,
    RunApprovalDecided,
    MemoryContextRequested,
    MemoryContextReady,
    MemoryContextFailed,
    MemoryMessageAppended,
    LlmCompletionRequested,
    LlmCompletionCompleted,
    LlmCompletionFailed,
    ToolCatalogRequested,
    ToolCatalogReady,
    ToolCatalogFailed,
    ToolInvocationRequested,
    ToolInvocationCompleted,
    ToolInvocationFailed,
    ToolInvocationHeartbeat,
    SessionDeleted,
)

#: detail-type → data model. One entry per published detail-type.
REGISTRY: dict[str, type[EventData]] = {model.detail_type: model for model in ALL_EVENTS}

__all__ = [
    "ALL_EVENTS",
    "REGISTRY",
    "LlmCompletionCompleted",
    "LlmCompletionFailed",
    "LlmCompletionRequested",
    "MemoryContextFailed",
    "MemoryContextReady",
    "MemoryContextRequested",
    "MemoryMessageAppended",
    "RunApprovalDecided",
    "RunApprovalRequested",
    "RunCancelRequested",
    "RunCancelled",
    "RunCompleted",
    "RunFailed",
    "RunRequested",
    "RunStarted",
    "SessionDeleted",
    "ToolCatalogFailed",
    "ToolCatalogReady",
    "ToolCatalogRequested",
    "ToolInvocationCompleted",
    "ToolInvocationFailed",
    "ToolInvocationHeartbeat",
    "ToolInvocationRequested",
]
