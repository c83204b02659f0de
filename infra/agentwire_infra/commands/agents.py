"""`agentwire agents list|show|validate`: the agent definitions every service loads (data, not code).

`list` and `show` read the deployment's catalog (`AGENTWIRE_AGENTS_DIR`, else the packaged defaults);
`validate [path]` checks a file or a directory of `*.json` agent files (exit 1 on the first problem set),
including that every tool an agent offers is one the deployment can serve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentwire_contracts.agents import (
    AgentCatalog,
    AgentDefinition,
    InvalidAgentDefinition,
    UnknownAgent,
    load_catalog,
    parse_agent_file,
)


def _known_tools() -> set[str]:
    """Tools this deployment serves: the tools service's built-ins and installed tools, and remote tools."""
    from agentwire_contracts.remote_tools import REMOTE_TOOLS
    from agentwire_tools.builtins import builtin_tools
    from agentwire_tools.registry import ToolRegistry, load_entry_point_tools

    registry = ToolRegistry(builtin_tools())
    load_entry_point_tools(registry)
    return set(registry.names()) | set(REMOTE_TOOLS)


def cmd_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(Path(args.dir) if args.dir else None)
    rows = [
        {"agent": a.ref, "model": a.model, "tools": list(a.tools), "approval": list(a.approval.require_for)}
        for a in catalog
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        approval = f"  approval: {', '.join(row['approval'])}" if row["approval"] else ""
        print(f"{row['agent']:<20} {row['model']:<24} tools: {', '.join(row['tools']) or '-'}{approval}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    catalog = load_catalog(Path(args.dir) if args.dir else None)
    name, _, version = args.agent.partition("@")
    try:
        agent = catalog.get(name, version or None)
    except UnknownAgent as exc:
        print(f"error: {exc} (known: {', '.join(catalog.names())})", file=sys.stderr)
        return 1
    print(json.dumps(agent.model_dump(mode="json"), indent=2))
    return 0


def validate_path(path: Path, known_tools: set[str] | None) -> list[str]:
    """Problems of the agent file(s) at `path`; empty when they are valid."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        return [f"{path}: no *.json agent files"]
    problems: list[str] = []
    agents: list[AgentDefinition] = []
    for file in files:
        try:
            agents.append(parse_agent_file(file))
        except (InvalidAgentDefinition, OSError) as exc:
            problems.append(str(exc))
    try:
        AgentCatalog(agents)
    except InvalidAgentDefinition as exc:
        problems.append(str(exc))
    if known_tools is not None:
        for agent in agents:
            unknown = sorted(set(agent.tools) - known_tools)
            if unknown:
                problems.append(f"{agent.ref}: offers tools this deployment does not serve: {', '.join(unknown)}")
    return problems


def cmd_validate(args: argparse.Namespace) -> int:
    from agentwire_contracts.agents import DEFAULTS_DIR

    path = Path(args.path) if args.path else DEFAULTS_DIR
    problems = validate_path(path, None if args.skip_tool_check else _known_tools())
    for problem in problems:
        print(f"invalid: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: {path}")
    return 1 if problems else 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    agents = commands.add_parser("agents", help="agent definitions: list, show, validate")
    sub = agents.add_subparsers(dest="agents_command", required=True)
    listing = sub.add_parser("list", help="every agent version of the deployment")
    listing.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one agent's definition as JSON (name or name@version)")
    show.add_argument("agent")
    for parser in (listing, show):
        parser.add_argument("--dir", default=None, help="agents directory (default: AGENTWIRE_AGENTS_DIR or built-in)")
    listing.set_defaults(handler=cmd_list)
    show.set_defaults(handler=cmd_show)
    validate = sub.add_parser("validate", help="check an agent file or directory (default: the packaged agents)")
    validate.add_argument("path", nargs="?", default=None)
    validate.add_argument("--skip-tool-check", action="store_true", help="do not check the tools are served")
    validate.set_defaults(handler=cmd_validate)
