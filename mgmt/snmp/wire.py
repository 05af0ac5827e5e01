"""`mgmt.snmp.mib.Value` -> pysnmp's wire types: the one place the plain MIB data meets pysnmp."""

from __future__ import annotations

from typing import Any

from pysnmp.proto import rfc1902  # type: ignore[import-untyped]

from mgmt.snmp.mib import Syntax, Value

_TYPES: dict[Syntax, Any] = {
    Syntax.INTEGER: rfc1902.Integer32,
    Syntax.OCTETS: rfc1902.OctetString,
    Syntax.OID: rfc1902.ObjectIdentifier,
    Syntax.TIMETICKS: rfc1902.TimeTicks,
    Syntax.GAUGE32: rfc1902.Gauge32,
    Syntax.COUNTER32: rfc1902.Counter32,
    Syntax.COUNTER64: rfc1902.Counter64,
    Syntax.UNSIGNED32: rfc1902.Unsigned32,
}


def to_wire(value: Value) -> Any:
    """Every instance is built with its value: pysnmp 7.1 answers genError for a valueless one."""
    return _TYPES[value.syntax](value.value)
