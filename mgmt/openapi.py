"""The OpenAPI 3.1 document of `/api/v1/`, built from the same operation table as the router."""

from __future__ import annotations

import re
from typing import Any

from mgmt import __name__ as _package
from mgmt.problems import PROBLEM_SCHEMA, PROBLEM_TYPE
from mgmt.routes import API, Operation
from sbc import __version__

_PARAM_RE = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def openapi_path(path: str) -> str:
    """aiohttp's `{name}` (or `{name:regex}`) to OpenAPI's `{name}`."""
    return _PARAM_RE.sub(r"{\1}", path)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {},
    }
    if op.description:
        out["description"] = op.description
    if op.role is None:
        out["security"] = []
    else:
        out["x-required-role"] = op.role.value
        if op.changes_state:
            out["description"] = (
                op.description + "\n\n" if op.description else ""
            ) + "With cookie authentication, send the session's CSRF token in `X-CSRF-Token`."
    if op.params:
        out["parameters"] = list(op.params)
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": {op.body_media: {"schema": op.body}}}
    for status, response in op.responses.items():
        entry: dict[str, Any] = {"description": response.description}
        if response.schema is not None:
            entry["content"] = {response.media: {"schema": response.schema}}
        if response.headers:
            entry["headers"] = response.headers
        out["responses"][str(status)] = entry
    if op.body is not None and "422" not in out["responses"]:
        # the body is well-formed but refused: a config that does not validate, a taken name, a wrong code
        out["responses"]["422"] = _problem("Refused: the problem names the field (and, for a config, each line)")
    out["responses"]["default"] = _problem("An error (RFC 9457 problem details naming the field at fault)")
    return out


def build_document(operations: tuple[Operation, ...]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(openapi_path(op.full_path), {})[op.method.lower()] = _operation(op)
    paths[f"{API}/openapi.json"] = {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "tags": ["meta"],
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": _problem("An error"),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Edge SBC management API",
            "version": __version__,
            "description": (
                "Status, live calls and the versioned configuration of the SBC. Roles: read-only < operator < "
                "admin (`x-required-role` on each operation). Errors are RFC 9457 problem+json."
            ),
            "x-package": _package,
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
        "components": {
            "schemas": {"Problem": PROBLEM_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API token `sbc_<id>.<secret>`"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sbc_session"},
            },
        },
    }
