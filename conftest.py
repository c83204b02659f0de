"""Test-wide setup: unit and contract tests run with sockets disabled; tests that need the emulator
(tests/integration, tests/e2e) or synthesize infrastructure (tests/infra) are allowed the loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

NETWORKED = ("integration", "e2e", "infra")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "tests" in parts:
            kind = parts[parts.index("tests") + 1] if parts.index("tests") + 1 < len(parts) else ""
            if kind in NETWORKED:
                item.add_marker(pytest.mark.enable_socket)
                item.add_marker(getattr(pytest.mark, kind))
                continue
        item.add_marker(pytest.mark.unit)
