"""The local event recorder: a tap on the bus, so `agentwire runs` can show what every run did.

A rule on the bus matches every agentwire event (`source` prefix `agentwire.`) and targets a recorder
queue; a thread of the stack's process drains it into `<workdir>/events/<run_id>.jsonl`, one event per
line in arrival order (events without a run go to `_no_run.jsonl`). It is the local counterpart of the
bus archive the CDK bus stack keeps for replay; nothing on AWS needs it.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("agentwire.recorder")

EVENTS_DIR = "events"
NO_RUN = "_no_run"
EVENT_PATTERN = {"source": [{"prefix": "agentwire."}]}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-]")


def recorder_names(prefix: str) -> tuple[str, str]:
    """(queue name, rule name) of the recorder."""
    return f"{prefix}-local-recorder", f"{prefix}-local-recorder"


@dataclass(frozen=True)
class RecorderTopology:
    queue_url: str
    queue_arn: str
    rule_name: str


def provision_recorder(events: Any, sqs: Any, *, prefix: str, bus_name: str) -> RecorderTopology:
    """The tap rule and its queue (idempotent)."""
    queue_name, rule_name = recorder_names(prefix)
    queue_url = sqs.create_queue(QueueName=queue_name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name=rule_name,
        EventBusName=bus_name,
        EventPattern=json.dumps(EVENT_PATTERN),
        State="ENABLED",
        Description="local only: every agentwire event -> the run recorder",
    )
    events.put_targets(Rule=rule_name, EventBusName=bus_name, Targets=[{"Id": "recorder", "Arn": queue_arn}])
    return RecorderTopology(queue_url=queue_url, queue_arn=queue_arn, rule_name=rule_name)


def run_file(events_dir: Path, run_id: str | None) -> Path:
    return events_dir / f"{_SAFE_NAME.sub('_', run_id) if run_id else NO_RUN}.jsonl"


def record_line(envelope: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """An EventBridge envelope → (run id, the line recorded)."""
    detail = envelope.get("detail") or {}
    metadata = detail.get("metadata") or {}
    return metadata.get("run_id"), {
        "recorded_at": time.time(),
        "id": envelope.get("id"),
        "time": envelope.get("time"),
        "source": envelope.get("source"),
        "detail_type": envelope.get("detail-type"),
        "detail": detail,
    }


class EventRecorder:
    """Drains the recorder queue into per-run JSONL files on a daemon thread."""

    def __init__(self, sqs: Any, topology: RecorderTopology, workdir: Path, *, wait_s: int = 1) -> None:
        self.sqs = sqs
        self.topology = topology
        self.events_dir = workdir / EVENTS_DIR
        self.wait_s = wait_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
        self.recorded = 0

    def start(self) -> EventRecorder:
        self.events_dir.mkdir(parents=True, exist_ok=True)
        self.thread.start()
        return self

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop polling, then record what is still queued (the last run's final events)."""
        self.stop_event.set()
        self.thread.join(self.wait_s + 5)
        deadline = time.monotonic() + drain_timeout_s
        try:
            while time.monotonic() < deadline and self.drain_once(wait_s=0):
                pass
        except Exception:
            log.warning("could not drain the recorder queue", exc_info=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.drain_once(self.wait_s)
            except Exception:
                if self.stop_event.is_set():
                    return
                log.warning("recording events failed; retrying", exc_info=True)
                self.stop_event.wait(1.0)

    def drain_once(self, wait_s: int) -> int:
        response = self.sqs.receive_message(
            QueueUrl=self.topology.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        by_file: dict[Path, list[str]] = {}
        for message in messages:
            try:
                run_id, line = record_line(json.loads(message["Body"]))
            except (ValueError, TypeError):
                continue
            by_file.setdefault(run_file(self.events_dir, run_id), []).append(json.dumps(line, default=str))
        for path, lines in by_file.items():
            with path.open("a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
        entries = [{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)]
        self.sqs.delete_message_batch(QueueUrl=self.topology.queue_url, Entries=entries)
        self.recorded += len(messages)
        return len(messages)


def read_run_events(events_dir: Path, run_id: str) -> list[dict[str, Any]]:
    path = run_file(events_dir, run_id)
    lines: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return lines
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines
