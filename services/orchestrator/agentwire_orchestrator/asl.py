"""The run state machine's definition: one ASL file, used by the CDK stack and the local runtime alike."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ASL_PATH = Path(__file__).with_name("state_machine.asl.json")
#: `${EventBusName}` in the ASL; CDK fills it through DefinitionSubstitutions, the local runtime here.
BUS_SUBSTITUTION = "EventBusName"


@cache
def definition_template() -> str:
    return ASL_PATH.read_text()


def render(bus_name: str) -> str:
    """The definition with its substitutions filled in, as Step Functions receives it."""
    return definition_template().replace("${" + BUS_SUBSTITUTION + "}", bus_name)


def states(definition: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every state of the definition, including those nested in Map/Parallel, by name."""
    definition = definition or json.loads(definition_template())
    found: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        found[name] = state
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if nested:
                found.update(states(nested))
    return found
