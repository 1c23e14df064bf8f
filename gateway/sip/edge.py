"""The SIP edge: owns the public SIP sockets and answers or admits each request."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.models import SipConfig, SipListener
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.sip.errors import SipParseError
from gateway.sip.limits import ParseLimits
from gateway.sip.message import SipRequest, SipResponse, make_response, serialize
from gateway.sip.rejection import response_for
from gateway.sip.transport import (
    Address,
    Peer,
    StreamConnection,
    UdpEndpoint,
    open_stream,
    open_udp,
)

_log = get_logger("sip.edge")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, REFER, NOTIFY"
_STREAM_IDLE_TIMEOUT = 300.0


def stateless_tag(request: SipRequest) -> str:
    """A To tag that is the same for every retransmission (§8.2.6.2, no state kept)."""
    seed = "\0".join(request.headers.get(h) or "" for h in ("Call-ID", "From", "CSeq", "Via"))
    return hashlib.blake2s(seed.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class BoundListener:
    """A listener as actually bound (port 0 resolved)."""

    transport: str
    host: str
    port: int


class SipEdge:
    """Parses, answers what it owns (OPTIONS), and refuses what it cannot take."""

    def __init__(self, config: SipConfig, metrics: Metrics, engine: Address) -> None:
        self.config = config
        self.metrics = metrics
        self.engine = engine
        self.bound: list[BoundListener] = []
        self.accepting = True
        self.idle = asyncio.Event()  # set while no dialog or transaction is in progress
        self.idle.set()
        self._closers: list[Callable[[], None]] = []
        self._servers: list[asyncio.Server] = []
        self._handlers: dict[str, Callable[[SipRequest, Peer], SipResponse | None]] = {
            "OPTIONS": self._options,
        }

    def _limits(self) -> ParseLimits:
        return ParseLimits(max_message_bytes=self.config.max_message_bytes)

    async def start(self) -> None:
        for listener in self.config.listen:
            try:
                port = await self._open(listener)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise OSError(
                    exc.errno, f"{listener.transport} {listener.host}:{listener.port}: {reason}"
                ) from exc
            self.bound.append(BoundListener(listener.transport, listener.host, port))

    async def _open(self, listener: SipListener) -> int:
        """Bind one listener; return the port it got."""
        if listener.transport == "udp":
            endpoint = UdpEndpoint(self._limits(), self.on_message, self.on_bad_message)
            transport = await open_udp(listener.host, listener.port, endpoint)
            self._closers.append(transport.close)
            return int(transport.get_extra_info("sockname")[1])
        if listener.transport == "tcp":
            server = await open_stream(
                listener.host,
                listener.port,
                lambda: StreamConnection(
                    "tcp",
                    self._limits(),
                    self.on_message,
                    self.on_bad_message,
                    _STREAM_IDLE_TIMEOUT,
                ),
            )
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])
        raise OSError(f"transport {listener.transport} is not available yet")

    def reload(self, config: SipConfig) -> None:
        """Apply live-changeable settings (listeners stay as bound)."""
        self.config = config

    def stop_accepting(self) -> None:
        """Drain: new dialogs are refused with 503 from now on."""
        self.accepting = False

    def active_work(self) -> int:
        """Dialogs or transactions in progress that a drain waits for."""
        return 0

    async def stop(self) -> None:
        for close in self._closers:
            close()
        for server in self._servers:
            server.close()
            await server.wait_closed()

    # --- message handling ----------------------------------------------------

    def on_bad_message(self, error: SipParseError, data: bytes, peer: Peer) -> None:
        self.metrics.sip_bad_messages.labels(transport=peer.transport).inc()
        _log.info(
            "sip_bad_message",
            peer=f"{peer.address[0]}:{peer.address[1]}",
            status=error.status,
            reason=error.reason,
        )
        # Only requests can be answered, and only on datagrams where framing is intact.
        if peer.transport == "udp":
            response = response_for(error, data)
            if response is not None:
                self._send(peer, response)

    def on_message(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        if isinstance(message, SipResponse):
            return  # nothing forwarded yet, so no response can match
        self.metrics.sip_requests.labels(method=message.method).inc()
        if message.method == "ACK":
            return
        handler = self._handlers.get(message.method)
        response: SipResponse | None
        if handler is None:
            response = self._reply(message, 501, "Not Implemented")
        elif not self.accepting and message.method == "INVITE":
            response = self._reply(
                message, 503, "Service Unavailable", extra=(("Retry-After", "30"),)
            )
        else:
            response = handler(message, peer)
        if response is not None:
            self._send(peer, response)

    def _reply(
        self, request: SipRequest, status: int, reason: str, extra: tuple[tuple[str, str], ...] = ()
    ) -> SipResponse:
        return make_response(
            request,
            status,
            reason,
            to_tag=stateless_tag(request),
            headers=(("Server", self.config.server_header), *extra),
        )

    def _send(self, peer: Peer, response: SipResponse) -> None:
        self.metrics.sip_responses_sent.labels(status=str(response.status)).inc()
        peer.send(serialize(response))

    def _options(self, request: SipRequest, _peer: Peer) -> SipResponse:
        """OPTIONS to the gateway itself: capabilities, and a liveness probe for trunks."""
        return self._reply(
            request,
            200,
            "OK",
            extra=(
                ("Allow", ALLOW),
                ("Accept", "application/sdp"),
                ("Supported", "path, replaces, timer"),
                ("Accept-Language", "en"),
            ),
        )
