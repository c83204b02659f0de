"""What the orchestrator needs deployed: the state machine, its starter and its resume consumer."""

from agentwire_contracts.manifest import AwsEventsSpec, ConsumerSpec, ServiceManifest
from agentwire_contracts.names import AwsEvent, DetailType, Source

from agentwire_orchestrator.watchdog import WATCHED_STATUSES

#: Every answer event that carries a task token back to a waiting state.
ANSWER_DETAIL_TYPES = (
    DetailType.TOOL_CATALOG_READY,
    DetailType.TOOL_CATALOG_FAILED,
    DetailType.MEMORY_CONTEXT_READY,
    DetailType.MEMORY_CONTEXT_FAILED,
    DetailType.LLM_COMPLETION_COMPLETED,
    DetailType.LLM_COMPLETION_FAILED,
    DetailType.TOOL_INVOCATION_COMPLETED,
    DetailType.TOOL_INVOCATION_FAILED,
    DetailType.RUN_APPROVAL_DECIDED,
)
#: Beats of a worker still on a step: SendTaskHeartbeat with their token (the step keeps waiting).
HEARTBEAT_DETAIL_TYPES = (DetailType.TOOL_INVOCATION_HEARTBEAT,)

MANIFEST = ServiceManifest(
    service="orchestrator",
    source=Source.ORCHESTRATOR,
    consumers=(
        ConsumerSpec(
            name="starter",
            handler="agentwire_orchestrator.handler.starter_handler",
            detail_types=(DetailType.RUN_REQUESTED, DetailType.RUN_CANCEL_REQUESTED),
            function_timeout_s=30,
        ),
        ConsumerSpec(
            name="resume",
            handler="agentwire_orchestrator.handler.resume_handler",
            detail_types=(*ANSWER_DETAIL_TYPES, *HEARTBEAT_DETAIL_TYPES),
            function_timeout_s=30,
        ),
        # Step Functions' own report of executions that ended badly (default bus): a run whose ending was
        # lost still gets its run.failed (see agentwire_orchestrator.watchdog).
        ConsumerSpec(
            name="watchdog",
            handler="agentwire_orchestrator.handler.watchdog_handler",
            aws_events=AwsEventsSpec(
                source=AwsEvent.STATES_SOURCE,
                detail_types=(AwsEvent.EXECUTION_STATUS_CHANGE,),
                detail={"status": list(WATCHED_STATUSES)},
            ),
            function_timeout_s=30,
        ),
    ),
    publishes=(
        DetailType.RUN_STARTED,
        DetailType.RUN_COMPLETED,
        DetailType.RUN_FAILED,
        DetailType.RUN_CANCELLED,
        DetailType.TOOL_CATALOG_REQUESTED,
        DetailType.MEMORY_CONTEXT_REQUESTED,
        DetailType.LLM_COMPLETION_REQUESTED,
        DetailType.TOOL_INVOCATION_REQUESTED,
        DetailType.RUN_APPROVAL_REQUESTED,
    ),
    owns_state_machine=True,
)
