"""`agentwire demo` on the shared stack (offline model): the three turns pass their own checks, every run
prints its cost, and the ops session's send_notification waits for a human approval, is approved the
CLI's way, and runs exactly once."""

from __future__ import annotations

from agentwire_infra.demo import APPROVAL_TOOL, run_demo
from agentwire_infra.local.client import GatewayClient


def test_the_demo_passes_on_the_offline_model_with_an_approval(api: GatewayClient) -> None:
    lines: list[str] = []
    result = run_demo(api, out=lines.append, timeout_s=60)
    printed = "\n".join(lines)
    assert result.ok, printed
    assert [run["status"] for run in result.runs] == ["completed"] * 3
    assert printed.count("cost: $") == 4
    # Offline costs nothing; each run also says what its tokens cost on the agents' real model ($2/$10 per
    # million for claude-sonnet-5-5), which is never zero for a run that used tokens.
    for run in [*result.runs, result.approval_run]:
        usage = run["usage"]
        expected = (usage["input_tokens"] * 2.0 + usage["output_tokens"] * 10.0) / 1_000_000
        assert f"cost: $0.000000 (${expected:.6f} on claude-sonnet-5-5)" in printed, printed
    assert result.approval["tool_name"] == APPROVAL_TOOL and result.approval["status"] == "pending"
    assert result.approval_run["status"] == "completed"
    assert f"/approve {result.approval['approval_id']}" in printed
    assert "demo OK" in printed
    # Memory across turns and a tool call: the second turn's calculator call and its result are printed,
    # and each run lists its steps by service (the tools service ran the calculator).
    assert 'tool call: calculator({"expression": "1234 * 5678"})' in printed, printed
    assert "result: 7006652" in printed, printed
    assert any(line.split()[:2] == ["tools", "tool"] and "calculator" in line for line in lines), printed
    assert all(f"run {run['run_id']}: completed" in printed for run in result.runs), printed
