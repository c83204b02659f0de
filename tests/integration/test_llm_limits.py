"""The llm service's rate limiter and tenant budget under real concurrency: 64 threads against the
emulator in its own process (moto's DynamoDB, real conditional writes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from agentwire_infra.benchmarks.llm_rate_limit import THREADS, burst, create_state_table, dynamodb_client
from agentwire_infra.local.emulator import start_emulator
from agentwire_llm.adapters.budget import DynamoDbTenantBudget


@pytest.fixture(scope="module")
def dynamodb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    emulator = start_emulator(log_path=tmp_path_factory.mktemp("llm-limits") / "emulator.log")
    try:
        client = dynamodb_client(emulator)
        create_state_table(client, "llm-limits-state")
        yield client
    finally:
        emulator.stop()


def test_llm_rate_limit_admits_exactly_the_limit_of_a_concurrent_burst(dynamodb) -> None:
    figures = burst(dynamodb, "llm-limits-state", requests=200, limit=50)
    assert figures["answered"] == 200 and figures["other"] == {}
    assert (figures["admitted"], figures["rate_limited"]) == (50, 150)
    assert figures["retry_after_s_min"] > 0


def test_llm_tenant_budget_never_overspends_under_concurrent_reservations(dynamodb) -> None:
    budget = DynamoDbTenantBudget(dynamodb, "llm-limits-state", lambda tenant: 1_000)
    start = threading.Barrier(THREADS)
    results: list[bool] = []
    lock = threading.Lock()

    def reserve(_: int) -> None:
        start.wait(timeout=60)
        granted = budget.reserve("acme", 30) is not None
        with lock:
            results.append(granted)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(reserve, range(THREADS)))
    assert len(results) == THREADS and sum(results) == 1_000 // 30  # 33 fit, the 34th would cross the cap
