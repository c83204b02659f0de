"""What the memory service needs deployed: its context queue, its tools queue and its single table."""

from agentwire_contracts.manifest import ConsumerSpec, ServiceManifest, TableSpec
from agentwire_contracts.names import DetailType, Source
from agentwire_contracts.remote_tools import tools_served_by

MANIFEST = ServiceManifest(
    service="memory",
    source=Source.MEMORY,
    consumers=(
        ConsumerSpec(
            name="context",
            handler="agentwire_memory.handler.lambda_handler",
            # run.failed: a failed run is recorded beside the session's transcript (audit, export); so is the
            # claim check of a capped tool result (tool.invocation.completed with result_ref; the rest are
            # acknowledged unread).
            detail_types=(
                DetailType.MEMORY_CONTEXT_REQUESTED,
                DetailType.SESSION_DELETED,
                DetailType.RUN_FAILED,
                DetailType.TOOL_INVOCATION_COMPLETED,
            ),
            function_timeout_s=30,
        ),
        # The tools memory offers (remember, forget): the rule matches detail.data.tool_call.name, so only
        # their invocations arrive here, and the tools service's rule excludes them (see README).
        ConsumerSpec(
            name="tools",
            handler="agentwire_memory.handler.lambda_handler",
            detail_types=(DetailType.TOOL_INVOCATION_REQUESTED,),
            tool_names=tools_served_by("memory"),
            function_timeout_s=30,
        ),
    ),
    tables=(TableSpec(name="main", env_var="MEMORY_TABLE_NAME", ttl_attribute="expires_at"),),
    publishes=(
        DetailType.MEMORY_CONTEXT_READY,
        DetailType.MEMORY_CONTEXT_FAILED,
        DetailType.MEMORY_MESSAGE_APPENDED,
        DetailType.TOOL_INVOCATION_COMPLETED,
        DetailType.TOOL_INVOCATION_FAILED,
    ),
    uses_payload_bucket=True,
)
