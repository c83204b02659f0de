"""The OpenAPI 3.1 document: generated from the routes, committed, served, and complete."""

from __future__ import annotations

import json

from agentwire_gateway import openapi
from agentwire_gateway.routing import RouteTable


def test_the_committed_document_matches_the_routes():
    # Drift: regenerate with `uv run python -m agentwire_gateway.openapi`.
    assert openapi.COMMITTED.read_text() == openapi.render()


def test_it_is_openapi_3_1_and_documents_every_route():
    from agentwire_gateway.api import ROUTES

    document = openapi.document()
    assert document["openapi"].startswith("3.1")
    table: RouteTable = ROUTES
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    for route in table.routes:
        if route.template == "/docs":
            continue
        path = route.template.replace("<", "{").replace(">", "}")
        assert (route.method, path) in documented, route


def test_every_protected_operation_documents_its_problems():
    document = openapi.document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path in ("/healthz", "/openapi.json"):
                assert operation["security"] == []
                continue
            for status in ("401", "404", "422", "429"):
                content = operation["responses"][status]["content"]
                assert "application/problem+json" in content, (method, path, status)


def test_served_at_openapi_json_and_swagger_ui_at_docs(http):
    served = http.get("/openapi.json")
    assert served.status == 200
    assert served.body == json.loads(openapi.render())
    docs = http.get("/docs")
    assert docs.status == 200
    assert "swagger" in str(docs.body).lower()
