"""`agentwire dlq`: what sits in every dead-letter queue of the running stack, with the reason, and
`agentwire dlq redrive [--queue NAME]` to move it back to its source queue.

    agentwire dlq [--json]
    agentwire dlq redrive [--queue agentwire-llm-completions-dlq | llm/completions]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _stack(workdir: Path) -> tuple[Any, Any, Path]:
    import boto3

    from agentwire_infra.local.provision import Topology
    from agentwire_infra.local.stack import TOPOLOGY_JSON, read_local_json
    from agentwire_infra.local.tracing import FAILURES_FILE

    described = read_local_json(workdir)
    topology = Topology.from_json(Path(described.get("topology") or workdir / TOPOLOGY_JSON).read_text())
    sqs = boto3.client(
        "sqs",
        endpoint_url=described["emulator_url"],
        region_name=topology.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 (the emulator's fake credentials)
    )
    return sqs, topology, Path(described.get("failures") or workdir / FAILURES_FILE)


def render(letters: list[Any]) -> str:
    if not letters:
        return "every DLQ is empty"
    lines = []
    by_queue: dict[str, list[Any]] = {}
    for letter in letters:
        by_queue.setdefault(letter.dlq, []).append(letter)
    for dlq, items in sorted(by_queue.items()):
        lines.append(f"{dlq}: {len(items)} message(s)")
        for letter in items:
            lines.append(
                f"  {letter.message_id}  {letter.detail_type or '?'}  run {letter.run_id or '-'}"
                f"  receives {letter.receive_count if letter.receive_count is not None else '?'}"
            )
            # One line: a validation error's reason spans several, which would break the listing's layout.
            lines.append(f"      reason: {' '.join(letter.reason.split())}")
    return "\n".join(lines)


def cmd_list(args: argparse.Namespace) -> int:
    from agentwire_infra.local.dlq import list_dead_letters

    sqs, topology, failures = _stack(args.workdir)
    letters = list_dead_letters(sqs, topology, failures)
    print(json.dumps([letter.to_dict() for letter in letters], indent=2) if args.json else render(letters))
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from agentwire_infra.local.dlq import redrive

    sqs, topology, _ = _stack(args.workdir)
    try:
        moved = redrive(sqs, topology, args.queue)
    except KeyError:
        print(f"agentwire: no queue or DLQ named {args.queue!r}")
        return 1
    if not moved:
        print("nothing to redrive")
    for dlq, count in sorted(moved.items()):
        print(f"{dlq}: moved {count} message(s) back to the source queue")
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    dlq = commands.add_parser("dlq", help="what sits in every DLQ and why; `dlq redrive` moves it back")
    dlq.add_argument("--json", action="store_true")
    dlq.set_defaults(handler=cmd_list)
    sub = dlq.add_subparsers(dest="dlq_command")
    again = sub.add_parser("redrive", help="move DLQ messages back to their source queues")
    again.add_argument("--queue", default=None, help="only this queue (queue or DLQ name, or service/consumer)")
    again.set_defaults(handler=cmd_redrive)
