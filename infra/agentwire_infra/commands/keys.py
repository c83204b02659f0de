"""`agentwire keys create|list|revoke|rotate`: API keys of the running stack (a key is printed once)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agentwire_infra.local.stack import read_local_json


def gateway_table(args: argparse.Namespace) -> tuple[Any, str]:
    """A DynamoDB client on the running stack's emulator and the gateway table's name."""
    import boto3

    described = read_local_json(args.workdir)
    client = boto3.client(
        "dynamodb",
        endpoint_url=described["emulator_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (the emulator's fake credentials)
    )
    return client, described["tables"]["gateway/main"]


def cmd_keys_create(args: argparse.Namespace) -> int:
    from agentwire_gateway.admin import create_api_key

    client, table = gateway_table(args)
    scopes = args.scope or ["runs:write", "runs:read"]
    try:
        print(create_api_key(args.tenant, table_name=table, dynamodb_client=client, scopes=scopes, name=args.name))
    except ValueError as exc:
        print(f"agentwire: {exc}")
        return 2
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from agentwire_gateway.admin import list_api_keys

    client, table = gateway_table(args)
    keys = list_api_keys(args.tenant, table_name=table, dynamodb_client=client)
    if args.json:
        print(json.dumps([k.model_dump() for k in keys], indent=2))
        return 0
    for key in keys:
        state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
        print(
            f"{key.key_id}\t{key.display_prefix}…\t{','.join(key.scopes)}\t{state}\t"
            f"last used {key.last_used_at or 'never'}\t{key.name}"
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from agentwire_gateway.admin import revoke_api_key

    client, table = gateway_table(args)
    if not revoke_api_key(args.tenant, args.key_id, table_name=table, dynamodb_client=client):
        print(f"agentwire: tenant {args.tenant} has no key {args.key_id}")
        return 1
    print(f"revoked {args.key_id}")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from agentwire_gateway.admin import rotate_api_key

    client, table = gateway_table(args)
    new_key = rotate_api_key(args.tenant, args.key_id, table_name=table, dynamodb_client=client)
    if new_key is None:
        print(f"agentwire: tenant {args.tenant} has no active key {args.key_id}")
        return 1
    print(new_key)
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    keys = commands.add_parser("keys", help="API keys on the running stack")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="create a key for a tenant and print it (the only time it is shown)")
    create.add_argument("--tenant", required=True)
    create.add_argument(
        "--scope",
        action="append",
        choices=("runs:write", "runs:read", "admin"),
        help="repeatable (default: runs:write and runs:read)",
    )
    create.add_argument("--name", default="", help="a label to tell keys apart")
    create.set_defaults(handler=cmd_keys_create)
    listing = sub.add_parser("list", help="a tenant's keys (never the keys themselves)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_keys_list)
    revoke = sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=cmd_keys_revoke)
    rotate = sub.add_parser("rotate", help="replace a key by a new one (printed) with the same scopes")
    rotate.add_argument("--tenant", required=True)
    rotate.add_argument("key_id")
    rotate.set_defaults(handler=cmd_keys_rotate)
