"""`agentwire runs list` and `agentwire runs show <run_id>`: what runs did, from the local recordings.

agentwire runs list [--limit N] [--json]
agentwire runs show <run_id | last> [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def cmd_list(args: argparse.Namespace) -> int:
    from agentwire_infra.local.runview import list_runs, render_list

    views = list_runs(args.workdir, limit=args.limit)
    if args.json:
        print(json.dumps([view.to_dict() for view in views], indent=2))
    else:
        print(render_list(views))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from agentwire_infra.local.runview import build_run, list_run_ids, list_runs, render_run

    run_id = args.run_id
    if run_id == "last":
        latest = list_runs(args.workdir, limit=1)
        if not latest:
            print(f"agentwire: no runs recorded under {args.workdir}", file=sys.stderr)
            return 1
        run_id = latest[0].run_id
    elif run_id not in list_run_ids(args.workdir):
        matches = [known for known in list_run_ids(args.workdir) if known.startswith(run_id)]
        if len(matches) != 1:
            print(
                f"agentwire: no recorded run {run_id!r} under {args.workdir}"
                + (f" ({len(matches)} match that prefix)" if matches else ""),
                file=sys.stderr,
            )
            return 1
        run_id = matches[0]
    view = build_run(args.workdir, run_id)
    print(json.dumps(view.to_dict(), indent=2) if args.json else render_run(view))
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    runs = commands.add_parser("runs", help="what runs did: timeline, services, tokens, cost, errors")
    sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = sub.add_parser("list", help="the recorded runs, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)
    show = sub.add_parser("show", help="one run's timeline")
    show.add_argument("run_id", help="a run id, a unique prefix of one, or `last`")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)
