"""The operation table of `/api/v1/`: method, path, least role, handler, and the JSON schemas that the
OpenAPI document shows for each (see `mgmt.routes` and `mgmt.openapi`).
"""

from __future__ import annotations

from typing import Any

from mgmt import api_config, api_live, api_session, firmware
from mgmt.alarms import Severity
from mgmt.auth import Role
from mgmt.routes import Operation, Response
from mgmt.schemas import ANY_OBJ, BOOL, INT, NULLABLE_INT, NULLABLE_NUM, NUM, STR, obj
from mgmt.store import MAX_CONFIG_BYTES
from mgmt.system_api import SYSTEM_OPERATIONS
from sbc.control.contract import CallList, CallRecord, RegistrationList, StatusReport, json_schema

# ---- schemas -------------------------------------------------------------------------------------
ROLE = {"type": "string", "enum": [r.value for r in Role]}
USER_NAME = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
PASSWORD = {"type": "string", "minLength": 12, "maxLength": 1024}

SESSION = obj({"user": STR, "role": ROLE, "must_change_password": BOOL, "totp_enrolled": BOOL,
               "csrf_token": {"type": ["string", "null"]}, "auth": {"type": "string", "enum": ["session", "token"]}},
              ("user", "role", "must_change_password", "csrf_token"))  # fmt: skip
USER = obj({"name": STR, "role": ROLE, "created": NUM, "must_change_password": BOOL, "disabled": BOOL,
            "totp_enrolled": BOOL}, ("name", "role", "disabled", "totp_enrolled"))  # fmt: skip
TOKEN = obj({"id": STR, "user": STR, "name": STR, "created": NUM, "expires": NULLABLE_NUM}, ("id", "user", "name"))
REVISION = obj({
    "number": INT, "author": STR, "time": NUM, "comment": STR,
    "kind": {"type": "string", "enum": ["initial", "commit", "rollback", "auto-rollback", "external"]},
    "sha256": STR, "restart_required": {"type": "array", "items": STR},
    "confirm_deadline": NULLABLE_NUM, "rolled_back_to": NULLABLE_INT,
}, ("number", "author", "time", "comment", "kind"))  # fmt: skip
PENDING = {"type": ["object", "null"], "properties": {"revision": INT, "previous": INT, "deadline": NUM,
                                                      "timeout_s": INT, "author": STR}}  # fmt: skip
RELOAD = obj({"applied": BOOL, "restart_required": {"type": "array", "items": STR},
              "problems": {"type": "array", "items": STR}, "error": {"type": ["string", "null"]}},
             ("applied", "restart_required", "problems"))  # fmt: skip
COMMIT_RESULT = obj({"revision": REVISION, "reload": RELOAD, "pending": PENDING}, ("revision", "reload", "pending"))
SUMMARY = obj({"realms": INT, "routes": INT, "header_rules": INT})
STAGED = obj({"staged": BOOL, "summary": SUMMARY}, ("staged", "summary"))
CONFIG_ERROR = obj({"field": STR, "line": INT, "message": STR}, ("field", "line", "message"))
SEVERITY = {"type": "string", "enum": [s.value for s in Severity]}
ALARM = obj({"id": STR, "name": STR, "severity": SEVERITY, "text": STR, "raised_at": NUM, "cleared_at": NULLABLE_NUM},
            ("id", "name", "severity", "text"))  # fmt: skip
CONFIG_TEXT = {"type": "string", "maxLength": MAX_CONFIG_BYTES}


def ok(schema: dict[str, Any], description: str = "OK") -> dict[int, Response]:
    return {200: Response(description, schema)}


NO_CONTENT = {204: Response("Done")}
GET, POST, PUT, PATCH, DELETE = "GET", "POST", "PUT", "PATCH", "DELETE"
RO, OP, ADMIN = Role.READ_ONLY, Role.OPERATOR, Role.ADMIN
REVISION_PARAM = {"name": "number", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 1, "maximum": 999999999}}  # fmt: skip

# How many of the last lines of a JSON-lines file (call records, the audit log) to answer with.
LINES_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 1000}
LINES = {"name": "lines", "in": "query", "required": False, "schema": LINES_SCHEMA}

# The SBC's status as the control contract defines it, plus the rate sbc mgmt derives from its counter.
_STATUS = json_schema(StatusReport)
SBC_STATUS = {**_STATUS, "properties": {**_STATUS["properties"], "calls_per_second": NUM}}


OPERATIONS: tuple[Operation, ...] = (
    # auth
    Operation(
        POST,
        "/auth/login",
        "login",
        "Log in: sets the session cookie, returns the CSRF token",
        "auth",
        None,
        api_session.login,
        ok(SESSION),
        body=obj(
            {
                "username": {"type": "string", "maxLength": 64},
                "password": {"type": "string", "maxLength": 1024},
                "totp": {"type": "string", "maxLength": 16},
            },
            ("username", "password"),
            closed=True,
        ),
    ),
    Operation(
        POST,
        "/auth/logout",
        "logout",
        "End this session",
        "auth",
        RO,
        api_session.logout,
        NO_CONTENT,
        restricted_ok=True,
    ),
    Operation(
        GET,
        "/auth/session",
        "getSession",
        "Who is logged in (and the CSRF token again)",
        "auth",
        RO,
        api_session.get_session,
        ok(SESSION),
        restricted_ok=True,
    ),
    Operation(
        POST,
        "/auth/password",
        "changePassword",
        "Change one's own password",
        "auth",
        RO,
        api_session.change_password,
        NO_CONTENT,
        body=obj(
            {"current_password": {"type": "string", "maxLength": 1024}, "new_password": PASSWORD},
            ("current_password", "new_password"),
            closed=True,
        ),
        restricted_ok=True,
    ),
    Operation(
        POST,
        "/auth/totp/enroll",
        "enrollTotp",
        "Start TOTP enrolment: a new secret (needs the password)",
        "auth",
        RO,
        api_session.totp_enroll,
        ok(obj({"secret": STR, "otpauth_uri": STR}, ("secret", "otpauth_uri"))),
        body=obj({"password": {"type": "string", "maxLength": 1024}}, ("password",), closed=True),
    ),
    Operation(
        POST,
        "/auth/totp/verify",
        "verifyTotp",
        "Finish TOTP enrolment with a current code",
        "auth",
        RO,
        api_session.totp_verify,
        ok(obj({"totp_enrolled": BOOL}, ("totp_enrolled",))),
        body=obj({"code": {"type": "string", "maxLength": 16}}, ("code",), closed=True),
    ),
    Operation(
        GET,
        "/auth/tokens",
        "listTokens",
        "API tokens (never their secrets)",
        "auth",
        ADMIN,
        api_session.list_tokens,
        ok(obj({"tokens": {"type": "array", "items": TOKEN}}, ("tokens",))),
    ),
    Operation(
        POST,
        "/auth/tokens",
        "createToken",
        "Create an API token; the secret is shown only in this answer",
        "auth",
        ADMIN,
        api_session.create_token,
        {201: Response("Created", obj({**TOKEN["properties"], "token": STR}, ("id", "token")))},
        body=obj(
            {
                "name": {"type": "string", "maxLength": 100},
                "user": USER_NAME,
                "expires_in_s": {"type": "integer", "minimum": 60, "maximum": 315360000},
            },
            ("name",),
            closed=True,
        ),
    ),
    Operation(
        DELETE,
        "/auth/tokens/{id}",
        "revokeToken",
        "Revoke an API token",
        "auth",
        ADMIN,
        api_session.revoke_token,
        NO_CONTENT,
        params=({"name": "id", "in": "path", "required": True, "schema": STR},),
    ),
    # users
    Operation(
        GET,
        "/users",
        "listUsers",
        "Users",
        "users",
        ADMIN,
        api_session.list_users,
        ok(obj({"users": {"type": "array", "items": USER}}, ("users",))),
    ),
    Operation(
        POST,
        "/users",
        "createUser",
        "Create a user (must change the password at first login by default)",
        "users",
        ADMIN,
        api_session.create_user,
        {201: Response("Created", USER)},
        body=obj(
            {"name": USER_NAME, "role": ROLE, "password": PASSWORD, "must_change_password": BOOL},
            ("name", "role", "password"),
            closed=True,
        ),
    ),
    Operation(
        GET,
        "/users/{name}",
        "getUser",
        "One user",
        "users",
        ADMIN,
        api_session.get_user,
        ok(USER),
        params=({"name": "name", "in": "path", "required": True, "schema": STR},),
    ),
    Operation(
        PATCH,
        "/users/{name}",
        "updateUser",
        "Change role, disable, set a password, reset TOTP",
        "users",
        ADMIN,
        api_session.update_user,
        ok(USER),
        body=obj(
            {"role": ROLE, "disabled": BOOL, "password": PASSWORD, "must_change_password": BOOL, "totp_reset": BOOL},
            closed=True,
        ),
        params=({"name": "name", "in": "path", "required": True, "schema": STR},),
    ),
    Operation(
        DELETE,
        "/users/{name}",
        "deleteUser",
        "Delete a user and their API tokens",
        "users",
        ADMIN,
        api_session.delete_user,
        NO_CONTENT,
        params=({"name": "name", "in": "path", "required": True, "schema": STR},),
    ),
    # live state
    Operation(
        GET,
        "/status",
        "getStatus",
        "SBC status, calls per second, CPU and memory, alarm count",
        "status",
        RO,
        api_live.get_status,
        ok(
            obj(
                {
                    "sbc": {"anyOf": [SBC_STATUS, {"type": "null"}]},
                    "sbc_error": {"type": ["string", "null"]},
                    "host": ANY_OBJ,
                    "alarms": INT,
                    "config": obj({"revision": INT, "pending": PENDING}),
                },
                ("sbc", "host", "alarms", "config"),
            )
        ),
    ),
    Operation(
        GET,
        "/calls",
        "getCalls",
        "Live calls with both legs and per-stream quality",
        "status",
        RO,
        api_live.get_calls,
        ok(json_schema(CallList)),
    ),
    Operation(
        GET,
        "/registrations",
        "getRegistrations",
        "Registrations relayed upstream",
        "status",
        RO,
        api_live.get_registrations,
        ok(json_schema(RegistrationList)),
    ),
    Operation(
        GET,
        "/realms",
        "getRealms",
        "Realms of the active configuration",
        "config",
        RO,
        api_live.get_realms,
        ok(obj({"realms": {"type": "array", "items": ANY_OBJ}}, ("realms",))),
    ),
    Operation(
        GET,
        "/routes",
        "getRoutes",
        "Routes of the active configuration",
        "config",
        RO,
        api_live.get_routes,
        ok(obj({"routes": {"type": "array", "items": ANY_OBJ}}, ("routes",))),
    ),
    Operation(
        GET,
        "/header-rules",
        "getHeaderRules",
        "Header rules of the active configuration (change them by staging the config)",
        "config",
        RO,
        api_live.get_header_rules,
        ok(obj({"header_rules": {"type": "array", "items": ANY_OBJ}}, ("header_rules",))),
    ),
    Operation(
        GET,
        "/alarms",
        "getAlarms",
        "Active alarms",
        "status",
        RO,
        api_live.get_alarms,
        ok(obj({"alarms": {"type": "array", "items": ALARM}}, ("alarms",))),
    ),
    Operation(
        DELETE,
        "/alarms/{id}",
        "clearAlarm",
        "Acknowledge (clear) an active alarm; one whose condition holds is raised again at the next poll",
        "status",
        OP,
        api_live.clear_alarm,
        NO_CONTENT,
        params=({"name": "id", "in": "path", "required": True, "schema": STR},),
    ),
    Operation(
        GET,
        "/cdrs",
        "getCallRecords",
        "The latest call records (CDRs) the SBC wrote: legs, route, times, status, media quality",
        "status",
        RO,
        api_live.get_cdrs,
        ok(obj({"records": {"type": "array", "items": json_schema(CallRecord)}}, ("records",))),
        params=(LINES,),
    ),
    Operation(
        GET,
        "/logs",
        "getLogs",
        "The tail of the audit log",
        "status",
        RO,
        api_live.get_logs,
        ok(obj({"entries": {"type": "array", "items": ANY_OBJ}}, ("entries",))),
        params=(LINES,),
    ),
    # config
    Operation(
        GET,
        "/config",
        "getConfig",
        "The active configuration text, its revision, pending confirmation",
        "config",
        OP,
        api_config.get_config,
        ok(
            obj(
                {"text": STR, "revision": INT, "pending": PENDING, "candidate": {"type": ["object", "null"]}},
                ("text", "revision", "pending", "candidate"),
            )
        ),
    ),
    Operation(
        GET,
        "/config/candidate",
        "getCandidate",
        "The staged candidate",
        "config",
        OP,
        api_config.get_candidate,
        ok(obj({"text": STR, "author": STR, "time": NUM, "base_revision": INT}, ("text",))),
    ),
    Operation(
        PUT,
        "/config/candidate",
        "stageConfig",
        "Stage a candidate (refused with 422 and lines if invalid)",
        "config",
        OP,
        api_config.stage,
        ok(STAGED),
        body=obj({"text": CONFIG_TEXT}, ("text",), closed=True),
    ),
    Operation(
        DELETE,
        "/config/candidate",
        "discardCandidate",
        "Drop the staged candidate",
        "config",
        OP,
        api_config.discard,
        NO_CONTENT,
    ),
    Operation(
        POST,
        "/config/validate",
        "validateConfig",
        "Validate a text (or the candidate): problems with lines",
        "config",
        OP,
        api_config.validate,
        ok(
            obj(
                {
                    "valid": BOOL,
                    "errors": {"type": "array", "items": CONFIG_ERROR},
                    "summary": {"type": ["object", "null"]},
                },
                ("valid", "errors"),
            )
        ),
        body=obj({"text": CONFIG_TEXT}, closed=True),
        body_required=False,
    ),
    Operation(
        GET,
        "/config/diff",
        "diffConfig",
        "Unified diff: `from` (default active) to `to` (default candidate)",
        "config",
        OP,
        api_config.diff,
        ok(obj({"diff": STR, "from": NULLABLE_INT, "to": NULLABLE_INT}, ("diff",))),
        params=(
            {
                "name": "from",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000000000},
            },
            {
                "name": "to",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000000000},
            },
        ),
    ),
    Operation(
        POST,
        "/config/commit",
        "commitConfig",
        "Commit the candidate; with confirm_timeout_s (or confirm: true for the configured default) it "
        "reverts by itself unless confirmed in time",
        "config",
        OP,
        api_config.commit,
        ok(COMMIT_RESULT),
        body=obj(
            {
                "comment": {"type": "string", "maxLength": 500},
                "confirm_timeout_s": {"type": "integer", "minimum": 1, "maximum": 86400},
                "confirm": BOOL,
            },
            closed=True,
        ),
        body_required=False,
    ),
    Operation(
        POST,
        "/config/confirm",
        "confirmConfig",
        "Confirm a pending commit-confirmed",
        "config",
        OP,
        api_config.confirm,
        ok(obj({"confirmed": INT}, ("confirmed",))),
    ),
    Operation(
        POST,
        "/config/rollback",
        "rollbackConfig",
        "Make an earlier revision active again (a new revision)",
        "config",
        OP,
        api_config.rollback,
        ok(COMMIT_RESULT),
        body=obj(
            {
                "revision": {"type": "integer", "minimum": 1, "maximum": 1000000000},
                "comment": {"type": "string", "maxLength": 500},
                "confirm_timeout_s": {"type": "integer", "minimum": 1, "maximum": 86400},
            },
            ("revision",),
            closed=True,
        ),
    ),
    Operation(
        GET,
        "/config/revisions",
        "listRevisions",
        "Revision history",
        "config",
        RO,
        api_config.list_revisions,
        ok(
            obj(
                {"revisions": {"type": "array", "items": REVISION}, "active": INT, "pending": PENDING},
                ("revisions", "active", "pending"),
            )
        ),
    ),
    Operation(
        GET,
        "/config/revisions/{number}",
        "getRevision",
        "One revision with its text",
        "config",
        OP,
        api_config.get_revision,
        ok({**REVISION, "properties": {**REVISION["properties"], "text": STR}}),
        params=(REVISION_PARAM,),
    ),
    Operation(
        GET,
        "/config/export",
        "exportConfig",
        "Download the active configuration (backup)",
        "config",
        OP,
        api_config.export,
        {200: Response("The YAML file", {"description": "YAML text"}, media="application/yaml")},
    ),
    Operation(
        POST,
        "/config/import",
        "importConfig",
        "Upload a YAML backup (streamed, at most 2 MiB): validated, then staged as the candidate",
        "config",
        OP,
        api_config.import_config,
        ok(STAGED),
        body=CONFIG_TEXT,
        body_media="text/plain",
    ),
    # Firmware updates: their own module (image helper), registered here.
    *firmware.OPERATIONS,
)
# System operations (reboot, services, hostname, time, interfaces, factory reset): mgmt/system_api.py.
OPERATIONS += SYSTEM_OPERATIONS
