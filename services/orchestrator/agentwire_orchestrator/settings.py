"""The orchestrator's configuration, read once from the environment."""

from __future__ import annotations

from functools import cache

from agentwire_contracts.names import DEFAULT_BUS_NAME, ENV_EVENT_BUS_NAME, ENV_STATE_MACHINE_ARN
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentwire_orchestrator.resume import DEFAULT_MAX_OUTPUT_BYTES
from agentwire_orchestrator.run_input import StepTimeouts


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    #: The run state machine. Only the starter needs it (resume works from task tokens alone).
    state_machine_arn: str | None = Field(default=None, validation_alias=ENV_STATE_MACHINE_ARN)
    event_bus_name: str = Field(default=DEFAULT_BUS_NAME, validation_alias=ENV_EVENT_BUS_NAME)
    #: Largest answer passed to SendTaskSuccess; larger answers fail the task with Run.OutputTooLarge.
    max_task_output_bytes: int = Field(
        default=DEFAULT_MAX_OUTPUT_BYTES,
        ge=1024,
        le=256 * 1024,
        validation_alias="AGENTWIRE_ORCHESTRATOR_MAX_TASK_OUTPUT_BYTES",
    )

    #: How long each waiting step waits for its worker before States.Timeout (seconds).
    catalog_timeout_s: int = Field(default=60, ge=1, validation_alias="AGENTWIRE_ORCHESTRATOR_CATALOG_TIMEOUT_S")
    memory_timeout_s: int = Field(default=60, ge=1, validation_alias="AGENTWIRE_ORCHESTRATOR_MEMORY_TIMEOUT_S")
    model_timeout_s: int = Field(default=600, ge=1, validation_alias="AGENTWIRE_ORCHESTRATOR_MODEL_TIMEOUT_S")
    tool_timeout_s: int = Field(default=300, ge=2, validation_alias="AGENTWIRE_ORCHESTRATOR_TOOL_TIMEOUT_S")
    tool_heartbeat_s: int = Field(default=90, ge=1, validation_alias="AGENTWIRE_ORCHESTRATOR_TOOL_HEARTBEAT_S")

    def step_timeouts(self) -> StepTimeouts:
        return StepTimeouts(
            catalog_s=self.catalog_timeout_s,
            memory_s=self.memory_timeout_s,
            model_s=self.model_timeout_s,
            tool_s=self.tool_timeout_s,
            tool_heartbeat_s=self.tool_heartbeat_s,
        )

    @field_validator("state_machine_arn", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


@cache
def get_settings() -> OrchestratorSettings:
    return OrchestratorSettings()
