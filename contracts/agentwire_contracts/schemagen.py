"""Generate (or check) the published JSON Schemas and sample events of every detail-type.

python -m agentwire_contracts.schemagen           # write contracts/schemas/*.json
python -m agentwire_contracts.schemagen --check   # exit 1 if the committed files differ
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentwire_contracts.envelope import Event
from agentwire_contracts.events import ALL_EVENTS

CONTRACTS_DIR = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = CONTRACTS_DIR / "schemas"
SAMPLES_DIR = CONTRACTS_DIR / "samples"


def schema_for(detail_type: str) -> dict[str, Any]:
    model = next(m for m in ALL_EVENTS if m.detail_type == detail_type)
    schema = tolerant(Event[model].model_json_schema(mode="validation"))  # type: ignore[valid-type]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://agentwire.dev/schemas/{detail_type}.json"
    schema["title"] = detail_type
    schema["description"] = model.description
    schema["x-source"] = model.source
    schema["x-schema-version"] = model.schema_version
    return schema


def tolerant(node: Any) -> Any:
    """Drop `additionalProperties: false`: the published schema describes what a consumer may rely on,
    and consumers ignore fields a newer producer adds (producers are held strict by the models)."""
    if isinstance(node, dict):
        return {k: tolerant(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [tolerant(v) for v in node]
    return node


def rendered_schemas() -> dict[str, str]:
    return {
        f"{model.detail_type}.json": json.dumps(schema_for(model.detail_type), indent=2, sort_keys=True) + "\n"
        for model in ALL_EVENTS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed schemas differ from the models")
    args = parser.parse_args(argv)
    expected = rendered_schemas()
    if args.check:
        problems = []
        for name, text in expected.items():
            path = SCHEMAS_DIR / name
            if not path.exists() or path.read_text() != text:
                problems.append(name)
        extra = {p.name for p in SCHEMAS_DIR.glob("*.json")} - set(expected)
        problems += sorted(f"{name} (no model)" for name in extra)
        if problems:
            print("schemas differ from the models; run `make schemas`:", *problems, sep="\n  ")
            return 1
        print(f"{len(expected)} schemas match the models")
        return 0
    SCHEMAS_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in expected.items():
        (SCHEMAS_DIR / name).write_text(text)
    print(f"wrote {len(expected)} schemas to {SCHEMAS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
