"""Synthesize the whole cloud assembly without AWS credentials.

    uv run python -m agentwire_infra.cdk.synth --out cdk.out                 # builds the bundles first
    uv run python -m agentwire_infra.cdk.synth --out cdk.out --placeholder-code   # no bundles (checks only)

cdk-nag runs as a validation plugin: an unacknowledged finding fails synthesis and the report is in
<out>/validation-report.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentwire_contracts.names import DEFAULT_PREFIX
from agentwire_contracts.services import SERVICES
from aws_cdk import App

from agentwire_infra.cdk import bundle
from agentwire_infra.cdk.app import build
from agentwire_infra.cdk.settings import CODE_BUNDLE, CODE_PLACEHOLDER, AppSettings, cdk_json_context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--prefix", default=DEFAULT_PREFIX)
    parser.add_argument(
        "--placeholder-code",
        action="store_true",
        help="ship the workspace sources only (no dependencies); never deploy this",
    )
    parser.add_argument("--no-build", action="store_true", help="use the existing build/lambda bundles")
    parser.add_argument("--no-nag", action="store_true", help="skip the cdk-nag packs")
    args = parser.parse_args(argv)

    settings = AppSettings(
        prefix=args.prefix,
        code=CODE_PLACEHOLDER if args.placeholder_code else CODE_BUNDLE,
        nag=not args.no_nag,
    )
    if settings.code == CODE_BUNDLE and not args.no_build:
        for service in SERVICES:
            bundle.build_bundle(service)
    app = App(outdir=str(args.out), context=cdk_json_context())
    result = build(app, settings)
    app.synth()
    for stack in result.stacks():
        print(f"{stack.stack_name}: {args.out / stack.template_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
