"""One service's local worker process: what Lambda's SQS event source mapping does, on the emulator.

    python -m agentwire_infra.local.worker --service llm --topology .agentwire/topology.json

One thread per consumer long-polls its queue (up to the consumer's batch size), calls the handler named
in the manifest with a real SQS batch event, deletes the records that succeeded and leaves the ones in
`batchItemFailures` to reappear after the visibility timeout; after `maxReceiveCount` receives SQS's
redrive moves them to the DLQ. A handler that raises fails the whole batch, as on Lambda.

The gateway's worker also serves the HTTP API (`--http-port`), beside its projector consumer.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentwire_infra.local import tracing
from agentwire_infra.local.lambda_runtime import (
    Handler,
    LambdaContext,
    failed_message_ids,
    import_handler,
    sqs_event,
    use_line_atomic_output,
)
from agentwire_infra.local.provision import QueueTopology, Topology

log = logging.getLogger("agentwire.worker")

#: Long-poll wait: short enough that a stop request is honoured within it, long enough to cost nothing idle.
DEFAULT_WAIT_S = 2
#: Pollers per consumer, each invoking the handler on its own batch, as Lambda runs several invocations of
#: one event source mapping at once. One poller made every queue a single-file line: under 20 concurrent
#: runs a memory request waited seconds behind the others while the process sat waiting on the emulator.
DEFAULT_CONCURRENCY = 4
CONCURRENCY_ENV = "AGENTWIRE_WORKER_CONCURRENCY"


def default_concurrency() -> int:
    return max(1, int(os.environ.get(CONCURRENCY_ENV) or DEFAULT_CONCURRENCY))


#: How often the heartbeat looks for batches whose handler outlives half the visibility timeout.
HEARTBEAT_PERIOD_S = 1.0


def sqs_client(max_connections: int = 16) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=max_connections,
        retries={"mode": "standard", "max_attempts": 5},
        # The read must outlast the long poll.
        read_timeout=DEFAULT_WAIT_S + 20,
        connect_timeout=5,
    )
    return boto3.client("sqs", config=config)


@dataclass
class InFlightBatch:
    queue: QueueTopology
    receipts: dict[str, str]
    extended_at: float


class VisibilityHeartbeat:
    """Keeps a slow batch invisible while its handler runs.

    Locally the queues get a visibility timeout of seconds (so a failed message is retried while the
    developer watches); a handler that legitimately takes longer (a real model call) must not have its
    message delivered a second time meanwhile, so its visibility is extended until the handler returns.
    """

    def __init__(self, client: Any, stop: threading.Event) -> None:
        self._client = client
        self._stop = stop
        self._lock = threading.Lock()
        self._batches: dict[int, InFlightBatch] = {}
        self._next_id = 0

    def register(self, queue: QueueTopology, receipts: dict[str, str]) -> int:
        with self._lock:
            self._next_id += 1
            self._batches[self._next_id] = InFlightBatch(queue, receipts, time.monotonic())
            return self._next_id

    def unregister(self, batch_id: int) -> None:
        with self._lock:
            self._batches.pop(batch_id, None)

    def run(self) -> None:
        while not self._stop.wait(HEARTBEAT_PERIOD_S):
            now = time.monotonic()
            with self._lock:
                due = [
                    batch
                    for batch in self._batches.values()
                    if now - batch.extended_at >= batch.queue.visibility_timeout_s / 2
                ]
            for batch in due:
                self._extend(batch, now)

    def _extend(self, batch: InFlightBatch, now: float) -> None:
        entries = [
            {"Id": str(index), "ReceiptHandle": receipt, "VisibilityTimeout": batch.queue.visibility_timeout_s}
            for index, receipt in enumerate(batch.receipts.values())
        ]
        try:
            self._client.change_message_visibility_batch(QueueUrl=batch.queue.queue_url, Entries=entries)
            batch.extended_at = now
        except Exception:
            log.exception("could not extend the visibility of a batch on %s", batch.queue.queue_name)


#: One invocation at a time in this process, as in one Lambda sandbox: the handlers keep per-invocation
#: state at module level (Powertools' BatchProcessor clears its success/failure lists per batch, Logger
#: keys, Metrics), so two concurrent batches could report each other's failures as successes and lose
#: messages. Pollers still receive, extend visibility and delete concurrently.
INVOCATION_LOCK = threading.Lock()


class ConsumerLoop:
    """Lambda's SQS event source mapping for one consumer: poll, invoke, delete the successes."""

    def __init__(
        self,
        queue: QueueTopology,
        handler: Handler,
        *,
        client: Any,
        region: str,
        stop: threading.Event,
        heartbeat: VisibilityHeartbeat,
        wait_s: int = DEFAULT_WAIT_S,
        failure_log: tracing.FailureLog | None = None,
    ) -> None:
        self.queue = queue
        self.failure_log = failure_log or tracing.FailureLog(None)
        self.handler = handler
        self.client = client
        self.region = region
        self.stop = stop
        self.heartbeat = heartbeat
        self.wait_s = wait_s
        self.function_name = f"{queue.queue_name}-fn"
        self.batches = 0
        self.failures = 0

    def run(self) -> None:
        log.info("polling %s (batch size %d)", self.queue.queue_name, self.queue.batch_size)
        while not self.stop.is_set():
            try:
                self.poll_once()
            except Exception:
                # The emulator restarting or a transient error: back off briefly, never die silently.
                log.exception("polling %s failed", self.queue.queue_name)
                self.stop.wait(1.0)

    def poll_once(self) -> int:
        response = self.client.receive_message(
            QueueUrl=self.queue.queue_url,
            MaxNumberOfMessages=self.queue.batch_size,
            WaitTimeSeconds=self.wait_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        if messages:
            self.process(messages)
        return len(messages)

    def process(self, messages: Sequence[dict[str, Any]]) -> None:
        receipts = {message["MessageId"]: message["ReceiptHandle"] for message in messages}
        event = sqs_event(messages, queue_arn=self.queue.queue_arn, region=self.region)
        context = LambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.queue.memory_mb,
            timeout_s=self.queue.function_timeout_s,
            region=self.region,
        )
        batch_id = self.heartbeat.register(self.queue, receipts)
        started = time.perf_counter()
        reasons: dict[str, str] = {}
        try:
            try:
                with INVOCATION_LOCK, tracing.collect_record_failures() as reasons:
                    response = self.handler(event, context)
                failed = failed_message_ids(response, list(receipts))
            except Exception as exc:
                # As on Lambda: an exception fails the whole batch; every record is delivered again.
                log.error(
                    "%s raised on a batch of %d; all will be redelivered:\n%s",
                    self.queue.handler,
                    len(messages),
                    traceback.format_exc(),
                )
                failed = set(receipts)
                reasons = dict.fromkeys(failed, tracing.exception_reason(exc))
            self.batches += 1
            self.failures += len(failed)
            if failed:
                log.warning(
                    "%s: %d of %d record(s) failed and stay on %s: %s",
                    self.queue.handler,
                    len(failed),
                    len(messages),
                    self.queue.queue_name,
                    sorted(failed),
                )
                self.failure_log.record(self.queue, messages, failed, reasons)
            self._delete([receipts[message_id] for message_id in receipts if message_id not in failed])
        finally:
            self.heartbeat.unregister(batch_id)
        log.debug(
            "%s: batch of %d in %.1f ms", self.queue.consumer, len(messages), (time.perf_counter() - started) * 1000
        )

    def _delete(self, receipt_handles: Sequence[str]) -> None:
        if not receipt_handles:
            return
        entries = [{"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(receipt_handles)]
        response = self.client.delete_message_batch(QueueUrl=self.queue.queue_url, Entries=entries)
        for failure in response.get("Failed", []):
            log.error("could not delete a message from %s: %s", self.queue.queue_name, failure)


class Worker:
    """All consumers of one service (plus, for the gateway, its HTTP API) in this process."""

    def __init__(
        self,
        service: str,
        topology: Topology,
        *,
        http_port: int | None = None,
        http_host: str = "127.0.0.1",
        wait_s: int = DEFAULT_WAIT_S,
        concurrency: int | None = None,
    ) -> None:
        self.service = service
        self.topology = topology
        self.stop_event = threading.Event()
        self.concurrency = concurrency or default_concurrency()
        queues = topology.queues_of(service)
        self.client = sqs_client(max_connections=2 * self.concurrency * len(queues) + 4)
        self.heartbeat = VisibilityHeartbeat(self.client, self.stop_event)
        failure_log = tracing.FailureLog(tracing.failures_path())
        # Import every handler before reporting ready, so a broken one fails the start, not the first run.
        self.loops = [
            ConsumerLoop(
                queue,
                import_handler(queue.handler),
                client=self.client,
                region=topology.region,
                stop=self.stop_event,
                heartbeat=self.heartbeat,
                wait_s=wait_s,
                failure_log=failure_log,
            )
            for queue in queues
        ]
        self.http_server: Any = None
        if http_port is not None:
            from agentwire_infra.local.http_gateway import GatewayHttpServer

            handler_path = topology.http_handlers.get(service)
            if handler_path is None:
                raise ValueError(f"{service} has no HTTP handler in its manifest")
            self.http_server = GatewayHttpServer(import_handler(handler_path), host=http_host, port=http_port)
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for loop in self.loops:
            for index in range(self.concurrency):
                thread = threading.Thread(target=loop.run, name=f"poll-{loop.queue.consumer}-{index}", daemon=True)
                thread.start()
                self.threads.append(thread)
        heartbeat = threading.Thread(target=self.heartbeat.run, name="heartbeat", daemon=True)
        heartbeat.start()
        self.threads.append(heartbeat)
        if self.http_server is not None:
            thread = threading.Thread(target=self.http_server.serve_forever, name="http", daemon=True)
            thread.start()
            self.threads.append(thread)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop polling; a batch being handled finishes (and is deleted) before the process exits."""
        self.stop_event.set()
        if self.http_server is not None:
            self.http_server.shutdown()
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )
    # botocore's own debug logging would drown the handlers' lines.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def preload_handlers(service: str) -> list[Handler]:
    """Import the service's handlers before the topology exists: that is most of a worker's start-up."""
    from agentwire_infra.local.provision import load_manifest

    manifest = load_manifest(service)
    paths = [consumer.handler for consumer in manifest.consumers]
    if manifest.http is not None:
        paths.append(manifest.http.handler)
    return [import_handler(path) for path in paths]


def wait_for_topology(path: Path, timeout_s: float = 120.0) -> Topology:
    """The stack writes topology.json (atomically) once the emulator is provisioned."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s}s")
        time.sleep(0.05)
    return Topology.from_json(path.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one agentwire service's consumers locally")
    parser.add_argument("--service", required=True)
    parser.add_argument("--topology", required=True, type=Path, help="topology.json written by provisioning")
    parser.add_argument("--http-port", type=int, default=None, help="serve the service's HTTP API here")
    parser.add_argument("--ready-file", type=Path, default=None, help="touched once every handler is loaded")
    parser.add_argument("--wait-seconds", type=int, default=DEFAULT_WAIT_S)
    args = parser.parse_args(argv)
    use_line_atomic_output()
    configure_logging(os.environ.get("AGENTWIRE_WORKER_LOG_LEVEL", "INFO"))
    tracing.instrument(args.service)

    preload_handlers(args.service)
    topology = wait_for_topology(args.topology)
    worker = Worker(args.service, topology, http_port=args.http_port, wait_s=args.wait_seconds)
    stopping = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    worker.start()
    if args.ready_file is not None:
        args.ready_file.write_text(str(os.getpid()))
    log.info("%s worker ready (%d consumer(s))", args.service, len(worker.loops))
    stopping.wait()
    worker.shutdown()
    log.info("%s worker stopped", args.service)
    return 0


if __name__ == "__main__":
    sys.exit(main())
