"""What the gateway needs deployed: its HTTP API, its read-model projector queue and its table."""

from agentwire_contracts.manifest import ConsumerSpec, HttpSpec, ServiceManifest, TableSpec
from agentwire_contracts.names import DetailType, Source

MANIFEST = ServiceManifest(
    service="gateway",
    source=Source.GATEWAY,
    http=HttpSpec(handler="agentwire_gateway.handler.http_handler"),
    consumers=(
        ConsumerSpec(
            name="projector",
            handler="agentwire_gateway.handler.projector_handler",
            detail_types=(
                DetailType.RUN_STARTED,
                DetailType.RUN_COMPLETED,
                DetailType.RUN_FAILED,
                DetailType.RUN_CANCELLED,
                DetailType.MEMORY_MESSAGE_APPENDED,
                DetailType.TOOL_CATALOG_READY,
                DetailType.TOOL_CATALOG_FAILED,
                DetailType.MEMORY_CONTEXT_READY,
                DetailType.MEMORY_CONTEXT_FAILED,
                DetailType.LLM_COMPLETION_COMPLETED,
                DetailType.LLM_COMPLETION_FAILED,
                DetailType.TOOL_INVOCATION_COMPLETED,
                DetailType.TOOL_INVOCATION_FAILED,
                # The request events: "model turn started", "tool call started" on the live timeline.
                DetailType.LLM_COMPLETION_REQUESTED,
                DetailType.TOOL_INVOCATION_REQUESTED,
                # "tool still running" (each beat of a long tool call).
                DetailType.TOOL_INVOCATION_HEARTBEAT,
                DetailType.RUN_APPROVAL_REQUESTED,
                DetailType.RUN_APPROVAL_DECIDED,
            ),
            function_timeout_s=30,
        ),
    ),
    tables=(TableSpec(name="main", env_var="GATEWAY_TABLE_NAME", ttl_attribute="expires_at"),),
    publishes=(
        DetailType.RUN_REQUESTED,
        DetailType.RUN_CANCEL_REQUESTED,
        DetailType.RUN_APPROVAL_DECIDED,
        DetailType.SESSION_DELETED,
    ),
)
