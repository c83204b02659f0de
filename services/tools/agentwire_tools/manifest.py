"""What the tools service needs deployed: its invocation queue, idempotency, audit and state tables."""

from agentwire_contracts.manifest import ConsumerSpec, ServiceManifest, TableSpec
from agentwire_contracts.names import DetailType, Source
from agentwire_contracts.remote_tools import REMOTE_TOOLS

MANIFEST = ServiceManifest(
    service="tools",
    source=Source.TOOLS,
    consumers=(
        ConsumerSpec(
            name="invocations",
            handler="agentwire_tools.handler.lambda_handler",
            detail_types=(DetailType.TOOL_CATALOG_REQUESTED, DetailType.TOOL_INVOCATION_REQUESTED),
            # Tools offered by other services (e.g. memory's remember/forget) are routed to them instead.
            excluded_tool_names=tuple(sorted(REMOTE_TOOLS)),
            function_timeout_s=60,
            batch_size=5,
        ),
    ),
    tables=(
        TableSpec(
            name="idempotency",
            env_var="TOOLS_IDEMPOTENCY_TABLE_NAME",
            partition_key="id",
            sort_key=None,
            ttl_attribute="expiration",
        ),
        # One item per authorization decision (pk `<tenant>#<run_id>`, sk `call#<tool_call_id>#<at>`).
        TableSpec(name="audit", env_var="TOOLS_AUDIT_TABLE_NAME"),
        # Run leases (calls that change the world run one at a time), attempt marks (such calls act at most
        # once) and the notification outbox.
        TableSpec(name="state", env_var="TOOLS_STATE_TABLE_NAME", ttl_attribute="expires_at"),
    ),
    publishes=(
        DetailType.TOOL_CATALOG_READY,
        DetailType.TOOL_CATALOG_FAILED,
        DetailType.TOOL_INVOCATION_COMPLETED,
        DetailType.TOOL_INVOCATION_FAILED,
        DetailType.TOOL_INVOCATION_HEARTBEAT,
    ),
    # Output over a tool's cap is kept whole in the payload bucket (claim check).
    uses_payload_bucket=True,
)
