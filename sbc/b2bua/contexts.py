"""Why the core sent a request, or which request it still has to answer, per transaction.

The core keeps one of these per open transaction, keyed by (realm, transaction id). A client
transaction's context is one of five kinds, each with only the fields its answer needs; the handlers
dispatch on the kind with `match` and `assert_never`, so a new kind cannot be forgotten anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from sbc.b2bua.call import Call, Leg
from sbc.b2bua.registrations import Binding
from sbc.sip.message import Request

__all__ = [
    "ByeContext",
    "ClientContext",
    "InDialogContext",
    "InviteContext",
    "KeepaliveContext",
    "RegisterContext",
    "ServerContext",
    "call_of_context",
]

Waiting = tuple[str, str]  # (realm, server transaction id) waiting for the relayed answer


@dataclass(frozen=True, slots=True)
class InviteContext:
    """The INVITE that set up `call` on its callee leg; its answers go to the caller's INVITE."""

    call: Call
    leg: Leg


@dataclass(frozen=True, slots=True)
class InDialogContext:
    """A request relayed inside a dialog: its answer goes back to `peer_request` on `peer`."""

    call: Call
    leg: Leg
    peer: Waiting
    peer_request: Request
    method: str
    cseq: int


@dataclass(frozen=True, slots=True)
class ByeContext:
    """Our own BYE: its answer needs nothing more."""

    call: Call
    leg: Leg


@dataclass(frozen=True, slots=True)
class RegisterContext:
    """A REGISTER relayed to the registrar for `binding`; its answer goes back to `peer_request`."""

    binding: Binding
    peer: Waiting
    peer_request: Request


@dataclass(frozen=True, slots=True)
class KeepaliveContext:
    """An OPTIONS probe of a trunk (sbc.b2bua.keepalive)."""


ClientContext = InviteContext | InDialogContext | ByeContext | RegisterContext | KeepaliveContext


@dataclass(frozen=True, slots=True)
class ServerContext:
    """A request received on `leg` of `call` that is answered once the other leg answers."""

    call: Call
    leg: Leg
    request: Request


def call_of_context(ctx: ClientContext) -> Call | None:
    match ctx:
        case InviteContext() | InDialogContext() | ByeContext():
            return ctx.call
        case RegisterContext() | KeepaliveContext():
            return None
        case _:
            assert_never(ctx)
