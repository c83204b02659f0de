"""How the Lambda bundles find uv, and the real `agentwire_infra.cdk.synth` entry point in bundle mode.

A real bundle build resolves ~100 locked wheels per service for aarch64 from PyPI (none are in the local
uv cache, and `uv pip install --offline` fails), so these tests put a fake `uv` on PATH: it records its
arguments and writes a marker where the dependencies would go. Everything else — finding uv, the two uv
commands, the bundle layout, the app built from the bundles, cdk-nag, the assembly — is the real path.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from agentwire_contracts.services import SERVICES
from agentwire_infra.cdk import bundle, synth

#: What the fake uv installs into `--target`: a bundle that contains it was installed by uv.
MARKER = "installed_by_fake_uv"

FAKE_UV = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_UV_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[0] == "export":
    Path(args[args.index("--output-file") + 1]).write_text("fake-dependency==1.0\\n")
elif args[:2] == ["pip", "install"]:
    (Path(args[args.index("--target") + 1]) / "{MARKER}").mkdir(parents=True)
else:
    sys.exit(f"fake uv: unexpected {{args}}")
"""


@pytest.fixture
def fake_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A `uv` executable first on PATH; returns (its path, the log of its calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    uv = bin_dir / "uv"
    uv.write_text(FAKE_UV)
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "uv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_UV_LOG", str(log))
    return uv, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_uv_on_path_is_used(fake_uv: tuple[Path, Path]) -> None:
    uv, _ = fake_uv
    assert bundle.uv_command() == [str(uv)]


def test_without_uv_on_path_the_uv_running_us_then_the_bootstrap_copy_then_the_module_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the Makefile does when `command -v uv` finds nothing: `.bootstrap/bin/uv` (pip --target).
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    running = tmp_path / "running-uv"
    running.write_text("#!/bin/sh\n")
    monkeypatch.setenv("UV", str(running))
    assert bundle.uv_command() == [str(running)]

    monkeypatch.delenv("UV")
    root = tmp_path / "repo"
    monkeypatch.setattr(bundle, "REPO_ROOT", root)
    assert bundle.uv_command() == [sys.executable, "-m", "uv"]
    bootstrapped = root / ".bootstrap" / "bin" / "uv"
    bootstrapped.parent.mkdir(parents=True)
    bootstrapped.write_text("#!/bin/sh\n")
    assert bundle.uv_command() == [str(bootstrapped)]


def test_build_bundle_runs_uv_export_then_pip_install_for_lambda(tmp_path: Path, fake_uv: tuple[Path, Path]) -> None:
    _, log = fake_uv
    target = bundle.build_bundle("memory", tmp_path / "lambda")
    export, install = calls(log)
    assert export[:4] == ["export", "--package", "agentwire-memory", "--frozen"]
    assert "--no-dev" in export and "--no-emit-workspace" in export
    assert install[:2] == ["pip", "install"]
    assert install[install.index("--target") + 1] == str(target)
    assert install[install.index("--python-platform") + 1] == bundle.LAMBDA_PLATFORM == "aarch64-manylinux2014"
    assert install[install.index("--python-version") + 1] == bundle.LAMBDA_PYTHON
    assert install[install.index("--only-binary") + 1] == ":all:"
    assert (target / MARKER).is_dir()
    assert (target / "agentwire_memory" / "handler.py").is_file()
    assert (target / "agentwire_contracts" / "envelope.py").is_file()
    assert not list(target.rglob("__pycache__"))


def test_the_synth_entry_point_builds_every_bundle_and_ships_it(
    tmp_path: Path, fake_uv: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, no_aws_credentials: None
) -> None:
    """`python -m agentwire_infra.cdk.synth --out <dir>` (what `make synth` runs), bundle mode, no credentials."""
    _, log = fake_uv
    monkeypatch.setattr(bundle, "BUNDLE_ROOT", tmp_path / "lambda")
    out = tmp_path / "cdk.out"

    assert synth.main(["--out", str(out)]) == 0

    exported = [c[c.index("--package") + 1] for c in calls(log) if c[0] == "export"]
    assert exported == [f"agentwire-{service}" for service in SERVICES]
    assert not (out / "validation-report.json").exists() or not _violations(out)
    shipped: dict[str, set[str]] = {}
    for service in SERVICES:
        template = json.loads((out / f"agentwire-{service}.template.json").read_text())
        functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
        assert functions, service
        for function in functions:
            asset = out / f"asset.{function['Properties']['Code']['S3Key'].removesuffix('.zip')}"
            shipped.setdefault(service, set()).add(str(asset))
            # The function's code is the uv-built bundle: its dependencies and its own package.
            assert (asset / MARKER).is_dir(), (service, asset)
            assert (asset / f"agentwire_{service}" / "handler.py").is_file(), (service, asset)
    assert all(len(assets) == 1 for assets in shipped.values()), shipped


def _violations(out: Path) -> list[Any]:
    report = json.loads((out / "validation-report.json").read_text())
    return [v for plugin in report.get("pluginReports", []) for v in plugin.get("violations", [])]
