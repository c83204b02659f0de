"""`agentwire chat`: talk to an agent on the running stack, following each run's events live.

Reads one message per line from stdin (a terminal or a pipe). While the model thinks a spinner turns
(on a terminal only); tool calls and approvals are shown as they happen. When the run asks for an
approval, the chat shows the call's arguments and their hash and reads the decision from the next line:
`/approve` or `/reject` (optionally with the approval id and a reason: `/reject ID not today`), or
`/cancel` to stop the run. Between messages, `/approve ID` and `/reject ID` decide an approval left
pending (say, by an earlier chat whose input ended), `/cancel` stops the session's active run, and
`/quit` (or end of input) leaves.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any, TextIO

TERMINAL = ("run.completed", "run.failed", "run.cancelled")
Printer = Callable[[str], None]


class Spinner:
    """A spinner on stderr while something is pending; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, label: str) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._stop.clear()

        def spin() -> None:
            for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
                if self._stop.wait(0.1):
                    break
                self.stream.write(f"\r{frame} {label}")
                self.stream.flush()
            self.stream.write("\r\033[K")
            self.stream.flush()

        self._thread = threading.Thread(target=spin, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


def describe(event: dict[str, Any]) -> str | None:
    """One line for a live event, or None for those shown otherwise (the spinner, the final answer)."""
    kind, data = event["type"], event.get("data") or {}
    if kind == "tool.started":
        arguments = json.dumps(data.get("input")) if data.get("input") is not None else "…"
        return f"  → {data.get('name')}({arguments})"
    if kind == "tool.finished":
        return f"  ← {data.get('name')} {'failed' if data.get('is_error') else 'done'}"
    if kind == "tool.failed":
        return f"  ← tool failed: {data.get('code')}"
    if kind == "approval.requested":
        return (
            f"  ? {data.get('tool_name')} needs approval ({data.get('reason') or 'policy'}): "
            f"/approve {data.get('approval_id')} or /reject {data.get('approval_id')}"
        )
    if kind == "approval.decided":
        return f"  ✓ {data.get('approval_id')} {data.get('decision')}d by {data.get('decided_by')}"
    if kind == "model.failed":
        return f"  ! model call failed: {data.get('code')}"
    if kind == "run.completed":
        usage = data.get("usage") or {}
        return (
            f"assistant: {data.get('output')}\n  ({usage.get('input_tokens', 0)} in / "
            f"{usage.get('output_tokens', 0)} out tokens, ${usage.get('cost_usd', 0):.6f})"
        )
    if kind == "run.failed":
        error = data.get("error") or {}
        return f"run failed: {error.get('code')}: {error.get('message')}"
    if kind == "run.cancelled":
        return "run cancelled"
    return None


#: What a decision says when the person gives no reason of their own.
DEFAULT_REASON = {"approve": "approved in agentwire chat", "reject": "rejected in agentwire chat"}
DECISIONS = {"/approve": "approve", "/reject": "reject"}
HELP = "commands: /approve [ID] [reason], /reject [ID] [reason], /cancel, /quit"
#: What `follow` answers when a run waits for a decision that the input ended before giving.
WAITING = "waiting_for_approval"


class Chat:
    """One session's conversation. Decisions are read from `decisions` (the same input as the messages)
    while a followed run waits for one, so a run that needs approval is decided where it is shown."""

    def __init__(
        self,
        client: Any,
        session_id: str,
        out: Printer,
        *,
        decisions: TextIO,
        spinner: TextIO,
        echo: bool = False,
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.out = out
        self.decisions = decisions
        self.echo = echo
        self.interactive = decisions.isatty()
        self.spinner = Spinner(spinner)
        self.run_id: str | None = None
        #: Every approval the chat asked for, as the gateway listed it while it was pending.
        self.approvals: list[dict[str, Any]] = []

    def say(self, text: str) -> str | None:
        """Send a message and follow its run to the end; the run's final status."""
        response = self.client.request(
            "POST",
            f"/v1/sessions/{self.session_id}/messages",
            params={"on_busy": "enqueue"},
            json={"content": text},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if response.status_code != 202:
            self.out(f"error {response.status_code}: {response.json().get('detail')}")
            return None
        self.run_id = str(response.json()["run_id"])
        self.out(f"  (run {self.run_id}: agentwire runs show {self.run_id})")
        return self.follow(self.run_id)

    def follow(self, run_id: str) -> str:
        cursor = "0"
        while True:
            page = self.client.request("GET", f"/v1/runs/{run_id}/events", params={"after": cursor, "wait": 10})
            page.raise_for_status()
            body = page.json()
            for event in body["events"]:
                if event["type"] == "model.started":
                    self.spinner.start("thinking…")
                elif event["type"] in ("model.finished", "model.failed", *TERMINAL):
                    self.spinner.stop()
                line = describe(event)
                if line:
                    self.spinner.stop()
                    self.out(line)
                if event["type"] == "approval.requested" and not self.await_decision(run_id, event["data"]):
                    return WAITING
            cursor = body["next_cursor"]
            if body["done"]:
                self.spinner.stop()
                return str(body["status"])

    def await_decision(self, run_id: str, requested: dict[str, Any]) -> bool:
        """Read lines until the pending approval is decided or the run is cancelled; False when the input
        ended first (the run keeps waiting: `/approve ID` in a later chat on the session decides it)."""
        approval_id = str(requested["approval_id"])
        listed = self._approvals(run_id)
        approval = next((a for a in listed if a["approval_id"] == approval_id), None)
        if approval is not None and approval.get("status") == "pending":
            self.approvals.append(approval)
            self.out(f"    arguments: {json.dumps(approval.get('tool_input'), sort_keys=True)}")
            self.out(f"    args hash: {approval.get('args_hash')}")
        elif approval is not None:
            return True  # decided already (another client): nothing to ask
        while True:
            if self.interactive:
                self.out(f"decide {approval_id}> ")
            line = self.decisions.readline()
            if not line:
                self.out(f"  (input ended; approval {approval_id} stays pending)")
                return False
            parts = line.split()
            if not parts:
                continue
            if self.echo:
                self.out(f"agentwire chat> {line.strip()}")
            if parts[0] == "/cancel":
                self._cancel(run_id, " ".join(parts[1:]))
                return True
            if parts[0] not in DECISIONS:
                self.out(f"  run {run_id} waits for approval {approval_id}: /approve, /reject or /cancel")
                continue
            named, reason = (parts[1], parts[2:]) if len(parts) > 1 and parts[1] == approval_id else (None, [])
            if len(parts) > 1 and named is None:
                # An id that is not the pending one never decides it (nor is it taken as the reason).
                self.out(f"  {parts[1]} is not the pending approval; it is {approval_id}")
                continue
            self._decide(run_id, approval_id, DECISIONS[parts[0]], " ".join(reason))
            return True

    def command(self, line: str) -> bool:
        """Handle a /command between messages; False to leave."""
        parts = line.split()
        name = parts[0]
        if name in ("/quit", "/exit"):
            return False
        if name in DECISIONS and len(parts) >= 2:
            run_id = self._active_run()
            pending = [a for a in self._approvals(run_id) if a.get("status") == "pending"] if run_id else []
            if run_id is None or not any(a["approval_id"] == parts[1] for a in pending):
                self.out(f"no pending approval {parts[1]}")
                return True
            if self._decide(run_id, parts[1], DECISIONS[name], " ".join(parts[2:])):
                self.follow(run_id)
            return True
        if name == "/cancel":
            run_id = self._active_run()
            if run_id is None:
                self.out("no active run to cancel")
                return True
            if self._cancel(run_id, " ".join(parts[1:])):
                self.follow(run_id)
            return True
        self.out(HELP)
        return True

    def _decide(self, run_id: str, approval_id: str, decision: str, reason: str) -> bool:
        response = self.client.request(
            "POST",
            f"/v1/runs/{run_id}/approvals/{approval_id}",
            json={"decision": decision, "reason": reason or DEFAULT_REASON[decision]},
        )
        if response.status_code == 200:
            self.out(f"  {decision}: {response.json().get('status')}")
            return True
        self.out(f"  {decision} refused ({response.status_code}): {response.json().get('detail')}")
        return False

    def _cancel(self, run_id: str, reason: str) -> bool:
        body = {"reason": reason} if reason else None
        response = self.client.request("POST", f"/v1/runs/{run_id}/cancel", json=body)
        self.out(f"  cancel: {response.status_code}")
        return response.status_code == 202

    def _active_run(self) -> str | None:
        session = self.client.request("GET", f"/v1/sessions/{self.session_id}").json()
        run_id = session.get("active_run_id")
        return str(run_id) if run_id else None

    def _approvals(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.client.request("GET", f"/v1/runs/{run_id}/approvals").json().get("approvals", []))


def cmd_chat(args: argparse.Namespace) -> int:
    import httpx

    from agentwire_infra.local.stack import read_local_json

    described = read_local_json(args.workdir) if not (args.url and args.key) else {}
    url = args.url or described["gateway_url"]
    key = args.key or described["api_key"]

    def out(line: str) -> None:
        print(line, end="" if line.endswith("> ") else "\n", flush=True)

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        session_id = args.session
        if not session_id:
            opened = {"agent": args.agent, **({"user_id": args.user} if args.user else {})}
            created = client.post("/v1/sessions", json=opened)
            if created.status_code != 201:
                print(f"could not open a session: {created.text}", file=sys.stderr)
                return 1
            session_id = created.json()["session_id"]
        print(f"session {session_id} (agent {args.agent}); /quit to leave", flush=True)
        interactive = sys.stdin.isatty()
        chat = Chat(client, session_id, out, decisions=sys.stdin, spinner=sys.stderr, echo=not interactive)
        failed = False
        while True:
            if interactive:
                out("you> ")
            line = sys.stdin.readline()
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not chat.command(line):
                    break
                continue
            status = chat.say(line)
            failed = failed or status != "completed"
    return 1 if failed else 0


def register(commands: argparse._SubParsersAction[Any]) -> None:
    chat = commands.add_parser("chat", help="talk to an agent on the running stack (one message per line)")
    chat.add_argument("--session", default=None, help="continue this session (default: open a new one)")
    chat.add_argument("--agent", default="assistant")
    chat.add_argument("--user", default=None, help="the user the session acts for (long-term facts, tool policy)")
    chat.add_argument("--url", default=None, help="the gateway (default: the running stack's)")
    chat.add_argument("--key", default=None, help="the API key (default: the running stack's dev key)")
    chat.set_defaults(handler=cmd_chat)
