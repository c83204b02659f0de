"""The tool registry: what a tool is, and the catalog of the tools this service can run.

Registration is data. A tool is a `Tool` value (name, description, pydantic input model, limits,
approval flag, side-effect class, and the function that runs it); a team adds its own by calling
`registry.register(tool)` or, from its own package, by declaring a Python entry point in the
`agentwire.tools` group that points at a `Tool` (or a sequence of them).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import metadata
from typing import Any, Generic, TypeVar

from agentwire_contracts.content import ToolSpec
from pydantic import BaseModel

ENTRY_POINT_GROUP = "agentwire.tools"

I = TypeVar("I", bound=BaseModel)  # noqa: E741 - the conventional name of a type variable for "input"


class SideEffect(StrEnum):
    """What running a tool does to the world; approval, retries and compensation build on this."""

    #: Only reads; running it twice is harmless.
    READ_ONLY = "read_only"
    #: Changes the world, but running it again with the same input changes nothing more.
    IDEMPOTENT = "idempotent"
    #: Changes the world in a way a known compensating action can undo.
    COMPENSATABLE = "compensatable"
    #: Changes the world for good (sends an email, moves money).
    IRREVERSIBLE = "irreversible"

    @property
    def retryable(self) -> bool:
        return self in (SideEffect.READ_ONLY, SideEffect.IDEMPOTENT)


class ToolError(Exception):
    """Raised by a tool for an error the model should see and can act on (bad argument, no such zone).

    The message becomes the `tool_result` content verbatim, so write it for the model.
    """


class ToolUnavailable(Exception):
    """Raised by a tool when its infrastructure (a downstream API, a database) is down: not the
    model's fault, so the call is answered `Tools.Unavailable` and the state machine retries it."""


@dataclass(frozen=True)
class Tool(Generic[I]):
    """One tool: what the model sees of it (name, description, input schema) and how it runs."""

    name: str
    description: str
    input_model: type[I]
    #: Runs the call with validated input. Returns text, a pydantic model, or anything JSON-serializable.
    run: Callable[[I], object]
    timeout_s: float = 10.0
    #: Longer output is truncated (with a note saying so) so a chatty tool cannot blow up the context.
    max_output_chars: int = 16_000
    #: Calls wait for a human approval (irreversible tools need one whatever this says, unless an
    #: agent's policy waives it).
    needs_approval: bool = False
    side_effect: SideEffect = SideEffect.READ_ONLY
    #: The output carries data from outside (a web page, an inbox, a third-party API): it is delimited
    #: as untrusted data in what the model sees. Only tools whose output is computed by their own code
    #: from the validated input (a calculator, a clock, a confirmation) may say False.
    untrusted_output: bool = True
    #: Built once from the fields above; validating it here rejects a bad name at registration time.
    spec: ToolSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"tool {self.name!r}: timeout_s must be positive")
        if self.max_output_chars < 64:
            raise ValueError(f"tool {self.name!r}: max_output_chars must be at least 64")
        spec = ToolSpec(
            name=self.name,
            description=self.description,
            input_schema=canonical_json_schema(self.input_model),
        )
        object.__setattr__(self, "spec", spec)

    @property
    def requires_approval(self) -> bool:
        """By the tool's own declaration: irreversible tools always, others when they ask for it."""
        return self.needs_approval or self.side_effect is SideEffect.IRREVERSIBLE

    @property
    def retryable(self) -> bool:
        """Only calls that are harmless to repeat are retried automatically after a failure."""
        return self.side_effect.retryable

    @property
    def runs_in_parallel(self) -> bool:
        """Only read-only calls run alongside other calls of the same run."""
        return self.side_effect is SideEffect.READ_ONLY


def canonical_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema with keys sorted at every level.

    The catalog is part of the prompt prefix the provider caches, so it must be byte-identical on
    every call and in every process, whatever order a schema generator happened to emit.
    """
    schema = model.model_json_schema(mode="validation")
    canonical: dict[str, Any] = json.loads(json.dumps(schema, sort_keys=True))
    return canonical


class UnknownTool(LookupError):
    """No tool of that name is registered."""

    def __init__(self, names: Sequence[str], available: Iterable[str]):
        self.names = list(names)
        self.available = sorted(available)
        super().__init__(f"unknown tool(s): {', '.join(self.names)}; available: {', '.join(self.available)}")


class DuplicateTool(ValueError):
    """A tool of that name is already registered (two teams picked the same name)."""


class ToolRegistry:
    """Tools by name. Not thread-safe for registration: register at start-up, then only read."""

    def __init__(self, tools: Iterable[Tool[Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool[Any]) -> Tool[Any]:
        """Add a tool; returns it so this can be used where the tool is defined."""
        if tool.name in self._tools:
            raise DuplicateTool(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool[Any]:
        try:
            return self._tools[name]
        except KeyError:
            raise UnknownTool([name], self._tools) from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool[Any]]:
        return iter(self._tools[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._tools)

    def catalog(self, names: Iterable[str]) -> list[ToolSpec]:
        """The specs of the named tools, de-duplicated and sorted by name (a stable prompt prefix)."""
        wanted = sorted(set(names))
        unknown = [name for name in wanted if name not in self._tools]
        if unknown:
            raise UnknownTool(unknown, self._tools)
        return [self._tools[name].spec for name in wanted]

    def approval_required(self, names: Iterable[str]) -> list[str]:
        """Which of the named (registered) tools declare that their calls need a human approval."""
        return sorted({name for name in names if name in self._tools and self._tools[name].requires_approval})


def load_entry_point_tools(
    registry: ToolRegistry, entry_points: Iterable[metadata.EntryPoint] | None = None
) -> list[str]:
    """Register the tools other packages declare in the `agentwire.tools` entry point group.

    An entry point may name a `Tool`, a sequence of tools, or a zero-argument callable returning
    either (for tools that need building). Returns the names registered.
    """
    if entry_points is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    registered: list[str] = []
    for entry_point in entry_points:
        loaded = entry_point.load()
        if not isinstance(loaded, Tool | list | tuple) and callable(loaded):
            loaded = loaded()
        tools = [loaded] if isinstance(loaded, Tool) else list(loaded)
        for tool in tools:
            if not isinstance(tool, Tool):
                raise TypeError(f"entry point {entry_point.name!r} gave {type(tool).__name__}, not a Tool")
            registered.append(registry.register(tool).name)
    return registered


def load_registration_modules(registry: ToolRegistry, modules: Iterable[str]) -> list[str]:
    """Register the tools of registration modules: each defines `register(registry)` or a `TOOLS` sequence."""
    registered: list[str] = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        before = set(registry.names())
        register = getattr(module, "register", None)
        if callable(register):
            register(registry)
        elif isinstance(getattr(module, "TOOLS", None), list | tuple):
            for tool in module.TOOLS:
                registry.register(tool)
        else:
            raise TypeError(f"module {module_name!r} defines neither register(registry) nor TOOLS")
        registered.extend(sorted(set(registry.names()) - before))
    return registered
