"""Names shared by every service, the CDK stacks and the local runtime: spelled once, here."""

from __future__ import annotations

from typing import Final

#: Default logical name of the custom EventBridge bus.
DEFAULT_BUS_NAME: Final = "agentwire"
#: Prefix of every physical resource name (queues, tables, rules, state machine).
DEFAULT_PREFIX: Final = "agentwire"

# Environment variables every service understands.
ENV_EVENT_BUS_NAME: Final = "AGENTWIRE_EVENT_BUS_NAME"
ENV_STATE_MACHINE_ARN: Final = "AGENTWIRE_STATE_MACHINE_ARN"
ENV_PAYLOAD_BUCKET: Final = "AGENTWIRE_PAYLOAD_BUCKET"
ENV_STAGE: Final = "AGENTWIRE_STAGE"


class Source:
    """`source` of the events each service produces."""

    GATEWAY: Final = "agentwire.gateway"
    ORCHESTRATOR: Final = "agentwire.orchestrator"
    LLM: Final = "agentwire.llm"
    TOOLS: Final = "agentwire.tools"
    MEMORY: Final = "agentwire.memory"


class AwsEvent:
    """Events AWS services put on the account's default bus (not contracts of ours)."""

    STATES_SOURCE: Final = "aws.states"
    #: Step Functions' execution status change (best-effort delivery; see the orchestrator's watchdog).
    EXECUTION_STATUS_CHANGE: Final = "Step Functions Execution Status Change"
    #: The account's own bus, where AWS services put their events.
    DEFAULT_BUS: Final = "default"


class DetailType:
    """Every detail-type on the bus: `<domain>.<noun>.<verb>.v<MAJOR>`."""

    RUN_REQUESTED: Final = "run.requested.v1"
    RUN_STARTED: Final = "run.started.v1"
    RUN_COMPLETED: Final = "run.completed.v1"
    RUN_FAILED: Final = "run.failed.v1"
    RUN_CANCEL_REQUESTED: Final = "run.cancel.requested.v1"
    RUN_CANCELLED: Final = "run.cancelled.v1"
    RUN_APPROVAL_REQUESTED: Final = "run.approval.requested.v1"
    RUN_APPROVAL_DECIDED: Final = "run.approval.decided.v1"

    MEMORY_CONTEXT_REQUESTED: Final = "memory.context.requested.v1"
    MEMORY_CONTEXT_READY: Final = "memory.context.ready.v1"
    MEMORY_CONTEXT_FAILED: Final = "memory.context.failed.v1"
    MEMORY_MESSAGE_APPENDED: Final = "memory.message.appended.v1"

    LLM_COMPLETION_REQUESTED: Final = "llm.completion.requested.v1"
    LLM_COMPLETION_COMPLETED: Final = "llm.completion.completed.v1"
    LLM_COMPLETION_FAILED: Final = "llm.completion.failed.v1"

    TOOL_CATALOG_REQUESTED: Final = "tool.catalog.requested.v1"
    TOOL_CATALOG_READY: Final = "tool.catalog.ready.v1"
    TOOL_CATALOG_FAILED: Final = "tool.catalog.failed.v1"
    TOOL_INVOCATION_REQUESTED: Final = "tool.invocation.requested.v1"
    TOOL_INVOCATION_COMPLETED: Final = "tool.invocation.completed.v1"
    TOOL_INVOCATION_FAILED: Final = "tool.invocation.failed.v1"
    TOOL_INVOCATION_HEARTBEAT: Final = "tool.invocation.heartbeat.v1"

    SESSION_DELETED: Final = "session.deleted.v1"
