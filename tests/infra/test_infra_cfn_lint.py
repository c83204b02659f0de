"""cfn-lint (its Python API) on every synthesized template: no errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.api import ManualArgs, lint_file

STACK_COMPONENTS = ("bus", "gateway", "orchestrator", "llm", "tools", "memory")


@pytest.mark.parametrize("component", STACK_COMPONENTS)
def test_cfn_lint_has_no_errors(synthesized, component):
    stack = synthesized.app.bus if component == "bus" else synthesized.app.services[component]
    path = Path(synthesized.out) / stack.template_file
    matches = lint_file(path, config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    errors = [f"{m.rule.id} {m.message} ({m.linenumber})" for m in matches if m.rule.severity == "error"]
    assert errors == []
