"""`agentwire replay <run_id> [--agent name@version]`: re-drive a recorded run with the scripted model on a
fresh local stack and print how the replay differs from the recording (see `agentwire_infra.replay`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agentwire_infra.local.recorder import EVENTS_DIR


def cmd_replay(args: argparse.Namespace) -> int:
    from agentwire_infra.replay import ReplayError, load_recording, replay, report

    events_dir = Path(args.events_dir) if args.events_dir else Path(args.workdir) / EVENTS_DIR
    try:
        recording = load_recording(events_dir, args.run_id)
        replayed = replay(recording, agent=args.agent, timeout_s=args.timeout)
    except ReplayError as exc:
        print(f"agentwire: cannot replay: {exc}", file=sys.stderr)
        return 2
    lines = report(recording, replayed)
    for line in lines:
        print(line)
    return 0 if replayed.status == "completed" else 1


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "replay", help="re-drive a recorded run on the scripted model (optionally another agent version) and diff it"
    )
    parser.add_argument("run_id", help="a run recorded under <workdir>/events")
    parser.add_argument("--agent", help="the agent to replay it as: name or name@version (default: the recorded one)")
    parser.add_argument("--events-dir", help="where the recordings are (default: <workdir>/events)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds the replayed run may take")
    parser.set_defaults(handler=cmd_replay)
