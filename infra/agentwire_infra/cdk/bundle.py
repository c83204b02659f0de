"""Lambda code for each service, built without Docker.

`bundle` mode: `uv export` the service's locked third-party dependencies, install them for the Lambda
platform (`aarch64-manylinux2014`, CPython 3.12, wheels only) into `build/lambda/<service>`, then copy
the two workspace packages the function needs (`agentwire_contracts` and `agentwire_<service>`) beside
them. `placeholder` mode copies only the two workspace packages: the handler path stays the manifest's,
the asset is tiny and needs no network — for tests and quick synths, never for a deployment.

    uv run python -m agentwire_infra.cdk.bundle            # every service
    uv run python -m agentwire_infra.cdk.bundle llm tools  # some
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from agentwire_contracts.services import SERVICES

from agentwire_infra.cdk.settings import BUNDLE_ROOT, REPO_ROOT

LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "aarch64-manylinux2014"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "tests")


def workspace_sources(service: str) -> list[Path]:
    return [
        REPO_ROOT / "contracts" / "agentwire_contracts",
        REPO_ROOT / "services" / service / f"agentwire_{service}",
    ]


def _copy_sources(service: str, target: Path) -> None:
    for source in workspace_sources(service):
        shutil.copytree(source, target / source.name, ignore=_IGNORE, dirs_exist_ok=True)


def bundle_dir(service: str, root: Path | None = None) -> Path:
    """`<root>/<service>`; `root` defaults to BUNDLE_ROOT (read at call time)."""
    return (root or BUNDLE_ROOT) / service


def uv_command() -> list[str]:
    """How to run uv, found the way the Makefile finds it: `uv` on PATH; else the uv running this process
    (`uv run` sets UV); else the project's bootstrap copy (`.bootstrap/bin/uv`, where `make` installs uv
    with pip when PATH has none); else `python -m uv`."""
    found = shutil.which("uv")
    if found:
        return [found]
    running = os.environ.get("UV")
    if running and Path(running).is_file():
        return [running]
    bootstrapped = REPO_ROOT / ".bootstrap" / "bin" / "uv"
    if bootstrapped.is_file():
        return [str(bootstrapped)]
    return [sys.executable, "-m", "uv"]


def build_bundle(service: str, root: Path | None = None, uv: Sequence[str] | None = None) -> Path:
    """Build `root/<service>`: locked dependencies for Lambda arm64 + the workspace sources.

    `uv`: the command that runs uv (default: `uv_command()`)."""
    uv = list(uv) if uv is not None else uv_command()
    target = bundle_dir(service, root)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        subprocess.run(
            [
                *uv,
                "export",
                "--package",
                f"agentwire-{service}",
                "--frozen",
                "--no-dev",
                "--no-hashes",
                "--no-emit-workspace",
                "--no-header",
                "--output-file",
                str(requirements),
            ],
            cwd=REPO_ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                *uv,
                "pip",
                "install",
                "--target",
                str(target),
                "--python-platform",
                LAMBDA_PLATFORM,
                "--python-version",
                LAMBDA_PYTHON,
                "--only-binary",
                ":all:",
                "--no-deps",
                "--requirements",
                str(requirements),
            ],
            cwd=REPO_ROOT,
            check=True,
        )
    _copy_sources(service, target)
    return target


@cache
def placeholder_dir(service: str) -> Path:
    """A small, deterministic asset: the workspace sources only (no third-party dependencies)."""
    target = Path(tempfile.mkdtemp(prefix=f"agentwire-placeholder-{service}-"))
    _copy_sources(service, target)
    return target


def require_bundle(service: str, root: Path | None = None) -> Path:
    target = bundle_dir(service, root)
    if not (target / f"agentwire_{service}").is_dir():
        raise FileNotFoundError(
            f"no Lambda bundle for {service!r} at {target}: run "
            f"`uv run python -m agentwire_infra.cdk.bundle {service}` first "
            "(or synthesize with `-c agentwire:code=placeholder` for a code-less check)"
        )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("services", nargs="*", help=f"any of {', '.join(SERVICES)} (default: all)")
    parser.add_argument("--root", type=Path, default=None, help=f"default: {BUNDLE_ROOT}")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown services: {', '.join(unknown)}")
    for service in args.services or SERVICES:
        path = build_bundle(service, args.root)
        print(f"built {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
