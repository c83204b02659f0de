"""HTTP problem details (RFC 9457): the one shape of every error the gateway answers."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://agentwire.dev/problems/"


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    #: Field-level reasons of a validation problem (location, type, message; never the input itself).
    errors: list[dict[str, Any]] | None = None
    #: On a 409 for a busy session: the run that is active on it.
    active_run_id: str | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class ProblemError(Exception):
    """Raised anywhere below a route; the API turns it into a problem response."""

    def __init__(
        self,
        status: HTTPStatus,
        slug: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
        active_run_id: str | None = None,
    ):
        super().__init__(detail)
        self.active_run_id = active_run_id
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors

    def problem(self, instance: str) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_BASE + self.slug,
            title=self.status.phrase,
            status=self.status.value,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
            active_run_id=self.active_run_id,
        )


def unauthorized(detail: str = "a valid API key is required (Authorization: Bearer <key>)") -> ProblemError:
    return ProblemError(HTTPStatus.UNAUTHORIZED, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(scope: str) -> ProblemError:
    return ProblemError(HTTPStatus.FORBIDDEN, "forbidden", f"this API key lacks the {scope!r} scope")


def not_found(what: str) -> ProblemError:
    return ProblemError(HTTPStatus.NOT_FOUND, "not-found", f"{what} not found")


def method_not_allowed(method: str, allowed: list[str]) -> ProblemError:
    return ProblemError(
        HTTPStatus.METHOD_NOT_ALLOWED,
        "method-not-allowed",
        f"{method} is not allowed here; allowed: {', '.join(allowed)}",
        headers={"Allow": ", ".join(allowed)},
    )


def invalid_request(detail: str, errors: list[dict[str, Any]] | None = None) -> ProblemError:
    return ProblemError(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid-request", detail, errors=errors)


def unavailable(detail: str) -> ProblemError:
    return ProblemError(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", detail, headers={"Retry-After": "1"})


def internal_error() -> ProblemError:
    return ProblemError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "an unexpected error occurred")


def conflict(detail: str, *, active_run_id: str | None = None) -> ProblemError:
    return ProblemError(HTTPStatus.CONFLICT, "conflict", detail, active_run_id=active_run_id)


def too_large(limit: int) -> ProblemError:
    return ProblemError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too-large", f"the request body exceeds {limit} bytes")


def rate_limited(retry_after_s: int) -> ProblemError:
    return ProblemError(
        HTTPStatus.TOO_MANY_REQUESTS,
        "rate-limited",
        "too many requests for this tenant; slow down",
        headers={"Retry-After": str(retry_after_s)},
    )


def response_v2(problem: Problem, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A problem as an API Gateway HTTP API (payload 2.0) response, for answers given before routing."""
    return {
        "statusCode": problem.status,
        "headers": {"Content-Type": PROBLEM_CONTENT_TYPE, **(headers or {})},
        "body": json.dumps(problem.body(), separators=(",", ":")),
        "isBase64Encoded": False,
    }


def unsupported_media_type() -> ProblemError:
    return ProblemError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "send application/json")
