"""Schemathesis against the OpenAPI document that the real `sbc mgmt` serves (HTTPS, beside a real SBC):
generated requests for every operation, valid and invalid, and every answer is checked — no 5xx, the
status and content type documented, the body matching its schema (problem+json for errors).

Bounded: `EXAMPLES` generated cases per operation (fixed seed, so a failure reproduces), no deadline.
Runs as an admin API token, so every operation is reachable; RBAC per role is `tests/unit/mgmt/test_api.py`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.integration.harness import running_sbc, sbc_config
from tests.integration.mgmt_harness import ADMIN_PASSWORD, API, MGMT_HOST, api_session, free_port, running_mgmt

schemathesis = pytest.importorskip("schemathesis")
requests = pytest.importorskip("requests")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error, positive_data_acceptance  # noqa: E402

pytestmark = pytest.mark.integration
EXAMPLES = 10
# A YAML text is a string to JSON Schema, but only a valid SBC configuration is accepted (422 with the
# lines otherwise): "schema-valid data is accepted" cannot hold for these; every other check does.
# The same for firmware updates: any bytes are a schema-valid body, only a signed bundle (or the URL of
# one) is accepted (422 with the reason otherwise).
SEMANTIC_BODIES = frozenset({"stageConfig", "importConfig", "uploadFirmwareUpdate", "updateFirmwareFromUrl"})


# A 503 saying a dependency is not there (no system bus on a build machine, the SBC not answering) is
# the documented answer, not a crash; anything else at 5xx fails.
UNAVAILABLE_TYPES = frozenset({"urn:edge-sbc:problem:system-unavailable", "urn:edge-sbc:problem:sbc-unavailable"})


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    if response.status_code < 500:
        return None
    if response.status_code == 503:
        try:
            if json.loads(response.content).get("type") in UNAVAILABLE_TYPES:
                return None
        except ValueError:
            pass
    raise AssertionError(f"{response.status_code} from {case.method} {case.formatted_path}: {response.text[:500]}")


def acts_on_the_host(raw: dict[str, Any], method: str) -> bool:
    """Reboot, power off, factory reset, restart a service, set hostname or time (mgmt/system_api.py): never
    fired at random, even where no system bus answers (their tests drive fakes: tests/unit/mgmt)."""
    return "system" in raw.get("tags", ()) and method.upper() != "GET"


@dataclass
class Served:
    url: str
    document: dict[str, Any]
    session: Any  # requests.Session with the admin token, not verifying the self-signed certificate


async def admin_token(url: str) -> str:
    async with (
        api_session(url, "admin", ADMIN_PASSWORD) as (s, csrf),
        s.post(f"{API}/auth/tokens", json={"name": "schemathesis"}, headers=csrf) as resp,
    ):
        assert resp.status == 201, await resp.text()
        token: str = (await resp.json())["token"]
        return token


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("schema")
    port = free_port(MGMT_HOST)
    management = f"management:\n  http: {{address: {MGMT_HOST}, port: {port}}}\n  snmp: {{enabled: false}}\n"
    with running_sbc(workdir, sbc_config(workdir / "state") + management) as sbc, running_mgmt(
        sbc.config_path, MGMT_HOST, port
    ) as mgmt:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with urllib.request.urlopen(f"{mgmt.url}{API}/openapi.json", context=ctx, timeout=10) as resp:
            document = json.load(resp)  # the document as served, not as built in-process
        session = requests.Session()
        session.verify = False
        session.headers["Authorization"] = f"Bearer {asyncio.run(admin_token(mgmt.url))}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning for the self-signed certificate
            yield Served(mgmt.url, document, session)


def summarize(exc: BaseException) -> str:
    """What failed and how to reproduce it (a schemathesis failure group carries it in its message)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines += [f"({type(sub).__name__}: {str(sub).splitlines()[0] if str(sub) else ''})"
              for sub in getattr(exc, "exceptions", ())]  # fmt: skip
    return "\n".join(lines)[:2500]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_conforms_to_the_served_document(served: Served, mode: str) -> None:
    """Each operation in turn (schemathesis' pytest plugin does not run under pytest 9: its strategies are
    driven with hypothesis directly); all failures are collected, then reported together."""
    schema = schemathesis.openapi.from_dict(served.document)
    generation = schemathesis.GenerationMode(mode)
    failures: dict[str, str] = {}
    counted = {"operations": 0, "cases": 0, "nothing_to_negate": 0, "left_out": 0}

    for result in schema.get_all_operations():
        operation = result.ok()
        if acts_on_the_host(operation.definition.raw, operation.method):
            counted["left_out"] += 1
            continue
        counted["operations"] += 1

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded, the first failure is enough
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy(generation_mode=generation))
        def check(case: Any) -> None:
            counted["cases"] += 1
            semantic = case.operation.definition.raw.get("operationId") in SEMANTIC_BODIES
            excluded = [not_a_server_error, *([positive_data_acceptance] if semantic else [])]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                case.call_and_validate(base_url=served.url, session=served.session, verify=False,
                                       excluded_checks=excluded, additional_checks=[no_server_error])  # fmt: skip

        try:
            check()
        except Unsatisfiable:
            if mode != "negative":
                raise
            counted["nothing_to_negate"] += 1  # e.g. GET /openapi.json: no parameter, no body
        except (Exception, BaseExceptionGroup) as exc:  # one operation's failure must not hide the others'
            failures[operation.label] = summarize(exc)
    print(f"schemathesis {mode}: {counted['operations']} operations, {counted['cases']} cases, "
          f"{counted['nothing_to_negate']} without anything to negate, {counted['left_out']} left out")  # fmt: skip
    documented = sum(len(item) for item in served.document["paths"].values())
    assert counted["operations"] + counted["left_out"] == documented
    assert counted["cases"] >= counted["operations"]
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


def test_the_document_covers_the_issue_endpoints(served: Served) -> None:
    paths = served.document["paths"]
    for wanted in ("/status", "/calls", "/registrations", "/realms", "/routes", "/header-rules", "/config",
                   "/config/candidate", "/config/validate", "/config/commit", "/config/confirm", "/config/rollback",
                   "/config/revisions", "/config/diff", "/config/export", "/config/import", "/alarms", "/logs",
                   "/users", "/auth/tokens"):  # fmt: skip
        assert f"{API}{wanted}" in paths, wanted
    operations = sum(len(item) for item in paths.values())
    assert operations >= 37, operations
