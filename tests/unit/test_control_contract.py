"""The control contract's codec: every answer survives the trip through JSON unchanged, and an answer of
the wrong shape is refused with the path to the field at fault, never read with a fallback."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbc.control.contract import (
    ANSWERS,
    CallRecord,
    ContractError,
    DataplaneMode,
    FallbackReason,
    LegFigures,
    StatusReport,
    StreamFigures,
    decode,
    encode,
    json_schema,
)
from tests.unit.contract_samples import call, status_report

# JSON has no NaN or infinity: the SBC never reports them (and json.dumps below refuses them).
st.register_type_strategy(float, st.floats(allow_nan=False, allow_infinity=False))
# from_type leaves fields with a default at it: draw the legs of a stream too.
_LEG = st.none() | st.from_type(LegFigures)
st.register_type_strategy(StreamFigures, st.builds(StreamFigures, a=_LEG, b=_LEG))


def wire(value: object) -> Any:
    return json.loads(json.dumps(encode(value), allow_nan=False))


@pytest.mark.parametrize("kind", [*ANSWERS.values(), CallRecord], ids=lambda k: k.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_answer_survives_json(kind: type[Any], data: st.DataObject) -> None:
    value = data.draw(st.from_type(kind))
    assert decode(kind, wire(value)) == value


@pytest.mark.parametrize("kind", [*ANSWERS.values(), CallRecord], ids=lambda k: k.__name__)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_the_api_document_describes_every_answer(kind: type[Any], data: st.DataObject) -> None:
    """The schema the REST API's OpenAPI document shows for an answer accepts what the SBC sends."""
    jsonschema_rs = pytest.importorskip("jsonschema_rs")  # schemathesis brings it
    validator = jsonschema_rs.validator_for(json_schema(kind))
    assert validator.is_valid(wire(data.draw(st.from_type(kind))))
    assert not validator.is_valid({})


def test_a_stream_without_a_leg_on_one_side_reads_as_none() -> None:
    stream = {"hairpin": False, "hairpin_events": 0, "flow": "both", "one_way": False, "one_way_events": 0,
              "rtcp_mux": True, "a": encode(call().streams[0].a)}  # fmt: skip
    decoded = decode(StreamFigures, stream)
    assert decoded.b is None and decoded.a == call().streams[0].a


def test_the_wire_keeps_the_keys_sbc_status_json_shows() -> None:
    status = wire(status_report())
    assert status["dataplane"] == "userspace" and status["dataplane_note"] == "not root"
    assert status["dataplane_fallback"] == "not-privileged" and status["dataplane_expected"] == "userspace"
    assert status["realms"][0]["listen"] == ["udp:5060"] and status["realms"][0]["calls_in"] == 3
    assert status["counters"]["calls_total"] == 7 and status["relay"]["dropped"] == {"spoofed": 1}
    assert status["trunks"][0]["state"] == "up"


def test_a_missing_field_is_named() -> None:
    status = wire(status_report())
    del status["counters"]["calls_total"]
    with pytest.raises(ContractError, match=r"StatusReport\.counters\.calls_total: missing"):
        decode(StatusReport, status)


@pytest.mark.parametrize(
    ("path", "bad", "message"),
    [
        (("active_calls",), "1", r"StatusReport\.active_calls: expected int, got str"),
        (("active_calls",), True, r"expected int, got bool"),
        (("dataplane",), "ebpf", r"StatusReport\.dataplane: 'ebpf' is not one of xdp, userspace"),
        (("realms",), {}, r"StatusReport\.realms: expected a list, got dict"),
        (("trunks", 0, "state"), "sideways", r"StatusReport\.trunks\[0\]\.state"),
        (("relay", "dropped", "spoofed"), None, r"StatusReport\.relay\.dropped\.spoofed: expected int, got null"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused(path: tuple[Any, ...], bad: object, message: str) -> None:
    status = wire(status_report())
    target = status
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(ContractError, match=message):
        decode(StatusReport, status)


def test_keys_a_newer_sbc_adds_are_ignored_and_ints_read_as_floats() -> None:
    status = {**wire(status_report()), "coffee": "black", "uptime_s": 12}
    decoded = decode(StatusReport, status)
    assert decoded.uptime_s == 12.0 and isinstance(decoded.uptime_s, float)


def test_userspace_by_choice_or_by_failure() -> None:
    by_choice = replace(status_report(), dataplane_fallback=FallbackReason.CHOSEN)
    assert decode(StatusReport, wire(by_choice)).dataplane_fallback is FallbackReason.CHOSEN
    with_xdp = replace(status_report(), dataplane=DataplaneMode.XDP, dataplane_note="", dataplane_fallback=None)
    assert decode(StatusReport, wire(with_xdp)).dataplane_fallback is None
