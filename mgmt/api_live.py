"""The API's read side of the running box: the SBC's status, calls and registrations (through the
control socket), the active config's realms, routes and header rules, alarms, call records and the
audit log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from mgmt.alarms import Alarm
from mgmt.api_config import pending_json
from mgmt.audit import tail_json_lines
from mgmt.http import audit, no_content, query_int, reply
from mgmt.problems import Problem
from mgmt.routes import ApiCall
from mgmt.sbc_link import SbcUnavailable
from sbc.control.contract import CallRecord, ContractError, decode, encode


# ---- the SBC's live state ------------------------------------------------------------------------
async def get_status(call: ApiCall) -> web.StreamResponse:
    state = call.state
    sbc: dict[str, Any] | None
    error = None
    try:
        status, calls_per_second = await state.sbc.status()
    except SbcUnavailable as exc:
        sbc, error = None, str(exc)
    else:
        sbc = {**encode(status), "calls_per_second": calls_per_second}
    host = await asyncio.to_thread(state.host.snapshot)
    return reply({
        "sbc": sbc,
        "sbc_error": error,
        "host": host,
        "alarms": len(state.alarms.active()),
        "config": {"revision": state.store.active_revision(), "pending": pending_json(state.store.pending())},
    })  # fmt: skip


def _unavailable(exc: SbcUnavailable) -> Problem:
    return Problem(503, f"the SBC does not answer: {exc}", kind="sbc-unavailable")


async def get_calls(call: ApiCall) -> web.StreamResponse:
    try:
        return reply(encode(await call.state.sbc.calls()))
    except SbcUnavailable as exc:
        raise _unavailable(exc) from None


async def get_registrations(call: ApiCall) -> web.StreamResponse:
    try:
        return reply(encode(await call.state.sbc.registrations()))
    except SbcUnavailable as exc:
        raise _unavailable(exc) from None


def _active_section(call: ApiCall, key: str) -> list[Any]:
    try:
        data = yaml.safe_load(call.state.store.active_text())
    except (OSError, yaml.YAMLError) as exc:
        raise Problem(500, f"cannot read the active configuration: {exc}") from None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


async def get_realms(call: ApiCall) -> web.StreamResponse:
    return reply({"realms": _active_section(call, "realms")})


async def get_routes(call: ApiCall) -> web.StreamResponse:
    return reply({"routes": _active_section(call, "routes")})


async def get_header_rules(call: ApiCall) -> web.StreamResponse:
    return reply({"header_rules": _active_section(call, "header_rules")})


def alarm_json(alarm: Alarm) -> dict[str, Any]:
    return {"id": str(alarm.id), "name": alarm.name, "severity": alarm.severity.value, "text": alarm.text,
            "raised_at": alarm.raised_at, "cleared_at": alarm.cleared_at}  # fmt: skip


async def get_alarms(call: ApiCall) -> web.StreamResponse:
    return reply({"alarms": [alarm_json(a) for a in call.state.alarms.active()]})


async def clear_alarm(call: ApiCall) -> web.StreamResponse:
    """Acknowledge an alarm: it leaves the table (and sbcAlarmCleared goes out). An alarm whose condition
    still holds is raised again by its rule at the next poll, with a new id."""
    raw = call.request.match_info["id"]
    found = next((a for a in call.state.alarms.active() if str(a.id) == raw), None)
    if found is None:
        raise Problem(404, f"there is no active alarm {raw!r}", kind="not-found", field="id")
    call.state.alarms.clear(found.name)
    audit(call, "alarms.clear", target=found.name, id=found.id)
    return no_content()


async def get_cdrs(call: ApiCall) -> web.StreamResponse:
    lines = query_int(call, "lines", 100, 1, 1000) or 100
    path = call.state.cdr_path
    records = await asyncio.to_thread(tail_call_records, path, lines) if path is not None else []
    return reply({"records": encode(records)})


async def get_logs(call: ApiCall) -> web.StreamResponse:
    lines = query_int(call, "lines", 100, 1, 1000) or 100
    return reply({"entries": await asyncio.to_thread(call.state.audit.tail, lines)})


def tail_call_records(path: Path, lines: int) -> list[CallRecord]:
    """The last `lines` call records of the SBC's cdr.jsonl; a line that is not a record (torn, or written
    by a version with another record) is left out."""
    records = []
    for entry in tail_json_lines(path, lines):
        try:
            records.append(decode(CallRecord, entry))
        except ContractError:
            continue
    return records
