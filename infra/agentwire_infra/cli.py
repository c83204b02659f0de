"""`agentwire`: run the whole system on this machine.

agentwire up [--port N]            emulator + five workers + gateway HTTP, until Ctrl-C
agentwire keys create --tenant T   a new API key on the running stack
agentwire demo                     a three-turn conversation (starts a stack if none runs)
agentwire bench [--runs N --concurrency C]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentwire_infra.local.stack import (
    DEFAULT_WORKDIR,
    LocalStack,
    StackError,
    StackSettings,
    running_stack,
)


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM set the event; the caller stops the stack in its own `finally`."""
    stop = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def cmd_up(args: argparse.Namespace) -> int:
    if running_stack(args.workdir):
        print(f"a stack is already running (see {args.workdir / 'local.json'})", file=sys.stderr)
        return 1
    settings = StackSettings(
        workdir=args.workdir, gateway_port=args.port, llm_provider=args.provider, worker_processes=args.sandboxes
    )
    stop = _stop_on_signals()
    print("starting the emulator and the five services…", flush=True)
    with LocalStack(settings) as stack:
        described = stack.describe()
        print(
            f"\nagentwire is up\n"
            f"  gateway   {stack.gateway_url}\n"
            f"  api key   {stack.api_key}   (tenant {settings.dev_tenant})\n"
            f"  emulator  {described['emulator_url']}\n"
            f"  logs      {described['logs']}/<service>.log\n"
            f"  state     {args.workdir / 'local.json'}\n\n"
            f"  curl -s -X POST {stack.gateway_url}/v1/sessions -H 'Authorization: Bearer {stack.api_key}'\n\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        reported = 0
        while not stop.wait(1.0):
            for crash in stack.crashes[reported:]:
                then = "started again" if crash.restarted else "not started again (crash loop)"
                print(
                    f"the {crash.service} worker exited ({crash.returncode}); {then}; see {args.workdir}/logs",
                    file=sys.stderr,
                )
            reported = len(stack.crashes)
            if stack.given_up:
                return 1
        print("\nstopping…", flush=True)
    print("stopped", flush=True)
    return 0


@contextmanager
def gateway_for_demo(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """The running stack's gateway and key, or a stack started (and stopped) for the demo."""
    described = running_stack(args.workdir)
    if described and described.get("api_key"):
        print(f"using the running stack at {described['gateway_url']}\n")
        yield described["gateway_url"], described["api_key"]
        return
    print("no stack running; starting one (offline model provider)…", flush=True)
    settings = StackSettings(workdir=args.workdir, llm_provider=args.provider or "offline")
    with LocalStack(settings) as stack:
        assert stack.api_key is not None
        yield stack.gateway_url, stack.api_key


def cmd_demo(args: argparse.Namespace) -> int:
    from agentwire_infra.demo import run_demo
    from agentwire_infra.local.client import GatewayClient

    with gateway_for_demo(args) as (url, key), GatewayClient(url, key) as client:
        result = run_demo(client)
    return 0 if result.ok else 1


def run_suites(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark suites of `agentwire_infra.benchmarks` (all, or those named with --suite)."""
    from agentwire_infra.benchmarks import suites

    available = suites()
    chosen = args.suite or sorted(available)
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise StackError(f"unknown benchmark suite(s) {unknown}; have {sorted(available)}")
    figures: dict[str, Any] = {}
    for name in chosen:
        print(f"\n== {name}: {available[name].DESCRIPTION}", flush=True)
        figures[name] = available[name].run(args.workdir / "bench" / name)
    return figures


def cmd_bench(args: argparse.Namespace) -> int:
    from agentwire_infra.bench import format_result, run_bench, write_script

    if args.only_suites:
        suite_figures = run_suites(args)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        previous = json.loads(args.output.read_text()) if args.output.exists() else {}
        previous.setdefault("suites", {}).update(suite_figures)
        args.output.write_text(json.dumps(previous, indent=2) + "\n")
        print(f"\nwrote {args.output}")
        return 0

    # Its own directory (logs kept for a look afterwards), beside a stack `up` may be running.
    workdir = args.workdir / "bench"
    script = write_script(workdir / "script.json", args.runs, args.concurrency, args.warmup)
    settings = StackSettings(
        workdir=workdir,
        llm_provider="scripted",
        llm_script=script,
        dev_tenant="bench",
        write_local_json=False,
        worker_log_level="WARNING",
        worker_env={"POWERTOOLS_LOG_LEVEL": args.handler_log_level},
        # The recorder's tap doubles the SQS traffic per event; the benchmark measures the system itself.
        record_events=False,
        worker_processes=args.sandboxes,
    )
    print(f"starting a stack for the benchmark ({args.runs} runs, concurrency {args.concurrency})…", flush=True)
    with LocalStack(settings) as stack:
        result = run_bench(stack, runs=args.runs, concurrency=args.concurrency, warmup_runs=args.warmup)
    result.environment = {
        "handler_log_level": args.handler_log_level,
        "warmup_runs": args.warmup,
        "worker_processes": {s: settings.processes_of(s) for s in settings.services},
    }
    print(format_result(result))
    figures = json.loads(result.to_json())
    figures["suites"] = {} if args.no_suites else run_suites(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0 if result.failed_runs == 0 else 1


def sandboxes(text: str) -> dict[str, int]:
    """`memory=3,llm=2` → {"memory": 3, "llm": 2}: worker processes per service (Lambda sandboxes)."""
    from agentwire_contracts.services import SERVICES

    found: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        service, equals, count = part.partition("=")
        if not equals or service not in SERVICES or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"{part!r}: expected SERVICE=N with N >= 1 and SERVICE one of {SERVICES}")
        found[service] = int(count)
    return found


def add_sandboxes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sandboxes",
        type=sandboxes,
        default={},
        metavar="SERVICE=N,...",
        help="worker processes per service, as Lambda runs several sandboxes (default 1 each; the gateway keeps 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentwire", description="agentwire on this machine")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="state and logs (default .agentwire)")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start everything and run until Ctrl-C")
    up.add_argument("--port", type=int, default=8080, help="the gateway's HTTP port (0: any free port)")
    up.add_argument(
        "--provider",
        choices=("offline", "scripted", "anthropic"),
        default=None,
        help="the llm provider (default: anthropic if ANTHROPIC_API_KEY is set, else offline)",
    )
    add_sandboxes_option(up)
    up.set_defaults(handler=cmd_up)

    demo = commands.add_parser("demo", help="a three-turn conversation with a tool call and memory")
    demo.add_argument("--provider", choices=("offline", "anthropic"), default=None)
    demo.set_defaults(handler=cmd_demo)

    bench = commands.add_parser("bench", help="throughput and per-hop latency on the scripted provider")
    bench.add_argument("--runs", type=int, default=100)
    bench.add_argument("--concurrency", type=int, default=20)
    bench.add_argument("--warmup", type=int, default=2, help="runs before the clock starts (cold starts)")
    bench.add_argument("--output", type=Path, default=Path("bench/results.json"))
    bench.add_argument(
        "--handler-log-level",
        default="WARNING",
        help="the services' log level during the benchmark (INFO logs a line per record)",
    )
    bench.add_argument(
        "--suite", action="append", default=[], help="run only this suite of agentwire_infra.benchmarks (repeatable)"
    )
    add_sandboxes_option(bench)
    bench.add_argument("--no-suites", action="store_true", help="only the run-throughput benchmark")
    bench.add_argument("--only-suites", action="store_true", help="only the suites (merged into --output)")
    bench.set_defaults(handler=cmd_bench)

    from agentwire_infra.commands import register_all

    register_all(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "port", None) == 0:
        args.port = None
    try:
        return int(args.handler(args))
    except StackError as exc:
        print(f"agentwire: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
