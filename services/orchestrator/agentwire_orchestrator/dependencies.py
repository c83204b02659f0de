"""What the handlers need, built once per Lambda execution environment (and replaceable in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import boto3
from agentwire_contracts.publish import EventPublisher

from agentwire_orchestrator.adapters.stepfunctions import Boto3StepFunctions
from agentwire_orchestrator.agents import AgentCatalog, builtin_catalog
from agentwire_orchestrator.ports import Publisher, StepFunctions
from agentwire_orchestrator.run_input import StepTimeouts
from agentwire_orchestrator.settings import OrchestratorSettings, get_settings
from agentwire_orchestrator.starter import Starter


@dataclass
class Dependencies:
    stepfunctions: StepFunctions
    publisher: Publisher
    agents: AgentCatalog
    max_task_output_bytes: int
    timeouts: StepTimeouts = field(default_factory=StepTimeouts)
    #: The run state machine: the watchdog ignores status changes of the account's other machines.
    state_machine_arn: str | None = None

    def starter(self) -> Starter:
        return Starter(
            stepfunctions=self.stepfunctions, publisher=self.publisher, agents=self.agents, timeouts=self.timeouts
        )


def build_dependencies(settings: OrchestratorSettings) -> Dependencies:
    # Clients are made here, not at import, so AWS_ENDPOINT_URL (local mode) and tests take effect.
    return Dependencies(
        stepfunctions=Boto3StepFunctions(boto3.client("stepfunctions"), settings.state_machine_arn),
        publisher=EventPublisher(client=boto3.client("events"), bus_name=settings.event_bus_name),
        agents=builtin_catalog(),
        max_task_output_bytes=settings.max_task_output_bytes,
        timeouts=settings.step_timeouts(),
        state_machine_arn=settings.state_machine_arn,
    )


_dependencies: Dependencies | None = None


def get_dependencies() -> Dependencies:
    global _dependencies  # noqa: PLW0603 - one lazily built set per execution environment
    if _dependencies is None:
        _dependencies = build_dependencies(get_settings())
    return _dependencies


def set_dependencies(dependencies: Dependencies | None) -> None:
    """Replace (or with None, forget) the dependencies the handlers use."""
    global _dependencies  # noqa: PLW0603
    _dependencies = dependencies
