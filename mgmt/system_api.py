"""System operations of the REST API, built on hw/: services, reboot and power off, hostname, time and
NTP, interfaces with their roles and link state, factory reset. `/api/v1/system/...`

Everything goes through the `hw.system` interfaces (systemd over D-Bus on the box, fakes in tests):
nothing is shelled out. Read-only users read; operators restart the SBC's services; admins reboot,
power off, set hostname and time, and reset to factory defaults (which needs the body
`{"confirm": "factory-reset"}`). Every change is audit-logged before it is carried out. Operations
that end this process or the box (reboot, restarting sbc-mgmt, factory reset) answer 202 first and
act a moment later, so the caller gets its answer.

Interfaces come from sbc-hw's published state (`/run/sbc-hw/state.json`, with its alarms); while
sbc-hw is not running they are read from /sys here, without alarms. `hw_alarm_mirror` copies
sbc-hw's link alarms into the management alarm table (SNMP traps, web UI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from hw.factory_reset import request_factory_reset
from hw.hw_state import interfaces_json, read_state
from hw.links import HW_ALARM_PREFIXES
from hw.system import SystemServiceError
from mgmt.auth import Role
from mgmt.http import audit, invalid_field, json_body, reply
from mgmt.problems import Problem
from mgmt.routes import ApiCall, Operation, Response
from mgmt.schemas import BOOL, NULLABLE_INT, NULLABLE_STR, STR, STRS, obj
from mgmt.state import STATE, MgmtState
from mgmt.system_services import SystemServices

log = logging.getLogger("mgmt.system")
FACTORY_RESET_CONFIRM = "factory-reset"
HW_MONITOR_DOWN = "hw-monitor-down"
_STATUS = {"unavailable": 503, "denied": 403, "invalid": 422, "not-found": 404, "conflict": 409, "failed": 502}


# ---- helpers -------------------------------------------------------------------------------------
def _system(call: ApiCall) -> SystemServices:
    system = call.state.system
    if system is None:
        raise Problem(503, "system control is not available in this process", kind="system-unavailable")
    return system


def _problem(exc: SystemServiceError) -> Problem:
    kind = {"unavailable": "system-unavailable", "failed": "system-failed"}.get(exc.kind, exc.kind)
    return Problem(_STATUS[exc.kind], exc.detail, kind=kind)


async def _do(coro: Awaitable[Any]) -> Any:
    try:
        return await coro
    except SystemServiceError as exc:
        raise _problem(exc) from None


def _later(system: SystemServices, action: Callable[[], Awaitable[Any]], what: str) -> None:
    async def run() -> None:
        await asyncio.sleep(system.act_after_s)
        try:
            await action()
        except SystemServiceError as exc:
            log.error("%s failed: %s", what, exc.detail)

    task = asyncio.create_task(run(), name=what)
    system.background.add(task)
    task.add_done_callback(system.background.discard)


# ---- services, reboot, power off -----------------------------------------------------------------
async def list_services(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    out = []
    for unit in system.services:
        state = await _do(system.units.unit_state(unit))
        out.append({"unit": unit, "load_state": state.load_state, "active_state": state.active_state,
                    "sub_state": state.sub_state, "description": state.description})  # fmt: skip
    return reply({"services": out})


async def restart_service(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    unit = call.request.match_info["unit"]
    if unit not in system.services:
        raise Problem(404, f"{unit!r} is not one of the services: {', '.join(system.services)}", kind="not-found",
                      field="unit")  # fmt: skip
    if unit == system.own_unit:
        audit(call, "system.service.restart", target=unit, result="queued")
        _later(system, lambda: system.units.restart_unit(unit, wait=False), f"restart {unit}")
        return reply({"unit": unit, "result": "queued"}, 202)
    try:
        result = await system.units.restart_unit(unit)
    except SystemServiceError as exc:
        audit(call, "system.service.restart", outcome="failed", target=unit, reason=exc.detail)
        raise _problem(exc) from None
    audit(call, "system.service.restart", outcome="ok" if result.ok else "failed", target=unit, result=result.result)
    if not result.ok:
        raise Problem(502, f"restarting {unit} ended with {result.result!r}: see its journal", kind="system-failed")
    return reply({"unit": unit, "result": result.result})


async def reboot(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    audit(call, "system.reboot")
    _later(system, system.units.reboot, "reboot")
    return reply({"accepted": True, "action": "reboot"}, 202)


async def power_off(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    audit(call, "system.poweroff")
    _later(system, system.units.power_off, "power off")
    return reply({"accepted": True, "action": "poweroff"}, 202)


# ---- hostname ------------------------------------------------------------------------------------
async def get_hostname(call: ApiCall) -> web.StreamResponse:
    info = await _do(_system(call).hostname.get_hostname())
    return reply({"hostname": info.hostname, "static_hostname": info.static_hostname,
                   "pretty_hostname": info.pretty_hostname})  # fmt: skip


async def set_hostname(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    body = await json_body(call, ("hostname",))
    name = body.get("hostname")
    if not isinstance(name, str):
        raise invalid_field("hostname", "is required (a string)")
    old = await _do(system.hostname.get_hostname())
    try:
        info = await system.hostname.set_hostname(name)
    except SystemServiceError as exc:
        audit(call, "system.hostname", outcome="refused", target=name, reason=exc.detail)
        problem = _problem(exc)
        if exc.kind == "invalid":
            raise invalid_field("hostname", exc.detail) from None
        raise problem from None
    audit(call, "system.hostname", target=name, previous=old.static_hostname)
    return reply({"hostname": info.hostname, "static_hostname": info.static_hostname,
                   "pretty_hostname": info.pretty_hostname})  # fmt: skip


# ---- time ----------------------------------------------------------------------------------------
async def _time_json(system: SystemServices) -> dict[str, Any]:
    info = await _do(system.time.get_time())
    seconds = info.time_usec / 1_000_000
    return {
        "timezone": info.timezone,
        "time": datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z"),
        "time_unix": round(seconds, 3),
        "rtc_in_local_time": info.rtc_in_local_time,
        "ntp": {
            "enabled": info.ntp_enabled,
            "synchronized": info.ntp_synchronized,
            "available": info.can_ntp,
            "server": info.ntp_server,
            "servers": list(info.ntp_servers),
            "system_servers": list(info.system_ntp_servers),
            "fallback_servers": list(info.fallback_ntp_servers),
        },
    }


async def get_time(call: ApiCall) -> web.StreamResponse:
    return reply(await _time_json(_system(call)))


def _parse_time(value: object) -> int:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise invalid_field("time", "must be ISO 8601 with a zone, like 2026-03-01T12:00:00Z") from None
        if moment.tzinfo is None:
            raise invalid_field("time", "needs a zone (Z or +01:00): the box's zone may not be yours")
        return int(moment.timestamp() * 1_000_000)
    raise invalid_field("time", "must be a string (ISO 8601)")


async def set_time(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    body = await json_body(call, ("timezone", "ntp", "ntp_servers", "time"))
    if not body:
        raise invalid_field("timezone", "give at least one of timezone, ntp, ntp_servers, time")
    timezone = body.get("timezone")
    if timezone is not None and not isinstance(timezone, str):
        raise invalid_field("timezone", "must be a string such as Europe/Berlin")
    ntp = body.get("ntp")
    if ntp is not None and not isinstance(ntp, bool):
        raise invalid_field("ntp", "must be true or false")
    servers = body.get("ntp_servers")
    if servers is not None and (not isinstance(servers, list) or not all(isinstance(s, str) for s in servers)):
        raise invalid_field("ntp_servers", "must be a list of host names or addresses")
    usec = _parse_time(body["time"]) if body.get("time") is not None else None
    if usec is not None and ntp is not False:
        current = await _do(system.time.get_time())
        if current.ntp_enabled:
            raise Problem(409, "the clock follows NTP: send \"ntp\": false with the time", kind="conflict",
                          field="time")  # fmt: skip
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    if timezone is not None:
        steps.append(("timezone", lambda: system.time.set_timezone(timezone)))
    if servers is not None:
        steps.append(("ntp_servers", lambda: system.time.set_ntp_servers(servers)))
    if ntp is not None:
        steps.append(("ntp", lambda: system.time.set_ntp(ntp)))
    if usec is not None:
        steps.append(("time", lambda: system.time.set_time(usec)))
    done: list[str] = []
    for name, step in steps:
        try:
            await step()
        except SystemServiceError as exc:
            audit(call, "system.time", outcome="refused", changed=done, failed=name, reason=exc.detail)
            if exc.kind == "invalid":
                raise invalid_field(name, exc.detail) from None
            raise _problem(exc) from None
        done.append(name)
    if servers is not None and system.ntp_servers_file is not None:
        _save_ntp_servers(system.ntp_servers_file, servers)
    audit(call, "system.time", changed=done, timezone=timezone, ntp=ntp, ntp_servers=servers,
           time=body.get("time"))  # fmt: skip
    return reply(await _time_json(system))


def _save_ntp_servers(path: Path, servers: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"ntp_servers": servers}))
    tmp.replace(path)


async def restore_ntp_servers(system: SystemServices) -> None:
    """At start: timesyncd's runtime servers are lost at reboot; set the saved ones again."""
    if system.ntp_servers_file is None:
        return
    try:
        servers = json.loads(system.ntp_servers_file.read_text())["ntp_servers"]
    except (OSError, ValueError, KeyError):
        return
    try:
        await system.time.set_ntp_servers(list(servers))
        log.info("NTP servers restored: %s", ", ".join(servers))
    except SystemServiceError as exc:
        log.warning("cannot restore the NTP servers: %s", exc.detail)


# ---- interfaces ----------------------------------------------------------------------------------
def interfaces_now(system: SystemServices) -> dict[str, Any]:
    state, why = read_state(system.hw_state_path)
    if state is not None:
        return {"source": "sbc-hw", "profile": state.get("profile"), "missing": state.get("missing", []),
                "interfaces": state.get("interfaces", []), "alarms": state.get("alarms", [])}  # fmt: skip
    from hw.machine import OPERATOR_PROFILE, read_machine, select_profile
    from hw.roles import assign_roles
    from hw.udev_nics import UdevNicInventory
    from sbc.yamlsource import ConfigError

    try:
        profile = select_profile(read_machine(), OPERATOR_PROFILE)
    except ConfigError as exc:
        raise Problem(500, f"the hardware profile has errors: {exc}", kind="hw-profile") from None
    role_map = assign_roles(profile, UdevNicInventory().list_nics())
    return {"source": "sysfs", "note": why, "profile": role_map.profile, "missing": [r.value for r in role_map.missing],
            "interfaces": interfaces_json(role_map), "alarms": []}  # fmt: skip


async def get_interfaces(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    return reply(await asyncio.to_thread(interfaces_now, system))


# ---- factory reset -------------------------------------------------------------------------------
async def factory_reset(call: ApiCall) -> web.StreamResponse:
    system = _system(call)
    body = await json_body(call, ("confirm", "reason"))
    if body.get("confirm") != FACTORY_RESET_CONFIRM:
        audit(call, "system.factory-reset", outcome="refused", reason="not confirmed")
        raise invalid_field("confirm", f"must be {FACTORY_RESET_CONFIRM!r}: this wipes the configuration, "
                            "certificates, users and logs (the firmware stays) and reboots")  # fmt: skip
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
        raise invalid_field("reason", "must be a string of at most 200 characters")
    try:
        await asyncio.to_thread(request_factory_reset, call.who.name, "api", reason or "",
                                system.factory_reset_marker)  # fmt: skip
    except OSError as exc:
        audit(call, "system.factory-reset", outcome="failed", reason=str(exc))
        raise Problem(500, f"cannot write the factory reset marker: {exc.strerror or exc}") from None
    audit(call, "system.factory-reset", reason=reason or "")
    _later(system, system.units.reboot, "reboot for factory reset")
    return reply({"accepted": True, "action": "factory-reset", "marker": str(system.factory_reset_marker)}, 202)


# ---- alarm mirror --------------------------------------------------------------------------------
def sync_hw_alarms(system: SystemServices, alarms: Any, seen_before: bool) -> bool:
    """Copy sbc-hw's link alarms into the alarm table; returns whether sbc-hw's state was seen."""
    state, why = read_state(system.hw_state_path)
    if state is None:
        if seen_before:
            alarms.raise_alarm(HW_MONITOR_DOWN, "minor", f"NIC and link monitoring stopped: {why}")
        return seen_before
    alarms.clear(HW_MONITOR_DOWN)
    wanted = {a["name"]: a for a in state.get("alarms", []) if isinstance(a, dict) and "name" in a}
    for name, alarm in wanted.items():
        alarms.raise_alarm(name, alarm.get("severity", "major"), alarm.get("text", name))
    for alarm in list(alarms.active()):
        if alarm.name.startswith(HW_ALARM_PREFIXES) and alarm.name not in wanted:
            alarms.clear(alarm.name)
    return True


async def hw_background(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: NTP servers restored at start, sbc-hw's alarms mirrored every 2 s."""
    state: MgmtState = app[STATE]
    system = state.system
    if system is None:
        yield
        return
    await restore_ntp_servers(system)

    async def mirror() -> None:
        seen = False
        while True:
            try:
                seen = await asyncio.to_thread(sync_hw_alarms, system, state.alarms, seen)
            except Exception:  # keep mirroring: one bad read must not end it
                log.exception("mirroring sbc-hw's alarms failed")
            await asyncio.sleep(2.0)

    task = asyncio.create_task(mirror(), name="hw alarm mirror")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for pending in list(system.background):
        pending.cancel()


# ---- the operation table -------------------------------------------------------------------------
SERVICE = obj({"unit": STR, "load_state": STR, "active_state": STR, "sub_state": STR, "description": STR},
               ("unit", "active_state"))  # fmt: skip
HOSTNAME = obj({"hostname": STR, "static_hostname": STR, "pretty_hostname": STR}, ("hostname", "static_hostname"))
TIME = obj({
    "timezone": STR, "time": STR, "time_unix": {"type": "number"}, "rtc_in_local_time": BOOL,
    "ntp": obj({"enabled": BOOL, "synchronized": BOOL, "available": BOOL, "server": NULLABLE_STR, "servers": STRS,
                 "system_servers": STRS, "fallback_servers": STRS}, ("enabled", "synchronized")),
}, ("timezone", "time", "ntp"))  # fmt: skip
INTERFACE = obj({
    "name": STR, "role": {"type": ["string", "null"], "enum": ["wan", "lan", None]}, "kernel_name": STR,
    "mac": NULLABLE_STR, "driver": NULLABLE_STR, "path": NULLABLE_STR, "carrier": {"type": ["boolean", "null"]},
    "operstate": STR, "speed_mbps": NULLABLE_INT, "mtu": NULLABLE_INT, "reason": STR,
}, ("name", "role", "carrier", "operstate"))  # fmt: skip
HW_ALARM = obj({"name": STR, "severity": STR, "text": STR}, ("name", "severity", "text"))
ACCEPTED = {202: Response("Accepted: carried out in a moment", obj({"accepted": BOOL, "action": STR,
                                                                   "marker": STR}))}  # fmt: skip
UNIT_PARAM = {"name": "unit", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 256}}

SYSTEM_OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/system/services", "listServices", "The SBC's services and their state", "system",
              Role.READ_ONLY, list_services,
              {200: Response("OK", obj({"services": {"type": "array", "items": SERVICE}}, ("services",)))}),
    Operation("POST", "/system/services/{unit}/restart", "restartService",
              "Restart one of the SBC's services (sbc-mgmt itself: answered 202, restarted a moment later)",
              "system", Role.OPERATOR, restart_service,
              {200: Response("Restarted", obj({"unit": STR, "result": STR})),
               202: Response("Queued (this process restarts)", obj({"unit": STR, "result": STR}))},
              params=(UNIT_PARAM,)),
    Operation("POST", "/system/reboot", "reboot", "Reboot the box (every call ends)", "system", Role.ADMIN,
              reboot, ACCEPTED),
    Operation("POST", "/system/poweroff", "powerOff", "Power the box off", "system", Role.ADMIN, power_off,
              ACCEPTED),
    Operation("GET", "/system/hostname", "getHostname", "The hostname", "system", Role.READ_ONLY, get_hostname,
              {200: Response("OK", HOSTNAME)}),
    Operation("PUT", "/system/hostname", "setHostname", "Set the static hostname (RFC 1123)", "system", Role.ADMIN,
              set_hostname, {200: Response("OK", HOSTNAME)},
              body=obj({"hostname": {"type": "string", "maxLength": 64}}, ("hostname",), closed=True)),
    Operation("GET", "/system/time", "getTime", "Clock, time zone and NTP", "system", Role.READ_ONLY, get_time,
              {200: Response("OK", TIME)}),
    Operation("PATCH", "/system/time", "setTime", "Set the time zone, NTP on/off and servers, or the clock",
              "system", Role.ADMIN, set_time, {200: Response("OK", TIME)},
              body=obj({"timezone": {"type": "string", "maxLength": 64}, "ntp": BOOL,
                         "ntp_servers": {"type": "array", "items": {"type": "string", "maxLength": 253},
                                         "maxItems": 8},
                         "time": {"type": "string", "description": "ISO 8601 with a zone; needs ntp false"}},
                        closed=True)),
    Operation("GET", "/system/interfaces", "getInterfaces", "Network interfaces with their roles and link state",
              "system", Role.READ_ONLY, get_interfaces,
              {200: Response("OK", obj({"source": {"type": "string", "enum": ["sbc-hw", "sysfs"]}, "profile": STR,
                                         "missing": STRS, "interfaces": {"type": "array", "items": INTERFACE},
                                         "alarms": {"type": "array", "items": HW_ALARM}},
                                        ("source", "interfaces")))}),
    Operation("POST", "/system/factory-reset", "factoryReset",
              "Factory reset: wipe configuration, certificates, users and logs, keep the firmware, reboot",
              "system", Role.ADMIN, factory_reset, ACCEPTED,
              body=obj({"confirm": {"type": "string", "const": FACTORY_RESET_CONFIRM},
                         "reason": {"type": "string", "maxLength": 200}}, ("confirm",), closed=True),
              description="Send `{\"confirm\": \"factory-reset\"}`; anything else is refused (422) and audited."),
)  # fmt: skip
