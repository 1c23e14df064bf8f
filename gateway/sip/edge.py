"""The SIP edge: owns the public SIP sockets, answers what it owns, admits the rest.

Public side: softphones and trunks over UDP/TCP/TLS. Inside: one loopback
UDP socket towards the engine (or a configured upstream). Requests are
forwarded statelessly with the edge's Via and Record-Route; the edge answers
OPTIONS and REGISTER itself and challenges or refuses what it cannot admit.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import Counter

from gateway.config.sip import SipConfig, SipListener
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.sip.access import AccessControl, Answer
from gateway.sip.admission import AdmissionPolicy, AdmissionRequest, Reject
from gateway.sip.answers import AnswerKey, AnswerLog, answer_key
from gateway.sip.directory import Directory
from gateway.sip.dns import DnsFailure, SipResolver, Target
from gateway.sip.errors import SipParseError
from gateway.sip.limits import ParseLimits
from gateway.sip.lockout import PacketRateLimiter
from gateway.sip.message import (
    SipRequest,
    SipResponse,
    call_id,
    cseq,
    from_address,
    make_response,
    request_uri,
    serialize,
    to_address,
    vias,
)
from gateway.sip.nat import DESTINATION_HEADER, parse_destination, with_public_contact
from gateway.sip.proxy import (
    LOCAL_BRANCH,
    Hop,
    Interface,
    TooManyHops,
    forward_request,
    forward_response,
    keep_in_route,
    next_hop_for_request,
    origin_value,
)
from gateway.sip.refer import (
    ReferLog,
    TransferHandler,
    TransferVerdict,
    parse_refer,
    refer_key,
)
from gateway.sip.registrar import Binding, RegisterResult
from gateway.sip.rejection import bad_gateway_for, response_for
from gateway.sip.relay import relay_engine_response
from gateway.sip.transport import (
    Address,
    Connections,
    Peer,
    StreamConnection,
    UdpEndpoint,
    client_tls_context,
    connect_stream,
    open_stream,
    open_udp,
    server_tls_context,
)
from gateway.sip.uri import is_ip_literal

_log = get_logger("sip.edge")

ALLOW = (
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, REFER, NOTIFY, SUBSCRIBE"
)
# New requests that need an authenticated caller and an admission decision.
_ADMITTED_METHODS = frozenset({"INVITE", "MESSAGE", "SUBSCRIBE", "REFER", "NOTIFY", "PUBLISH"})
_IDENTITY_HEADERS = ("P-Asserted-Identity", "P-Preferred-Identity", "Identity", "Privacy")
# Methods whose request counter child is kept at hand (others go through labels()).
_COUNTED_METHODS = frozenset({*_ADMITTED_METHODS, "REGISTER", "OPTIONS", "ACK", "BYE", "CANCEL"})

LocalResponseSink = Callable[[SipResponse], None]
"""Receives responses to requests the edge sent itself (branch starting LOCAL_BRANCH)."""
BindingSink = Callable[[RegisterResult | None, list[Binding]], None]
"""Receives registrar changes (a REGISTER's result, or swept bindings) for persistence."""


def stateless_tag(request: SipRequest) -> str:
    """A To tag that is the same for every retransmission and for the ACK (§8.2.6.2, §17.1.1.3).

    Built from fields the INVITE and its ACK share, so the edge recognises
    the ACK of a response it generated without keeping state.
    """
    parsed = vias(request)  # parsed once, with the message
    branch = parsed[0].branch if parsed else None
    number = cseq(request)[0]
    seed = "\0".join(
        (
            request.headers.get("Call-ID") or "",
            from_address(request).tag or "",
            str(number),
            branch or "",
        )
    )
    return hashlib.blake2s(seed.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class BoundListener:
    """A listener as actually bound (port 0 resolved)."""

    transport: str
    host: str
    port: int


class SipEdge:
    """The edge adapter: sockets, timers and the wiring of the pure pieces."""

    def __init__(
        self,
        config: SipConfig,
        metrics: Metrics,
        engine: Address,
        directory: Directory,
        admission: AdmissionPolicy,
        *,
        bindings_sink: BindingSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.upstream = _upstream(config, engine)
        self.directory = directory
        self.admission = admission
        self._clock = clock
        self._bindings_sink = bindings_sink
        self.access = AccessControl(config, directory, self._reply_with, metrics)
        self._flood = PacketRateLimiter(
            config.protection.packet_rate,
            config.protection.packet_burst,
            config.protection.max_tracked_sources,
        )
        self._secret = os.urandom(32)  # keys the derived Via branches
        self.bound: list[BoundListener] = []
        self.accepting = True
        self.idle = asyncio.Event()  # set while no dialog or transaction is in progress
        self.idle.set()
        self.connections: Connections = {}
        self.resolver = SipResolver(config.dns_servers, config.dns_timeout)
        self._lookups: set[asyncio.Task[None]] = set()
        self._udp: list[UdpEndpoint] = []
        self._public: list[Interface] = []
        self._internal: UdpEndpoint | None = None
        self._internal_iface: Interface | None = None
        self._servers: list[asyncio.Server] = []
        self._closers: list[Callable[[], None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.local_responses: LocalResponseSink | None = None
        self.engine_answered: Callable[[str], None] | None = None
        """Told the Call-ID of each INVITE the engine answers (even 100, even a refusal
        PJSIP sends on its own): overload control's record that it was taken up."""
        self.between_messages: Callable[[], None] | None = None
        """Called after each message (the engine's call events: `EngineProcess.poll_calls`)."""
        self.transfers: TransferHandler | None = None
        """Call control, for a caller's REFER (None: REFERs go to the engine, which declines)."""
        self._refers = ReferLog(max_entries=config.protection.max_tracked_sources)
        self._register_answers: AnswerLog[AnswerKey, bytes] = AnswerLog()
        self._blocked_agents = _agent_matcher(config.protection.user_agent_blocklist)
        # Metric children by label value: labels() costs a lock and a tuple per call.
        self._requests_by_method: dict[str, Counter] = {}
        self._responses_by_status: dict[int, Counter] = {}
        self._forwarded_in = metrics.sip_forwarded.labels(direction="in")
        self._forwarded_out = metrics.sip_forwarded.labels(direction="out")

    # --- lifecycle -------------------------------------------------------------

    def _limits(self) -> ParseLimits:
        return ParseLimits(
            max_message_bytes=self.config.max_message_bytes,
            max_headers=self.config.protection.max_headers,
        )

    async def start(self, restored: list[Binding] | None = None) -> None:
        if restored:
            count = self.access.registrar.restore(restored, self._clock())
            _log.info("registrations_restored", bindings=count)
        for listener in self.config.listen:
            try:
                port = await self._open(listener)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise OSError(
                    exc.errno, f"{listener.transport} {listener.host}:{listener.port}: {reason}"
                ) from exc
            self.bound.append(BoundListener(listener.transport, listener.host, port))
            self._public.append(Interface(listener.transport, listener.host, port))
        internal = self.internal_endpoint()
        transport = await open_udp(self.upstream[0], 0, internal, self.config.udp_receive_buffer)
        self._closers.append(transport.close)
        self._internal = internal
        host, port = transport.get_extra_info("sockname")[:2]
        self._internal_iface = Interface("udp", str(host), int(port))
        self._sweeper = asyncio.create_task(self._sweep_loop())

    def internal_endpoint(self) -> UdpEndpoint:
        """The protocol object of the socket the engine talks to."""
        return UdpEndpoint(
            self._limits(),
            self.on_internal_message,
            self.on_bad_message,
            lambda _ip: True,
            self.relay_engine_response,
            trusted=True,  # PJSIP's own output; other sources are dropped unread
        )

    @property
    def internal_interface(self) -> Interface:
        """The loopback side the engine talks to (known once started)."""
        assert self._internal_iface is not None, "edge not started"
        return self._internal_iface

    def public_interface(self, transport: str = "udp") -> Interface:
        """A public listener peers reach us on, preferring `transport` (edge started)."""
        return next((i for i in self._public if i.transport == transport), self._public[0])

    async def _open(self, listener: SipListener) -> int:
        """Bind one listener; return the port it got."""
        if listener.transport == "udp":
            endpoint = UdpEndpoint(
                self._limits(), self.on_message, self.on_bad_message, self._allow_packet
            )
            transport = await open_udp(
                listener.host, listener.port, endpoint, self.config.udp_receive_buffer
            )
            self._closers.append(transport.close)
            self._udp.append(endpoint)
            return int(transport.get_extra_info("sockname")[1])
        tls = None
        if listener.transport == "tls":
            assert listener.tls_cert is not None and listener.tls_key is not None
            tls = server_tls_context(str(listener.tls_cert), str(listener.tls_key))
        server = await open_stream(
            listener.host, listener.port, lambda: self._stream(listener.transport), tls
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def _stream(self, transport: str) -> StreamConnection:
        return StreamConnection(
            transport,
            self._limits(),
            self.on_message,
            self.on_bad_message,
            self._allow_packet,
            self.config.protection.stream_idle_timeout,
            self.connections,
        )

    def reload(self, config: SipConfig, directory: Directory) -> None:
        """Apply live-changeable settings (listeners stay as bound)."""
        if (config.dns_servers, config.dns_timeout) != (
            self.config.dns_servers,
            self.config.dns_timeout,
        ):
            self.resolver = SipResolver(config.dns_servers, config.dns_timeout)
        self.config = config
        self.directory = directory
        self._blocked_agents = _agent_matcher(config.protection.user_agent_blocklist)
        self.access.update(config, directory)

    def stop_accepting(self) -> None:
        """Drain: new dialogs are refused with 503 from now on."""
        self.accepting = False

    def active_work(self) -> int:
        """Dialogs or transactions in progress that a drain waits for (none kept here)."""
        return 0

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for close in self._closers:
            close()
        for connection in list(self.connections.values()):
            connection.close()
        for server in self._servers:
            server.close()
            await server.wait_closed()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.registrar.sweep_interval)
            expired = self.access.registrar.sweep(self._clock())
            if expired:
                _log.info("registrations_expired", count=len(expired))
                if self._bindings_sink is not None:
                    self._bindings_sink(None, expired)

    # --- receiving -------------------------------------------------------------

    def _allow_packet(self, ip: str) -> bool:
        if self.directory.trusted(ip) or self._flood.allow(ip, time.monotonic()):
            return True
        self.metrics.sip_dropped.labels(reason="flood").inc()
        return False

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
                self._send_to_peer(peer, response)
        if data and peer.address != self.upstream:
            self._replace_bad_response(data, peer)

    def _replace_bad_response(self, data: bytes, peer: Peer) -> None:
        """A peer's unparseable answer to the engine's request ends that request with 502."""
        stand_in = bad_gateway_for(data)
        if stand_in is None:
            return
        try:
            self._public_response(stand_in, peer)
        except SipParseError:
            return  # salvaged fields that do not parse (e.g. the Via): nothing to route by
        _log.info(
            "sip_bad_response_replaced",
            status=stand_in.status,
            call_id=stand_in.headers.get("Call-ID"),
        )

    def on_message(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        """A message from the public side."""
        try:
            if isinstance(message, SipResponse):
                self._public_response(message, peer)
            else:
                self._public_request(message, peer)
        except SipParseError as exc:
            # A header the parser accepted lazily turned out malformed.
            self.on_bad_message(exc, b"", peer)
            if isinstance(message, SipRequest) and message.method != "ACK":
                self._send_to_peer(peer, self._reply_with(message, exc.status, exc.reason, ()))
        if self.between_messages is not None:
            self.between_messages()

    def on_internal_message(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        """A message from the engine/upstream side."""
        if peer.address != self.upstream:
            self.metrics.sip_dropped.labels(reason="internal_source").inc()
            return
        try:
            if isinstance(message, SipResponse):
                self._internal_response(message)
            else:
                self._internal_request(message, peer)
        except SipParseError as exc:
            _log.warning("upstream_bad_message", status=exc.status, reason=exc.reason)
        if self.between_messages is not None:
            self.between_messages()

    def relay_engine_response(self, data: bytes, source: Address) -> bool:
        """Relay an engine response without parsing it (`relay.py`); False: not one of
        those, parse it."""
        if source != self.upstream:
            return False
        relayed = relay_engine_response(data)
        if relayed is None:
            return False
        if self.engine_answered is not None and relayed.method == "INVITE":
            self.engine_answered(relayed.call_id)
        self._send_to_hop(relayed.hop, relayed.payload)
        if self.between_messages is not None:
            self.between_messages()
        return True

    def _public_request(self, request: SipRequest, peer: Peer) -> None:
        method = request.method
        counter = self._requests_by_method.get(method)
        if counter is None:
            counter = self.metrics.sip_requests.labels(method=method)
            if method in _COUNTED_METHODS:
                self._requests_by_method[method] = counter
        counter.inc()
        user_agent = request.headers.get("User-Agent")
        blocked = self._blocked_agents
        if user_agent and blocked is not None and blocked.search(user_agent) is not None:
            self.metrics.sip_dropped.labels(reason="user_agent").inc()
            return
        in_dialog = to_address(request).tag is not None
        if method == "ACK":
            if to_address(request).tag == stateless_tag(request):
                return  # ACK of a non-2xx we generated ourselves: absorbed here
            self._to_upstream(request, peer)
        elif method == "REFER" and in_dialog and self.transfers is not None:
            self._refer(request, peer)
        elif method == "CANCEL" or (in_dialog and method != "REGISTER"):
            # A caller's BYE right after a transfer's 202 may overtake call control's
            # command to the engine: it says so, and the engine keeps the callee.
            transfer = 0
            if method == "BYE":
                transfer = self._refers.transfer_accepted(call_id(request), self._clock())
            self._to_upstream(request, peer, transfer=transfer)
        elif method == "REGISTER":
            self._register(request, peer)
        elif method == "OPTIONS" and request_uri(request).user is None:
            self._send_to_peer(peer, self._options(request))
        elif method in _ADMITTED_METHODS or method == "OPTIONS":
            self._admit(request, peer)
        else:
            self._send_to_peer(
                peer, self._reply_with(request, 405, "Method Not Allowed", (("Allow", ALLOW),))
            )

    def _register(self, request: SipRequest, peer: Peer) -> None:
        now = self._clock()
        # Only answers to credentials are kept: a retransmission without them just gets a
        # fresh challenge, as good as the first; one with them would be a replay (401) or
        # out of order (500) if handled again.
        keep = peer.transport == "udp" and "Authorization" in request.headers
        if keep:
            key = answer_key(request, peer.address)
            answer = self._register_answers.answer_for(key, now)
            if answer is not None:
                self.metrics.sip_retransmissions.inc()
                peer.send(answer)
                return
        response, result = self.access.register(request, peer.transport, peer.address, now, now)
        payload = self._send_to_peer(peer, response)
        if keep:
            self._register_answers.remember(key, payload, now)
        if result is not None and self._bindings_sink is not None:
            self._bindings_sink(result, [])

    def _refer(self, request: SipRequest, peer: Peer) -> None:
        """A REFER in a dialog: a blind transfer, answered here, decided by call control.

        Admitted like a new request (trunk by source, else digest); a retransmission
        gets the answer already given and starts nothing.
        """
        assert self.transfers is not None
        now = self._clock()
        key = refer_key(request)
        answer = self._refers.answer_for(key, now)
        if answer is None:
            origin = self._origin(request, peer, now)
            if origin is None:
                return
            account, trunk = origin
            try:
                transfer = parse_refer(request, account=account or "", trunk=trunk or "")
            except SipParseError as exc:
                answer = TransferVerdict(exc.status, exc.reason)
            else:
                # A transfer places a new call: the same admission (overload) as an INVITE
                # to the Refer-To target.
                decision = self.admission.admit(
                    _admission_request(request, peer, account, trunk, transfer.refer_to), now
                )
                if isinstance(decision, Reject):
                    answer = TransferVerdict(decision.status, decision.reason, 0, decision.headers)
                else:
                    answer = self.transfers.transfer(transfer)
                if answer is None:  # not a caller's leg call control knows: the engine's
                    self._to_upstream(request, peer)
                    return
            self._refers.remember(key, answer, now)
        response = self._reply_with(request, answer.status, answer.reason, answer.headers)
        self._send_to_peer(peer, response)

    def _origin(
        self, request: SipRequest, peer: Peer, now: float
    ) -> tuple[str | None, str | None] | None:
        """Who sent `request`: (account, trunk), a trunk by source address, else an account
        by digest; None when the peer was answered instead (a challenge or a refusal)."""
        trunk = self.directory.trunk_for(peer.address[0])
        if trunk is not None:
            return None, trunk
        identity = self.access.authenticate(request, peer.address, now, proxy=True)
        if isinstance(identity, Answer):
            self._send_to_peer(peer, identity.response)
            return None
        return identity.account, None

    def _admit(self, request: SipRequest, peer: Peer) -> None:
        if request.method == "INVITE" and not self.accepting:
            self._send_to_peer(
                peer,
                self._reply_with(request, 503, "Service Unavailable", (("Retry-After", "30"),)),
            )
            return
        now = self._clock()
        origin = self._origin(request, peer, now)
        if origin is None:
            return
        account, trunk = origin
        decision = self.admission.admit(
            _admission_request(request, peer, account, trunk, request.uri), now
        )
        if isinstance(decision, Reject):
            self._send_to_peer(
                peer, self._reply_with(request, decision.status, decision.reason, decision.headers)
            )
            return
        self._to_upstream(request, peer, origin_value(account, trunk))

    def _to_upstream(
        self,
        request: SipRequest,
        peer: Peer,
        origin: str | None = None,
        *,
        transfer: int = 0,
    ) -> None:
        assert self._internal is not None and self._internal_iface is not None
        incoming = self._iface_for(peer.transport, peer.address[0])
        if request.method != "REGISTER":
            request = with_public_contact(request, peer.address, peer.transport)
        try:
            forwarded = forward_request(
                request,
                peer.address,
                outgoing=self._internal_iface,
                incoming=incoming,
                interfaces=(self._internal_iface, *self._public),
                secret=self._secret,
                origin=origin,
                transfer=transfer,
            )
        except TooManyHops:
            if request.method != "ACK":
                self._send_to_peer(peer, self._reply_with(request, 483, "Too Many Hops", ()))
            return
        self._forwarded_in.inc()
        self._internal.sendto(serialize(forwarded), self.upstream)

    def _internal_request(self, request: SipRequest, peer: Peer) -> None:
        assert self._internal_iface is not None
        nat_hop = None
        named = request.headers.get(DESTINATION_HEADER)
        if named is not None:  # call control: a registered phone behind NAT
            request = replace(request, headers=request.headers.copy(), cache={})
            request.headers.remove(DESTINATION_HEADER)
            parsed = parse_destination(named)
            nat_hop = Hop(*parsed) if parsed is not None else None
            if nat_hop is not None and not self._flow_open(nat_hop):
                self._flow_failed(request)
                return
        interfaces = (self._internal_iface, *self._public)
        hop = nat_hop or next_hop_for_request(request, "udp", interfaces)
        outgoing = self._iface_for(hop.transport, hop.host)
        try:
            forwarded = forward_request(
                request,
                peer.address,
                outgoing=outgoing,
                incoming=self._internal_iface,
                interfaces=interfaces,
                secret=self._secret,
            )
        except TooManyHops:
            return
        self._forwarded_out.inc()
        # A name that does not resolve: 503 to the engine, which fails over.
        self._send_to_hop(
            hop, serialize(forwarded), lambda: self._answer_engine(request, 503, "DNS Failure")
        )

    def _flow_open(self, hop: Hop) -> bool:
        """UDP always; a stream only on the connection the phone opened (a NAT lets
        nothing else in)."""
        return hop.transport == "udp" or (hop.transport, hop.host, hop.port) in self.connections

    def _flow_failed(self, request: SipRequest) -> None:
        """The phone's connection is gone: 430 to the engine (RFC 5626 §5.3), which
        fails this leg now instead of after a timeout."""
        self.metrics.sip_dropped.labels(reason="flow_failed").inc()
        self._answer_engine(request, 430, "Flow Failed")

    def _answer_engine(self, request: SipRequest, status: int, reason: str) -> None:
        """End one of the engine's own requests that cannot go out (never an ACK)."""
        assert self._internal is not None
        if request.method != "ACK":
            response = self._reply_with(request, status, reason, ())
            self._internal.sendto(serialize(response), self.upstream)

    def _public_response(self, response: SipResponse, peer: Peer) -> None:
        parsed = vias(response)
        if len(parsed) == 1 and (parsed[0].branch or "").startswith(LOCAL_BRANCH):
            if self.local_responses is not None:
                self.local_responses(response)
            return
        routed = forward_response(response)
        if routed is None or (routed[1].host, routed[1].port) != self.upstream:
            self.metrics.sip_dropped.labels(reason="stray_response").inc()
            return
        assert self._internal is not None and self._internal_iface is not None
        out = with_public_contact(routed[0], peer.address, peer.transport)
        self._internal.sendto(serialize(keep_in_route(out, self._internal_iface)), self.upstream)

    def _internal_response(self, response: SipResponse) -> None:
        if self.engine_answered is not None and cseq(response).method == "INVITE":
            self.engine_answered(call_id(response))
        routed = forward_response(response)
        if routed is None:
            self.metrics.sip_dropped.labels(reason="stray_response").inc()
            return
        out, hop = routed
        self._send_to_hop(hop, serialize(out))

    # --- sending ---------------------------------------------------------------

    def _iface_for(self, transport: str, host: str) -> Interface:
        v6 = ":" in host
        for iface in self._public:
            if iface.transport == transport and (":" in iface.host) == v6:
                return iface
        return self._public[0]

    def _send_to_peer(self, peer: Peer, response: SipResponse) -> bytes:
        """Send `response` to `peer`; returns its wire form."""
        counter = self._responses_by_status.get(response.status)
        if counter is None:
            counter = self._responses_by_status[response.status] = (
                self.metrics.sip_responses_sent.labels(status=str(response.status))
            )  # statuses are three digits: at most 600 children
        counter.inc()
        payload = serialize(response)
        peer.send(payload)
        return payload

    def originate(self, request: SipRequest, hop: Hop) -> None:
        """Send a request of the edge's own (a health probe) from its public side.

        Its top Via must carry a LOCAL_BRANCH branch so the response comes
        back to `local_responses`.
        """
        self._send_to_hop(hop, serialize(request))

    def _send_to_hop(
        self,
        hop: Hop,
        payload: bytes,
        unresolved: Callable[[], None] | None = None,
        tls_name: str | None = None,
    ) -> None:
        """Send to `hop`, resolving a DNS name first (`unresolved`: what to do when it
        does not resolve; the message is dropped and counted either way). `tls_name`:
        the name a TLS peer's certificate must carry when `hop` was resolved from it."""
        if not is_ip_literal(hop.host):
            self._send_to_name(hop, payload, unresolved)
            return
        if hop.transport == "udp":
            v6 = ":" in hop.host
            for endpoint, iface in zip(
                self._udp, (i for i in self._public if i.transport == "udp"), strict=False
            ):
                if (":" in iface.host) == v6:
                    endpoint.sendto(payload, (hop.host, hop.port))
                    return
            self.metrics.sip_dropped.labels(reason="no_route").inc()
            return
        connection = self.connections.get((hop.transport, hop.host, hop.port))
        if connection is None:
            connection = self._stream(hop.transport)
            tls = client_tls_context() if hop.transport == "tls" else None
            task = asyncio.create_task(
                connect_stream(hop.host, hop.port, connection, tls, tls_name)
            )
            task.add_done_callback(_log_connect_failure)
        connection.send(payload)

    def _send_to_name(
        self, hop: Hop, payload: bytes, unresolved: Callable[[], None] | None
    ) -> None:
        port = None if hop.srv else hop.port

        def send(targets: list[Target]) -> None:
            host, target_port = targets[0]
            self._send_to_hop(Hop(hop.transport, host, target_port), payload, tls_name=hop.host)

        def fail() -> None:
            self.metrics.sip_dropped.labels(reason="dns_failure").inc()
            if unresolved is not None:
                unresolved()

        try:
            known = self.resolver.cached(hop.host, hop.transport, port)
        except DnsFailure:
            fail()
            return
        if known is not None:  # the usual case: no task, no wait
            send(known)
            return

        async def lookup() -> None:
            try:
                targets = await self.resolver.resolve(hop.host, hop.transport, port)
            except DnsFailure:
                fail()
            else:
                send(targets)

        task = asyncio.create_task(lookup())
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    def _reply_with(
        self, request: SipRequest, status: int, reason: str, extra: tuple[tuple[str, str], ...]
    ) -> SipResponse:
        return make_response(
            request,
            status,
            reason,
            to_tag=stateless_tag(request),
            headers=(("Server", self.config.server_header), *extra),
        )

    def _options(self, request: SipRequest) -> SipResponse:
        """OPTIONS to the gateway itself: capabilities, and a liveness probe for trunks."""
        return self._reply_with(
            request,
            200,
            "OK",
            (
                ("Allow", ALLOW),
                ("Accept", "application/sdp"),
                ("Supported", "path, replaces, timer"),
                ("Accept-Language", "en"),
            ),
        )


def _admission_request(
    request: SipRequest, peer: Peer, account: str | None, trunk: str | None, target: str
) -> AdmissionRequest:
    """What admission policy sees of a new request (or a transfer) to `target`."""
    call = request.headers.get("Call-ID") or ""
    return AdmissionRequest(
        method=request.method,
        account=account,
        trunk=trunk,
        source=peer.address,
        request_uri=target,
        from_uri=from_address(request).uri,
        to_uri=to_address(request).uri,
        identity={h: v for h in _IDENTITY_HEADERS if (v := request.headers.get(h))},
        transaction=f"{call}|{request.headers.get('Via')}",
        call_id=call,
        waited=peer.waited(),
    )


def _agent_matcher(blocklist: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive substring search for the whole blocklist (None: empty)."""
    if not blocklist:
        return None
    return re.compile("|".join(re.escape(bad) for bad in blocklist), re.IGNORECASE)


def _upstream(config: SipConfig, engine: Address) -> Address:
    if config.upstream is None:
        return engine
    host, _, port = config.upstream.rpartition(":")
    return host.strip("[]"), int(port)


def _log_connect_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        _log.warning("sip_connect_failed", error=str(exc))
