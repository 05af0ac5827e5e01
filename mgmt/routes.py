"""One table of API operations: the router and the OpenAPI document are both built from it.

Each `Operation` names its method, path, the least role that may call it, its handler, and the JSON
schemas of its body and answers. `mgmt.app` registers them (wrapping each handler with authentication,
CSRF and role checks) and `mgmt.openapi` describes them, so the two cannot drift apart silently; a
test walks the aiohttp router against the document as well.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from mgmt.auth import ApiToken, Role, Session, User
from mgmt.state import MgmtState

API = "/api/v1"
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    session: Session | None = None  # cookie login
    token: ApiToken | None = None  # bearer token

    @property
    def via(self) -> str:
        return "session" if self.session is not None else "token"


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One call of an API operation: the HTTP request, the process's state and who is calling."""

    request: web.Request
    state: MgmtState
    principal: Principal | None  # None only on public operations (login, the OpenAPI document)

    @property
    def who(self) -> User:
        assert self.principal is not None, "an authenticated operation"
        return self.principal.user

    @property
    def source(self) -> str:
        return self.request.remote or "?"


Handler = Callable[[ApiCall], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Response:
    description: str
    schema: dict[str, Any] | None = None  # None: no body
    media: str = JSON
    headers: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # below API, aiohttp syntax: `/config/revisions/{number}`
    operation_id: str
    summary: str
    tag: str
    role: Role | None  # None: no authentication
    handler: Handler
    responses: dict[int, Response]
    body: dict[str, Any] | None = None  # schema of the request body
    body_media: str = JSON
    body_required: bool = True
    params: tuple[dict[str, Any], ...] = ()
    restricted_ok: bool = False  # allowed before a forced password change
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def full_path(self) -> str:
        return API + self.path

    @property
    def changes_state(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")
