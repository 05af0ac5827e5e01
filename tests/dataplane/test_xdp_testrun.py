"""The XDP relay on single packets through BPF_PROG_TEST_RUN: verdicts, rewrites, counters.

Frames are built and checked with scapy. Every run uses repeat=1: with more, the
kernel runs the program again on the packet it already rewrote.
"""

from __future__ import annotations

import ctypes
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.rtp import RTP
from scapy.packet import Packet, Raw

from dataplane.xdp import abi
from dataplane.xdp.loader import RelayObjects
from dataplane.xdp.tables import RelayTables
from dataplane.xdp.testrun import (
    TEST_RUN_IFINDEX,
    XDP_DROP,
    XDP_PASS,
    XDP_TX,
    fixed_point_session,
    ipv4_udp_frame,
    measure,
    rtp_payload,
    run_packet,
)

pytestmark = pytest.mark.root

# A LAN phone sends to the SBC's LAN anchor; the relay sends on from the WAN anchor.
PHONE = ("198.18.0.10", 5000)
LAN_ANCHOR = ("198.18.0.1", 40000)
WAN_ANCHOR = ("198.19.0.1", 40002)
FAR_END = ("198.19.0.20", 6000)
# IPv6 benchmarking prefix (RFC 5180); test-run packets never leave the kernel.
PHONE6 = ("2001:2::10", 5000)
LAN_ANCHOR6 = ("2001:2::1", 40000)
WAN_ANCHOR6 = ("2001:2:0:1::1", 40002)
FAR_END6 = ("2001:2:0:1::20", 6000)
SBC_MAC, NEXT_HOP_MAC = "02:5b:c0:00:00:01", "02:5b:c0:00:00:02"
PHONE_MAC = "02:00:00:00:00:10"
EF = 46  # DSCP Expedited Forwarding (RFC 3246)


def session(
    flags: abi.SessionFlag = abi.SessionFlag.LATCHED,
    expected: tuple[str, int] = PHONE,
    dst: tuple[str, int] = FAR_END,
    new_src: tuple[str, int] = WAN_ANCHOR,
    dscp: int = EF,
    egress: int = TEST_RUN_IFINDEX,
) -> abi.Session:
    s = abi.Session(
        flags=flags,
        egress_ifindex=egress,
        expected_src=abi.Endpoint.of(*expected),
        dst=abi.Endpoint.of(*dst),
        new_src=abi.Endpoint.of(*new_src),
        dscp=dscp,
    )
    s.set_macs(SBC_MAC, NEXT_HOP_MAC)
    return s


def install(xdp_tables: RelayTables, s: abi.Session, anchor: tuple[str, int] = LAN_ANCHOR) -> abi.SessionKey:
    key = abi.SessionKey.of(*anchor)
    xdp_tables.sessions.put(key, s)
    return key


def rtp(seq: int = 1, ts: int = 160, ssrc: int = 0x1234ABCD, pt: int = 0, size: int = 160) -> Packet:
    return RTP(version=2, payload_type=pt, sequence=seq, timestamp=ts, sourcesync=ssrc) / Raw(b"\xd5" * size)


def udp4(
    src: tuple[str, int] = PHONE,
    dst: tuple[str, int] = LAN_ANCHOR,
    payload: Packet | None = None,
    *,
    tos: int = 0,
    ttl: int = 64,
) -> bytes:
    ip = IP(src=src[0], dst=dst[0], tos=tos, ttl=ttl)
    pkt = Ether(src=PHONE_MAC, dst=SBC_MAC) / ip / UDP(sport=src[1], dport=dst[1])
    return bytes(pkt / (payload if payload is not None else rtp()))


def udp6(src: tuple[str, int] = PHONE6, dst: tuple[str, int] = LAN_ANCHOR6, payload: Packet | None = None) -> bytes:
    pkt = Ether(src=PHONE_MAC, dst=SBC_MAC) / IPv6(src=src[0], dst=dst[0], tc=0x01) / UDP(sport=src[1], dport=dst[1])
    return bytes(pkt / (payload if payload is not None else rtp()))


def assert_checksums_valid(frame: bytes) -> Packet:
    """Recompute with scapy (delete the fields and rebuild) and compare."""
    pkt = Ether(frame)
    fresh = pkt.copy()
    if IP in fresh:
        del fresh[IP].chksum
    del fresh[UDP].chksum
    rebuilt = Ether(bytes(fresh))
    if IP in pkt:
        assert pkt[IP].chksum == rebuilt[IP].chksum, "IPv4 header checksum"
    assert pkt[UDP].chksum == rebuilt[UDP].chksum, "UDP checksum"
    return pkt


def stats(xdp_tables: RelayTables, anchor: tuple[str, int] = LAN_ANCHOR) -> abi.SessionStats:
    entry = xdp_tables.sessions.get(abi.SessionKey.of(*anchor))
    assert entry is not None
    return entry.stats


# --- relaying -----------------------------------------------------------------------------


@pytest.mark.parametrize("payload_size", [0, 1, 159, 160, 1200])
@pytest.mark.parametrize("in_tos", [0x00, 0x01, 0x03, 0xB8])
def test_ipv4_rewrite_addresses_ports_dscp_macs_and_checksums(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, payload_size: int, in_tos: int
) -> None:
    install(xdp_tables, session())
    frame = udp4(payload=rtp(size=payload_size), tos=in_tos, ttl=17)
    result = run_packet(xdp_relay.prog, frame)
    assert result.retval == XDP_TX
    out = assert_checksums_valid(result.data)
    assert (out[IP].src, out[UDP].sport) == WAN_ANCHOR
    assert (out[IP].dst, out[UDP].dport) == FAR_END
    assert out[IP].tos == (EF << 2) | (in_tos & 0x3), "DSCP set, ECN bits kept (RFC 3168)"
    assert out[IP].ttl == 17, "TTL untouched without SBC_F_DEC_TTL"
    assert (out.src, out.dst) == (SBC_MAC, NEXT_HOP_MAC)
    assert bytes(out[UDP].payload) == bytes(Ether(frame)[UDP].payload)
    assert len(result.data) == len(frame)


def test_ipv4_dscp_keep_and_ttl_decrement(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(flags=abi.SessionFlag.LATCHED | abi.SessionFlag.DEC_TTL, dscp=abi.DSCP_KEEP))
    result = run_packet(xdp_relay.prog, udp4(tos=0x2A, ttl=64))
    assert result.retval == XDP_TX
    out = assert_checksums_valid(result.data)
    assert (out[IP].tos, out[IP].ttl) == (0x2A, 63)


def test_ttl_expiring_goes_to_the_stack(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(flags=abi.SessionFlag.LATCHED | abi.SessionFlag.DEC_TTL))
    frame = udp4(ttl=1)
    result = run_packet(xdp_relay.prog, frame)
    assert (result.retval, result.data) == (XDP_PASS, frame)
    assert xdp_tables.counters.read()[abi.Counter.TTL_EXPIRED] == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    src=st.tuples(st.ip_addresses(v=4), st.integers(0, 65535)),
    dst=st.tuples(st.ip_addresses(v=4), st.integers(0, 65535)),
    new_src=st.tuples(st.ip_addresses(v=4), st.integers(0, 65535)),
    anchor_port=st.integers(1, 65535),
    dscp=st.integers(0, 63),
    payload=st.binary(max_size=64),
    ttl=st.integers(2, 255),
)
def test_ipv4_checksums_stay_valid_for_any_rewrite(
    xdp_relay: RelayObjects,
    xdp_tables: RelayTables,
    src: tuple[object, int],
    dst: tuple[object, int],
    new_src: tuple[object, int],
    anchor_port: int,
    dscp: int,
    payload: bytes,
    ttl: int,
) -> None:
    """RFC 1624 corner cases (results of 0x0000/0xffff, carries) over random values."""
    phone, far, wan = (str(src[0]), src[1]), (str(dst[0]), dst[1]), (str(new_src[0]), new_src[1])
    anchor = (LAN_ANCHOR[0], anchor_port)
    flags = abi.SessionFlag.LATCHED | abi.SessionFlag.DEC_TTL
    install(xdp_tables, session(flags=flags, expected=phone, dst=far, new_src=wan, dscp=dscp), anchor)
    frame = udp4(src=phone, dst=anchor, payload=Raw(payload), ttl=ttl)
    if Ether(frame)[UDP].chksum == 0:
        return  # an unlucky 0 is not what this test is about
    result = run_packet(xdp_relay.prog, frame)
    assert result.retval == XDP_TX
    out = assert_checksums_valid(result.data)
    assert (out[IP].src, out[UDP].sport, out[IP].dst, out[UDP].dport) == (*wan, *far)
    assert out[UDP].chksum != 0


def test_zero_udp_checksum_stays_zero(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    pkt = Ether(udp4())
    pkt[UDP].chksum = 0  # "no checksum" over IPv4 (RFC 768)
    result = run_packet(xdp_relay.prog, bytes(pkt))
    assert result.retval == XDP_TX
    out = Ether(result.data)
    assert out[UDP].chksum == 0
    fresh = out.copy()
    del fresh[IP].chksum
    assert Ether(bytes(fresh))[IP].chksum == out[IP].chksum
    assert (out[IP].dst, out[UDP].dport) == FAR_END


def test_ipv6_rewrite_with_udp_checksum_and_traffic_class(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(
        xdp_tables,
        session(
            expected=PHONE6, dst=FAR_END6, new_src=WAN_ANCHOR6, flags=abi.SessionFlag.LATCHED | abi.SessionFlag.DEC_TTL
        ),
        LAN_ANCHOR6,
    )
    result = run_packet(xdp_relay.prog, udp6())
    assert result.retval == XDP_TX
    out = assert_checksums_valid(result.data)
    assert (out[IPv6].src, out[UDP].sport) == WAN_ANCHOR6
    assert (out[IPv6].dst, out[UDP].dport) == FAR_END6
    assert out[IPv6].tc == (EF << 2) | 0x01
    assert out[IPv6].hlim == 63
    assert stats(xdp_tables, LAN_ANCHOR6).rtp.received == 1


def test_family_mismatch_goes_to_the_stack(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(dst=FAR_END6, new_src=WAN_ANCHOR6))
    frame = udp4()
    assert run_packet(xdp_relay.prog, frame).retval == XDP_PASS
    assert xdp_tables.counters.read()[abi.Counter.FAMILY_MISMATCH] == 1


def test_egress_not_in_devmap_goes_to_the_stack_unchanged(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(egress=4242))
    frame = udp4()
    result = run_packet(xdp_relay.prog, frame)
    assert (result.retval, result.data) == (XDP_PASS, frame)
    assert xdp_tables.counters.read()[abi.Counter.NO_EGRESS] == 1


# --- verdicts -------------------------------------------------------------------------------


def test_unknown_port_passes_unchanged(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    frame = udp4(dst=(LAN_ANCHOR[0], 40010))
    result = run_packet(xdp_relay.prog, frame)
    assert (result.retval, result.data) == (XDP_PASS, frame)
    counters = xdp_tables.counters.read()
    assert (counters[abi.Counter.RX], counters[abi.Counter.PASSED_UNKNOWN]) == (1, 1)


def test_spoofed_source_on_latched_entry_is_dropped(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(flags=abi.SessionFlag.LATCHED | abi.SessionFlag.LATCH_ALLOWED))
    for spoof in [("198.18.0.66", PHONE[1]), (PHONE[0], PHONE[1] + 1)]:
        assert run_packet(xdp_relay.prog, udp4(src=spoof)).retval == XDP_DROP
    assert xdp_tables.counters.read()[abi.Counter.DROPPED_SPOOFED] == 2
    s = stats(xdp_tables)
    assert (s.dropped, s.packets, s.rtp.received) == (2, 0, 0)
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_TX, "the latched source still gets through"


def test_unlatched_entry_with_learning_passes_a_new_source_to_userspace(
    xdp_relay: RelayObjects, xdp_tables: RelayTables
) -> None:
    install(xdp_tables, session(flags=abi.SessionFlag.LATCH_ALLOWED))
    frame = udp4(src=("198.18.0.77", 7000))
    result = run_packet(xdp_relay.prog, frame)
    assert (result.retval, result.data) == (XDP_PASS, frame)
    assert xdp_tables.counters.read()[abi.Counter.PASSED_LEARNING] == 1
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_TX, "the SDP source is relayed meanwhile"


def test_unlatched_entry_without_learning_drops_a_new_source(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(flags=abi.SessionFlag(0)))
    assert run_packet(xdp_relay.prog, udp4(src=("198.18.0.77", 7000))).retval == XDP_DROP
    assert xdp_tables.counters.read()[abi.Counter.DROPPED_SPOOFED] == 1


def test_drop_flag_drops_even_the_expected_source(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(flags=abi.SessionFlag.LATCHED | abi.SessionFlag.DROP))
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_DROP
    assert xdp_tables.counters.read()[abi.Counter.DROPPED_SESSION] == 1


def test_blocked_source_is_dropped_before_anything_else(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    xdp_tables.blocklist.add(PHONE[0])
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_DROP
    assert run_packet(xdp_relay.prog, bytes(Ether() / IP(src=PHONE[0], dst=LAN_ANCHOR[0]) / ICMP())).retval == XDP_DROP
    assert xdp_tables.counters.read()[abi.Counter.DROPPED_BLOCKED] == 2
    block = xdp_tables.blocklist.get(PHONE[0])
    assert block is not None and block.drops == 2
    assert stats(xdp_tables).packets == 0


def test_expired_block_no_longer_drops(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    xdp_tables.blocklist.add(PHONE[0], expires_ns=1)  # long past on the monotonic clock
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_TX


def test_blocklist_lookup_runs_only_while_the_map_has_entries(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    """sbc_config.blocklist_in_use follows the map: an empty blocklist costs no lookup per packet, and
    the first entry turns the check on before the next packet."""
    install(xdp_tables, session())
    assert not xdp_tables.blocklist.flag()
    xdp_tables.blocklist.add("198.18.0.66")
    assert xdp_tables.blocklist.flag()
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_TX, "a source not in the list is relayed"
    xdp_tables.blocklist.add(PHONE[0])
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_DROP
    xdp_tables.blocklist.remove("198.18.0.66")
    assert xdp_tables.blocklist.flag(), "one entry is left"
    xdp_tables.blocklist.remove(PHONE[0])
    assert not xdp_tables.blocklist.flag()
    assert run_packet(xdp_relay.prog, udp4()).retval == XDP_TX
    assert xdp_tables.counters.read()[abi.Counter.DROPPED_BLOCKED] == 1


def test_blocked_ipv6_source(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    xdp_tables.blocklist.add(PHONE6[0])
    assert run_packet(xdp_relay.prog, udp6()).retval == XDP_DROP
    assert xdp_tables.counters.read()[abi.Counter.DROPPED_BLOCKED] == 1


@pytest.mark.parametrize(
    ("frame", "counter"),
    [
        (Ether() / ARP(pdst="198.18.0.1"), abi.Counter.NOT_IP),
        (Ether() / IP(src=PHONE[0], dst=LAN_ANCHOR[0]) / ICMP(), abi.Counter.NOT_UDP),
        (Ether() / IPv6(src=PHONE6[0], dst=LAN_ANCHOR6[0]) / ICMP(), abi.Counter.NOT_UDP),
        (
            Ether() / Dot1Q(vlan=7) / IP(src=PHONE[0], dst=LAN_ANCHOR[0]) / UDP(sport=5000, dport=40000),
            abi.Counter.VLAN,
        ),
        (
            Ether() / IP(src=PHONE[0], dst=LAN_ANCHOR[0], flags="MF") / UDP(sport=5000, dport=40000),
            abi.Counter.FRAGMENT,
        ),
    ],
    ids=["arp", "icmp", "icmpv6-ish", "vlan", "fragment"],
)
def test_traffic_the_relay_does_not_handle_passes(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, frame: Packet, counter: abi.Counter
) -> None:
    install(xdp_tables, session())
    raw = bytes(frame)
    result = run_packet(xdp_relay.prog, raw)
    assert (result.retval, result.data) == (XDP_PASS, raw)
    assert xdp_tables.counters.read()[counter] == 1


def _frames_malformed() -> list[tuple[str, bytes, abi.Counter]]:
    good = udp4()
    ip_with_options = bytes(
        Ether() / IP(src=PHONE[0], dst=LAN_ANCHOR[0], options=b"\x01\x01\x01\x00") / UDP(sport=5000, dport=40000)
    )
    ihl_too_small = bytearray(good)
    ihl_too_small[14] = 0x44
    version_wrong = bytearray(good)
    version_wrong[14] = 0x65
    return [
        ("ethernet only", good[:14], abi.Counter.MALFORMED),
        ("partial ip header", good[: 14 + 10], abi.Counter.MALFORMED),
        ("partial udp header", good[: 14 + 20 + 4], abi.Counter.MALFORMED),
        ("ihl below 5", bytes(ihl_too_small), abi.Counter.MALFORMED),
        ("version 6 in an ipv4 frame", bytes(version_wrong), abi.Counter.MALFORMED),
        ("ip options", ip_with_options, abi.Counter.IP_OPTIONS),
        ("partial ipv6 header", udp6()[: 14 + 30], abi.Counter.MALFORMED),
        ("vlan tag cut", bytes(Ether() / Dot1Q(vlan=7))[:16], abi.Counter.MALFORMED),
    ]


@pytest.mark.parametrize(
    ("name", "frame", "counter"), _frames_malformed(), ids=[name for name, _, _ in _frames_malformed()]
)
def test_truncated_and_malformed_frames_pass_without_harm(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, name: str, frame: bytes, counter: abi.Counter
) -> None:
    install(xdp_tables, session())
    result = run_packet(xdp_relay.prog, frame)
    assert (result.retval, result.data) == (XDP_PASS, frame), name
    assert xdp_tables.counters.read()[counter] == 1, name
    assert stats(xdp_tables).packets == 0


# --- statistics -----------------------------------------------------------------------------


def test_per_entry_counters_and_rtp_loss(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    sizes = []
    for seq in (1, 2, 4):
        frame = udp4(payload=rtp(seq=seq, ts=seq * 160, pt=8))
        sizes.append(len(frame) - 14)
        assert run_packet(xdp_relay.prog, frame).retval == XDP_TX
    s = stats(xdp_tables)
    assert (s.packets, s.bytes, s.rtcp_packets, s.dropped) == (3, sum(sizes), 0, 0)
    assert s.last_seen_ns > 0
    assert (s.rtp.ssrc, s.rtp.base_seq, s.rtp.max_seq_ext, s.rtp.last_seq) == (0x1234ABCD, 1, 4, 4)
    assert (s.rtp.received, s.rtp.expected(), s.rtp.lost()) == (3, 4, 1)
    assert s.rtp.payload_type == 8
    counters = xdp_tables.counters.read()
    assert (counters[abi.Counter.RELAYED], counters[abi.Counter.TX]) == (3, 3)
    assert counters[abi.Counter.RELAYED_BYTES] == sum(size - 28 for size in sizes), "UDP payload bytes"


def test_sequence_wrap_extends_the_maximum(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    for seq in (65534, 65535, 0, 1):
        run_packet(xdp_relay.prog, udp4(payload=rtp(seq=seq)))
    r = stats(xdp_tables).rtp
    assert (r.max_seq_ext, r.received, r.lost()) == (0x10001, 4, 0)


def test_new_ssrc_restarts_the_rtp_state(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    for seq in (10, 11):
        run_packet(xdp_relay.prog, udp4(payload=rtp(seq=seq)))
    run_packet(xdp_relay.prog, udp4(payload=rtp(seq=500, ssrc=0xBEEF)))
    r = stats(xdp_tables).rtp
    assert (r.ssrc, r.base_seq, r.received) == (0xBEEF, 500, 1)
    assert stats(xdp_tables).packets == 3


@pytest.mark.parametrize("rtcp_type", [200, 201, 202, 203, 204])
def test_rtcp_is_relayed_without_touching_rtp_stats(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, rtcp_type: int
) -> None:
    install(xdp_tables, session())
    run_packet(xdp_relay.prog, udp4(payload=rtp(seq=7)))
    before = bytes(stats(xdp_tables).rtp)
    rtcp = Raw(bytes([0x81, rtcp_type, 0x00, 0x06]) + b"\x12\x34\xab\xcd" + bytes(20))  # RFC 3550 6.4
    result = run_packet(xdp_relay.prog, udp4(payload=rtcp))
    assert result.retval == XDP_TX
    assert_checksums_valid(result.data)
    s = stats(xdp_tables)
    assert bytes(s.rtp) == before
    assert (s.packets, s.rtcp_packets) == (2, 1)
    assert xdp_tables.counters.read()[abi.Counter.RTCP] == 1


def test_rtcp_entry_never_parses_rtp(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(flags=abi.SessionFlag.LATCHED | abi.SessionFlag.RTCP))
    run_packet(xdp_relay.prog, udp4(payload=rtp(seq=7)))
    s = stats(xdp_tables)
    assert (s.packets, s.rtcp_packets, s.rtp.received) == (1, 1, 0)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_rtcp_up_passes_muxed_rtcp_unchanged_and_relays_the_rtp(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, v6: bool
) -> None:
    """SBC_F_RTCP_UP: RTCP toward another realm is the userspace relay's to rewrite (SDES CNAMEs)."""
    build = udp6 if v6 else udp4
    flags = abi.SessionFlag.LATCHED | abi.SessionFlag.RTCP_UP
    if v6:
        install(xdp_tables, session(flags, PHONE6, FAR_END6, WAN_ANCHOR6), LAN_ANCHOR6)
    else:
        install(xdp_tables, session(flags))
    sdes_cname = bytes([0x81, 202, 0x00, 0x03]) + b"\x12\x34\xab\xcd" + b"\x01\x04ab@c\x00\x00"
    compound = Raw(bytes([0x80, 200, 0x00, 0x06]) + b"\x12\x34\xab\xcd" + bytes(20) + sdes_cname)
    frame = build(payload=compound)

    passed = run_packet(xdp_relay.prog, frame)
    relayed = run_packet(xdp_relay.prog, build(payload=rtp(seq=7)))

    assert (passed.retval, passed.data) == (XDP_PASS, frame)  # up, untouched: the slow path rewrites it
    assert relayed.retval == XDP_TX
    s = stats(xdp_tables, LAN_ANCHOR6 if v6 else LAN_ANCHOR)
    assert (s.packets, s.rtcp_packets, s.rtp.received) == (1, 0, 1)


def test_rtcp_up_on_an_rtcp_entry_passes_everything(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(abi.SessionFlag.LATCHED | abi.SessionFlag.RTCP | abi.SessionFlag.RTCP_UP))
    assert run_packet(xdp_relay.prog, udp4(payload=rtp(seq=7))).retval == XDP_PASS
    assert stats(xdp_tables).packets == 0


def test_non_rtp_payload_is_relayed_without_rtp_stats(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session())
    run_packet(xdp_relay.prog, udp4(payload=Raw(b"\x00\x01STUN-ish payload")))
    s = stats(xdp_tables)
    assert (s.packets, s.rtcp_packets, s.rtp.received) == (1, 0, 0)


# --- cost -----------------------------------------------------------------------------------


def test_cost_helper_measures_the_full_relay_path(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    key, entry = fixed_point_session("198.18.0.1", 40000)
    xdp_tables.sessions.put(key, entry)
    frame = ipv4_udp_frame("198.18.0.1", 40000, "198.18.0.1", 40000, rtp_payload(1))
    assert run_packet(xdp_relay.prog, frame).data == frame, "the fixed point rewrites the packet into itself"
    cost = measure(xdp_relay.prog, frame, repeat=10_000, rounds=3)
    assert cost.retval == XDP_TX
    assert all(ns > 0 for ns in cost.rounds)
    after = xdp_tables.sessions.get(key)
    assert after is not None and after.stats.packets == 1 + 3 * 10_000
    assert ctypes.sizeof(abi.Session) == 160


@pytest.mark.parametrize("clock_rate", [0, 8000, 48000, 44100])
def test_jitter_follows_rfc3550_a8(xdp_relay: RelayObjects, xdp_tables: RelayTables, clock_rate: int) -> None:
    """Two packets arriving together whose timestamps are one second apart: D = one
    second of ticks, so J = D / 16 after the second packet (A.8, J starts at 0). They are a
    sampled pair (sequence numbers k * SBC_RTP_JITTER_SAMPLE and the next one)."""
    entry = session()
    entry.clock_rate = clock_rate
    install(xdp_tables, entry)
    ticks = clock_rate or abi.DEFAULT_CLOCK_RATE
    n = abi.RTP_JITTER_SAMPLE
    first = udp4(payload=rtp(seq=3 * n, ts=100_000))
    second = udp4(payload=rtp(seq=3 * n + 1, ts=100_000 + ticks))
    start = time.monotonic_ns()
    run_packet(xdp_relay.prog, first)
    run_packet(xdp_relay.prog, second)
    elapsed_ticks = (time.monotonic_ns() - start) * ticks / 1e9  # the real arrival gap shrinks D
    assert stats(xdp_tables).rtp.jitter_units() == pytest.approx(ticks / 16, abs=elapsed_ticks / 16 + 0.5)


def test_jitter_is_fed_by_sampled_consecutive_pairs_only(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    """Pairs off the sampling grid, and a grid pair with a loss between, leave J alone (the precise
    clock is read for two packets out of SBC_RTP_JITTER_SAMPLE)."""
    install(xdp_tables, session())
    n = abi.RTP_JITTER_SAMPLE
    second_apart = 8000
    # 2n+2, 2n+3: off the grid; 3n then 3n+2 (3n+1 lost): not consecutive
    for seq, ts in ((2 * n + 2, 0), (2 * n + 3, second_apart), (3 * n, 0), (3 * n + 2, 3 * second_apart)):
        assert run_packet(xdp_relay.prog, udp4(payload=rtp(seq=seq, ts=ts))).retval == XDP_TX
    r = stats(xdp_tables).rtp
    assert (r.jitter, r.received, r.lost()) == (0, 4, 3 * n + 2 - (2 * n + 2) + 1 - 4)
    start = time.monotonic_ns()
    assert run_packet(xdp_relay.prog, udp4(payload=rtp(seq=4 * n, ts=0))).retval == XDP_TX
    assert run_packet(xdp_relay.prog, udp4(payload=rtp(seq=4 * n + 1, ts=second_apart))).retval == XDP_TX
    elapsed_ticks = (time.monotonic_ns() - start) * abi.DEFAULT_CLOCK_RATE / 1e9  # the real arrival gap shrinks D
    assert stats(xdp_tables).rtp.jitter_units() == pytest.approx(second_apart / 16, abs=elapsed_ticks / 16 + 0.5)


# --- lengths, truncation, fuzzing -----------------------------------------------------------


def _set_u16(frame: bytes, offset: int, value: int) -> bytes:
    return frame[:offset] + value.to_bytes(2, "big") + frame[offset + 2 :]


IPV4_TOT_LEN, IPV4_UDP_LEN = 14 + 2, 14 + 20 + 4
IPV6_PAYLOAD_LEN, IPV6_UDP_LEN = 14 + 4, 14 + 40 + 4


@pytest.mark.parametrize("family", [4, 6])
def test_every_truncation_of_a_relayable_frame_passes_unchanged(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, family: int
) -> None:
    """A frame cut anywhere (a short capture, a broken driver, an attacker) is never relayed: the
    stack gets it as it came and drops it there; the entry's counters do not move."""
    if family == 4:
        install(xdp_tables, session())
        full = udp4()
    else:
        install(xdp_tables, session(expected=PHONE6, dst=FAR_END6, new_src=WAN_ANCHOR6), LAN_ANCHOR6)
        full = udp6()
    assert run_packet(xdp_relay.prog, full).retval == XDP_TX, "the whole frame is relayed"
    xdp_tables.counters.reset()
    for length in range(14, len(full)):  # BPF_PROG_TEST_RUN refuses less than an Ethernet header
        frame = full[:length]
        result = run_packet(xdp_relay.prog, frame)
        assert (result.retval, result.data) == (XDP_PASS, frame), f"cut at {length} of {len(full)}"
    counters = xdp_tables.counters.read()
    assert counters[abi.Counter.RELAYED] == 0
    assert counters[abi.Counter.MALFORMED] == len(full) - 14
    anchor = LAN_ANCHOR if family == 4 else LAN_ANCHOR6
    assert stats(xdp_tables, anchor).packets == 1


@pytest.mark.parametrize(
    ("name", "offset", "value"),
    [
        ("ip total length beyond the frame", IPV4_TOT_LEN, 14 + 20 + 8 + 12 + 160 - 14 + 1),
        ("ip total length below ip + udp headers", IPV4_TOT_LEN, 27),
        ("udp length beyond the ip payload", IPV4_UDP_LEN, 8 + 12 + 160 + 1),
        ("udp length below its header", IPV4_UDP_LEN, 7),
    ],
)
def test_ipv4_lengths_that_disagree_pass_unchanged(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, name: str, offset: int, value: int
) -> None:
    install(xdp_tables, session())
    frame = _set_u16(udp4(), offset, value)
    result = run_packet(xdp_relay.prog, frame)
    assert (result.retval, result.data) == (XDP_PASS, frame), name
    assert xdp_tables.counters.read()[abi.Counter.MALFORMED] == 1, name
    assert stats(xdp_tables).packets == 0


@pytest.mark.parametrize(
    ("name", "offset", "value"),
    [
        ("payload length beyond the frame", IPV6_PAYLOAD_LEN, 8 + 12 + 160 + 1),
        ("payload length below the udp header", IPV6_PAYLOAD_LEN, 7),
        ("udp length beyond the payload", IPV6_UDP_LEN, 8 + 12 + 160 + 1),
        ("udp length below its header", IPV6_UDP_LEN, 7),
    ],
)
def test_ipv6_lengths_that_disagree_pass_unchanged(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, name: str, offset: int, value: int
) -> None:
    install(xdp_tables, session(expected=PHONE6, dst=FAR_END6, new_src=WAN_ANCHOR6), LAN_ANCHOR6)
    frame = _set_u16(udp6(), offset, value)
    result = run_packet(xdp_relay.prog, frame)
    assert (result.retval, result.data) == (XDP_PASS, frame), name
    assert xdp_tables.counters.read()[abi.Counter.MALFORMED] == 1, name


def test_ethernet_padding_is_relayed_but_not_counted_or_parsed(
    xdp_relay: RelayObjects, xdp_tables: RelayTables
) -> None:
    """A short datagram in a minimum-size frame (60 bytes plus padding): the IP length counts, and
    padding bytes that happen to look like RTP never feed the RTP statistics."""
    install(xdp_tables, session())
    short = udp4(payload=Raw(b"\x00\x01"))
    padded = short + rtp(seq=9).build()[:12]  # "padding" that looks like an RTP header
    result = run_packet(xdp_relay.prog, padded)
    assert result.retval == XDP_TX
    out = Ether(result.data)
    assert_checksums_valid(result.data[: len(short)])
    assert (out[IP].dst, out[UDP].dport) == FAR_END
    s = stats(xdp_tables)
    assert (s.packets, s.bytes, s.rtp.received) == (1, len(short) - 14, 0)


def test_ipv6_verdicts_unknown_port_spoofed_source_zero_checksum_extension_header(
    xdp_relay: RelayObjects, xdp_tables: RelayTables
) -> None:
    install(xdp_tables, session(expected=PHONE6, dst=FAR_END6, new_src=WAN_ANCHOR6), LAN_ANCHOR6)
    unknown = udp6(dst=(LAN_ANCHOR6[0], 40010))
    assert (run_packet(xdp_relay.prog, unknown).retval, run_packet(xdp_relay.prog, unknown).data) == (
        XDP_PASS,
        unknown,
    )
    assert run_packet(xdp_relay.prog, udp6(src=("2001:2::66", PHONE6[1]))).retval == XDP_DROP
    zero = Ether(udp6())
    zero[UDP].chksum = 0
    zero_frame = bytes(zero)
    assert Ether(zero_frame)[UDP].chksum == 0
    assert run_packet(xdp_relay.prog, zero_frame).data == zero_frame
    from scapy.layers.inet6 import IPv6ExtHdrHopByHop

    hop_by_hop = bytes(
        Ether() / IPv6(src=PHONE6[0], dst=LAN_ANCHOR6[0]) / IPv6ExtHdrHopByHop() / UDP(sport=5000, dport=40000) / rtp()
    )
    assert run_packet(xdp_relay.prog, hop_by_hop).retval == XDP_PASS
    counters = xdp_tables.counters.read()
    assert counters[abi.Counter.PASSED_UNKNOWN] == 2
    assert counters[abi.Counter.DROPPED_SPOOFED] == 1
    assert counters[abi.Counter.MALFORMED] == 1
    assert counters[abi.Counter.NOT_UDP] == 1
    assert stats(xdp_tables, LAN_ANCHOR6).packets == 0


def test_ipv6_rtcp_is_relayed_and_counted(xdp_relay: RelayObjects, xdp_tables: RelayTables) -> None:
    install(xdp_tables, session(expected=PHONE6, dst=FAR_END6, new_src=WAN_ANCHOR6), LAN_ANCHOR6)
    rtcp = Raw(bytes([0x80, 201, 0x00, 0x01]) + b"\x12\x34\xab\xcd")  # RR without report blocks
    result = run_packet(xdp_relay.prog, udp6(payload=rtcp))
    assert result.retval == XDP_TX
    assert_checksums_valid(result.data)
    s = stats(xdp_tables, LAN_ANCHOR6)
    assert (s.packets, s.rtcp_packets, s.rtp.received) == (1, 1, 0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    family=st.sampled_from([4, 6]),
    offset=st.integers(12, 14 + 40 + 8 + 12),
    garbage=st.binary(min_size=1, max_size=8),
    cut=st.integers(14, 300),
)
def test_mangled_headers_never_abort_and_never_change_what_is_not_relayed(
    xdp_relay: RelayObjects, xdp_tables: RelayTables, family: int, offset: int, garbage: bytes, cut: int
) -> None:
    """Overwrite any header bytes with anything and cut anywhere: the verdict is a clean PASS, DROP
    or a relay (never XDP_ABORTED), and a packet not relayed reaches the stack byte for byte."""
    if family == 4:
        install(xdp_tables, session())
        frame = udp4()
    else:
        install(xdp_tables, session(expected=PHONE6, dst=FAR_END6, new_src=WAN_ANCHOR6), LAN_ANCHOR6)
        frame = udp6()
    frame = (frame[:offset] + garbage + frame[offset + len(garbage) :])[:cut]
    result = run_packet(xdp_relay.prog, frame)
    assert result.retval in (XDP_PASS, XDP_DROP, XDP_TX)
    if result.retval != XDP_TX:
        assert result.data == frame
    else:
        assert len(result.data) == len(frame)
