"""The HTTP API's OpenAPI 3.1 document, generated from the routes and their pydantic models.

uv run python -m agentwire_gateway.openapi          # rewrite services/gateway/openapi.json
uv run python -m agentwire_gateway.openapi --check  # fail if the committed file drifted
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COMMITTED = Path(__file__).resolve().parent.parent / "openapi.json"


def document() -> dict[str, Any]:
    from agentwire_gateway.api import openapi_schema

    return openapi_schema()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not COMMITTED.exists() or COMMITTED.read_text() != text:
            print(f"{COMMITTED} is out of date: run python -m agentwire_gateway.openapi", file=sys.stderr)
            return 1
        return 0
    COMMITTED.write_text(text)
    print(f"wrote {COMMITTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
