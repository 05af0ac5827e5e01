"""Loop detection for the SBC's own requests (RFC 3261 §16.3 step 4, §16.6 step 8).

The SBC's Via branch carries a fingerprint of what identifies the request it sent: Request-URI,
Call-ID, From and To tags, CSeq number, Route, Proxy-Require and Proxy-Authorization (the Via itself
is left out: it changes on every hop, looped or not). A request that arrives carrying one of the
SBC's own Vias has been through the SBC before: when its fingerprint still matches, nothing on the
way changed it and it looped; when it differs (a PBX retargeted it, or consumed a Route), it is
spiralling, which is legitimate. Only branches the SBC generated (its prefix) are considered, never
the SBC's address in a Via.
"""

from __future__ import annotations

import zlib

from sbc.sip.message import Request

BRANCH_PREFIX = "z9hG4bKsbc"


def fingerprint(request: Request) -> str:
    parts = [
        request.uri,
        request.call_id,
        request.from_.tag or "",
        request.to.tag or "",
        str(request.cseq[0]),
        *request.values("route"),
        *request.values("proxy-require"),
        *request.get_all("proxy-authorization"),
    ]
    text = "\n".join(parts)
    return format(zlib.crc32(text.encode("utf-8", "surrogateescape")), "08x")


def has_looped(request: Request) -> bool:
    """`request` carries a Via of ours whose fingerprint it still matches."""
    vias = request.get_all("via")
    if not any(BRANCH_PREFIX in line for line in vias):
        return False
    mark = "." + fingerprint(request)
    for value in request.values("via"):
        start = value.find(BRANCH_PREFIX)
        if start < 0:
            continue
        branch = value[start:].split(";", 1)[0].split(",", 1)[0].strip()
        if branch.endswith(mark):
            return True
    return False


def unsealed_branch(random_part: str) -> str:
    """A branch for a Via written before the request is complete; `seal` adds the fingerprint."""
    return f"{BRANCH_PREFIX}{random_part}"


def seal(request: Request) -> None:
    """Add the fingerprint of the finished `request` to the branch of its top Via (ours)."""
    values = request.values("via")
    found = _our_branch(values[0])
    if found is None:
        return
    _, end = found
    values[0] = f"{values[0][:end]}.{fingerprint(request)}{values[0][end:]}"
    request.set_values("Via", values)


def rebranch(request: Request, random_part: str) -> None:
    """Give the top Via (ours) a fresh branch, sealed: the same request sent again as a new transaction."""
    values = request.values("via")
    found = _our_branch(values[0])
    if found is None:
        return
    start, end = found
    values[0] = f"{values[0][:start]}{unsealed_branch(random_part)}{values[0][end:]}"
    request.set_values("Via", values)
    seal(request)


def _our_branch(via: str) -> tuple[int, int] | None:
    """Where our branch value stands in a Via header value (start, end), or None: not ours."""
    start = via.find(BRANCH_PREFIX)
    if start < 0:
        return None
    end = len(via)
    for stop in (";", ","):
        found = via.find(stop, start)
        if found >= 0:
            end = min(end, found)
    return start, end
