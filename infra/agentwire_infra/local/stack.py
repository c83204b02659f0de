"""The local stack's process tree, in one place: emulator, provisioning, one worker per service, a dev key.

`agentwire up`, `demo`, `bench` and the test fixtures all use `LocalStack`:

    with LocalStack(StackSettings(workdir=Path(".agentwire"))) as stack:
        print(stack.gateway_url, stack.api_key)

Layout of the work directory: `logs/<service>.log` (and `emulator.log`), `run/<service>.ready`,
`topology.json` (what provisioning created; the workers read it), `local.json` (what a client needs:
the gateway URL, the emulator URL, the dev API key, the table names), and what `agentwire runs` and
`agentwire dlq` read: `events/<run_id>.jsonl` (every event of a run, from the recorder's tap on the bus),
`spans/<service>.jsonl` (OpenTelemetry spans) and `failures.jsonl` (why records failed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from agentwire_contracts.names import DEFAULT_PREFIX
from agentwire_contracts.services import SERVICES

from agentwire_infra.local.emulator import REGION, Emulator, free_port, launch_emulator
from agentwire_infra.local.provision import Topology, load_manifest, planned_environment, provision
from agentwire_infra.local.recorder import EventRecorder, provision_recorder
from agentwire_infra.local.tracing import FAILURES_FILE
from agentwire_infra.local.worker import CONCURRENCY_ENV

DEFAULT_WORKDIR = Path(".agentwire")
LOCAL_JSON = "local.json"
TOPOLOGY_JSON = "topology.json"
#: Seconds a failed message stays invisible locally before it is retried (see `provision`).
DEFAULT_LOCAL_VISIBILITY_TIMEOUT_S = 5
DEFAULT_TENANT = "dev"
GATEWAY_SERVICE = "gateway"


class StackError(RuntimeError):
    """The stack could not start, or a part of it died."""


@dataclass
class StackSettings:
    workdir: Path = DEFAULT_WORKDIR
    prefix: str = DEFAULT_PREFIX
    #: None picks a free loopback port.
    gateway_port: int | None = None
    emulator_port: int | None = None
    #: `offline`, `scripted`, `anthropic` or None to let the llm service decide (`auto`).
    llm_provider: str | None = None
    llm_script: Path | None = None
    visibility_timeout_s: int | None = DEFAULT_LOCAL_VISIBILITY_TIMEOUT_S
    #: The tenant of the API key created at start; None creates none.
    dev_tenant: str | None = DEFAULT_TENANT
    #: Extra environment for every worker (e.g. log levels).
    worker_env: dict[str, str] = field(default_factory=dict)
    worker_log_level: str = "INFO"
    #: Write `local.json` so `agentwire keys create` and other clients find the stack.
    write_local_json: bool = True
    start_timeout_s: float = 60.0
    #: The services to run workers for (all of them but in tests of one service's consumer).
    services: tuple[str, ...] = SERVICES
    #: Tap the bus into `events/<run_id>.jsonl` (what `agentwire runs` shows). Costs one more SQS message
    #: per event on the emulator; the throughput benchmark turns it off.
    record_events: bool = True
    #: Replace a worker that dies while the stack runs, as Lambda replaces a crashed sandbox: its batch in
    #: hand was not deleted, so SQS delivers it again after the visibility timeout. `crashes` keeps each.
    restart_crashed_workers: bool = True
    #: More crashes than this of one service is a crash loop: the stack stops replacing it (`given_up`).
    max_restarts_per_service: int = 5
    #: Worker processes per service (default one). Lambda runs one invocation per sandbox and as many
    #: sandboxes as messages wait; each process here is one more sandbox for all of that service's
    #: consumers. The gateway keeps one (it also serves the HTTP port).
    worker_processes: dict[str, int] = field(default_factory=dict)

    def processes_of(self, service: str) -> int:
        return 1 if service == GATEWAY_SERVICE else max(1, int(self.worker_processes.get(service, 1)))


@dataclass
class WorkerProcess:
    service: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_file: Path

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass(frozen=True)
class WorkerCrash:
    """A worker process that exited while the stack was running."""

    service: str
    returncode: int | None
    log_tail: str
    restarted: bool


#: How often the supervisor looks for dead workers.
SUPERVISE_PERIOD_S = 0.5


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalStack:
    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.workdir = self.settings.workdir.resolve()
        self.logs_dir = self.workdir / "logs"
        self.run_dir = self.workdir / "run"
        self.emulator: Emulator | None = None
        self.topology: Topology | None = None
        self.workers: dict[str, WorkerProcess] = {}
        self.gateway_port: int | None = None
        self.api_key: str | None = None
        self.recorder: EventRecorder | None = None
        self.crashes: list[WorkerCrash] = []
        self.given_up: set[str] = set()
        self._topology_path = self.workdir / TOPOLOGY_JSON
        self._supervising = threading.Event()
        self._supervisor: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        topology_path = self.workdir / TOPOLOGY_JSON
        for stale in (*self.run_dir.glob("*.ready"), topology_path):
            stale.unlink(missing_ok=True)
        # Start-up is mostly imports (seconds of CPU per process): the workers import their handlers
        # while the emulator starts and is provisioned, then wait for topology.json to start polling.
        self.emulator = launch_emulator(self.settings.emulator_port, log_path=self.logs_dir / "emulator.log")
        self.gateway_port = self.settings.gateway_port or free_port()
        for service in self.settings.services:
            for index in range(self.settings.processes_of(service)):
                name = service if index == 0 else f"{service}-{index + 1}"
                self.workers[name] = self._spawn_worker(service, topology_path, name=name)
        self.emulator.wait_ready(self.settings.start_timeout_s)
        self.topology = provision(
            self.emulator, self.settings.prefix, local_visibility_timeout_s=self.settings.visibility_timeout_s
        )
        for service in self.settings.services:
            planned = planned_environment(load_manifest(service), self.settings.prefix, REGION)
            if planned != self.topology.service_environment(service):
                raise StackError(f"{service}: provisioned names differ from the planned ones: {planned}")
        if self.settings.record_events:
            recorder = provision_recorder(
                self.client("events"), self.client("sqs"), prefix=self.settings.prefix, bus_name=self.topology.bus_name
            )
            self.recorder = EventRecorder(self.client("sqs"), recorder, self.workdir).start()
        staging = topology_path.with_suffix(".tmp")
        staging.write_text(self.topology.to_json())
        staging.replace(topology_path)  # atomic: a worker never reads half a file
        if self.settings.dev_tenant:
            self.api_key = self.create_api_key(self.settings.dev_tenant)
        self._wait_until_ready()
        if self.settings.write_local_json:
            (self.workdir / LOCAL_JSON).write_text(json.dumps(self.describe(), indent=2))
        if self.settings.restart_crashed_workers:
            self._supervising.set()
            self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
            self._supervisor.start()

    def stop(self) -> None:
        """SIGTERM every worker (each finishes its batch in hand), then the emulator; kill stragglers."""
        self._supervising.clear()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        for worker in self.workers.values():
            if worker.alive():
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self.workers.clear()
        if self.recorder is not None:
            self.recorder.stop()
            self.recorder = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        local_json = self.workdir / LOCAL_JSON
        if self.settings.write_local_json and local_json.exists():
            local_json.unlink()

    # -- workers -------------------------------------------------------------------------------------

    def worker_environment(self, service: str, *, name: str | None = None) -> dict[str, str]:
        assert self.emulator is not None
        env = {
            **os.environ,
            **self.emulator.client_env(),
            **planned_environment(load_manifest(service), self.settings.prefix, REGION),
            "POWERTOOLS_SERVICE_NAME": service,
            "POWERTOOLS_METRICS_NAMESPACE": "agentwire",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AGENTWIRE_STAGE": "local",
            "AGENTWIRE_SPANS_FILE": str(self.workdir / "spans" / f"{name or service}.jsonl"),
            "AGENTWIRE_FAILURES_FILE": str(self.workdir / FAILURES_FILE),
            "AGENTWIRE_WORKER_LOG_LEVEL": self.settings.worker_log_level,
            "PYTHONUNBUFFERED": "1",
        }
        if self.settings.llm_provider:
            env["AGENTWIRE_LLM_PROVIDER"] = self.settings.llm_provider
        if self.settings.llm_script:
            env["AGENTWIRE_LLM_SCRIPT"] = str(self.settings.llm_script.resolve())
        if service == "llm" and self.settings.llm_provider == "scripted":
            # The script is consumed in one global order: one model call at a time keeps that order the
            # order in which the calls were published (concurrent pollers would interleave runs at random).
            env[CONCURRENCY_ENV] = "1"
        env.update(self.settings.worker_env)
        return env

    def _spawn_worker(self, service: str, topology_path: Path, *, name: str | None = None) -> WorkerProcess:
        """One worker process of `service`; `name` (default the service) names its log, ready file and spans."""
        name = name or service
        log_path = self.logs_dir / f"{name}.log"
        ready_file = self.run_dir / f"{name}.ready"
        command = [
            sys.executable,
            "-m",
            "agentwire_infra.local.worker",
            "--service",
            service,
            "--topology",
            str(topology_path),
            "--ready-file",
            str(ready_file),
        ]
        if service == GATEWAY_SERVICE:
            command += ["--http-port", str(self.gateway_port)]
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.worker_environment(service, name=name),
                cwd=self.workdir,
            )
        return WorkerProcess(service=service, process=process, log_path=log_path, ready_file=ready_file)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        pending = dict(self.workers)
        while pending:
            for service, worker in list(pending.items()):
                if worker.ready_file.exists():
                    del pending[service]
                elif not worker.alive():
                    raise StackError(
                        f"the {service} worker exited with {worker.process.returncode} while starting; "
                        f"{worker.log_path}:\n{log_tail(worker.log_path)}"
                    )
            if pending and time.monotonic() > deadline:
                raise StackError(f"workers not ready after {self.settings.start_timeout_s}s: {sorted(pending)}")
            if pending:
                time.sleep(0.05)
        if GATEWAY_SERVICE in self.workers:
            self._wait_for_http(f"{self.gateway_url}/healthz", deadline)

    def _wait_for_http(self, url: str, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
                    response.read()
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                if time.monotonic() > deadline:
                    raise StackError(f"{url} does not answer") from None
                time.sleep(0.05)

    def dead_workers(self) -> list[WorkerProcess]:
        return [worker for worker in self.workers.values() if not worker.alive()]

    def _supervise(self) -> None:
        while self._supervising.is_set():
            self.replace_dead_workers()
            time.sleep(SUPERVISE_PERIOD_S)

    def replace_dead_workers(self) -> list[WorkerCrash]:
        """Start a new process for each worker that died (up to the crash-loop bound); returns the crashes."""
        found: list[WorkerCrash] = []
        for name, worker in list(self.workers.items()):
            if worker.alive() or name in self.given_up or not self._supervising.is_set():
                continue
            earlier = sum(1 for crash in self.crashes if crash.service == worker.service)
            restart = earlier < self.settings.max_restarts_per_service
            crash = WorkerCrash(worker.service, worker.process.returncode, log_tail(worker.log_path), restart)
            found.append(crash)
            if restart:
                # The crashed process's log is kept beside the new one's.
                worker.log_path.replace(worker.log_path.with_suffix(f".crash-{earlier + 1}.log"))
                worker.ready_file.unlink(missing_ok=True)
                self.workers[name] = self._spawn_worker(worker.service, self._topology_path, name=name)
            else:
                self.given_up.add(name)
        self.crashes.extend(found)
        return found

    # -- what clients need ---------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        if self.gateway_port is None:
            raise StackError("the stack is not started")
        return f"http://127.0.0.1:{self.gateway_port}"

    def client(self, service: str) -> Any:
        if self.emulator is None:
            raise StackError("the stack is not started")
        return self.emulator.client(service)

    def create_api_key(self, tenant_id: str) -> str:
        assert self.topology is not None
        return create_api_key_on(self.client("dynamodb"), self.topology, tenant_id)

    def describe(self) -> dict[str, Any]:
        assert self.emulator is not None and self.topology is not None
        return {
            "gateway_url": self.gateway_url,
            "emulator_url": self.emulator.url,
            "api_key": self.api_key,
            "tenant_id": self.settings.dev_tenant,
            "prefix": self.settings.prefix,
            "bus_name": self.topology.bus_name,
            "state_machine_arn": self.topology.state_machine_arn,
            "tables": {f"{table.service}/{table.table}": table.table_name for table in self.topology.tables},
            "queues": {f"{queue.service}/{queue.consumer}": queue.queue_url for queue in self.topology.queues},
            "logs": str(self.logs_dir),
            "events": str(self.workdir / "events"),
            "spans": str(self.workdir / "spans"),
            "failures": str(self.workdir / FAILURES_FILE),
            "topology": str(self.workdir / TOPOLOGY_JSON),
            "pid": os.getpid(),
        }


def create_api_key_on(dynamodb_client: Any, topology: Topology, tenant_id: str) -> str:
    from agentwire_gateway.admin import create_api_key

    table = topology.table(GATEWAY_SERVICE, "main")
    return create_api_key(tenant_id, table_name=table.table_name, dynamodb_client=dynamodb_client)


def read_local_json(workdir: Path = DEFAULT_WORKDIR) -> dict[str, Any]:
    path = workdir / LOCAL_JSON
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise StackError(f"no running stack: {path} does not exist (start one with `agentwire up`)") from None


def running_stack(workdir: Path = DEFAULT_WORKDIR) -> dict[str, Any] | None:
    """The `local.json` of a stack that answers on its gateway, or None."""
    try:
        described = read_local_json(workdir)
    except StackError:
        return None
    try:
        with urllib.request.urlopen(f"{described['gateway_url']}/healthz", timeout=2) as response:  # noqa: S310
            response.read()
    except (OSError, KeyError):
        return None
    return described
