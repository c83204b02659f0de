"""Services meet only through contracts/: no service imports another service's code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from agentwire_contracts.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def forbidden_imports(service: str) -> list[str]:
    others = {f"agentwire_{name}" for name in SERVICES if name != service} | {"agentwire_infra"}
    problems = []
    for path in sorted((ROOT / "services" / service).rglob("*.py")):
        for module in sorted(imported_modules(path) & others):
            problems.append(f"{path.relative_to(ROOT)} imports {module}")
    return problems


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service(service: str) -> None:
    assert (ROOT / "services" / service / f"agentwire_{service}").is_dir()
    assert forbidden_imports(service) == []


@pytest.mark.parametrize("service", SERVICES)
def test_service_package_depends_only_on_contracts(service: str) -> None:
    pyproject = (ROOT / "services" / service / "pyproject.toml").read_text()
    for other in SERVICES:
        if other != service:
            assert f'"agentwire-{other}' not in pyproject


def test_the_check_catches_a_cross_service_import(tmp_path: Path) -> None:
    offender = tmp_path / "bad.py"
    offender.write_text("from agentwire_memory.adapters import x\nimport agentwire_contracts\n")
    assert imported_modules(offender) == {"agentwire_memory", "agentwire_contracts"}
