"""The SIP sockets of each realm: UDP, TCP and TLS, with the realm's DSCP on everything they send.

Thin asyncio shell: bytes in are handed to a callback with the realm and the peer's address; bytes out
come from `send`. Stream transports frame messages with `StreamFramer` and keep one connection per
peer so responses and in-dialog requests reuse the connection the peer opened (RFC 3261 §18.2.2).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from sbc.config.model import PeerTls, Realm, TlsSettings, Transport
from sbc.sip.errors import RemoteProtocolError
from sbc.sip.framing import FramingLimitExceeded
from sbc.sip.message import Request, Response
from sbc.sip.transaction import PeerAddress
from sbc.transport.limits import GuardedConnection, StreamGuard
from sbc.transport.tls_peers import PeerKey, TlsPeerVerdicts, client_context, refusal_reason, server_name

log = logging.getLogger("sbc.transport")

DatagramHandler = Callable[[str, bytes, PeerAddress], None]
MessageHandler = Callable[[str, Request | Response, PeerAddress], None]
ErrorHandler = Callable[[str, RemoteProtocolError, PeerAddress], None]
SendFailedHandler = Callable[[str, str], None]  # realm, transaction id


def set_dscp(sock: socket.socket, dscp: int) -> None:
    """Mark every packet this socket sends with `dscp` (RFC 2474: DS field = DSCP << 2)."""
    tos = (dscp & 0x3F) << 2
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tos)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


def tls_server_context(settings: TlsSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if settings.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(settings.certificate), str(settings.private_key))
    if settings.verify_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        if settings.ca_file is not None:
            ctx.load_verify_locations(str(settings.ca_file))
    return ctx


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, owner: RealmSockets) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), int(str(addr[1]))
        self.owner.on_datagram(self.owner.realm.name, data, PeerAddress("udp", host, port))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error on %s: %s", self.owner.realm.name, exc)


class _Stream(asyncio.Protocol):
    def __init__(self, owner: RealmSockets, transport_name: str, *, inbound: bool = True) -> None:
        self.owner = owner
        self.transport_name = transport_name
        self.inbound = inbound  # a peer opened it (limits may refuse it), or the SBC did
        self.framer = owner.guard.new_framer()
        self.transport: asyncio.Transport | None = None
        self.peer: PeerAddress | None = None
        self.guarded: GuardedConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = PeerAddress(self.transport_name, str(host), int(port))
        guard = self.owner.guard
        now = asyncio.get_running_loop().time()
        self.guarded = guard.admit(self.peer.host, self.framer, transport.abort, inbound=self.inbound, now=now)
        if self.guarded is None:  # over a connection limit: counted, and reset at once
            transport.abort()
            return
        # More than this waiting to be sent (a peer that does not read) calls pause_writing: closed.
        transport.set_write_buffer_limits(high=guard.limits.max_buffered_bytes)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            set_dscp(sock, self.owner.realm.sip_dscp)
        self.owner.connections[(self.transport_name, self.peer.host, self.peer.port)] = self

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.framer.feed(data)
        while True:
            try:
                msg = self.framer.next_message()
            except RemoteProtocolError as exc:
                if isinstance(exc, FramingLimitExceeded):
                    self.owner.guard.framing_limit(exc.limit, self.peer.host, asyncio.get_running_loop().time())
                self.owner.on_stream_error(self.owner.realm.name, exc, self.peer)
                if self.framer.broken and self.transport is not None:
                    self.transport.close()
                    return
                continue
            if msg is None:
                break
            self.owner.on_message(self.owner.realm.name, msg, self.peer)
        if self.guarded is not None and self.framer.buffered > self.owner.guard.limits.max_buffered_bytes:
            self._over_buffer()
            return
        if self.framer.keepalive_pings and self.transport is not None:
            # RFC 5626 §3.5.1: answer each double-CRLF ping with a single CRLF pong.
            self.transport.write(b"\r\n" * self.framer.keepalive_pings)
            self.framer.keepalive_pings = 0

    def pause_writing(self) -> None:
        # A peer that does not read what it asked for; the SBC's own connections (to its trunk) carry
        # only what its calls send, and a burst there is not an attack.
        if self.inbound:
            self._over_buffer()

    def _over_buffer(self) -> None:
        if self.guarded is not None and self.transport is not None:
            self.owner.guard.over_buffer_hit(self.guarded, asyncio.get_running_loop().time())
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.guarded is not None:
            self.owner.guard.release(self.guarded)
        if self.peer is not None and self.owner.connections.get(self._key()) is self:
            self.owner.connections.pop(self._key(), None)

    def _key(self) -> tuple[str, str, int]:
        assert self.peer is not None
        return (self.transport_name, self.peer.host, self.peer.port)


@dataclass
class RealmSockets:
    realm: Realm
    on_datagram: DatagramHandler
    on_message: MessageHandler
    on_stream_error: ErrorHandler
    on_send_failed: SendFailedHandler | None = None  # a message of this transaction could not be sent
    guard: StreamGuard = field(default_factory=StreamGuard)  # shared by every realm's sockets
    tls_peers: dict[PeerKey, PeerTls] = field(default_factory=dict)  # how each TLS peer is verified
    tls_verdicts: TlsPeerVerdicts = field(default_factory=TlsPeerVerdicts)
    udp: asyncio.DatagramTransport | None = None
    servers: list[asyncio.Server] = field(default_factory=list)
    connections: dict[tuple[str, str, int], _Stream] = field(default_factory=dict)
    _pending: dict[tuple[str, str, int], list[tuple[bytes, str | None]]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.guard.start(loop)
        host = str(self.realm.address)
        family = socket.AF_INET6 if self.realm.address.version == 6 else socket.AF_INET
        for listener in self.realm.listeners:
            if listener.transport is Transport.UDP:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                set_dscp(sock, self.realm.sip_dscp)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
                sock.bind((host, listener.port))
                sock.setblocking(False)
                transport, _ = await loop.create_datagram_endpoint(lambda: _Datagram(self), sock=sock)
                self.udp = transport
            else:
                name = listener.transport.value
                ctx = (
                    tls_server_context(self.realm.tls)
                    if listener.transport is Transport.TLS and self.realm.tls
                    else None
                )
                server = await loop.create_server(
                    lambda name=name: _Stream(self, name),
                    host,
                    listener.port,
                    ssl=ctx,
                    # A TLS peer that never finishes its handshake is held no longer than a header block.
                    ssl_handshake_timeout=self.guard.limits.header_timeout_s if ctx is not None else None,
                    reuse_address=True,
                )
                for s in server.sockets:
                    set_dscp(s, self.realm.sip_dscp)
                self.servers.append(server)

    def send(self, data: bytes, destination: PeerAddress, txn_id: str | None = None) -> None:
        """Send `data`; when it cannot go (no UDP socket, name not found, no connection), the
        transaction `txn_id` it belongs to is reported to `on_send_failed`."""
        if destination.transport == "udp":
            if self.udp is None:
                log.warning("realm %s has no UDP socket; dropping to %s", self.realm.name, destination)
                self._failed(txn_id)
                return
            if _is_ip(destination.host):
                self.udp.sendto(data, (_strip(destination.host), destination.port))
            else:
                self._spawn(self._resolve_and_send(data, destination, txn_id))
            return
        key = (destination.transport, _strip(destination.host), destination.port)
        conn = self.connections.get(key)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        queued = self._pending.get(key)
        if queued is not None:
            queued.append((data, txn_id))
            return
        self._pending[key] = [(data, txn_id)]
        self._spawn(self._connect(key))

    def _failed(self, txn_id: str | None) -> None:
        if txn_id is not None and self.on_send_failed is not None:
            self.on_send_failed(self.realm.name, txn_id)

    async def _resolve_and_send(self, data: bytes, destination: PeerAddress, txn_id: str | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(destination.host, destination.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            log.warning("cannot resolve %s: %s", destination.host, exc)
            infos = []
        if infos and self.udp is not None:
            self.udp.sendto(data, infos[0][4][:2])
        else:
            self._failed(txn_id)

    async def _connect(self, key: tuple[str, str, int]) -> None:
        loop = asyncio.get_running_loop()
        transport_name, host, port = key
        tls = transport_name == "tls"
        peer_tls = self.tls_peers.get((host, port), PeerTls())
        ctx = client_context(self.realm.tls, peer_tls) if tls else None
        name = server_name(peer_tls, host) if tls else None
        try:
            _, proto = await loop.create_connection(
                lambda: _Stream(self, transport_name, inbound=False),
                host,
                port,
                ssl=ctx,
                server_hostname=name,
                local_addr=(str(self.realm.address), 0),
            )
        except OSError as exc:
            reason = refusal_reason(exc)
            if reason is not None and name is not None:
                self.tls_verdicts.refused(self.realm.name, f"tls:{host}:{port}", name, reason)
            log.warning("connect to %s:%s over %s failed: %s", host, port, transport_name, exc)
            for _, txn_id in self._pending.pop(key, []):
                self._failed(txn_id)
            return
        stream = proto
        if name is not None:
            self.tls_verdicts.verified(self.realm.name, f"tls:{host}:{port}", name)
        # The connection is registered under the address we dialled, so later sends find it.
        self.connections[key] = stream
        for data, _ in self._pending.pop(key, []):
            if stream.transport is not None:
                stream.transport.write(data)

    def _spawn(self, coro: asyncio.Future[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self.guard.stop()
        if self.udp is not None:
            self.udp.close()
        for server in self.servers:
            server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for task in list(self._tasks):
            task.cancel()


def _strip(host: str) -> str:
    return host[1:-1] if host.startswith("[") else host


@lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    """An IP literal, sent to as it is, or a name to resolve first (asked for every message sent)."""
    try:
        ipaddress.ip_address(_strip(host))
    except ValueError:
        return False
    return True
