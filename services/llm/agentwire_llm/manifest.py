"""What the llm service needs deployed: its completion queue and tables."""

from agentwire_contracts.manifest import ConsumerSpec, ServiceManifest, TableSpec
from agentwire_contracts.names import DetailType, Source

MANIFEST = ServiceManifest(
    service="llm",
    source=Source.LLM,
    consumers=(
        ConsumerSpec(
            name="completions",
            handler="agentwire_llm.handler.lambda_handler",
            detail_types=(DetailType.LLM_COMPLETION_REQUESTED,),
            # A model call can take minutes; the queue's visibility timeout follows (6x).
            function_timeout_s=300,
            memory_mb=1024,
            batch_size=1,
            # Protects the providers' rate limits from a burst of runs.
            reserved_concurrency=50,
        ),
    ),
    tables=(
        TableSpec(name="state", env_var="LLM_STATE_TABLE_NAME", ttl_attribute="expires_at"),
        TableSpec(
            name="idempotency",
            env_var="LLM_IDEMPOTENCY_TABLE_NAME",
            partition_key="id",
            sort_key=None,
            ttl_attribute="expiration",
        ),
    ),
    publishes=(DetailType.LLM_COMPLETION_COMPLETED, DetailType.LLM_COMPLETION_FAILED),
    # Contexts too large for an event arrive as a claim check (`messages_ref`).
    uses_payload_bucket=True,
)
