"""The published contract: committed schemas match the models, samples validate, changes stay compatible."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from agentwire_contracts.compat import breaking_changes, version_tuple
from agentwire_contracts.events import ALL_EVENTS, REGISTRY
from agentwire_contracts.parsing import parse_eventbridge
from agentwire_contracts.schemagen import SAMPLES_DIR, SCHEMAS_DIR, rendered_schemas
from jsonschema import Draft202012Validator

RELEASED_DIR = SCHEMAS_DIR.parent / "released"
DETAIL_TYPES = sorted(REGISTRY)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_committed_schemas_equal_the_models() -> None:
    expected = rendered_schemas()
    committed = {path.name: path.read_text() for path in SCHEMAS_DIR.glob("*.json")}
    assert committed.keys() == expected.keys(), "run `make schemas`"
    stale = [name for name, text in expected.items() if committed[name] != text]
    assert not stale, f"schemas differ from the models, run `make schemas`: {stale}"


def test_every_detail_type_follows_the_naming_rule() -> None:
    for model in ALL_EVENTS:
        domain, *rest = model.detail_type.split(".")
        assert rest[-1].startswith("v") and rest[-1][1:].isdigit(), model.detail_type
        assert model.source.startswith("agentwire."), model.source
        assert domain in {"run", "memory", "llm", "tool", "session"}


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_sample_validates_against_the_published_schema(detail_type: str) -> None:
    sample = load(SAMPLES_DIR / f"{detail_type}.json")
    schema = load(SCHEMAS_DIR / f"{detail_type}.json")
    assert sample["detail-type"] == detail_type
    assert sample["source"] == REGISTRY[detail_type].source
    errors = sorted(Draft202012Validator(schema).iter_errors(sample["detail"]), key=str)
    assert not errors, [e.message for e in errors]
    event = parse_eventbridge(sample)
    assert isinstance(event.data, REGISTRY[detail_type])


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_schema_rejects_a_detail_without_its_metadata(detail_type: str) -> None:
    schema = load(SCHEMAS_DIR / f"{detail_type}.json")
    detail = load(SAMPLES_DIR / f"{detail_type}.json")["detail"]
    del detail["metadata"]["tenant_id"]
    assert list(Draft202012Validator(schema).iter_errors(detail))


@pytest.mark.parametrize("detail_type", DETAIL_TYPES)
def test_current_schema_is_backward_compatible_with_the_released_one(detail_type: str) -> None:
    released_path = RELEASED_DIR / f"{detail_type}.json"
    assert released_path.exists(), f"{detail_type} was never released: copy its schema to contracts/released/"
    released, current = load(released_path), load(SCHEMAS_DIR / f"{detail_type}.json")
    assert not breaking_changes(released, current), (
        f"{detail_type} changed incompatibly; publish a new major version (.v2) instead"
    )
    if current != released:
        assert version_tuple(current["x-schema-version"]) > version_tuple(released["x-schema-version"]), (
            f"{detail_type} changed without a MINOR bump of schema_version"
        )


class TestCompatibilityChecker:
    """The checker itself must catch what it claims to catch."""

    base = json.loads((SCHEMAS_DIR / "llm.completion.requested.v1.json").read_text())

    def data_schema(self, schema: dict) -> dict:
        ref = schema["properties"]["data"]["$ref"].removeprefix("#/$defs/")
        return schema["$defs"][ref]

    def test_identical_is_compatible(self) -> None:
        assert breaking_changes(self.base, copy.deepcopy(self.base)) == []

    def test_adding_an_optional_field_is_compatible(self) -> None:
        new = copy.deepcopy(self.base)
        self.data_schema(new)["properties"]["top_p"] = {"type": "number"}
        assert breaking_changes(self.base, new) == []

    def test_removing_a_field_breaks(self) -> None:
        new = copy.deepcopy(self.base)
        del self.data_schema(new)["properties"]["model"]
        assert any("model: removed" in p for p in breaking_changes(self.base, new))

    def test_changing_a_type_breaks(self) -> None:
        new = copy.deepcopy(self.base)
        self.data_schema(new)["properties"]["step"] = {"type": "string"}
        assert any("step: type changed" in p for p in breaking_changes(self.base, new))

    def test_making_a_field_required_breaks(self) -> None:
        new = copy.deepcopy(self.base)
        self.data_schema(new).setdefault("required", []).append("temperature")
        assert any("temperature: became required" in p for p in breaking_changes(self.base, new))

    def test_nested_metadata_change_breaks(self) -> None:
        new = copy.deepcopy(self.base)
        del new["$defs"]["Metadata"]["properties"]["task_token"]
        assert any("metadata.task_token: removed" in p for p in breaking_changes(self.base, new))
