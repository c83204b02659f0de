"""The gateway's route table, known before the resolver runs.

Authentication happens before request validation (like an API Gateway authorizer): an unauthenticated
caller learns nothing from our validation rules and costs no parsing. That needs to know, per request,
whether the matched route is public and which scope it needs, and it gives 405 (with `Allow`) where the
resolver alone would only say 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

_PARAM = re.compile(r"<(\w+)>")


class MatchKind(Enum):
    FOUND = "found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class RouteSpec:
    method: str
    template: str
    #: None for a public route (no authentication).
    scope: str | None
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class RouteMatch:
    kind: MatchKind
    route: RouteSpec | None = None
    allowed_methods: tuple[str, ...] = ()

    @property
    def requires_auth(self) -> bool:
        return self.kind is MatchKind.FOUND and self.route is not None and self.route.scope is not None


@dataclass
class RouteTable:
    routes: list[RouteSpec] = field(default_factory=list)

    def add(self, method: str, template: str, *, scope: str | None) -> None:
        """`template` uses the resolver's syntax: `/v1/runs/<run_id>`."""
        regex = "^" + _PARAM.sub(r"[^/]+", re.escape(template)) + "$"
        self.routes.append(RouteSpec(method.upper(), template, scope, re.compile(regex)))

    def match(self, method: str, path: str) -> RouteMatch:
        same_path = [route for route in self.routes if route.pattern.match(path)]
        for route in same_path:
            if route.method == method.upper():
                return RouteMatch(MatchKind.FOUND, route)
        if same_path:
            return RouteMatch(
                MatchKind.METHOD_NOT_ALLOWED, allowed_methods=tuple(sorted({r.method for r in same_path}))
            )
        return RouteMatch(MatchKind.NOT_FOUND)
