"""A small typed client of the gateway's HTTP API (v1), for the demo, the benchmark and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
T = TypeVar("T")


class ApiError(RuntimeError):
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.body = response.text
        request = response.request
        super().__init__(f"{request.method} {request.url.path} -> {response.status_code}: {self.body}")


def wait_until(
    probe: Callable[[], T | None], *, timeout_s: float, interval_s: float = 0.05, what: str = "condition"
) -> T:
    """Call `probe` until it returns something other than None (or False); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s}s")
        time.sleep(interval_s)


class GatewayClient:
    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        authenticate: bool = True,
    ) -> httpx.Response:
        sent = dict(headers or {})
        key = api_key or self.api_key
        if authenticate and key:
            sent["Authorization"] = f"Bearer {key}"
        return self._http.request(method, path, json=json, params=params, headers=sent)

    def _ok(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ApiError(response)
        return dict(response.json())

    def healthz(self) -> dict[str, Any]:
        return self._ok(self.request("GET", "/healthz", authenticate=False))

    def create_session(self, **body: Any) -> str:
        return str(self._ok(self.request("POST", "/v1/sessions", json=body))["session_id"])

    def send_message(self, session_id: str, content: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._ok(
            self.request("POST", f"/v1/sessions/{session_id}/messages", json={"content": content}, headers=headers)
        )

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._ok(self.request("GET", f"/v1/runs/{run_id}"))

    def messages(self, session_id: str) -> list[dict[str, Any]]:
        return list(self._ok(self.request("GET", f"/v1/sessions/{session_id}/messages"))["messages"])

    def wait_for_run(self, run_id: str, *, timeout_s: float = 60.0, interval_s: float = 0.1) -> dict[str, Any]:
        """The run once it is completed, failed or cancelled (whatever it ended as)."""

        def terminal() -> dict[str, Any] | None:
            run = self.get_run(run_id)
            return run if run.get("status") in TERMINAL_STATUSES else None

        return wait_until(terminal, timeout_s=timeout_s, interval_s=interval_s, what=f"run {run_id} finished")

    def ask(self, session_id: str, content: str, *, timeout_s: float = 60.0) -> dict[str, Any]:
        """Send a message and wait for its run to finish."""
        accepted = self.send_message(session_id, content)
        return self.wait_for_run(str(accepted["run_id"]), timeout_s=timeout_s)
