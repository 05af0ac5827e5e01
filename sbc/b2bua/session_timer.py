"""Session timers (RFC 4028) as the SBC applies them to the two legs of a call.

The SBC is the UAS of the caller's leg and the UAC of the callee's leg, and the refresher stays one
of the endpoints: the SBC never sends refreshes itself, it relays them. What it does:
- an INVITE asking for less than the SBC's Min-SE is refused with 422 and the SBC's Min-SE when the
  caller supports the extension (§8.1), otherwise its interval is raised to the Min-SE;
- toward the callee it asks for the caller's interval, or its own default when the caller asked for
  none, with a Min-SE of at least its own;
- when the callee answers without a session timer but the caller supports one, the 2xx to the caller
  gets one with the caller as refresher (§8.2);
- the call ends with a BYE on both legs when no refresh came in time: the SBC is not the refresher
  on either leg, so it sends its BYE at expiry minus min(32 s, interval / 3) (§10).
"""

from __future__ import annotations

from dataclasses import dataclass

from sbc.sip.message import Message
from sbc.sip.uri import param_value, parse_params

OPTION_TAG = "timer"


@dataclass(frozen=True, slots=True)
class SessionInterval:
    """A Session-Expires value: `seconds` and who refreshes (`uac`, `uas`, or None: not said)."""

    seconds: int
    refresher: str | None = None

    @classmethod
    def of(cls, msg: Message) -> SessionInterval | None:
        """The message's Session-Expires, or None when absent or unreadable."""
        value = msg.get("session-expires")
        if value is None:
            return None
        delta, _, rest = value.partition(";")
        delta = delta.strip()
        if not (delta.isascii() and delta.isdigit()) or len(delta) > 9:
            return None
        refresher = param_value(parse_params(rest), "refresher")
        refresher = refresher.lower() if refresher in ("uac", "uas", "UAC", "UAS") else None
        return cls(int(delta), refresher)

    def header(self) -> str:
        return f"{self.seconds};refresher={self.refresher}" if self.refresher else str(self.seconds)


def min_se(msg: Message) -> int | None:
    value = msg.get("min-se")
    if value is None:
        return None
    delta = value.split(";", 1)[0].strip()
    return int(delta) if delta.isascii() and delta.isdigit() and len(delta) <= 9 else None


def supports_timer(msg: Message) -> bool:
    return any(
        tag.strip().lower() == OPTION_TAG
        for name in ("supported", "require")
        for value in msg.get_all(name)
        for tag in value.split(",")
    )


def teardown_after(interval_s: int) -> float:
    """Seconds after the last refresh at which the non-refresher ends the session (RFC 4028 §10)."""
    return interval_s - min(32.0, interval_s / 3)
