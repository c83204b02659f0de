"""The embedded AWS emulator: a moto server on loopback with the state machine interpreter enabled.

Run in its own process (`python -m agentwire_infra.local.emulator --port N`) so its CPU does not
compete with the workers' GIL. At start it memoizes four per-request costs of moto 5.x that dominate
a waitForTaskToken hop (see DESIGN.md §5): a new boto3 client per service task of the interpreter,
a new JSONPath parser per input-template event, werkzeug's request log line, and the dispatcher
listing moto's package folder on every request.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import logging
import operator
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

REGION = "us-east-1"
#: Credentials the emulator accepts; they are not secrets.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def apply_speedups() -> None:
    """Memoize the hot spots; each is a pure function of its arguments for the server's lifetime."""
    from moto import backends
    from moto.stepfunctions.parser.asl.utils import boto_client

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    build_client = boto_client.boto_client_for
    clients: dict[tuple[str, str], Any] = {}

    def cached_client(region: str, service: str, state_credentials: Any = None) -> Any:
        # Credentials are the emulator's fake ones; a client per (region, service) serves every task.
        key = (region, service)
        if key not in clients:
            clients[key] = build_client(region, service, state_credentials)
        return clients[key]

    boto_client.boto_client_for = cached_client  # type: ignore[assignment]
    memoize_jsonpath_parsers()
    # The interpreter module imported the function by name; point it at the memoized one.
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions") and getattr(module, "boto_client_for", None) is not None:
            module.boto_client_for = boto_client.boto_client_for  # type: ignore[attr-defined]
    memoize_state_machine_programs()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    make_dynamodb_calls_atomic()
    roll_back_transactions_by_item()
    read_retention_directly()
    send_without_queue_attributes()
    pass_task_failure_cause()
    pass_stop_execution_error_and_cause()
    page_execution_history()
    report_stopped_executions_as_aborted()
    publish_execution_status_changes()
    new_task_token_per_attempt()
    keep_answers_that_beat_the_heartbeat_wait()
    query_only_the_partition()
    memoize_method_names()


def memoize_jsonpath_parsers() -> None:
    """One parse per distinct path, for both of jsonpath_ng's parsers, wherever moto imported them.

    The interpreter evaluates every `.$` field of every state with `jsonpath_ng.ext.parse`, which
    builds a new LALR parser each time; `json_path.py` and `result_path.py` imported `parse` by name
    (before this runs), so the package attributes alone are not enough. Parsed paths are immutable.
    """
    import jsonpath_ng
    import jsonpath_ng.ext
    import jsonpath_ng.ext.parser
    import jsonpath_ng.parser

    replacements: dict[int, Any] = {}
    for owner in (jsonpath_ng, jsonpath_ng.parser, jsonpath_ng.ext, jsonpath_ng.ext.parser):
        original = owner.parse
        if id(original) not in replacements:
            replacements[id(original)] = functools.lru_cache(maxsize=8192)(original)
        owner.parse = replacements[id(original)]  # type: ignore[assignment,attr-defined]
    for name, module in list(sys.modules.items()):
        if name.startswith("moto.") and id(getattr(module, "parse", None)) in replacements:
            module.parse = replacements[id(module.parse)]  # type: ignore[attr-defined]


def memoize_state_machine_programs() -> None:
    """Parse each state machine definition once, not once per execution.

    Every execution ran the ANTLR parser over the whole definition (~8% of the server's CPU in the
    benchmark). The parsed program is a tree of declarations; what an execution changes lives in its
    own `Environment` (components key their per-execution state by `heap_key` in the environment's
    heap), so executions can share one tree.
    """
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    parse_program = functools.lru_cache(maxsize=64)(AmazonStateLanguageParser.parse)

    def get_evaluation_entrypoint(self: Any) -> Any:
        return parse_program(self._evaluation_details.state_machine_details.definition)[0]

    ExecutionWorker._get_evaluation_entrypoint = get_evaluation_entrypoint  # type: ignore[method-assign]


def make_dynamodb_calls_atomic() -> None:
    """Serialize DynamoDB API calls, as each is atomic on AWS.

    moto's DynamoDB backend has no locking, and a cancelled TransactWriteItems restores a deep copy of
    the whole table, which would erase a concurrent writer's items. Clients still race for real: they
    read, build and send their conditional writes interleaved; only the server applies them one at a time.
    """
    import threading

    from moto.dynamodb.responses import DynamoHandler

    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    def atomic_call_action(self: Any) -> Any:
        with lock:
            return call_action(self)

    DynamoHandler.call_action = atomic_call_action  # type: ignore[method-assign]


def roll_back_transactions_by_item() -> None:
    """TransactWriteItems backs up only the items it writes, not deep copies of whole tables.

    moto deep-copies every table a transaction names before applying it, so the cost of one append
    to memory's transcript grew with everything ever written (a quarter of the server's CPU in the
    benchmark, and rising). Snapshotting the (at most 100) target items gives the same all-or-nothing
    result; it relies on `make_dynamodb_calls_atomic`, so no other call runs while a transaction does.
    """
    import copy as copy_module
    import types

    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def table_aware_deepcopy(value: Any, memo: Any = None) -> Any:
        # The backup moto takes of each table: the table itself, restored item by item below instead.
        return value if isinstance(value, Table) else copy_module.deepcopy(value, memo)

    shim = types.SimpleNamespace(deepcopy=table_aware_deepcopy, copy=copy_module.copy)
    original = dynamodb_models.DynamoDBBackend.transact_write_items

    def target_key(backend: Any, op_type: str, op: dict[str, Any]) -> tuple[Table, Any, Any] | None:
        try:
            table = backend.get_table(op["TableName"])
            attrs = op["Item"] if op_type == "Put" else op["Key"]
            hash_value = DynamoType(attrs[table.hash_key_attr])
            range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
        except Exception:
            return None  # moto reports the malformed operation itself
        return table, hash_value, range_value

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups: list[tuple[Table, Any, Any, Any]] = []
        for transact_item in transact_items[:100]:
            for op_type, op in transact_item.items():
                found = target_key(self, op_type, op)
                if found is None:
                    continue
                table, hash_value, range_value = found
                if range_value is not None:
                    current = table.items.get(hash_value, {}).get(range_value)
                else:
                    current = table.items.get(hash_value)
                backups.append((table, hash_value, range_value, copy_module.deepcopy(current)))
        dynamodb_models.copy = shim  # type: ignore[assignment]
        try:
            original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(backups):
                if range_value is not None:
                    if item is None:
                        table.items.get(hash_value, {}).pop(range_value, None)
                    else:
                        table.items[hash_value][range_value] = item
                elif item is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = item
            raise
        finally:
            dynamodb_models.copy = copy_module  # type: ignore[assignment]

    dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def read_retention_directly() -> None:
    """ReceiveMessage checks each message's retention by building every attribute of its queue (which
    counts the queue's messages, twice); read the one attribute it needs instead."""
    from moto.core.utils import unix_time
    from moto.sqs.models import Message, SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Message) -> bool:
        retention_s = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention_s + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]

    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


def send_without_queue_attributes() -> None:
    """SendMessage (and every EventBridge delivery to an SQS target) read one attribute of the queue,
    ContentBasedDeduplication, through `Queue.attributes`, which builds all of them: counting the queue's
    visible, in-flight and delayed messages, each a pass over every message (~15% of the emulator's CPU in
    the benchmark). While a message is being sent, `attributes` holds only that one attribute."""
    import threading

    from moto.sqs.models import Queue, SQSBackend

    sending = threading.local()
    all_attributes: Any = Queue.__dict__["attributes"]  # the property object

    def attributes(self: Any) -> dict[str, Any]:
        if getattr(sending, "active", False):
            if not self.fifo_queue:
                return {}
            return {"ContentBasedDeduplication": str(self.content_based_deduplication).lower()}
        return dict(all_attributes.fget(self))

    Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]
    send_message = SQSBackend.send_message

    def send_message_cheaply(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = getattr(sending, "active", False)
        sending.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            sending.active = outer

    SQSBackend.send_message = send_message_cheaply  # type: ignore[method-assign]


def pass_task_failure_cause() -> None:
    """`SendTaskFailure` keeps its `cause`: moto's response handler passed only the error on, so the
    TaskFailed event and a failed execution had no cause."""
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]


def pass_stop_execution_error_and_cause() -> None:
    """`StopExecution` keeps its `error` and `cause`, as on AWS: moto's response handler dropped both, so
    the ExecutionAborted event of a stopped execution said nothing about who stopped it or why."""
    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.stepfunctions.exceptions import ExecutionDoesNotExist
    from moto.stepfunctions.responses import StepFunctionResponse

    def stop_execution(self: Any) -> Any:
        arn = self._get_param("executionArn")
        backend = self.stepfunction_backend
        backend._validate_execution_arn(arn)
        machine = backend._get_state_machine_for_execution(arn)
        execution = next((x for x in machine.executions if x.execution_arn == arn), None)
        if execution is None:
            raise ExecutionDoesNotExist("Execution Does Not Exist: '" + arn + "'")
        error, cause = self._get_param("error"), self._get_param("cause")
        if execution.status == "RUNNING":
            execution.agentwire_stopped_with = (error, cause)
        execution.stop(stop_date=utcnow(), error=error, cause=cause)
        return ActionResult({"stopDate": execution.stop_date})

    StepFunctionResponse.stop_execution = stop_execution  # type: ignore[method-assign]


def report_stopped_executions_as_aborted() -> None:
    """A stopped execution ends ABORTED with the stop's error and cause, as on AWS. moto ended one stopped
    while a Map ran FAILED with an internal States.Runtime error (the Map's iterations failed on the stop),
    which read as a failed run instead of a cancelled one."""
    from moto.stepfunctions.parser.api import ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    reflect = BaseExecutionWorkerCommunication._reflect_execution_status

    def reflect_the_stop(self: Any) -> None:
        reflect(self)
        execution = self.execution
        stopped_with = getattr(execution, "agentwire_stopped_with", None)
        if stopped_with is not None and execution.exec_status == ExecutionStatus.FAILED:
            execution.exec_status = ExecutionStatus.ABORTED
            execution.error, execution.cause = stopped_with

    BaseExecutionWorkerCommunication._reflect_execution_status = reflect_the_stop  # type: ignore[method-assign]


def page_execution_history() -> None:
    """`GetExecutionHistory` honours `reverseOrder` and `maxResults`, as on AWS (moto returned every event
    oldest first whatever was asked, so "the last event" read the first)."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def get_execution_history(self: Any) -> Any:
        history = dict(self.stepfunction_backend.get_execution_history(self._get_param("executionArn")))
        events = list(history.get("events", []))
        if self._get_param("reverseOrder"):
            events.reverse()
        max_results = self._get_param("maxResults")
        if max_results:
            events = events[: int(max_results)]
        return ActionResult({**history, "events": events})

    StepFunctionResponse.get_execution_history = get_execution_history  # type: ignore[method-assign]


#: What Step Functions puts on the account's default bus when an execution changes status.
STATUS_CHANGE_SOURCE = "aws.states"
STATUS_CHANGE_DETAIL_TYPE = "Step Functions Execution Status Change"


def _epoch_ms(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def publish_execution_status_changes() -> None:
    """An execution that ends puts an *Execution Status Change* event on the default bus, as Step
    Functions does (moto emits none): rules there, such as the orchestrator's watchdog, see it. The
    detail has the fields AWS documents (executionArn, stateMachineArn, name, status, startDate,
    stopDate, input, output)."""
    from moto.events.models import events_backends
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    terminated = BaseExecutionWorkerCommunication.terminated
    log = logging.getLogger("agentwire.emulator")

    def terminated_and_reported(self: Any) -> None:
        terminated(self)
        execution = self.execution
        try:
            status = execution.exec_status.value
            detail = {
                "executionArn": execution.exec_arn,
                "stateMachineArn": execution.state_machine.arn,
                "name": execution.name,
                "status": status,
                "startDate": _epoch_ms(execution.start_date),
                "stopDate": _epoch_ms(execution.stop_date),
                "input": json.dumps(execution.input_data, separators=(",", ":")),
                "output": json.dumps(execution.output, separators=(",", ":")) if status == "SUCCEEDED" else None,
            }
            events_backends[execution.account_id][execution.region_name].put_events(
                [
                    {
                        "Source": STATUS_CHANGE_SOURCE,
                        "DetailType": STATUS_CHANGE_DETAIL_TYPE,
                        "Detail": json.dumps(detail),
                        "Resources": [execution.exec_arn],
                    }
                ]
            )
        except Exception:  # a status report must never break the execution's own ending
            log.exception("could not publish the status change of %s", getattr(execution, "exec_arn", "?"))

    BaseExecutionWorkerCommunication.terminated = terminated_and_reported  # type: ignore[method-assign]


def new_task_token_per_attempt() -> None:
    """Each attempt of a waitForTaskToken task gets a new task token, as on AWS.

    moto makes the token once per state, before the Retry loop, so a retried attempt published the
    previous attempt's token, whose callback had already failed: the retry "failed" at once with the old
    failure, without waiting for its own answer. Here an attempt whose token was already used by an earlier
    attempt makes (and registers) a fresh one first.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import ResourceCondition
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )

    eval_execution = StateTaskServiceCallback._eval_execution
    wait_for_task_token = ResourceCondition.WaitForTaskToken

    def _eval_execution(self: Any, env: Any) -> None:
        if self._is_integration_pattern() and wait_for_task_token in self._supported_integration_patterns:
            context = env.states.context_object
            token = (context.context_object_data.get("Task") or {}).get("Token")
            endpoint = env.callback_pool_manager.get(token) if token else None
            if endpoint is not None and getattr(endpoint, "agentwire_attempted", False):
                token = context.update_task_token()
                endpoint = env.callback_pool_manager.add(token)
            if endpoint is not None:
                endpoint.agentwire_attempted = True
        eval_execution(self, env)

    StateTaskServiceCallback._eval_execution = _eval_execution  # type: ignore[method-assign]


def keep_answers_that_beat_the_heartbeat_wait() -> None:
    """An answer that arrives before a heartbeat task starts waiting ends the wait, as on AWS.

    moto publishes the task (putEvents) first and only then sets up the task's heartbeat endpoint. An
    answer sent in between (a fast worker on a busy machine) is stored on the callback endpoint, but its
    wake-up went to no heartbeat endpoint, so the task slept for all of `HeartbeatSeconds` and then failed
    with `States.HeartbeatTimeout` although its answer was there. A heartbeat endpoint set up after the
    answer starts out notified, so the wait returns at once and reads the stored outcome.
    """
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    setup_heartbeat_endpoint = CallbackEndpoint.setup_heartbeat_endpoint

    def setup_after_answer(self: Any, heartbeat_seconds: int) -> Any:
        endpoint = setup_heartbeat_endpoint(self, heartbeat_seconds)
        # notify() stores the outcome before it looks for a heartbeat endpoint; this looks for the outcome
        # after the endpoint is in place, so whichever runs second sees the other's write.
        if self.get_outcome() is not None:
            endpoint.notify()
        return endpoint

    CallbackEndpoint.setup_heartbeat_endpoint = setup_after_answer  # type: ignore[method-assign]


def query_only_the_partition() -> None:
    """A Query on a table's own key reads that one partition, not the whole table.

    moto's `Table.query` builds `all_items()` — every item of every partition, sorted — and then keeps the
    ones with the queried hash key, so each Query cost grew with everything any run ever wrote (memory's
    context reads, the gateway's read model and the idempotency tables all query by partition; ~10% of the
    emulator's CPU in the benchmark and rising). For the base table the partition is one dict lookup; the
    sort, range conditions, filters, limits and pagination that follow are moto's, unchanged. Index
    queries keep the full scan (their partitions are not stored apart). Relies on
    `make_dynamodb_calls_atomic`: no other call runs while the table's `all_items` is narrowed.
    """
    import inspect

    from moto.dynamodb.models.table import Table

    query = Table.query
    signature = inspect.signature(query)

    def query_partition(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, hash_key, *args, **kwargs).arguments
        if arguments.get("index_name") or hash_key is None or not isinstance(self.items, dict):
            return query(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key)
        if partition is None:
            items: list[Any] = []
        elif self.range_key_attr:
            order = range_order(self.range_key_type)
            pairs = sorted(((order(key), item) for key, item in partition.items()), key=operator.itemgetter(0))
            items = query_candidates([key for key, _ in pairs], [item for _, item in pairs], arguments, order)
        else:
            items = [partition]
        self.all_items = lambda: items
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query_partition  # type: ignore[method-assign]


def range_order(range_key_type: str | None) -> Callable[[Any], Any]:
    """A range key (`DynamoType`) as a plain value in DynamoDB's order, computed once per key.

    Sorting by the `DynamoType` itself compares through `cast_value` (half a dozen type checks) on both
    sides of every comparison: sorting a 10,000-message transcript took ~150 ms per Query. A string orders
    as DynamoDB does (code point order is UTF-8 byte order), a number by its Decimal; other types keep
    moto's own cast."""
    if range_key_type == "S":
        return lambda key: key.value
    if range_key_type == "N":
        return lambda key: Decimal(key.value)
    return lambda key: key.cast_value


def key_condition_bounds(keys: list[Any], comparison: str | None, values: list[Any]) -> tuple[int, int] | None:
    """The slice of the sorted `keys` that meets a key condition, found by binary search as DynamoDB seeks
    its index; None for a condition it cannot seek (moto then checks each item)."""
    if not comparison:
        return 0, len(keys)
    try:
        if comparison in ("EQ", "="):
            return bisect.bisect_left(keys, values[0]), bisect.bisect_right(keys, values[0])
        if comparison in ("LT", "<"):
            return 0, bisect.bisect_left(keys, values[0])
        if comparison in ("LE", "<="):
            return 0, bisect.bisect_right(keys, values[0])
        if comparison in ("GT", ">"):
            return bisect.bisect_right(keys, values[0]), len(keys)
        if comparison in ("GE", ">="):
            return bisect.bisect_left(keys, values[0]), len(keys)
        if comparison == "BETWEEN":
            low = bisect.bisect_left(keys, values[0])
            return low, max(low, bisect.bisect_right(keys, values[1]))
        if comparison == "BEGINS_WITH" and isinstance(values[0], str) and values[0]:
            # Every key that starts with p lies in [p, p with its last character raised by one).
            prefix = values[0]
            if ord(prefix[-1]) < sys.maxunicode:
                upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
                return bisect.bisect_left(keys, prefix), bisect.bisect_left(keys, upper)
    except TypeError:  # a condition value of another type than the key: moto answers with its own error
        return None
    return None


def query_candidates(
    keys: list[Any], ordered: list[Any], arguments: dict[str, Any], order: Callable[[Any], Any]
) -> list[Any]:
    """The items of a partition (sorted; `keys` are their range keys in `order`) that moto's Query can
    reach, found by binary search as DynamoDB seeks its index, so a read costs its page, not the partition.

    moto walks its candidates in the scan's direction, skips what fails the key condition (without
    counting it as scanned) and, once it holds `limit` results, sets LastEvaluatedKey on seeing one more
    item, matching or not. So it gets: on a first page with a Limit, the first `limit` items in the
    condition's range in the scan's direction plus the item after them; on any other Query, the range plus
    its neighbour on either side. A legacy QueryFilter, or a condition that cannot be sought, gets every item.
    """
    if arguments.get("filter_kwargs"):
        return ordered
    values = [order(value) for value in arguments.get("range_objs") or []]
    bounds = key_condition_bounds(keys, arguments.get("range_comparison"), values)
    if bounds is None:
        return ordered
    low, high = bounds
    limit = arguments.get("limit")
    if not limit or arguments.get("exclusive_start_key"):
        return ordered[max(low - 1, 0) : high + 1]
    if arguments.get("scan_index_forward") is not False:
        stop = min(high, low + limit)
        return ordered[low : stop + 1 if stop - low == limit else stop]
    start = max(low, high - limit)
    return ordered[start - 1 if high - start == limit and start > 0 else start : high]


def memoize_method_names() -> None:
    """The action names of a response class, listed once per class instead of on every request.

    `BaseResponse.call_action` asks `inspect.getmembers` for every function of the handler's class on each
    call (~4% of the emulator's CPU in the benchmark); the classes do not change after start (the patches
    above run before the first request).
    """
    from moto.core import responses

    names_of = responses.method_names_from_class
    known: dict[Any, list[str]] = {}

    def method_names_from_class(clazz: Any) -> list[str]:
        if clazz not in known:
            known[clazz] = names_of(clazz)
        return known[clazz]

    responses.method_names_from_class = method_names_from_class  # type: ignore[assignment]


def import_interpreter_modules() -> None:
    """Import every module of the ASL interpreter, so patching reaches the names they imported."""
    import pkgutil

    from moto.stepfunctions import parser

    for info in pkgutil.walk_packages(parser.__path__, prefix="moto.stepfunctions.parser."):
        try:
            __import__(info.name)
        except Exception:  # noqa: S112 (optional backends of the interpreter may not import)
            continue


class _AlwaysReadable:
    """A file descriptor that select() always reports readable (a pipe holding one unread byte)."""

    _fd: int | None = None

    def fileno(self) -> int:
        if _AlwaysReadable._fd is None:
            read_end, write_end = os.pipe()
            os.write(write_end, b"x")
            _AlwaysReadable._fd = read_end
        return _AlwaysReadable._fd


def keep_alive_request_handler() -> Any:
    """moto's request handler with HTTP/1.1 keep-alive and TCP_NODELAY.

    werkzeug sends `Connection: close` on every response (http.server cannot drain an unread body before
    the next request line), so every boto3 call paid a new connection and a new server thread. Here the
    body is read in full before the application runs, so the stream is always at the next request, and
    the connection stays open unless the client or an error closes it.

    After each response werkzeug "drains" the socket: while select() says readable, `rfile.read(10 MB)`.
    On a kept-alive connection whose client already sent its next request that read blocks until 10 MB
    or EOF, i.e. forever: provisioning hung on its second call. So while the application runs, the
    handler's `rfile` is an empty buffer (the body was already read) and its `connection` an always
    readable descriptor: the drain reads nothing and returns at once; both are restored afterwards.
    """
    import io

    from moto.moto_server.werkzeug_app import MotoRequestHandler

    always_readable = _AlwaysReadable()

    class KeepAliveRequestHandler(MotoRequestHandler):  # type: ignore[misc,valid-type]
        protocol_version = "HTTP/1.1"
        #: Headers and body are separate writes; with Nagle the body waits for the headers' ACK.
        disable_nagle_algorithm = True
        _saved_streams: tuple[Any, Any] | None = None

        def make_environ(self) -> Any:
            environ = super().make_environ()
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True  # werkzeug reads the chunks; do not reuse the stream
                return environ
            length = int(self.headers.get("Content-Length") or 0)
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
            self._saved_streams = (self.rfile, self.connection)
            self.rfile, self.connection = io.BytesIO(b""), always_readable
            return environ

        def run_wsgi(self) -> None:
            self._saved_streams = None
            try:
                super().run_wsgi()
            finally:
                if self._saved_streams is not None:
                    self.rfile, self.connection = self._saved_streams

        def send_header(self, keyword: str, value: str) -> None:
            if keyword.lower() == "connection" and value.lower() == "close" and not self.close_connection:
                return
            super().send_header(keyword, value)

    return KeepAliveRequestHandler


class EmulatorServer:
    """moto's WSGI application on a threaded werkzeug server with keep-alive connections."""

    def __init__(self, host: str, port: int, *, keep_alive: bool = True) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        handler = keep_alive_request_handler() if keep_alive else MotoRequestHandler
        self.server = make_server(
            host, port, DomainDispatcherApplication(create_backend_app), threaded=True, request_handler=handler
        )

    def serve_forever(self) -> None:
        self.server.serve_forever()


def serve(port: int, host: str = "127.0.0.1") -> None:
    os.environ["MOTO_PORT"] = str(port)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    for key, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    import threading

    import_interpreter_modules()

    apply_speedups()
    # On by default; AGENTWIRE_EMULATOR_KEEP_ALIVE=false serves one request per connection, as werkzeug does.
    keep_alive = os.environ.get("AGENTWIRE_EMULATOR_KEEP_ALIVE", "true").lower() in ("1", "true", "yes")
    server = EmulatorServer(host, port, keep_alive=keep_alive)
    threading.Thread(target=server.serve_forever, name="emulator", daemon=True).start()
    configure(f"http://{host}:{port}")
    print(f"emulator ready on http://{host}:{port} (keep-alive {'on' if keep_alive else 'off'})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.server.shutdown()


def configure(url: str) -> None:
    """Turn on real execution of state machines (ASL interpreted by moto)."""
    request = urllib.request.Request(  # noqa: S310 (loopback only)
        f"{url}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback only)
        response.read()


def wait_until_ready(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as response:  # noqa: S310
                response.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"emulator at {url} not ready after {timeout_s}s") from None
            time.sleep(0.1)


@dataclass
class Emulator:
    """A running emulator process."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """The environment a process needs so every boto3 client talks to this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            **FAKE_CREDENTIALS,
        }

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Wait until the server answers, then turn on state machine execution."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.process.returncode} (log: {self.log_path})")
            try:
                wait_until_ready(self.url, timeout_s=0.5)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
        configure(self.url)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def launch_emulator(port: int | None = None, log_path: Path | None = None) -> Emulator:
    """Start the emulator process without waiting for it (see `Emulator.wait_ready`)."""
    port = port or free_port()
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "agentwire_infra.local.emulator", "--port", str(port)],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "MOTO_PORT": str(port), "AWS_DEFAULT_REGION": REGION, **FAKE_CREDENTIALS},
    )
    if log_path:
        out.close()  # type: ignore[union-attr]  # the child holds its own descriptor
    return Emulator(port=port, process=process, log_path=log_path)


def start_emulator(port: int | None = None, log_path: Path | None = None) -> Emulator:
    """Start the emulator in its own process and wait until it answers."""
    emulator = launch_emulator(port, log_path)
    try:
        emulator.wait_ready()
    except Exception:
        emulator.stop()
        raise
    return emulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="agentwire's embedded AWS emulator (moto server)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    serve(args.port or free_port())


if __name__ == "__main__":
    main()
