"""`agentwire agents list|show|validate` on the packaged agents and on files a team writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agentwire_infra.commands.agents import validate_path


def agentwire(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agentwire_infra.cli", "agents", *args]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)


def test_tools_agents_cli_lists_shows_and_validates_the_packaged_agents() -> None:
    listed = json.loads(agentwire("list", "--json").stdout)
    assert {row["agent"] for row in listed} >= {"assistant@1", "ops@1"}
    ops = json.loads(agentwire("show", "ops@1").stdout)
    assert ops["approval"]["require_for"] == ["send_notification"] and "send_notification" in ops["tools"]
    assert agentwire("show", "nobody").returncode == 1
    assert agentwire("validate").returncode == 0


def test_tools_agents_validate_reports_each_problem(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps({"name": "good", "model": "m", "tools": ["calculator"]}))
    (tmp_path / "twice.json").write_text(json.dumps({"name": "good", "model": "m"}))
    (tmp_path / "unknown.json").write_text(json.dumps({"name": "x", "model": "m", "tools": ["launch_missiles"]}))
    (tmp_path / "broken.json").write_text("{not json")
    problems = validate_path(tmp_path, {"calculator"})
    assert any("broken.json" in p for p in problems)
    assert any("defined twice" in p for p in problems)
    assert any("launch_missiles" in p for p in problems)
    assert validate_path(tmp_path / "good.json", {"calculator"}) == []
    result = agentwire("validate", str(tmp_path))
    assert result.returncode == 1 and "invalid:" in result.stderr
