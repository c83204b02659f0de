"""Agent definitions: an agent is data — versioned files validated by `AgentDefinition`.

Every service that needs an agent (the orchestrator for its model, limits and tools; the llm service
for fallbacks and the response-cache opt-in; the tools service for its approval rules and policy)
loads the same files: from `AGENTWIRE_AGENTS_DIR` when set, else the defaults shipped in this package.
A session pins the agent version it started with.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_AGENTS_DIR = "AGENTWIRE_AGENTS_DIR"
DEFAULTS_DIR = Path(__file__).resolve().parent / "agent_defaults"
DEFAULT_AGENT = "assistant"
AGENT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentLimits(Frozen):
    """Bounds of one run; reaching one ends the run with a clear reason code."""

    max_model_turns: int = Field(default=8, ge=1, le=100)
    max_tool_calls: int = Field(default=16, ge=0, le=1000)
    #: Input + output tokens over all model calls of the run.
    max_total_tokens: int = Field(default=200_000, ge=1)
    max_cost_usd: float = Field(default=1.0, ge=0)
    max_wall_time_s: int = Field(default=3600, ge=1, le=31_536_000)

    @property
    def max_cost_microusd(self) -> int:
        return round(self.max_cost_usd * 1_000_000)


class ApprovalPolicy(Frozen):
    """Which tool calls wait for a human, and for how long (rejected or timed out → the model is told)."""

    #: Tools that need approval by this agent's policy, beyond those that declare it themselves.
    require_for: tuple[str, ...] = ()
    #: Tools the agent may call without approval even though they declare it (an explicit waiver).
    waive_for: tuple[str, ...] = ()
    timeout_s: int = Field(default=86_400, ge=1, le=31_536_000)


class ContextPolicy(Frozen):
    #: The token budget of the context window memory assembles (system prompt, facts, summary, turns).
    max_context_tokens: int = Field(default=100_000, ge=256)
    #: The context window of the agent's model and of every fallback model (the smallest of them):
    #: memory never assembles more than this minus `max_tokens` (the answer's room) and the tool specs.
    model_context_tokens: int = Field(default=200_000, ge=1024, le=10_000_000)
    #: Summarize older turns once the transcript beyond the window exceeds this many tokens.
    compaction_threshold_tokens: int = Field(default=20_000, ge=256)


class AgentDefinition(Frozen):
    name: str = Field(pattern=AGENT_NAME_PATTERN)
    version: str = Field(default="1", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    description: str = Field(default="", max_length=1024)
    #: A model name the llm service understands (an alias or a provider model id).
    model: str = Field(min_length=1, max_length=256)
    #: Tried in order when the model is overloaded or unavailable.
    fallback_models: tuple[str, ...] = ()
    system: str = Field(default="", max_length=200_000)
    #: Tool names offered to the model.
    tools: tuple[str, ...] = Field(default=(), max_length=128)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    #: Opt-in: answer deterministic (temperature 0) requests from the response cache.
    cache_responses: bool = False
    tool_concurrency: int = Field(default=4, ge=1, le=40)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    context: ContextPolicy = Field(default_factory=ContextPolicy)

    @field_validator("tools", "fallback_models")
    @classmethod
    def _unique(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            raise ValueError(f"listed twice: {duplicates}")
        return values

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, tools: tuple[str, ...]) -> tuple[str, ...]:
        for tool in tools:
            if not re.fullmatch(TOOL_NAME_PATTERN, tool):
                raise ValueError(f"invalid tool name {tool!r}")
        return tools

    @model_validator(mode="after")
    def _approval_names_offered_tools(self) -> AgentDefinition:
        unknown = sorted(set(self.approval.require_for) - set(self.tools))
        if unknown:
            raise ValueError(f"approval.require_for names tools the agent does not offer: {unknown}")
        return self

    @model_validator(mode="after")
    def _answer_fits_the_model(self) -> AgentDefinition:
        # An agent whose answer alone fills its model's window could never make a call; say so at load.
        if self.max_tokens >= self.context.model_context_tokens:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) leaves no room for a context in the model's window "
                f"(context.model_context_tokens = {self.context.model_context_tokens})"
            )
        return self

    @property
    def ref(self) -> str:
        """`name@version`, what a session pins."""
        return f"{self.name}@{self.version}"


class InvalidAgentDefinition(ValueError):
    """An agent file does not validate."""


class UnknownAgent(LookupError):
    code = "Run.UnknownAgent"


class AgentCatalog:
    """The agents a deployment offers: every version of each, by name."""

    def __init__(self, agents: Iterable[AgentDefinition]):
        self._agents: dict[tuple[str, str], AgentDefinition] = {}
        self._latest: dict[str, AgentDefinition] = {}
        for agent in agents:
            key = (agent.name, agent.version)
            if key in self._agents:
                raise InvalidAgentDefinition(f"agent {agent.ref} is defined twice")
            self._agents[key] = agent
            current = self._latest.get(agent.name)
            if current is None or _version_key(agent.version) > _version_key(current.version):
                self._latest[agent.name] = agent

    def get(self, name: str, version: str | None = None) -> AgentDefinition:
        agent = self._latest.get(name) if version is None else self._agents.get((name, version))
        if agent is None:
            raise UnknownAgent(f"no agent {name!r}" + (f" version {version!r}" if version else ""))
        return agent

    def get_ref(self, ref: str) -> AgentDefinition:
        """The agent a reference names: `name` (the latest version) or `name@version` (that one, as a
        session pins it); UnknownAgent when there is none."""
        name, version = split_ref(ref)
        return self.get(name, version)

    def names(self) -> list[str]:
        return sorted(self._latest)

    def versions(self, name: str) -> list[str]:
        return sorted((v for (n, v) in self._agents if n == name), key=_version_key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._agents.values(), key=lambda a: (a.name, _version_key(a.version))))


def split_ref(ref: str) -> tuple[str, str | None]:
    """`assistant` → (assistant, None: the latest); `assistant@2` → (assistant, "2")."""
    name, _, version = ref.partition("@")
    return name, (version or None)


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[._-]", version))


def parse_agent_file(path: Path) -> AgentDefinition:
    try:
        raw = json.loads(path.read_text())
        return AgentDefinition.model_validate(raw)
    except (json.JSONDecodeError, ValidationError) as exc:
        raise InvalidAgentDefinition(f"{path.name}: {exc}") from exc


def load_catalog(directory: Path | None = None) -> AgentCatalog:
    """Every `*.json` agent file in the directory (`AGENTWIRE_AGENTS_DIR`, else the packaged defaults)."""
    directory = directory or Path(os.environ.get(ENV_AGENTS_DIR) or DEFAULTS_DIR)
    return AgentCatalog(parse_agent_file(path) for path in sorted(directory.glob("*.json")))
