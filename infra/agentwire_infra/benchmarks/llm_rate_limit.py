"""Rate limiter: 200 concurrent calls of one tenant and model against a limit of 50 per minute.

Every call goes through the llm service's completion logic with the DynamoDB rate limiter, against the
emulator in its own process (moto's DynamoDB, real conditional writes) from 64 threads at once. The
clock is frozen at the burst's start so "within the minute" is exact: the bucket refills by one
request every 1.2 s, which a slow machine would otherwise turn into extra admissions.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentwire_contracts.consumer import StepError
from agentwire_contracts.content import Message, TextBlock
from agentwire_contracts.envelope import Event
from agentwire_contracts.events.llm import LlmCompletionRequested
from agentwire_llm.adapters.rate_limiter import DynamoDbRateLimiter
from agentwire_llm.completion import CallDirectly, CompletionService
from agentwire_llm.providers.offline import OfflineProvider
from agentwire_llm.settings import RateLimit
from botocore.config import Config

NAME = "llm_rate_limit"
DESCRIPTION = "token bucket per (tenant, model) in DynamoDB: 200 concurrent calls against 50/min"

TABLE = "bench-llm-state"
REQUESTS = 200
LIMIT = 50
THREADS = 64


def create_state_table(dynamodb: Any, name: str = TABLE) -> None:
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def dynamodb_client(emulator: Any) -> Any:
    import boto3

    from agentwire_infra.local.emulator import FAKE_CREDENTIALS, REGION

    return boto3.client(
        "dynamodb",
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(max_pool_connections=THREADS, retries={"max_attempts": 10}),
    )


def request(step: int, tenant_id: str = "acme", model: str = "agentwire-offline-1") -> Event[LlmCompletionRequested]:
    data = LlmCompletionRequested(
        session_id="bench",
        step=step,
        model=model,
        max_tokens=64,
        messages=[Message(role="user", content=[TextBlock(text="What is 2 + 2?")])],
    )
    return Event.create(data, tenant_id=tenant_id, run_id=f"run-{step}")


def burst(
    dynamodb: Any, table: str, *, requests: int = REQUESTS, limit: int = LIMIT, threads: int = THREADS
) -> dict[str, Any]:
    """`requests` calls at once; returns how each ended."""
    frozen = int(time.time() * 1_000_000)
    limiter = DynamoDbRateLimiter(
        dynamodb, table, lambda model: RateLimit(requests_per_minute=limit), clock_us=lambda: frozen
    )
    service = CompletionService(OfflineProvider(), CallDirectly(), rate_limiter=limiter)
    start = threading.Barrier(min(threads, requests))
    outcomes: list[str] = []
    waits: list[float] = []
    lock = threading.Lock()
    events = [request(step) for step in range(requests)]

    def call(step: int) -> None:
        if step < threads:
            start.wait(timeout=60)
        try:
            service.answer(events[step])
            outcome = "admitted"
        except StepError as error:
            outcome = error.code
            if error.retry_after_s is not None:
                with lock:
                    waits.append(error.retry_after_s)
        with lock:
            outcomes.append(outcome)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(call, range(requests)))
    elapsed = time.perf_counter() - began
    counts = Counter(outcomes)
    return {
        "requests": requests,
        "limit_per_minute": limit,
        "answered": len(outcomes),
        "admitted": counts.get("admitted", 0),
        "rate_limited": counts.get("Llm.RateLimited", 0),
        "other": {k: v for k, v in counts.items() if k not in ("admitted", "Llm.RateLimited")},
        "retry_after_s_min": min(waits) if waits else None,
        "retry_after_s_max": max(waits) if waits else None,
        "elapsed_s": round(elapsed, 3),
        "calls_per_s": round(requests / elapsed, 1),
    }


def run(workdir: Path) -> dict[str, Any]:
    from agentwire_infra.local.emulator import start_emulator

    workdir.mkdir(parents=True, exist_ok=True)
    emulator = start_emulator(log_path=workdir / "llm_rate_limit.emulator.log")
    try:
        dynamodb = dynamodb_client(emulator)
        create_state_table(dynamodb)
        figures = burst(dynamodb, TABLE)
    finally:
        emulator.stop()
    figures["exact"] = figures["admitted"] == LIMIT and figures["answered"] == REQUESTS and not figures["other"]
    print(
        f"{figures['requests']} concurrent calls, limit {LIMIT}/min: admitted {figures['admitted']}, "
        f"Llm.RateLimited {figures['rate_limited']}, other {figures['other'] or 0}, "
        f"answered {figures['answered']} (none lost: {figures['answered'] == REQUESTS}); "
        f"waits {figures['retry_after_s_min']}..{figures['retry_after_s_max']} s; "
        f"{figures['elapsed_s']} s ({figures['calls_per_s']} calls/s)"
    )
    (workdir / "llm_rate_limit.json").write_text(json.dumps(figures, indent=2))
    return figures
