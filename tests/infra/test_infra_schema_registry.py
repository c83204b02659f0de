"""The schema registry holds a draft 4 rendering of every contract schema that accepts what the 2020-12
original accepts, and rejects what it rejects.

AWS::EventSchemas::Schema knows only `OpenApi3` and `JSONSchemaDraft4`; the contracts are 2020-12.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentwire_infra.cdk.bus_stack import DRAFT4, REGISTRY_SCHEMA_TYPE, draft4, registry_content, schema_files
from agentwire_infra.cdk.settings import SCHEMAS_DIR
from jsonschema import Draft4Validator, Draft202012Validator

SAMPLES_DIR = SCHEMAS_DIR.parent / "samples"
SCHEMAS = schema_files()
#: Keywords that mean something else (or nothing) in draft 4.
NOT_DRAFT4 = {"$defs", "$id", "const"}


def _keywords(schema: Any) -> Iterator[str]:
    if isinstance(schema, list):
        for item in schema:
            yield from _keywords(item)
    elif isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            if key in ("properties", "patternProperties", "definitions", "$defs"):
                for sub in value.values():
                    yield from _keywords(sub)
            elif key != "enum" and key != "default":
                yield from _keywords(value)


def _mutants(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(where, replacement) pairs: every leaf and object swapped for a wrong type or an unknown value,
    every object key dropped and an unknown one added."""
    if isinstance(value, dict):
        yield path, "not-an-object"
        yield path, {**value, "unexpected_key_zz": 1}
        for key in value:
            yield path, {k: v for k, v in value.items() if k != key}
            yield from _mutants(value[key], (*path, key))
    elif isinstance(value, list):
        yield path, {"not": "a list"}
        yield path, []
        for index, item in enumerate(value):
            yield from _mutants(item, (*path, index))
    else:
        for replacement in ("zz-unknown-value", "", 12345, -1, None, True, [value]):
            if replacement != value or type(replacement) is not type(value):
                yield path, replacement


def _replace(document: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    if not path:
        return replacement
    mutated = copy.deepcopy(document)
    node = mutated
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = replacement
    return mutated


@pytest.mark.parametrize("path", SCHEMAS, ids=[p.stem for p in SCHEMAS])
def test_the_rendering_is_a_valid_draft_4_schema(path: Path) -> None:
    rendered = draft4(json.loads(path.read_text()))
    Draft4Validator.check_schema(rendered)
    assert rendered["$schema"] == DRAFT4
    assert not NOT_DRAFT4 & set(_keywords(rendered)), path.name
    assert "#/$defs/" not in json.dumps(rendered)


@pytest.mark.parametrize("path", SCHEMAS, ids=[p.stem for p in SCHEMAS])
def test_the_rendering_accepts_and_rejects_what_the_contract_does(path: Path) -> None:
    original = json.loads(path.read_text())
    modern, old = Draft202012Validator(original), Draft4Validator(draft4(original))
    sample = json.loads((SAMPLES_DIR / path.name).read_text())["detail"]
    assert modern.is_valid(sample) and old.is_valid(sample), path.name
    rejected = 0
    for where, replacement in _mutants(sample):
        mutant = _replace(sample, where, replacement)
        verdict = modern.is_valid(mutant)
        assert old.is_valid(mutant) == verdict, (path.name, where, replacement)
        rejected += not verdict
    assert rejected > 20, path.name  # the mutations do reach the schema's assertions


def test_a_keyword_draft_4_cannot_express_is_refused() -> None:
    with pytest.raises(ValueError, match="prefixItems"):
        draft4({"type": "array", "prefixItems": [{"type": "string"}]})


def test_the_registry_holds_the_renderings(synthesized) -> None:
    registered = {
        r["Properties"]["SchemaName"]: r["Properties"]
        for r in synthesized.resources("bus", "AWS::EventSchemas::Schema").values()
    }
    assert set(registered) == {p.stem for p in SCHEMAS}
    for path in SCHEMAS:
        assert registered[path.stem]["Type"] == REGISTRY_SCHEMA_TYPE == "JSONSchemaDraft4"
        assert registered[path.stem]["Content"] == registry_content(path)
        assert json.loads(registered[path.stem]["Content"])["$schema"] == DRAFT4
