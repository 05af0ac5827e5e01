"""RFC 9457 problem details: every error of the API is `application/problem+json` naming the field at fault."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "urn:edge-sbc:problem:"


class Problem(Exception):
    """Raise from a handler; the error middleware turns it into a response.

    `errors`: a list of `{"field", "message", "line"?}` — for a config, one per problem with its line.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        field: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.field = field
        self.errors = errors
        self.headers = headers or {}
        self.title = title or HTTPStatus(status).phrase

    def body(self, instance: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": f"{TYPE_BASE}{self.kind}" if self.kind else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.field is not None:
            out["field"] = self.field
        if self.errors is not None:
            out["errors"] = self.errors
        return out

    def response(self, instance: str) -> web.Response:
        return web.Response(
            status=self.status,
            text=json.dumps(self.body(instance)),
            content_type=PROBLEM_TYPE,
            headers=self.headers,
        )


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "the request field (or config path) at fault"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "line": {"type": "integer", "description": "1-based line in the YAML"},
                },
            },
        },
    },
}
