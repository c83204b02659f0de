"""README.md's HTTP API examples, executed as written against the local stack (they read
`.agentwire/local.json`; this test writes one with the fixture's gateway and key)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("stack")]

README = Path(__file__).resolve().parents[2] / "README.md"


def http_api_example() -> str:
    text = README.read_text()
    section = text[text.index("## The HTTP API (v1)") :]
    section = section[: section.index("\n## ", 1)]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "the HTTP API section has no bash example"
    return match.group(1)


def test_the_readme_curl_examples_run(local_stack: Any, tmp_path: Path) -> None:
    # Never skipped: a README whose examples went untested would pass CI silently.
    missing = [tool for tool in ("curl", "jq") if not shutil.which(tool)]
    assert not missing, f"the README's examples use {' and '.join(missing)}: install them (apt-get install curl jq)"
    (tmp_path / ".agentwire").mkdir()
    (tmp_path / ".agentwire" / "local.json").write_text(
        json.dumps({"gateway_url": local_stack.gateway_url, "api_key": local_stack.api_key})
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", http_api_example()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"status":"ok"' in out.replace(" ", "")
    assert "run.started" in out and "tool.started" in out and "run.completed" in out
    assert "7006652" in out
    assert "event: run.completed" in out
    assert out.strip().endswith("204")
