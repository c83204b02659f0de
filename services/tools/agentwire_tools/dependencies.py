"""Wiring: the adapters the handler uses, built once per Lambda sandbox and replaceable in tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from agentwire_contracts.agents import load_catalog
from agentwire_contracts.names import ENV_PAYLOAD_BUCKET
from agentwire_contracts.payload import PayloadStore
from agentwire_contracts.publish import EventPublisher

from agentwire_tools.adapters import DynamoAttemptLog, DynamoAuditLog, DynamoNotificationStore, DynamoRunLease
from agentwire_tools.authorization import CedarAuthorizer
from agentwire_tools.builtins import builtin_tools
from agentwire_tools.builtins.http_fetch import HttpFetcher, HttpFetchPolicy
from agentwire_tools.idempotency import PowertoolsCallOnce
from agentwire_tools.registry import ToolRegistry, load_entry_point_tools, load_registration_modules
from agentwire_tools.replaying import load_recorded_results, replaying
from agentwire_tools.service import ToolsService
from agentwire_tools.settings import ToolsSettings


class LambdaContextAware(Protocol):
    def register_lambda_context(self, context: Any) -> None: ...


@dataclass
class Dependencies:
    service: ToolsService
    publisher: EventPublisher
    #: Told about each invocation's Lambda context (the idempotency layer needs its deadline).
    context_aware: tuple[LambdaContextAware, ...] = ()
    #: Seconds between `tool.invocation.heartbeat.v1` beats while a call runs (0: no beats).
    heartbeat_interval_s: float = 0.0

    def register_lambda_context(self, context: Any) -> None:
        for component in self.context_aware:
            component.register_lambda_context(context)


class InvocationDeadline:
    """Seconds left in the current Lambda invocation, less a reserve to store and publish the answer:
    a tool must not outlive the function, or the run would wait for an answer that never comes."""

    def __init__(self, reserve_s: float) -> None:
        self.reserve_s = reserve_s
        self._context: Any = None

    def register_lambda_context(self, context: Any) -> None:
        self._context = context

    def __call__(self) -> float | None:
        if self._context is None:
            return None
        return self._context.get_remaining_time_in_millis() / 1000 - self.reserve_s


def build_registry(settings: ToolsSettings, *, fetcher: HttpFetcher | None = None) -> ToolRegistry:
    """`fetcher` replaces http_fetch's (tests: an injected resolver and connector to a local server)."""
    fetcher = fetcher or HttpFetcher(
        HttpFetchPolicy(
            allowlist=settings.http_allowlist, max_bytes=settings.http_max_bytes, timeout_s=settings.http_timeout_s
        )
    )
    registry = ToolRegistry(
        builtin_tools(notifications=DynamoNotificationStore(settings.state_table_name), fetcher=fetcher)
    )
    if settings.load_entry_points:
        load_entry_point_tools(registry)
    modules = [name.strip() for name in settings.registration_modules.split(",") if name.strip()]
    load_registration_modules(registry, modules)
    if settings.replay_results is not None:
        registry = replaying(registry, load_recorded_results(settings.replay_results))
    return registry


def build_dependencies(settings: ToolsSettings, *, fetcher: HttpFetcher | None = None) -> Dependencies:
    registry = build_registry(settings, fetcher=fetcher)
    publisher = EventPublisher(client=boto3.client("events"), bus_name=settings.event_bus_name)
    call_once = PowertoolsCallOnce.on_dynamodb(
        settings.idempotency_table_name, expires_after_s=settings.idempotency_ttl_s
    )
    deadline = InvocationDeadline(reserve_s=settings.answer_reserve_s)
    return Dependencies(
        service=ToolsService(
            registry,
            call_once,
            time_left_s=deadline,
            authorizer=CedarAuthorizer.from_directory(settings.policy_dir),
            agents=load_catalog(),
            audit=DynamoAuditLog(settings.audit_table_name),
            lease=DynamoRunLease(settings.state_table_name),
            lease_wait_s=settings.lease_wait_s,
            attempts=DynamoAttemptLog(settings.state_table_name, ttl_s=settings.idempotency_ttl_s),
            payloads=PayloadStore.from_env() if os.environ.get(ENV_PAYLOAD_BUCKET) else None,
        ),
        publisher=publisher,
        context_aware=(call_once, deadline),
        heartbeat_interval_s=settings.heartbeat_interval_s,
    )
