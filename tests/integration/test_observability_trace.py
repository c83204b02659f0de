"""See every run, on the emulator: one run is one trace across the five services (with a closed parent
chain back to the gateway's request), its logs join by run_id and trace id without message content or
secrets, `agentwire runs` draws it, and `agentwire dlq` says why a message is dead and redrives it."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from agentwire_contracts import telemetry
from agentwire_contracts.services import SERVICES
from agentwire_infra import cli
from agentwire_infra.local import dlq, runview
from agentwire_infra.local.client import GatewayClient, wait_until
from agentwire_infra.local.recorder import EVENTS_DIR, read_run_events
from agentwire_infra.local.stack import LocalStack
from agentwire_infra.local.tracing import FAILURES_FILE


def spans_of_trace(workdir: Path, trace_id: str) -> list[dict[str, Any]]:
    return [span for span in runview.load_spans(workdir) if span["trace_id"] == trace_id]


def root_span_of(workdir: Path, run_id: str) -> dict[str, Any] | None:
    for span in runview.load_spans(workdir):
        if span["attributes"].get(telemetry.ATTR_RUN_ID) == run_id and span["kind"] == "SERVER":
            return span
    return None


@pytest.fixture(scope="module")
def traced_run(api: GatewayClient, local_stack: LocalStack) -> dict[str, Any]:
    """One completed run (with a tool call) whose content carries a marker and a secret."""
    marker = f"Quetzal{uuid.uuid4().hex[:10]}"
    # Letters only after the prefix: the offline model takes the longest arithmetic run of the message, and a
    # key such as sk-ant-api03-96985988c6… made "03-96985988" outrun "1234 * 5678" (a flake in ~1 run of 40).
    secret = "sk-ant-api03-" + uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))
    session_id = api.create_session()
    accepted = api.send_message(session_id, f"My password is {secret}. Remember {marker}. What is 1234 * 5678?")
    run = api.wait_for_run(accepted["run_id"])
    assert run["status"] == "completed"
    workdir = local_stack.workdir

    def final_span_recorded() -> list[dict[str, Any]] | None:
        root = root_span_of(workdir, run["run_id"])
        if root is None:
            return None
        spans = spans_of_trace(workdir, root["trace_id"])
        finished = any(
            span["service"] == "gateway" and span["attributes"].get(telemetry.ATTR_DETAIL_TYPE) == "run.completed.v1"
            for span in spans
        )
        return spans if finished and {span["service"] for span in spans} >= set(SERVICES) else None

    spans = wait_until(final_span_recorded, timeout_s=20, what="the run's spans from every service")
    return {"run": run, "session_id": session_id, "marker": marker, "secret": secret, "spans": spans}


def test_one_run_is_one_trace_across_every_service(traced_run: dict[str, Any], local_stack: LocalStack) -> None:
    run_id = traced_run["run"]["run_id"]
    spans = traced_run["spans"]
    assert {span["service"] for span in spans} == set(SERVICES)
    # Every span of the run (found by its run attribute) is in this one trace.
    of_run = [
        span
        for span in runview.load_spans(local_stack.workdir)
        if span["attributes"].get(telemetry.ATTR_RUN_ID) == run_id
    ]
    assert {span["trace_id"] for span in of_run} == {spans[0]["trace_id"]}

    # One root: the gateway's HTTP request that accepted the run; every other span's parent is in the trace,
    # so each chain closes at that root.
    roots = [span for span in spans if span["parent_span_id"] is None]
    assert len(roots) == 1
    [root] = roots
    assert (root["service"], root["kind"], root["name"]) == ("gateway", "SERVER", "HTTP POST")
    assert root["attributes"]["http.response.status_code"] == 202
    by_id = {span["span_id"]: span for span in spans}
    for span in spans:
        hops = 0
        current = span
        while current["parent_span_id"] is not None:
            assert current["parent_span_id"] in by_id, f"{current['name']} has a parent outside the trace"
            current = by_id[current["parent_span_id"]]
            hops += 1
            assert hops < 50
        assert current is root
        assert span["start_ns"] >= root["start_ns"]

    # Each step's consumer span is about the event that asked for it, in the service that did it.
    consumed = {(span["service"], span["attributes"].get(telemetry.ATTR_DETAIL_TYPE)) for span in spans}
    for expected in (
        ("orchestrator", "run.requested.v1"),
        ("memory", "memory.context.requested.v1"),
        ("llm", "llm.completion.requested.v1"),
        ("tools", "tool.invocation.requested.v1"),
        ("orchestrator", "llm.completion.completed.v1"),
        ("gateway", "run.completed.v1"),
    ):
        assert expected in consumed, expected

    # The trace travelled on the bus: the recorded run.requested names the root span (X-Ray form).
    events = read_run_events(local_stack.workdir / EVENTS_DIR, run_id)
    [requested] = [line for line in events if line["detail_type"] == "run.requested.v1"]
    header = requested["detail"]["metadata"]["trace_header"]
    assert telemetry.xray_to_traceparent(header) == f"00-{root['trace_id']}-{root['span_id']}-01"


def test_the_trace_has_genai_model_and_tool_spans_under_their_record_spans(traced_run: dict[str, Any]) -> None:
    spans = traced_run["spans"]
    by_id = {span["span_id"]: span for span in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any]:
        return by_id[span["parent_span_id"]]

    # A service's own span for a record is the runtime's `process <detail-type>`, never a second one under it.
    nested = [span for span in spans if span["parent_span_id"] in by_id and parent(span)["name"] == span["name"]]
    assert not nested

    chats = [span for span in spans if span["attributes"].get(telemetry.GenAI.OPERATION_NAME) == "chat"]
    assert chats, "no GenAI model span in the trace"
    for chat in chats:
        attributes = chat["attributes"]
        assert (chat["service"], chat["kind"]) == ("llm", "CLIENT")
        assert chat["name"] == f"chat {attributes[telemetry.GenAI.REQUEST_MODEL]}"
        assert attributes[telemetry.GenAI.PROVIDER_NAME] and attributes[telemetry.GenAI.CONVERSATION_ID]
        assert attributes[telemetry.GenAI.USAGE_INPUT_TOKENS] > 0
        assert attributes[telemetry.GenAI.USAGE_OUTPUT_TOKENS] > 0
        assert parent(chat)["name"] == "process llm.completion.requested.v1" and parent(chat)["service"] == "llm"

    [tool] = [span for span in spans if span["name"] == "execute_tool calculator"]
    assert tool["service"] == "tools" and tool["status"] != "ERROR"
    assert tool["attributes"][telemetry.GenAI.OPERATION_NAME] == "execute_tool"
    assert tool["attributes"][telemetry.GenAI.TOOL_NAME] == "calculator"
    assert tool["attributes"][telemetry.GenAI.TOOL_CALL_ID]
    assert parent(tool)["name"] == "process tool.invocation.requested.v1"
    assert telemetry.GenAI.TOOL_CALL_ARGUMENTS not in tool["attributes"]  # content recording is off

    contexts = [span for span in spans if span["name"] == "assemble context"]
    assert contexts and all(span["service"] == "memory" for span in contexts)
    # Sizes, never content (the step that only saves the answer returns no context: 0 tokens).
    assert max(span["attributes"]["agentwire.context.tokens"] for span in contexts) > 0
    assert all("agentwire.context.messages" in span["attributes"] for span in contexts)


def test_a_runs_logs_join_by_run_id_and_trace_id_without_content_or_secrets(
    traced_run: dict[str, Any], local_stack: LocalStack
) -> None:
    run_id, trace_id = traced_run["run"]["run_id"], traced_run["spans"][0]["trace_id"]

    def lines_of_run() -> dict[str, list[dict[str, Any]]] | None:
        found: dict[str, list[dict[str, Any]]] = {}
        for service in SERVICES:
            for line in (local_stack.logs_dir / f"{service}.log").read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                record = json.loads(line)
                if run_id in (record.get("correlation_id"), record.get("run_id")):
                    found.setdefault(service, []).append(record)
        return found if set(found) == set(SERVICES) else None

    by_service = wait_until(lines_of_run, timeout_s=10, what="log lines of the run from every service")
    for service, records in by_service.items():
        traced = [record for record in records if record.get("trace_id")]
        assert traced, f"{service}: no line of the run carries a trace id"
        assert {record["trace_id"] for record in traced} == {trace_id}, service
        assert all(record.get("tenant_id") for record in records), service
        if service in ("orchestrator", "llm", "tools", "memory"):
            # Every line of a record carries the run, session, tenant and trace (`correlation_keys`); the
            # orchestrator's starter and resume consumers too (the run's answers all carry its session).
            for record in records:
                assert record.get("run_id") == run_id and record.get("session_id") == traced_run["session_id"], record
                assert record.get("trace_id") == trace_id, record

    everything = "\n".join(path.read_text(errors="replace") for path in local_stack.logs_dir.glob("*.log"))
    assert traced_run["marker"] not in everything
    assert traced_run["secret"] not in everything
    assert local_stack.api_key and local_stack.api_key not in everything
    # Nor in the spans: content recording is off by default.
    spans_text = "\n".join(path.read_text() for path in (local_stack.workdir / "spans").glob("*.jsonl"))
    assert traced_run["marker"] not in spans_text
    assert traced_run["secret"] not in spans_text


def test_runs_show_draws_the_run(
    traced_run: dict[str, Any], local_stack: LocalStack, capsys: pytest.CaptureFixture[str]
) -> None:
    run = traced_run["run"]
    workdir = local_stack.workdir
    wait_until(
        lambda: (
            any(
                line["detail_type"] == "run.completed.v1"
                for line in read_run_events(workdir / EVENTS_DIR, run["run_id"])
            )
            or None
        ),
        timeout_s=10,
        what="run.completed in the recorder",
    )
    view = runview.build_run(workdir, run["run_id"])
    assert view.status == "completed"
    assert view.session_id == traced_run["session_id"]
    assert view.trace_ids == [traced_run["spans"][0]["trace_id"]]
    kinds = [(step.kind, step.service) for step in view.steps]
    assert ("model", "llm") in kinds and ("tool", "tools") in kinds and ("context", "memory") in kinds
    assert all(step.status == "ok" and step.duration_ms is not None for step in view.steps)
    assert [step.start_ms for step in view.steps] == sorted(step.start_ms for step in view.steps)
    models = [step for step in view.steps if step.kind == "model"]
    assert sum(step.input_tokens for step in models) == view.input_tokens > 0
    assert sum(step.output_tokens for step in models) == view.output_tokens > 0
    [tool] = [step for step in view.steps if step.kind == "tool"]
    assert tool.tool == "calculator" and "1234" in (tool.tool_input or "") and "7006652" in (tool.tool_result or "")
    assert all(step.handler_ms is not None for step in view.steps), "every step's consumer span was found"

    assert cli.main(["--workdir", str(workdir), "runs", "show", run["run_id"]]) == 0
    drawn = capsys.readouterr().out
    assert run["run_id"] in drawn and "COMPLETED" in drawn and "█" in drawn
    assert re.search(r"llm\s+model", drawn) and re.search(r"tools\s+tool", drawn)

    assert cli.main(["--workdir", str(workdir), "runs", "show", run["run_id"], "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["run_id"] == run["run_id"] and len(as_json["steps"]) == len(view.steps)

    assert cli.main(["--workdir", str(workdir), "runs", "list", "--json", "--limit", "500"]) == 0
    listed = {item["run_id"]: item for item in json.loads(capsys.readouterr().out)}
    assert listed[run["run_id"]]["status"] == "completed"


def test_dlq_lists_a_dead_message_with_its_reason_and_redrives_it(local_stack: LocalStack, aws: Any) -> None:
    topology = local_stack.topology
    assert topology is not None
    queue = topology.queues_of("llm")[0]
    marker = f"dead-{uuid.uuid4()}"
    # A well-formed envelope whose data is not a valid request: the handler fails the record.
    body = json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": queue.detail_types[0],
            "source": "agentwire.test",
            "detail": {"metadata": {"run_id": marker}, "data": {"nonsense": True}},
        }
    )
    aws("sqs").send_message(QueueUrl=queue.queue_url, MessageBody=body)
    failures_file = local_stack.workdir / FAILURES_FILE

    def dead() -> dlq.DeadLetter | None:
        for letter in dlq.list_dead_letters(aws("sqs"), topology, failures_file):
            if letter.run_id == marker:
                return letter
        return None

    budget = queue.max_receive_count * queue.visibility_timeout_s + 20
    letter = wait_until(dead, timeout_s=budget, what="the message in the llm DLQ")
    assert letter.dlq == queue.dlq_name and letter.service == "llm"
    assert letter.reason != dlq.NO_REASON
    assert re.match(r"^\w+: ", letter.reason), letter.reason
    assert letter.receive_count == queue.max_receive_count
    # Peeking consumed nothing: it is still listed.
    assert dead() is not None

    moved = dlq.redrive(aws("sqs"), topology, f"{queue.service}/{queue.consumer}")
    assert moved.get(queue.dlq_name, 0) >= 1
    assert dead() is None
    # It went through the consumer again, failed again, and is back with a reason.
    again = wait_until(dead, timeout_s=budget, what="the redriven message back in the DLQ")
    assert again.message_id != letter.message_id and again.reason != dlq.NO_REASON


def test_the_dlq_cli_lists_the_reason_and_redrives(
    local_stack: LocalStack, aws: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agentwire dlq` and `agentwire dlq redrive` themselves (argument parsing, local.json, rendering),
    on the shared stack, with a poisoned message in the tools DLQ."""
    topology = local_stack.topology
    assert topology is not None
    (tmp_path / "local.json").write_text(json.dumps(local_stack.describe()))
    queue = topology.queues_of("tools")[0]
    marker = f"poison-{uuid.uuid4()}"
    body = json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": queue.detail_types[0],
            "source": "agentwire.test",
            "detail": {"metadata": {"run_id": marker}, "data": {"nonsense": True}},
        }
    )
    aws("sqs").send_message(QueueUrl=queue.queue_url, MessageBody=body)

    def listed() -> dict[str, Any] | None:
        assert cli.main(["--workdir", str(tmp_path), "dlq", "--json"]) == 0
        letters = json.loads(capsys.readouterr().out)
        return next((letter for letter in letters if letter["run_id"] == marker), None)

    budget = queue.max_receive_count * queue.visibility_timeout_s + 20
    letter = wait_until(listed, timeout_s=budget, what="the poisoned message in `agentwire dlq --json`")
    assert (letter["dlq"], letter["service"]) == (queue.dlq_name, "tools")
    assert letter["reason"] != dlq.NO_REASON and re.match(r"^\w+: ", letter["reason"]), letter["reason"]

    assert cli.main(["--workdir", str(tmp_path), "dlq"]) == 0
    drawn = capsys.readouterr().out
    [entry] = [line for line in drawn.splitlines() if marker in line]
    assert letter["message_id"] in entry and queue.detail_types[0] in entry
    following = drawn.splitlines()[drawn.splitlines().index(entry) + 1]
    # The whole reason, on the one indented line under its message.
    assert (
        following.startswith("      reason: ") and following.strip() == f"reason: {' '.join(letter['reason'].split())}"
    )

    assert cli.main(["--workdir", str(tmp_path), "dlq", "redrive", "--queue", "no-such-queue"]) == 1
    assert "no queue or DLQ named 'no-such-queue'" in capsys.readouterr().out
    assert cli.main(["--workdir", str(tmp_path), "dlq", "redrive", "--queue", f"tools/{queue.consumer}"]) == 0
    moved = capsys.readouterr().out
    assert re.search(rf"{re.escape(queue.dlq_name)}: moved [1-9]\d* message\(s\) back to the source queue", moved)
    # Out of the DLQ: on its source queue (or already being retried by the tools worker).
    assert listed() is None
    again = wait_until(listed, timeout_s=budget, what="the redriven message back in the DLQ")
    assert again["message_id"] != letter["message_id"] and again["reason"] != dlq.NO_REASON


def emf_blobs(logs_dir: Path) -> list[dict[str, Any]]:
    """Every EMF document the workers printed (what CloudWatch turns into metrics on AWS)."""
    blobs = []
    for path in sorted(logs_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"_aws"' in line:
                blobs.append(json.loads(line))
    return blobs


def test_the_run_emits_the_catalogued_metrics_as_valid_emf(traced_run: dict[str, Any], local_stack: LocalStack) -> None:
    """The handlers' metrics, as the local workers printed them: valid EMF in the agentwire namespace, each
    catalogued metric with its catalogued unit, its emitting service as `service` and its dimensions; the
    run's path (requested, started, resumed, model and tool calls, completed) is all there."""
    catalogue = {metric.name: metric for metric in telemetry.METRICS}

    def emitted() -> list[dict[str, Any]] | None:
        blobs = emf_blobs(Path(local_stack.logs_dir))
        names = {metric["Name"] for blob in blobs for d in blob["_aws"]["CloudWatchMetrics"] for metric in d["Metrics"]}
        wanted = {"RunsRequested", "RunsStarted", "TasksResumed", "Completions", "ToolCalls", "RunsCompleted"}
        return blobs if wanted <= names else None

    blobs = wait_until(emitted, timeout_s=20, what="the run's metrics in the worker logs")
    checked = 0
    for blob in blobs:
        assert isinstance(blob["_aws"]["Timestamp"], int)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == telemetry.METRICS_NAMESPACE
            [dimensions] = directive["Dimensions"]
            assert "service" in dimensions and all(name in blob for name in dimensions), blob
            for metric in directive["Metrics"]:
                assert metric["Name"] in blob, blob
                known = catalogue.get(metric["Name"])
                if known is None:
                    continue  # an operational metric (docs/observability.md's second table)
                assert metric["Unit"] == known.unit, (metric, known)
                # memory serves tools too (remember, forget, the agent state) and counts them the same way.
                emitters = (
                    {known.emitted_by, "memory"} if known.name in ("ToolCalls", "ToolErrors") else {known.emitted_by}
                )
                if known.emitted_by == "every consumer":
                    emitters = set(SERVICES)
                assert blob["service"] in emitters, (metric["Name"], blob["service"])
                assert set(dimensions) - {"service"} <= set(known.dimensions), (metric["Name"], dimensions)
                checked += 1
    assert checked >= 6
