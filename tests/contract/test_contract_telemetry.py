"""agentwire_contracts.telemetry: trace context across events (W3C and X-Ray), the local span file,
GenAI attributes, content off by default and redacted when on, the metrics catalogue."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentwire_contracts import telemetry
from agentwire_contracts.content import Message, TextBlock, Usage
from agentwire_contracts.envelope import Event
from agentwire_contracts.events import LlmCompletionCompleted, RunRequested

ROOT = Path(__file__).resolve().parents[2]
TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def spans_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "spans.jsonl"
    telemetry.configure("testsvc", spans_file=path, force=True)
    yield path
    telemetry.flush()


def spans_in(path: Path) -> list[dict[str, Any]]:
    return telemetry.read_spans([path])


def run_requested(**metadata: Any) -> Event[Any]:
    data = RunRequested(session_id="s-1", input=Message(role="user", content=[TextBlock(text="hello")]))
    return Event.create(data, tenant_id="t-1", run_id="r-1", **metadata)


def test_xray_and_traceparent_convert_both_ways() -> None:
    assert telemetry.xray_to_traceparent(XRAY) == TRACEPARENT
    assert telemetry.traceparent_to_xray(TRACEPARENT) == XRAY
    unsampled = XRAY.replace("Sampled=1", "Sampled=0")
    assert telemetry.xray_to_traceparent(unsampled) == TRACEPARENT[:-2] + "00"
    # Lambda's header may name a Lineage and put fields in another order.
    reordered = "Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793;Lineage=a:1"
    assert telemetry.xray_to_traceparent(reordered) == TRACEPARENT
    for broken in (
        None,
        "",
        "Root=1-5759e988-bd862e3fe1be46a994272793",
        "Root=2-x;Parent=53995c3f42cd8ad8",
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=0000000000000000",
    ):
        assert telemetry.xray_to_traceparent(broken) is None
    for broken_tp in (
        "",
        "00-0000-1-01",
        "ff-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01",
        "00-00000000000000000000000000000000-53995c3f42cd8ad8-01",
    ):
        assert telemetry.traceparent_to_xray(broken_tp) is None


def test_a_span_for_an_event_is_the_child_of_its_traceparent(spans_file: Path) -> None:
    event = run_requested(traceparent=TRACEPARENT)
    with telemetry.span_for_event("process run.requested", event) as span:
        inner = span.get_span_context()
        fields = telemetry.trace_fields()
    [recorded] = spans_in(spans_file)
    assert recorded["trace_id"] == "5759e988bd862e3fe1be46a994272793"
    assert recorded["parent_span_id"] == "53995c3f42cd8ad8"
    assert recorded["span_id"] == f"{inner.span_id:016x}"
    assert recorded["service"] == "testsvc"
    assert recorded["kind"] == "CONSUMER"
    assert recorded["attributes"]["agentwire.run_id"] == "r-1"
    assert recorded["attributes"]["agentwire.tenant_id"] == "t-1"
    assert recorded["attributes"]["agentwire.detail_type"] == RunRequested.detail_type
    # What the next event carries names this span, in both forms.
    assert fields["traceparent"] == f"00-5759e988bd862e3fe1be46a994272793-{inner.span_id:016x}-01"
    assert telemetry.xray_to_traceparent(fields["trace_header"]) == fields["traceparent"]


def test_the_xray_header_is_the_parent_when_there_is_no_traceparent(spans_file: Path) -> None:
    # Step Functions copies only the X-Ray header into the requests it publishes.
    with telemetry.span_for_event("process", {"run_id": "r-2", "trace_header": XRAY}):
        pass
    [recorded] = spans_in(spans_file)
    assert (recorded["trace_id"], recorded["parent_span_id"]) == (
        "5759e988bd862e3fe1be46a994272793",
        "53995c3f42cd8ad8",
    )


def test_without_context_a_span_starts_a_new_trace(spans_file: Path) -> None:
    with telemetry.span_for_event("process", run_requested()):
        pass
    [recorded] = spans_in(spans_file)
    assert recorded["parent_span_id"] is None
    assert re.fullmatch(r"[0-9a-f]{32}", recorded["trace_id"])


def test_answer_continues_the_current_span_and_keeps_the_identity(spans_file: Path) -> None:
    request = run_requested(traceparent=TRACEPARENT, task_token="tok")
    data = LlmCompletionCompleted(
        session_id="s-1",
        step=0,
        message=Message(role="assistant", content=[TextBlock(text="hi")]),
        stop_reason="end_turn",
    )
    outside = telemetry.answer(request, data)
    # No current span: the request's context passes on unchanged (an uninstrumented hop).
    assert (outside.metadata.traceparent, outside.metadata.trace_header) == (TRACEPARENT, None)
    with telemetry.span_for_event("work", request) as span:
        answered = telemetry.answer(request, data)
        span_id = f"{span.get_span_context().span_id:016x}"
    assert answered.metadata.traceparent == f"00-5759e988bd862e3fe1be46a994272793-{span_id}-01"
    assert answered.metadata.trace_header == telemetry.traceparent_to_xray(answered.metadata.traceparent)
    assert answered.metadata.causation_id == request.metadata.event_id
    identity = (answered.metadata.task_token, answered.metadata.run_id, answered.metadata.tenant_id)
    assert identity == ("tok", "r-1", "t-1")


def test_a_failure_marks_the_span_with_the_error_type_but_not_its_message(spans_file: Path) -> None:
    with pytest.raises(ValueError), telemetry.span_for_event("work", run_requested()):
        raise ValueError("the user's secret question")
    [recorded] = spans_in(spans_file)
    assert recorded["status"] == "ERROR"
    assert recorded["attributes"]["error.type"] == "ValueError"
    assert "secret question" not in json.dumps(recorded)


def test_genai_model_call_attributes_follow_the_conventions() -> None:
    attributes = telemetry.model_call_attributes(
        provider="bedrock", model="claude-x", max_tokens=512, session_id="s-1", agent="assistant", step=2
    )
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": "claude-x",
        "gen_ai.request.max_tokens": 512,
        "gen_ai.conversation.id": "s-1",
        "gen_ai.agent.name": "assistant",
        "agentwire.step": 2,
    }
    usage = telemetry.usage_attributes(
        Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=3, cache_creation_input_tokens=2),
        response_model="claude-x-2025",
        finish_reason="end_turn",
        cost_microusd=1234,
    )
    assert usage == {
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 3,
        "gen_ai.usage.cache_creation.input_tokens": 2,
        "gen_ai.response.model": "claude-x-2025",
        "gen_ai.response.finish_reasons": ["end_turn"],
        "agentwire.cost_microusd": 1234,
    }
    assert telemetry.usage_attributes({"input_tokens": 7})["gen_ai.usage.input_tokens"] == 7


def test_tool_attributes_record_content_only_when_enabled_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(telemetry.ENV_RECORD_CONTENT, raising=False)
    monkeypatch.delenv(telemetry.ENV_GENAI_CAPTURE_CONTENT, raising=False)
    arguments = {"query": "weather in Paris", "api_key": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"}
    off = telemetry.tool_call_attributes(tool_name="search", call_id="c-1", arguments=arguments, result="sunny")
    assert off == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.id": "c-1",
    }
    monkeypatch.setenv(telemetry.ENV_RECORD_CONTENT, "true")
    on = telemetry.tool_call_attributes(tool_name="search", arguments=arguments, result="x" * 10_000)
    assert "weather in Paris" in on["gen_ai.tool.call.arguments"]
    assert "sk-ant" not in on["gen_ai.tool.call.arguments"]
    assert len(on["gen_ai.tool.call.result"]) == telemetry.MAX_CONTENT_CHARS
    monkeypatch.delenv(telemetry.ENV_RECORD_CONTENT)
    monkeypatch.setenv(telemetry.ENV_GENAI_CAPTURE_CONTENT, "true")
    assert telemetry.content_recording_enabled()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv here", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"),
        ("openai sk-proj-AbCdEfGhIjKlMnOpQrStUv12", "sk-proj-AbCdEfGhIjKlMnOpQrStUv12"),
        ("aws AKIAIOSFODNN7EXAMPLE ok", "AKIAIOSFODNN7EXAMPLE"),
        ("Authorization: Bearer awk_abcdefghijklmnopqrstuvwx", "awk_abcdefghijklmnopqrstuvwx"),
        ("curl -H 'Bearer abc.def-ghi_jkl'", "abc.def-ghi_jkl"),
        ('{"password": "hunter2", "user": "ann"}', "hunter2"),
        ("token=deadbeefcafe&x=1", "deadbeefcafe"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
    ],
)
def test_redact_removes_secrets(text: str, secret: str) -> None:
    redacted = telemetry.redact(text)
    assert secret not in redacted
    assert telemetry.REDACTED in redacted


def test_redact_keeps_ordinary_text() -> None:
    text = "The weather in Paris is sunny; the tokenizer counted 12 tokens."
    assert telemetry.redact(text) == text


def test_correlation_keys_carry_the_trace_id(spans_file: Path) -> None:
    event = run_requested(traceparent=TRACEPARENT)
    assert telemetry.correlation_keys(event.metadata, session_id="s-1") == {
        "run_id": "r-1",
        "tenant_id": "t-1",
        "session_id": "s-1",
        "trace_id": "5759e988bd862e3fe1be46a994272793",
    }
    with telemetry.span_for_event("work", event):
        keys = telemetry.correlation_keys(event.metadata)
    assert keys["trace_id"] == "5759e988bd862e3fe1be46a994272793"
    assert re.fullmatch(r"[0-9a-f]{16}", keys["span_id"])


def test_the_local_default_is_a_spans_file_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(telemetry.ENV_SPANS_FILE, raising=False)
    monkeypatch.setenv(telemetry.ENV_STAGE, "local")
    assert telemetry.default_spans_file("llm") == Path("spans/llm.jsonl")
    monkeypatch.setenv(telemetry.ENV_SPANS_FILE, "/tmp/x/{service}-{pid}.jsonl")
    assert str(telemetry.default_spans_file("llm")).startswith("/tmp/x/llm-")
    monkeypatch.delenv(telemetry.ENV_SPANS_FILE)
    monkeypatch.delenv(telemetry.ENV_STAGE)
    assert telemetry.default_spans_file("llm") is None


def test_an_otlp_endpoint_adds_the_otlp_exporter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    provider = telemetry.configure("svc", spans_file=tmp_path / "s.jsonl", force=True)
    exporters = [
        getattr(processor, "span_exporter", None)
        or getattr(getattr(processor, "_batch_processor", None), "_exporter", None)
        for processor in provider._active_span_processor._span_processors
    ]
    assert any(isinstance(exporter, OTLPSpanExporter) for exporter in exporters), exporters
    assert any(isinstance(exporter, telemetry.JsonlSpanExporter) for exporter in exporters), exporters
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    telemetry.configure("svc", spans_file=tmp_path / "s.jsonl", force=True)


def test_the_metrics_catalogue_is_documented() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    names = [metric.name for metric in telemetry.METRICS]
    assert len(names) == len(set(names))
    for metric in telemetry.METRICS:
        assert f"`{metric.name}`" in doc, f"{metric.name} is missing from docs/observability.md"
        assert metric.unit in {"Count", "Milliseconds", "Bytes"}
    assert telemetry.metric("RunsFailed").dimensions == ("reason",)


# -- the catalogue, both ways --------------------------------------------------------------------------

METRIC_CALLS = ("add_metric", "single_metric")


@dataclass(frozen=True)
class CatalogueRow:
    name: str
    unit: str
    dimensions: tuple[str, ...]
    emitted_by: str
    meaning: str
    table: int  # 0: the dashboard metrics (METRICS), 1: the operational ones


def catalogue_rows(doc: str) -> list[CatalogueRow]:
    """The metric rows of the tables in the doc's `## Metrics catalogue` section, in order."""
    section = doc.split("## Metrics catalogue", 1)[1].split("\n## ", 1)[0]
    rows: list[CatalogueRow] = []
    table = -1
    for line in section.splitlines():
        if line.startswith("| metric |"):
            table += 1
        match = re.match(r"^\| `(\w+)` \|([^|]*)\|([^|]*)\|([^|]*)\|(.*)\|$", line)
        if match:
            name, unit, dimensions, emitted_by, meaning = (part.strip() for part in match.groups())
            dims = () if dimensions in ("—", "") else tuple(d.strip() for d in dimensions.split(","))
            rows.append(CatalogueRow(name, unit, dims, emitted_by, meaning, table))
    return rows


def emitters_named(row: CatalogueRow) -> tuple[str, ...]:
    from agentwire_contracts.services import SERVICES

    if row.emitted_by == "every consumer":
        return tuple(SERVICES)
    return tuple(part.strip() for part in row.emitted_by.split("(")[0].split(","))


def _literal_names(node: ast.expr | None) -> list[str] | None:
    return [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def metric_names_in(source: str, where: str) -> set[str]:
    """Every metric name `add_metric(name=...)` / `single_metric(name=...)` calls in `source` emit. A name
    held in a variable is followed to the loop tuples that bind it (`for name, ... in (("X", ...), ...)`)
    or to the string arguments of the helper whose parameter it is (`_count("X")`); anything else (an
    f-string, a computed name) cannot be catalogued and fails."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names: set[str] = set()
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = call.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if called not in METRIC_CALLS:
            continue
        arg = next((kw.value for kw in call.keywords if kw.arg == "name"), call.args[0] if call.args else None)
        literal = _literal_names(arg)
        if literal is not None:
            names.update(literal)
            continue
        assert isinstance(arg, ast.Name), f"{where}:{call.lineno}: a metric name must be a literal (catalogue it)"
        found = _bound_names(arg.id, call, parents, tree)
        assert found, f"{where}:{call.lineno}: cannot tell which metric `{arg.id}` names"
        names.update(found)
    return names


def _bound_names(variable: str, call: ast.AST, parents: dict[ast.AST, ast.AST], tree: ast.Module) -> set[str]:
    node: ast.AST | None = call
    while node is not None:
        node = parents.get(node)
        if isinstance(node, ast.For) and isinstance(node.target, ast.Tuple) and isinstance(node.iter, ast.Tuple):
            position = [getattr(t, "id", None) for t in node.target.elts].index(variable)
            return {
                element.elts[position].value
                for element in node.iter.elts
                if isinstance(element, ast.Tuple) and isinstance(element.elts[position], ast.Constant)
            }
        if isinstance(node, ast.FunctionDef):
            params = [a.arg for a in node.args.args]
            if variable not in params:
                return set()
            position = params.index(variable)
            helper = node.name
            return {
                c.args[position].value
                for c in ast.walk(tree)
                if isinstance(c, ast.Call)
                and isinstance(c.func, ast.Name)
                and c.func.id == helper
                and len(c.args) > position
                and isinstance(c.args[position], ast.Constant)
            }
    return set()


def emitted_metrics() -> dict[str, set[str]]:
    """service → the metric names its package emits."""
    from agentwire_contracts.services import SERVICES

    emitted: dict[str, set[str]] = {}
    for service in SERVICES:
        for path in sorted((ROOT / "services" / service / f"agentwire_{service}").rglob("*.py")):
            names = metric_names_in(path.read_text(), str(path.relative_to(ROOT)))
            emitted.setdefault(service, set()).update(names)
    return emitted


def test_the_metric_scanner_finds_literal_looped_and_helper_names() -> None:
    source = """
def _count(name, value=1):
    with single_metric(name=name, unit="Count", value=value) as metric:
        pass

def handle():
    metrics.add_metric(name="Direct", unit="Count", value=1)
    _count("ViaHelper")
    for name, unit in (("Looped", "Count"), ("AlsoLooped", "Count")):
        with single_metric(name=name, unit=unit, value=1):
            pass
"""
    assert metric_names_in(source, "x.py") == {"Direct", "ViaHelper", "Looped", "AlsoLooped"}
    with pytest.raises(AssertionError, match="must be a literal"):
        metric_names_in('metrics.add_metric(name=f"Runs_{outcome}", unit="Count", value=1)', "x.py")


def test_every_metric_the_code_emits_is_in_the_catalogue_with_its_emitter() -> None:
    rows = {row.name: row for row in catalogue_rows((ROOT / "docs" / "observability.md").read_text())}
    missing, wrong_emitter = [], []
    for service, names in emitted_metrics().items():
        for name in sorted(names):
            if name not in rows:
                missing.append(f"{service}: {name}")
            elif service not in emitters_named(rows[name]):
                wrong_emitter.append(f"{name} is emitted by {service}; the catalogue says {rows[name].emitted_by}")
    assert missing == [], "emitted but not in docs/observability.md's metrics catalogue"
    assert wrong_emitter == []


def test_every_catalogue_entry_is_emitted_by_what_it_names_or_is_cloudwatchs() -> None:
    """The catalogue (and so the dashboards and alarms built from it) never names a metric no code emits,
    unless the row says so: CloudWatch's own (`AWS/...`) or `not emitted` (and then `planned` in METRICS)."""
    emitted = emitted_metrics()
    rows = catalogue_rows((ROOT / "docs" / "observability.md").read_text())
    assert len(rows) == len({row.name for row in rows}), "a metric is listed twice"
    not_emitted = []
    for row in rows:
        if row.emitted_by.startswith("AWS/"):
            assert "Not EMF" in row.meaning, row
            continue
        if "not emitted" in row.emitted_by:
            assert telemetry.metric(row.name).planned and "Not emitted" in row.meaning, row
            continue
        not_emitted += [f"{service}: {row.name}" for service in emitters_named(row) if row.name not in emitted[service]]
    assert not_emitted == []


def test_the_dashboard_table_is_the_metrics_catalogue_of_the_contracts() -> None:
    """The first table is `telemetry.METRICS` (what the CDK dashboards are built from): same metrics, same
    order, units, dimensions and emitter; every other emitted metric is in the second table."""
    rows = catalogue_rows((ROOT / "docs" / "observability.md").read_text())
    assert {row.table for row in rows} == {0, 1}
    dashboard = [row for row in rows if row.table == 0]
    assert [row.name for row in dashboard] == [metric.name for metric in telemetry.METRICS]
    for row, metric in zip(dashboard, telemetry.METRICS, strict=True):
        assert (row.unit, row.dimensions) == (metric.unit, metric.dimensions), row.name
        assert metric.emitted_by in emitters_named(row) or row.emitted_by == metric.emitted_by, row.name
        assert metric.planned == ("not emitted" in row.emitted_by), row.name
