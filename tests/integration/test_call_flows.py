"""Call flows of the SIP core's scope with real SIPp peers: what each side receives, and that it
carries nothing of the other side's topology.

What depends only on the core and the clock is tested on the sans-IO core with a fake clock
(tests/unit/b2bua), not here with real waiting. Tests removed from this file, and what replaces each:
- test_trunk_that_never_answers_gives_408 (Timer B, 7 s): test_core_timers.py::
  test_unanswered_invite_is_retransmitted_then_the_caller_gets_408_at_timer_b
- test_max_forwards_exhausted_gets_483: test_core_refusals.py::
  test_invite_with_max_forwards_0_gets_483_and_is_not_relayed
- test_loop_back_into_the_sbc_gets_482: test_core_refusals.py::
  test_invite_that_comes_back_to_the_sbc_unchanged_gets_482_and_the_caller_hears_it (and the spiral next to it)
- test_session_expires_below_min_se_gets_422: test_core_dialogs.py::
  test_interval_below_min_se_from_a_caller_that_supports_timers_gets_422 (and 422 on refreshes)
- test_registration_expires_when_the_registrar_says (5 s of waiting): test_core_timers.py::
  test_registration_lasts_as_long_as_the_registrar_granted; the `registrations` listing moved into
  test_register_challenge_expiry_and_call_to_the_real_contact
- test_trunk_failure_mapped_to_the_caller[603, 404, 480, 503-as-500]: test_core_refusals.py::
  test_trunk_refusal_reaches_the_caller_as_it_is_or_mapped (486 and 302-as-480 stay here)
- test_session_timer_refreshed_then_expired_with_bye_to_both (77 s) became
  test_session_timer_refresh_through_real_peers (the refresh, no expiry); the expiry after the
  refresh: test_core_timers.py::test_refresh_by_the_trunk_reaches_the_phone_and_without_the_next_one_both_get_bye
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import (
    LAN_SBC,
    PHONE,
    SBC_PORT,
    TRUNK,
    TRUNK_PORT,
    WAN_SBC,
    SbcProcess,
    Sipp,
    render_scenario,
    running_sbc,
    sbc_config,
    sent_messages,
    sipp,
)
from tests.integration.sip_checks import all_received, assert_topology_hidden, body, first_received, header
from tests.integration.test_calls import PHONE_PORT, call_pair, wait_no_calls

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sbc(tmp_path: Path) -> Iterator[SbcProcess]:
    with running_sbc(tmp_path, sbc_config(tmp_path / "state")) as proc:
        yield proc


def _hidden(uac: object, uas: object) -> None:
    assert_topology_hidden(uac, uas, lan_ports=[PHONE_PORT], wan_ports=[TRUNK_PORT])  # type: ignore[arg-type]


def test_prack_reliable_provisionals_mapped_per_leg(sbc: SbcProcess, tmp_path: Path) -> None:
    """RFC 3262: Require: 100rel and RSeq reach the caller; each PRACK reaches the trunk with the RAck
    of the trunk's own leg (its INVITE CSeq 1, not the caller's 101); the 200 without SDP completes."""
    uac, uas = call_pair(sbc, tmp_path, "uac_prack.xml", "uas_prack.xml")
    p183 = first_received(uac, "SIP/2.0 183")
    assert header(p183, "RSeq") == "7001" and "100rel" in (header(p183, "Require") or "")
    assert f"c=IN IP4 {LAN_SBC}" in body(p183)
    p180 = first_received(uac, "SIP/2.0 180")
    assert header(p180, "RSeq") == "7002" and not body(p180)
    pracks = all_received(uas, "PRACK ")
    assert [header(p, "RAck") for p in pracks] == ["7001 1 INVITE", "7002 1 INVITE"]
    _hidden(uac, uas)
    assert wait_no_calls(sbc)["active_calls"] == 0


def test_info_in_dialog_both_ways(sbc: SbcProcess, tmp_path: Path) -> None:
    uac, uas = call_pair(sbc, tmp_path, "uac_info.xml", "uas_info.xml")
    info_out = first_received(uas, "INFO ")
    assert header(info_out, "Content-Type") == "application/dtmf-relay"
    assert body(info_out).splitlines() == ["Signal=5", "Duration=160"]
    info_in = first_received(uac, "INFO ")
    assert info_in.startswith(f"INFO sip:alice@{PHONE}:{PHONE_PORT} ")  # to the phone's own Contact
    assert body(info_in).splitlines() == ["Signal=#", "Duration=100"]
    _hidden(uac, uas)


def test_refer_and_notify_in_dialog_hide_the_inside(sbc: SbcProcess, tmp_path: Path) -> None:
    """Blind transfer from the LAN phone: the trunk gets a Refer-To that names the transfer target by
    user at the SBC's WAN address (no inside address or port), and its NOTIFYs reach the phone."""
    uac, uas = call_pair(sbc, tmp_path, "uac_refer.xml", "uas_refer.xml")
    refer = first_received(uas, "REFER ")
    assert header(refer, "Refer-To") == f"<sip:carol@{WAN_SBC}:{SBC_PORT}>"
    referred_by = header(refer, "Referred-By") or ""
    assert "sip:alice@" in referred_by and PHONE not in referred_by
    notifies = all_received(uac, "NOTIFY ")
    assert [body(n) for n in notifies] == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]
    assert all(header(n, "Event") == "refer" for n in notifies)
    assert header(notifies[1], "Subscription-State") == "terminated;reason=noresource"
    assert header(notifies[0], "Content-Type") == "message/sipfrag;version=2.0"
    assert_topology_hidden(uac, uas, lan_ports=[PHONE_PORT, 5090], wan_ports=[TRUNK_PORT])


def test_late_offer_offer_in_200_answer_in_ack(sbc: SbcProcess, tmp_path: Path) -> None:
    uac, uas = call_pair(sbc, tmp_path, "uac_late_offer.xml", "uas_late_offer.xml")
    invite = first_received(uas, "INVITE ")
    assert not body(invite) and header(invite, "Content-Type") is None
    offer = body(first_received(uac, "SIP/2.0 200"))
    assert f"c=IN IP4 {LAN_SBC}" in offer and "m=audio" in offer
    answer = body(first_received(uas, "ACK "))
    assert f"c=IN IP4 {WAN_SBC}" in answer and "m=audio" in answer
    _hidden(uac, uas)


def test_18x_with_and_without_sdp(sbc: SbcProcess, tmp_path: Path) -> None:
    uac, uas = call_pair(sbc, tmp_path, "uac_early_media.xml", "uas_early_media.xml")
    ringing = first_received(uac, "SIP/2.0 180")
    assert not body(ringing) and header(ringing, "Content-Type") is None
    early = first_received(uac, "SIP/2.0 183")
    assert header(early, "Content-Type") == "application/sdp"
    assert f"c=IN IP4 {LAN_SBC}" in body(early)
    # Max-Forwards is decremented across the SBC (RFC 7332 §3), the caller sent 10.
    assert header(first_received(uas, "INVITE "), "Max-Forwards") == "9"
    _hidden(uac, uas)


def _refused_call(
    sbc: SbcProcess, workdir: Path, expected: int, uas_status: tuple[int, str], uas_headers: str
) -> tuple[Sipp, Sipp]:
    """A call the trunk refuses with `uas_status`, which the caller sees as `expected`."""
    uas_scenario = render_scenario(
        workdir, "uas_refuses.xml.in", status=uas_status[0], reason=uas_status[1], extra_headers=uas_headers
    )
    uas = sipp("uas", workdir, uas_scenario, local_ip=TRUNK, local_port=TRUNK_PORT, timeout_s=30).start()
    time.sleep(0.3)
    uac_scenario = render_scenario(workdir, "uac_refused.xml.in", expected=expected, max_forwards=70, extra_headers="")
    uac = sipp(
        "uac", workdir, uac_scenario, local_ip=PHONE, local_port=PHONE_PORT, remote=f"{LAN_SBC}:{SBC_PORT}",
        timeout_s=30,
    ).start()  # fmt: skip
    rc_uac = uac.wait(40)
    rc_uas = uas.wait(15)
    details = f"{uac.report()}\n{uas.report()}\n--- sbc log tail:\n{sbc.log()[-6000:]}"
    assert (rc_uac, rc_uas) == (0, 0), details
    return uac, uas


@pytest.mark.parametrize(
    ("trunk", "caller", "caller_reason"),
    [
        ((486, "Busy Here"), 486, "Busy Here"),
        ((302, "Moved Temporarily"), 480, "Temporarily Unavailable"),
    ],
    ids=["486", "302-as-480"],
)
def test_trunk_failure_mapped_to_the_caller(
    sbc: SbcProcess, tmp_path: Path, trunk: tuple[int, str], caller: int, caller_reason: str
) -> None:
    """The trunk's final answer reaches the caller: as it is when it describes the call, mapped when it
    would hand it the far side's contacts (a 3xx not followed). Every status, and 503 as 500:
    test_core_refusals."""
    extra = "      Retry-After: 30"
    if trunk[0] == 302:
        # A host that is not the trunk's: not followed (a 3xx to the trunk's own host is, see
        # tests/unit/b2bua/test_redirects.py), so the caller hears 480.
        extra += "\n      Contact: <sip:elsewhere@198.18.7.7:5099>"
    uac, uas = _refused_call(sbc, tmp_path, caller, trunk, extra)
    final = first_received(uac, f"SIP/2.0 {caller} ")
    assert final.startswith(f"SIP/2.0 {caller} {caller_reason}")
    # Retry-After is the trunk's; it stays only when the status is the trunk's own.
    assert (header(final, "Retry-After") is None) == (caller != trunk[0]), final
    assert header(final, "Contact") is None
    assert len(all_received(uas, "ACK ")) == 1  # the SBC ACKed the trunk's final response itself
    _hidden(uac, uas)
    status = wait_no_calls(sbc)
    assert status["active_calls"] == 0


def test_options_to_the_sbc_answered_locally_on_both_realms(sbc: SbcProcess, tmp_path: Path) -> None:
    for realm, local_ip, remote in (("lan", PHONE, LAN_SBC), ("wan", TRUNK, WAN_SBC)):
        probe = sipp(
            f"options_{realm}", tmp_path, "uac_options.xml", local_ip=local_ip, local_port=5095,
            remote=f"{remote}:{SBC_PORT}", timeout_s=10,
        ).start()  # fmt: skip
        assert probe.wait(20) == 0, probe.report() + sbc.log()[-3000:]
        answer = first_received(probe, "SIP/2.0 200 ")
        assert header(answer, "Server") == "EdgeSBC-test"
        assert "timer" in (header(answer, "Supported") or "")
    assert sbc.query("status")["counters"]["calls_total"] == 0


def test_session_timer_refresh_through_real_peers(sbc: SbcProcess, tmp_path: Path) -> None:
    """RFC 4028, 90 s with the trunk as refresher: the interval and refresher reach the trunk and come
    back to the caller in the 200; the trunk's UPDATE reaches the caller and its answer the trunk, each
    with the interval (the SIPp scenarios check those); then the caller hangs up."""
    uac, uas = call_pair(sbc, tmp_path, "uac_session_timer.xml", "uas_session_timer.xml")
    invite = first_received(uas, "INVITE ")
    assert header(invite, "Session-Expires") == "90;refresher=uas" and header(invite, "Min-SE") == "90"
    assert header(first_received(uac, "SIP/2.0 200 "), "Session-Expires") == "90;refresher=uas"
    assert header(first_received(uac, "UPDATE "), "Session-Expires") == "90;refresher=uas"
    assert first_received(uas, "BYE ")
    _hidden(uac, uas)
    assert wait_no_calls(sbc)["active_calls"] == 0


@pytest.mark.parametrize(
    ("status", "reason", "challenge", "credentials"),
    [
        (401, "Unauthorized", "WWW-Authenticate", "Authorization"),
        (407, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization"),
    ],
    ids=["401", "407"],
)
def test_register_challenge_expiry_and_call_to_the_real_contact(
    sbc: SbcProcess, tmp_path: Path, status: int, reason: str, challenge: str, credentials: str
) -> None:
    """The registrar's challenge reaches the phone and the phone's digest reaches the registrar, which
    verifies it; the expiry the phone asked (300) goes up, the one granted (120) comes back; the
    registrar saw only the SBC's contact, and its INVITE for that contact reaches the phone's own
    Contact (another port than the one the phone registered from)."""
    answer_port = 5073
    phone_uas = sipp("phone_uas", tmp_path, "uas_basic.xml", local_ip=PHONE, local_port=answer_port,
                     timeout_s=30).start()  # fmt: skip
    if credentials == "Authorization":
        verify = '      <verifyauth assign_to="auth_ok" username="alice" password="not-a-real-secret"/>'
    else:  # SIPp's verifyauth reads Authorization only: check the digest is there and the same below
        verify = (
            '      <ereg regexp="Digest username=.alice." search_in="hdr" header="Proxy-Authorization:" '
            'check_it="true" assign_to="seen"/>\n      <assign assign_to="auth_ok" value="1"/>'
        )
    registrar_scenario = render_scenario(
        tmp_path, "registrar_challenge.xml.in", challenge_status=status, challenge_reason=reason,
        challenge_header=challenge, granted=120, verify=verify,
        referenced="asked,dummy" + (",seen" if credentials != "Authorization" else ""),
    )  # fmt: skip
    registrar = sipp("registrar", tmp_path, registrar_scenario, local_ip=TRUNK, local_port=TRUNK_PORT,
                     timeout_s=30).start()  # fmt: skip
    time.sleep(0.3)
    phone_scenario = render_scenario(tmp_path, "phone_register_auth.xml.in", challenge_status=status, granted=120)
    phone = sipp(
        "phone", tmp_path, phone_scenario, local_ip=PHONE, local_port=PHONE_PORT,
        remote=f"{LAN_SBC}:{SBC_PORT}", timeout_s=30, extra=["-set", "answer_port", str(answer_port)],
    ).start()  # fmt: skip
    rcs = (phone.wait(40), registrar.wait(40), phone_uas.wait(15))
    details = f"{phone.report()}\n{registrar.report()}\n{phone_uas.report()}\n{sbc.log()[-6000:]}"
    assert rcs == (0, 0, 0), details
    bindings = sbc.query("registrations")["registrations"]
    assert [b["aor"] for b in bindings] == ["alice@branch.example"] and 0 < bindings[0]["expires_in_s"] <= 120
    assert bindings[0]["flow"] == f"sip:{PHONE}:{PHONE_PORT};transport=udp"  # a SIP URI, not a Python repr
    challenged = first_received(phone, f"SIP/2.0 {status} ")
    assert header(challenged, challenge) is not None and header(challenged, "Server") == "EdgeSBC-test"
    registers = all_received(registrar, "REGISTER ")
    assert len(registers) == 2 and header(registers[1], credentials) is not None
    sent = [m for m in sent_messages(phone.messages()) if m.startswith("REGISTER ")]
    assert header(registers[1], credentials) == header(sent[1], credentials)  # byte for byte
    contact = header(registers[1], "Contact") or ""
    assert contact.startswith("<sip:r") and f"@{WAN_SBC}:{SBC_PORT}>" in contact and "expires=300" in contact
    invite = first_received(phone_uas, "INVITE ")
    assert invite.startswith(f"INVITE sip:alice@{PHONE}:{answer_port} SIP/2.0")
    # SIPp's digest-uri names the SBC's LAN address it sent the REGISTER to; the digest is passed as
    # it is (a changed byte breaks it) and that is the only inside address allowed in it.
    assert LAN_SBC in (header(registers[1], credentials) or "")
    assert_topology_hidden(
        [phone, phone_uas], registrar, lan_ports=[PHONE_PORT, answer_port], wan_ports=[TRUNK_PORT],
        lan_credential_addresses=[LAN_SBC],
    )  # fmt: skip
