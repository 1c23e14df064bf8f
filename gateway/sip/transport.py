"""asyncio adapters for SIP over UDP, TCP and TLS: bytes in, the edge decides, bytes out.

Protocol work happens in the sans-IO layer (`message`, `framing`); these
classes only move bytes. A bad message never raises out of them: it is
handed to the error callback, and a stream that lost framing is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import NamedTuple, cast

from gateway.logs import get_logger
from gateway.sip.errors import SipParseError
from gateway.sip.framing import StreamFramer, is_keepalive
from gateway.sip.limits import ParseLimits
from gateway.sip.message import SipRequest, SipResponse, parse_message

_log = get_logger("sip.transport")
Address = tuple[str, int]
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux value; Python lacks the name
_SIOCGSTAMP = 0x8906  # socket(7): kernel receive time of the last datagram read (timeval)
_TIMEVAL = struct.Struct("@qq")


def not_queued() -> float:
    """`Peer.waited` where the wait cannot be known (streams, tests)."""
    return 0.0


class Peer(NamedTuple):
    """Where a message came from and how to answer it (a tuple: one is built per
    datagram, and a frozen dataclass costs twice as much to build)."""

    transport: str
    address: Address
    send: Callable[[bytes], None]
    waited: Callable[[], float] = not_queued
    """Seconds the message being handled sat in the kernel's receive queue before the
    edge read it: how far behind the edge is (UDP; 0.0 where unknown)."""


MessageHandler = Callable[[SipRequest | SipResponse, Peer], None]
ErrorHandler = Callable[[SipParseError, bytes, Peer], None]
PacketGate = Callable[[str], bool]
"""Called with the source IP before any parsing; False drops the packet."""
Relay = Callable[[bytes, Address], bool]
"""Offered each datagram before it is parsed; True: it handled the datagram whole."""


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket: each datagram is one message."""

    def __init__(
        self,
        limits: ParseLimits,
        on_message: MessageHandler,
        on_error: ErrorHandler,
        gate: PacketGate,
        relay: Relay | None = None,
        *,
        trusted: bool = False,
    ) -> None:
        self._limits = limits
        self._on_message = on_message
        self._on_error = on_error
        self._gate = gate
        self._relay = relay
        self._validate = not trusted  # a trusted sender's header values are parsed on use
        self._fd = -1
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is None:
            return  # a transport without a socket: `waited` stays 0.0
        self._fd = sock.fileno()
        # The first SIOCGSTAMP turns on receive timestamps for the socket (an empty
        # queue answers ENOENT); the kernel then stamps each datagram as it arrives.
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._fd, _SIOCGSTAMP, bytes(_TIMEVAL.size))

    def waited(self) -> float:
        """Seconds the datagram being handled waited in the socket before it was read
        (one syscall: asked only for requests admission policy sees, not per datagram)."""
        if self._fd < 0:
            return 0.0
        try:
            stamp: tuple[int, int] = _TIMEVAL.unpack(
                fcntl.ioctl(self._fd, _SIOCGSTAMP, bytes(_TIMEVAL.size))
            )
        except OSError:
            return 0.0
        return max(time.time() - stamp[0] - stamp[1] / 1e6, 0.0)

    def sendto(self, payload: bytes, address: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(payload, address)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        address = (str(addr[0]), int(addr[1]))
        if not self._gate(address[0]) or is_keepalive(data):
            return
        if self._relay is not None and self._relay(data, address):
            return

        def send(payload: bytes) -> None:
            self.sendto(payload, address)

        peer = Peer("udp", address, send, self.waited)
        try:
            message = parse_message(data, self._limits, validate=self._validate)
        except SipParseError as exc:
            self._on_error(exc, data, peer)
            return
        self._on_message(message, peer)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable for one peer says nothing about the others


Connections = dict[tuple[str, str, int], "StreamConnection"]
"""Open stream connections by (transport, peer ip, peer port)."""


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection framed by Content-Length; idle ones are closed."""

    def __init__(
        self,
        name: str,
        limits: ParseLimits,
        on_message: MessageHandler,
        on_error: ErrorHandler,
        gate: PacketGate,
        idle_timeout: float,
        registry: Connections,
    ) -> None:
        self._name = name
        self._framer = StreamFramer(limits)
        self._on_message = on_message
        self._on_error = on_error
        self._gate = gate
        self._idle_timeout = idle_timeout
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._peer: Peer | None = None
        self._pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self._peer = Peer(self._name, (str(host), int(port)), self.send)
        self._registry[(self._name, str(host), int(port))] = self
        self._rearm()
        for payload in self._pending:
            self.send(payload)
        self._pending.clear()

    def send(self, payload: bytes) -> None:
        if self._transport is None:
            self._pending.append(payload)  # outbound connection still opening
        elif not self._transport.is_closing():
            self._transport.write(payload)

    def _rearm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._transport is not None:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self._idle_timeout, self._transport.close)

    def data_received(self, data: bytes) -> None:
        peer, transport = self._peer, self._transport
        if peer is None or transport is None:
            return
        if not self._gate(peer.address[0]):
            return
        self._rearm()
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            self._on_error(exc, data, peer)
            transport.close()  # a stream cannot resynchronise after bad framing
            return
        if self._framer.pings:
            # RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF pong.
            self.send(b"\r\n" * self._framer.take_pings())
        for message in messages:
            self._on_message(message, peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._peer is not None:
            key = (self._name, *self._peer.address)
            if self._registry.get(key) is self:
                del self._registry[key]
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2+ server context; SIP clients rarely present certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def client_tls_context() -> ssl.SSLContext:
    """Context for connections the edge opens (verified against system CAs)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def open_udp(
    host: str, port: int, endpoint: UdpEndpoint, receive_buffer: int | None = None
) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, _ = await loop.create_datagram_endpoint(
        lambda: endpoint, local_addr=(host, port), family=family
    )
    if receive_buffer is not None:
        sock = transport.get_extra_info("socket")
        try:
            # Beyond net.core.rmem_max only with CAP_NET_ADMIN; else the capped size.
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        # Linux reports twice what it grants (the other half is its bookkeeping).
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        if granted < receive_buffer:
            bound = transport.get_extra_info("sockname")  # the port bound, also for port 0
            _log.warning(
                "udp_receive_buffer_capped",
                listener=f"{bound[0]}:{bound[1]}",
                asked=receive_buffer,
                granted=granted,
                hint=f"set sysctl net.core.rmem_max >= {receive_buffer} (or run with "
                "CAP_NET_ADMIN): a small buffer drops SIP datagrams in bursts",
            )
    return transport


async def open_stream(
    host: str, port: int, factory: Callable[[], StreamConnection], tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host, port, reuse_address=True, ssl=tls)


async def connect_stream(
    host: str,
    port: int,
    connection: StreamConnection,
    tls: ssl.SSLContext | None = None,
    tls_name: str | None = None,
) -> None:
    """Open `connection` to host:port; over TLS the certificate must name `tls_name` (the
    SIP domain the address was resolved from, RFC 5922), else `host`."""
    loop = asyncio.get_running_loop()
    await loop.create_connection(
        lambda: connection, host, port, ssl=tls, server_hostname=(tls_name or host) if tls else None
    )
