"""`agentwire memory …`: long-term facts, transcript export and retention on the running stack.

agentwire memory facts list   --tenant T --user U
agentwire memory facts delete --tenant T --user U [--fact-id ID …]   (all facts without --fact-id)
agentwire memory export SESSION --tenant T [--output FILE]
agentwire memory retention --tenant T --days N | --default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentwire_infra.local.stack import read_local_json

TABLE = "memory/main"


def _table_and_client(args: argparse.Namespace) -> tuple[str, Any]:
    import boto3

    described = read_local_json(args.workdir)
    client = boto3.client(
        "dynamodb",
        endpoint_url=described["emulator_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (the emulator's fake credentials)
    )
    return described["tables"][TABLE], client


def _payloads(args: argparse.Namespace) -> Any:
    """The stack's payload bucket (where the full outputs of capped tool results are)."""
    import boto3
    from agentwire_contracts.manifest import payload_bucket_name
    from agentwire_contracts.payload import PayloadStore

    described = read_local_json(args.workdir)
    client = boto3.client(
        "s3",
        endpoint_url=described["emulator_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (the emulator's fake credentials)
    )
    return PayloadStore(client=client, bucket=payload_bucket_name(described["prefix"]))


def _tenant(args: argparse.Namespace) -> str:
    if args.tenant:
        return str(args.tenant)
    return str(read_local_json(args.workdir).get("tenant_id") or "dev")


def cmd_facts_list(args: argparse.Namespace) -> int:
    from agentwire_memory.admin import list_facts

    table, client = _table_and_client(args)
    facts = list_facts(_tenant(args), args.user, table_name=table, dynamodb_client=client)
    print(json.dumps({"tenant_id": _tenant(args), "user_id": args.user, "facts": facts}, indent=2, ensure_ascii=False))
    return 0


def cmd_facts_delete(args: argparse.Namespace) -> int:
    from agentwire_memory.admin import delete_facts

    table, client = _table_and_client(args)
    deleted = delete_facts(_tenant(args), args.user, args.fact_id or None, table_name=table, dynamodb_client=client)
    print(f"deleted {deleted} fact(s)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from agentwire_memory.admin import export

    table, client = _table_and_client(args)
    exported = export(_tenant(args), args.session, table_name=table, dynamodb_client=client, payloads=_payloads(args))
    text = json.dumps(exported, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        args.output.write_text(text)
        print(f"wrote {exported['message_count']} messages to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from agentwire_memory.admin import set_retention

    table, client = _table_and_client(args)
    days = None if args.default else args.days
    set_retention(_tenant(args), days, table_name=table, dynamodb_client=client)
    print(f"retention of {_tenant(args)}: {'the default' if days is None else f'{days} days'}")
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    memory = commands.add_parser("memory", help="long-term facts, transcript export, retention (running stack)")
    sub = memory.add_subparsers(dest="memory_command", required=True)

    facts = sub.add_parser("facts", help="a user's long-term facts")
    facts_sub = facts.add_subparsers(dest="facts_command", required=True)
    listing = facts_sub.add_parser("list", help="print a user's saved facts as JSON")
    deleting = facts_sub.add_parser("delete", help="delete a user's facts (all, or those given)")
    for parser in (listing, deleting):
        parser.add_argument("--tenant", help="default: the stack's dev tenant")
        parser.add_argument("--user", required=True)
    deleting.add_argument("--fact-id", action="append", default=[], help="repeatable; none: every fact")
    listing.set_defaults(handler=cmd_facts_list)
    deleting.set_defaults(handler=cmd_facts_delete)

    export = sub.add_parser(
        "export", help="the full transcript of a session as JSON (with the full outputs of capped tool results)"
    )
    export.add_argument("session")
    export.add_argument("--tenant", help="default: the stack's dev tenant")
    export.add_argument("--output", type=Path, help="write to a file instead of stdout")
    export.set_defaults(handler=cmd_export)

    retention = sub.add_parser("retention", help="a tenant's transcript retention")
    retention.add_argument("--tenant", help="default: the stack's dev tenant")
    choice = retention.add_mutually_exclusive_group(required=True)
    choice.add_argument("--days", type=int)
    choice.add_argument("--default", action="store_true", help="back to the deployment's default")
    retention.set_defaults(handler=cmd_retention)
