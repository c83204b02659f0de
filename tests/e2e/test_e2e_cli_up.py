"""`agentwire up` as a newcomer runs it (its own process and its own stack): it prints the gateway and a
dev key and writes `local.json`; `agentwire tenants` and `agentwire keys` work against it (a new tenant's
key is shown once, works, sees nothing of the dev tenant, and stops working when revoked); Ctrl-C stops
everything and removes `local.json`. `--sandboxes memory=2` starts two memory worker processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentwire_infra.local.client import wait_until

pytestmark = pytest.mark.e2e


def agentwire(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agentwire_infra.cli", "--workdir", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def local_json(workdir: Path) -> dict[str, Any] | None:
    path = workdir / "local.json"
    try:
        described: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return described if described.get("api_key") else None


def test_up_keys_and_tenants_and_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / ".agentwire"
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentwire_infra.cli",
            "--workdir",
            str(workdir),
            "up",
            "--port",
            "0",
            "--sandboxes",
            "memory=2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        described = wait_until(lambda: local_json(workdir), timeout_s=180, interval_s=0.5, what="local.json")
        assert {"gateway_url", "emulator_url", "api_key"} <= described.keys(), described
        gateway, dev_key = described["gateway_url"], described["api_key"]
        assert httpx.get(f"{gateway}/healthz").status_code == 200
        # Two memory sandboxes, each its own process with its own log, both ready before the stack was up.
        assert sorted(p.name for p in (workdir / "run").glob("memory*.ready")) == ["memory-2.ready", "memory.ready"]
        assert (workdir / "logs" / "memory-2.log").exists()

        created = agentwire(workdir, "tenants", "create", "globex")
        assert created.returncode == 0 and "created tenant globex" in created.stdout, created
        assert "globex" in agentwire(workdir, "tenants", "list").stdout

        made = agentwire(workdir, "keys", "create", "--tenant", "globex", "--name", "ci")
        assert made.returncode == 0, made
        key = made.stdout.strip().splitlines()[-1]
        as_globex = {"Authorization": f"Bearer {key}"}
        session = httpx.post(f"{gateway}/v1/sessions", json={}, headers=as_globex)
        assert session.status_code == 201, session.text
        # The dev tenant cannot see globex's session, and the key is never listed, only its id and prefix.
        dev = {"Authorization": f"Bearer {dev_key}"}
        assert httpx.get(f"{gateway}/v1/sessions/{session.json()['session_id']}", headers=dev).status_code == 404
        listed = json.loads(agentwire(workdir, "keys", "list", "--tenant", "globex", "--json").stdout)
        assert [k["name"] for k in listed] == ["ci"] and key not in json.dumps(listed)

        revoked = agentwire(workdir, "keys", "revoke", "--tenant", "globex", listed[0]["key_id"])
        assert revoked.returncode == 0, revoked
        assert httpx.get(f"{gateway}/v1/sessions", headers=as_globex).status_code == 401
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "agentwire is up" in output and gateway in output and dev_key in output, output
    assert output.rstrip().endswith("stopped"), output
    assert not (workdir / "local.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{gateway}/healthz", timeout=2)
