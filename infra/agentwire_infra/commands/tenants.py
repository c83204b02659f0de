"""`agentwire tenants create|list`: tenants of the running stack."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agentwire_infra.commands.keys import gateway_table


def cmd_tenants_create(args: argparse.Namespace) -> int:
    from agentwire_gateway.admin import create_tenant

    client, table = gateway_table(args)
    try:
        created = create_tenant(
            args.tenant, table_name=table, dynamodb_client=client, rate_limit_per_minute=args.rate_limit
        )
    except ValueError as exc:
        print(f"agentwire: {exc}")
        return 2
    print(f"created tenant {args.tenant}" if created else f"tenant {args.tenant} exists already")
    return 0 if created else 1


def cmd_tenants_list(args: argparse.Namespace) -> int:
    from agentwire_gateway.admin import list_tenants

    client, table = gateway_table(args)
    tenants = list_tenants(table_name=table, dynamodb_client=client)
    if args.json:
        print(json.dumps([t.model_dump() for t in tenants], indent=2))
        return 0
    for tenant in tenants:
        limit = tenant.rate_limit_per_minute or "default"
        print(f"{tenant.tenant_id}\tcreated {tenant.created_at}\trate limit {limit}/min")
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    tenants = commands.add_parser("tenants", help="tenants of the running stack")
    sub = tenants.add_subparsers(dest="tenants_command", required=True)
    create = sub.add_parser("create", help="create a tenant")
    create.add_argument("tenant")
    create.add_argument("--rate-limit", type=int, default=None, help="requests per minute (default: the gateway's)")
    create.set_defaults(handler=cmd_tenants_create)
    listing = sub.add_parser("list", help="list the tenants")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_tenants_list)
