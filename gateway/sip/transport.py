"""asyncio adapters for SIP over UDP and TCP: bytes in, `SipEdge` decides, bytes out.

Protocol work happens in the sans-IO layer (`message`, `framing`); these
classes only move bytes, and a bad message never raises out of them.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from gateway.sip.errors import SipParseError
from gateway.sip.framing import StreamFramer, is_keepalive
from gateway.sip.limits import ParseLimits
from gateway.sip.message import SipRequest, SipResponse, parse_message

Address = tuple[str, int]


@dataclass(frozen=True)
class Peer:
    """Where a message came from and how to answer it."""

    transport: str
    address: Address
    send: Callable[[bytes], None]


MessageHandler = Callable[[SipRequest | SipResponse, Peer], None]
ErrorHandler = Callable[[SipParseError, bytes, Peer], None]


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket: each datagram is one message."""

    def __init__(
        self, limits: ParseLimits, on_message: MessageHandler, on_error: ErrorHandler
    ) -> None:
        self._limits = limits
        self._on_message = on_message
        self._on_error = on_error
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        address = (str(addr[0]), int(addr[1]))
        transport = self.transport
        assert transport is not None

        def send(payload: bytes) -> None:
            transport.sendto(payload, address)

        peer = Peer("udp", address, send)
        if is_keepalive(data):
            return
        try:
            message = parse_message(data, self._limits)
        except SipParseError as exc:
            self._on_error(exc, data, peer)
            return
        self._on_message(message, peer)


class StreamConnection(asyncio.Protocol):
    """One TCP (or TLS) connection framed by Content-Length; idle ones are closed."""

    def __init__(
        self,
        name: str,
        limits: ParseLimits,
        on_message: MessageHandler,
        on_error: ErrorHandler,
        idle_timeout: float,
    ) -> None:
        self._name = name
        self._framer = StreamFramer(limits)
        self._on_message = on_message
        self._on_error = on_error
        self._idle_timeout = idle_timeout
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self._peer = Peer(self._name, (str(host), int(port)), self._send)
        self._rearm()

    def _send(self, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(payload)

    def _rearm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        if self._transport is not None:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self._idle_timeout, self._transport.close)

    def data_received(self, data: bytes) -> None:
        assert self._peer is not None and self._transport is not None
        self._rearm()
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            self._on_error(exc, data, self._peer)
            self._transport.close()  # a stream cannot resynchronise after bad framing
            return
        if self._framer.pings:
            # RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF pong.
            self._send(b"\r\n" * self._framer.take_pings())
        for message in messages:
            self._on_message(message, self._peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._transport = None


async def open_udp(host: str, port: int, endpoint: UdpEndpoint) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, _ = await loop.create_datagram_endpoint(
        lambda: endpoint, local_addr=(host, port), family=family
    )
    return transport


async def open_stream(
    host: str, port: int, factory: Callable[[], StreamConnection]
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host, port, reuse_address=True)
