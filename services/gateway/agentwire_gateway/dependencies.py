"""The handler's collaborators, built once per Lambda container on first use; tests replace them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

import boto3
from agentwire_contracts.publish import EventPublisher

from agentwire_gateway.adapters.dynamodb import (
    DynamoApiKeyStore,
    DynamoIdempotencyStore,
    DynamoRateCounter,
    DynamoReadModel,
    DynamoTable,
)
from agentwire_gateway.guards import IdempotencyGuard, RateLimiter
from agentwire_gateway.service import Authenticator, Gateway, Projector
from agentwire_gateway.settings import GatewaySettings, get_settings


@dataclass
class Dependencies:
    authenticator: Authenticator
    gateway: Gateway
    projector: Projector
    idempotency: IdempotencyGuard | None = None
    rate_limiter: RateLimiter | None = None
    keys: DynamoApiKeyStore | None = None
    settings: GatewaySettings = field(default_factory=get_settings)


def build_dependencies(settings: GatewaySettings | None = None) -> Dependencies:
    settings = settings or get_settings()
    table = DynamoTable(boto3.client("dynamodb"), settings.table_name)
    read_model = DynamoReadModel(table)
    publisher = EventPublisher(client=boto3.client("events"), bus_name=settings.event_bus_name)
    retention = timedelta(days=settings.run_retention_days)
    tokens = None
    if settings.jwt_enabled:
        from agentwire_gateway.adapters.jwks import JwksTokenVerifier

        tokens = JwksTokenVerifier(settings)
    keys = DynamoApiKeyStore(table)
    return Dependencies(
        authenticator=Authenticator(keys=keys, tokens=tokens),
        gateway=Gateway(
            read_model=read_model,
            publisher=publisher,
            run_retention=retention,
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        ),
        projector=Projector(read_model=read_model, run_retention=retention, publisher=publisher),
        idempotency=IdempotencyGuard(
            DynamoIdempotencyStore(table), ttl=timedelta(hours=settings.idempotency_ttl_hours)
        ),
        rate_limiter=RateLimiter(DynamoRateCounter(table), default_per_minute=settings.rate_limit_per_minute),
        keys=keys,
        settings=settings,
    )


_dependencies: Dependencies | None = None
_lock = threading.Lock()


def get_dependencies() -> Dependencies:
    global _dependencies  # noqa: PLW0603 - one set of clients per Lambda container, built lazily
    if _dependencies is None:
        with _lock:
            if _dependencies is None:
                _dependencies = build_dependencies()
    return _dependencies


def set_dependencies(dependencies: Dependencies | None) -> None:
    """Install `dependencies` (tests), or None to rebuild from the environment on next use."""
    global _dependencies  # noqa: PLW0603
    _dependencies = dependencies
