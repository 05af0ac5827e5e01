"""The web UI in a real headless Chromium (Debian's /usr/bin/chromium through chromedriver and Selenium),
against the real `sbc mgmt` beside a real SBC with a live SIPp call:

log in (with a TOTP code), see the live call on the dashboard and in the calls view, edit a header rule
in the config editor, see the validation error (with its line) for a broken one, fix it, look at the
diff, commit, then roll back from the revision history. Screenshots of every step go to
artifacts/ui/ in the repository root (git-ignored), for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mgmt import totp
from tests.integration.harness import (
    LAN_SBC,
    PHONE,
    ROOT,
    SBC_PORT,
    SCENARIOS,
    TRUNK,
    TRUNK_PORT,
    SbcProcess,
    Sipp,
    running_sbc,
    sbc_config,
    sipp,
)
from tests.integration.media_harness import media_sipp
from tests.integration.mgmt_harness import (
    ADMIN_PASSWORD,
    API,
    MGMT_HOST,
    MgmtProcess,
    api_session,
    free_port,
    running_mgmt,
)
from tests.integration.rtp import RtpStream, write_rtp_pcap

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "artifacts" / "ui"
WEB_USER, WEB_PASSWORD = "webadmin", "web admin password"
# With root SIPp plays RTP from a pcap: the phone talks, the trunk stays silent — one-way audio that the
# calls view must flag. Without root the call has no media and the view says so.
WITH_MEDIA = os.geteuid() == 0
PHONE_STREAM = RtpStream(count=500, ssrc=0x0E0E0001)  # 10 s of PCMU

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists() and shutil.which("sipp")),
        reason="needs chromium, chromium-driver and sip-tester (make test installs them)",
    ),
]

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

RULE = "[{name: tag-branch, realm: wan, direction: outbound, actions: [%s]}]"
BROKEN_RULE = RULE % '{replace: From, regex: "sip:(", with: x}'  # an unbalanced group: refused at load
GOOD_RULE = RULE % "{add: X-Branch-Id, value: branch-42}"


@dataclass
class Env:
    workdir: Path
    sbc: SbcProcess
    mgmt: MgmtProcess
    secret: str


async def make_totp_admin(url: str) -> str:
    """An admin with TOTP enrolled (through the API, as a person would through the UI's users page)."""
    async with api_session(url, "admin", ADMIN_PASSWORD) as (s, csrf):
        body = {"name": WEB_USER, "role": "admin", "password": WEB_PASSWORD, "must_change_password": False}
        async with s.post(f"{API}/users", json=body, headers=csrf) as resp:
            assert resp.status == 201, await resp.text()
    async with api_session(url, WEB_USER, WEB_PASSWORD) as (s, csrf):
        async with s.post(f"{API}/auth/totp/enroll", json={"password": WEB_PASSWORD}, headers=csrf) as resp:
            secret: str = (await resp.json())["secret"]
        code = totp.totp(totp.secret_key(secret), time.time())
        async with s.post(f"{API}/auth/totp/verify", json={"code": code}, headers=csrf) as resp:
            assert resp.status == 200, await resp.text()
    return secret


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("webui")
    port = free_port(MGMT_HOST)
    management = f"management:\n  http: {{address: {MGMT_HOST}, port: {port}}}\n  poll_interval_s: 1\n"
    config = sbc_config(workdir / "state") + management + "  snmp: {enabled: false}\n"
    with running_sbc(workdir, config) as sbc, running_mgmt(sbc.config_path, MGMT_HOST, port) as mgmt:
        yield Env(workdir, sbc, mgmt, asyncio.run(make_totp_admin(mgmt.url)))


@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--ignore-certificate-errors",
                 "--window-size=1366,768", f"--user-data-dir={env.workdir / 'chromium-profile'}"):  # fmt: skip
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 15.0) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)
    except TimeoutException:
        shot(driver, f"failed-{what.replace(' ', '-')}")
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        raise AssertionError(f"timed out waiting for {what}; browser log: {logs}") from None


def text_of(driver: Any, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def visible(driver: Any, element_id: str) -> bool:
    return bool(driver.find_element(By.ID, element_id).is_displayed())


def set_editor(driver: Any, text: str) -> None:
    area = driver.find_element(By.ID, "cfg-text")
    script = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));"
    driver.execute_script(script, area, text)


def long_call(env: Env) -> tuple[Sipp, Sipp]:
    uas = sipp("uas", env.workdir, "uas_basic.xml", local_ip=TRUNK, local_port=TRUNK_PORT, timeout_s=60).start()
    time.sleep(0.3)
    if WITH_MEDIA:
        write_rtp_pcap(env.workdir / "a_leg.pcap", PHONE_STREAM)
        uac = media_sipp("uac", env.workdir, "media_uac.xml", address=PHONE, sip_port=5071,
                         remote=f"{LAN_SBC}:{SBC_PORT}", pause_ms=12000, timeout_s=60).start()  # fmt: skip
        return uas, uac
    scenario = env.workdir / "uac_long.xml"
    scenario.write_text((SCENARIOS / "uac_basic.xml").read_text().replace('milliseconds="200"', 'milliseconds="12000"'))
    uac = sipp("uac", env.workdir, str(scenario), local_ip=PHONE, local_port=5071, remote=f"{LAN_SBC}:{SBC_PORT}",
               timeout_s=60).start()  # fmt: skip
    return uas, uac


def test_ui_login_dashboard_config_edit_commit_rollback(env: Env, browser: Any) -> None:
    d = browser
    d.get(env.mgmt.url + "/")
    wait(d, lambda d: visible(d, "view-login"), "the login form")
    csp = d.execute_script("return document.querySelectorAll('script:not([src])').length")
    assert csp == 0  # no inline script anywhere
    d.find_element(By.ID, "login-user").send_keys(WEB_USER)
    d.find_element(By.ID, "login-password").send_keys(WEB_PASSWORD)
    assert not visible(d, "login-totp-row")
    d.find_element(By.ID, "login-submit").click()
    wait(d, lambda d: visible(d, "login-totp-row"), "the TOTP field")  # the password alone is not enough
    wait(d, lambda d: text_of(d, "login-error"), "the ask for a code")
    assert not visible(d, "top")
    code = totp.totp(totp.secret_key(env.secret), time.time() + 30)  # the next step: the enrolment used this one
    d.find_element(By.ID, "login-totp").send_keys(code)
    shot(d, "01-login-totp")
    d.find_element(By.ID, "login-submit").click()
    wait(d, lambda d: visible(d, "view-dashboard"), "the dashboard")
    assert WEB_USER in text_of(d, "who")

    uas, uac = long_call(env)
    try:
        wait(d, lambda d: text_of(d, "d-calls") == "1", "one active call on the dashboard", timeout=20)
        assert text_of(d, "d-media") == "1" and "userspace 1" in text_of(d, "d-media-modes")
        assert text_of(d, "d-dataplane") in ("USERSPACE", "XDP")
        assert text_of(d, "d-cpu").endswith("%") and text_of(d, "d-mem").endswith("%")
        assert "lan" in text_of(d, "d-realms") and "wan" in text_of(d, "d-realms")
        shot(d, "02-dashboard-live-call")
        d.find_element(By.CSS_SELECTOR, "#nav a[data-view=calls]").click()
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#c-rows tr[data-call]"), "the live call row")
        row_text = text_of(d, "c-rows")
        assert "lan-to-trunk" in row_text and "confirmed" in row_text and "a-leg" in row_text and "b-leg" in row_text
        assert env.sbc.query("calls")["calls"][0]["call"] in row_text
        if WITH_MEDIA:  # the phone's RTP arrives, nothing comes back: flagged, with its quality figures
            wait(d, lambda d: "ONE-WAY" in text_of(d, "c-rows"), "the one-way audio flag", timeout=20)
            assert d.find_elements(By.CSS_SELECTOR, "#c-rows td.flag-bad")
            a_leg = d.find_elements(By.CSS_SELECTOR, "#c-rows tr")[0].text
            assert "a-leg" in a_leg and " 0 (0 %)" in a_leg  # packets in, none lost on the phone's leg
            mos = d.find_elements(By.CSS_SELECTOR, "#c-rows tr")[0].find_elements(By.TAG_NAME, "td")[10].text
            assert 4.0 <= float(mos) <= 4.5, a_leg  # G.711 without loss: the E-model's best
        shot(d, "03-live-calls")
    finally:
        assert uac.wait(60) == 0, uac.report()
        uas.wait(20)
        uac.kill()
        uas.kill()

    wait(d, lambda d: "lan-to-trunk" in text_of(d, "cdr-rows"), "the call record of the ended call")
    assert "200" in text_of(d, "cdr-rows") and "BYE from caller" in text_of(d, "cdr-rows")

    # the config editor: a broken header rule is refused with its line, a good one is committed
    d.find_element(By.CSS_SELECTOR, "#nav a[data-view=config]").click()
    wait(d, lambda d: "header_rules: []" in d.find_element(By.ID, "cfg-text").get_attribute("value"), "the config text")
    original = d.find_element(By.ID, "cfg-text").get_attribute("value")
    broken = original.replace("header_rules: []", f"header_rules: {BROKEN_RULE}")
    broken_line = next(i for i, line in enumerate(broken.splitlines(), start=1) if line.startswith("header_rules:"))
    set_editor(d, broken)
    d.find_element(By.ID, "cfg-validate").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#cfg-errors li"), "the validation error")
    error = text_of(d, "cfg-errors")
    assert f"line {broken_line}:" in error and "header_rules[0]" in error, error
    assert d.find_elements(By.CSS_SELECTOR, "#cfg-gutter span.bad")  # the line is marked beside the text
    shot(d, "04-config-validation-error")
    d.find_element(By.ID, "cfg-diff").click()  # staging the broken text is refused too
    wait(d, lambda d: "Not staged" in text_of(d, "cfg-result"), "the refusal to stage")
    assert "X-Branch-Id" not in env.sbc.config_path.read_text()

    set_editor(d, original.replace("header_rules: []", f"header_rules: {GOOD_RULE}"))
    d.find_element(By.ID, "cfg-validate").click()
    wait(d, lambda d: "Valid:" in text_of(d, "cfg-result"), "the validation result")
    assert "1 header rules" in text_of(d, "cfg-result")
    d.find_element(By.ID, "cfg-diff").click()
    wait(d, lambda d: visible(d, "cfg-diff-box"), "the diff")
    diff = text_of(d, "cfg-diff-text")
    assert "-header_rules: []" in diff and "+header_rules:" in diff and "X-Branch-Id" in diff
    assert d.find_elements(By.CSS_SELECTOR, "#cfg-diff-text span.add")
    shot(d, "05-config-diff")
    d.find_element(By.ID, "cfg-comment").send_keys("tag calls to the trunk")
    d.find_element(By.ID, "cfg-commit").click()
    wait(d, lambda d: "Committed as revision" in text_of(d, "cfg-result"), "the commit result")
    assert "applied" in text_of(d, "cfg-result")
    assert "X-Branch-Id" in env.sbc.config_path.read_text()
    shot(d, "06-config-committed")

    # roll back from the revision history
    d.find_element(By.CSS_SELECTOR, "#nav a[data-view=revisions]").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "button[data-rollback='1']"), "the revision list")
    assert "tag calls to the trunk" in text_of(d, "rev-rows")
    button = d.find_element(By.CSS_SELECTOR, "button[data-rollback='1']")
    button.click()
    assert "Really" in button.text  # a second click is needed
    button.click()
    wait(d, lambda d: "Rolled back" in text_of(d, "flash"), "the rollback")
    wait(d, lambda d: "rollback" in text_of(d, "rev-rows"), "the rollback revision")
    assert "X-Branch-Id" not in env.sbc.config_path.read_text()
    shot(d, "07-revisions-rolled-back")

    d.find_element(By.CSS_SELECTOR, "#nav a[data-view=users]").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, f"#u-rows tr[data-user={WEB_USER}]"), "the user list")
    assert "admin" in text_of(d, "u-rows")
    shot(d, "08-users")
    d.find_element(By.CSS_SELECTOR, "#nav a[data-view=logs]").click()
    wait(d, lambda d: "config.rollback" in text_of(d, "l-rows"), "the audit log")
    shot(d, "09-audit-log")
    d.find_element(By.ID, "logout").click()
    wait(d, lambda d: visible(d, "view-login"), "the login form after logout")


def test_ui_refuses_a_wrong_password(env: Env, browser: Any) -> None:
    d = browser
    d.get(env.mgmt.url + "/")
    wait(d, lambda d: visible(d, "view-login"), "the login form")
    d.find_element(By.ID, "login-user").clear()
    d.find_element(By.ID, "login-user").send_keys("admin")
    d.find_element(By.ID, "login-password").send_keys("not the password")
    d.find_element(By.ID, "login-submit").click()
    wait(d, lambda d: text_of(d, "login-error"), "the login error")
    assert visible(d, "view-login") and not visible(d, "top")
