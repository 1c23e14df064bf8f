"""Stateless forwarding between the public side and the engine (RFC 3261 §16.11, RFC 3581).

Pure functions: they take a message and the edge's addresses and return the
message to send and where to send it. No state is kept per transaction, so a
retransmission is forwarded the same way (the branch is derived, not random).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from gateway.sip.address import ViaHeader, parse_name_addr
from gateway.sip.errors import SipParseError
from gateway.sip.grammar import split_list
from gateway.sip.headers import Headers, canonical_name
from gateway.sip.message import (
    SipRequest,
    SipResponse,
    call_id,
    cseq,
    from_address,
    to_address,
    top_via,
    vias,
)
from gateway.sip.refer import TRANSFER_HEADER
from gateway.sip.uri import hostport, is_ip_literal, parse_uri

MAGIC_COOKIE = "z9hG4bK"
# Our branches carry this mark so responses to them are recognised.
EDGE_BRANCH = MAGIC_COOKIE + "cg"
LOCAL_BRANCH = EDGE_BRANCH + "l"
"""Branches of requests the edge sends on its own behalf (health probes): their responses
end at the edge. Derived branches continue EDGE_BRANCH with hex digits, never an `l`."""
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
ORIGIN_HEADER = "X-Callgate-Origin"
"""Who the edge admitted a new request as (`account=<name>` or `trunk=<name>`), for the
engine. Only the edge may set it: every forwarded request has any copy from a peer
removed first, in both directions."""


def origin_value(account: str | None, trunk: str | None) -> str | None:
    """The `X-Callgate-Origin` value for an admitted request (None: neither)."""
    if trunk is not None:
        return f"trunk={trunk}"
    if account is not None:
        return f"account={account}"
    return None


@dataclass(frozen=True)
class Hop:
    """Where a message goes next: transport and address."""

    transport: str
    host: str
    port: int
    srv: bool = False
    """`host` is a DNS name given without a port: look up SRV (the port is the default)."""


def hop_to(transport: str, host: str, port: int | None) -> Hop:
    """The hop for `host[:port]` over `transport` (no port: the default, or SRV for a name)."""
    host = host.strip("[]")
    if port is not None:
        return Hop(transport, host, port)
    return Hop(transport, host, DEFAULT_PORTS.get(transport, 5060), srv=not is_ip_literal(host))


@dataclass(frozen=True)
class Interface:
    """One side of the edge as peers see it (for Via and Record-Route)."""

    transport: str
    host: str
    port: int

    def uri(self, side: str) -> str:
        return f"<sip:{hostport(self.host, self.port, self.transport)};lr;cg={side}>"

    def via(self, branch: str) -> str:
        sent_by = hostport(self.host, self.port)
        return f"SIP/2.0/{self.transport.upper()} {sent_by};branch={branch};rport"


class TooManyHops(Exception):
    """Max-Forwards reached 0: answer 483 (RFC 3261 §16.3 step 2)."""


def edit_first(headers: Headers, name: str, edit: Callable[[list[str]], list[str]]) -> Headers:
    """Apply `edit` to the values of the first `name` field (a comma list).

    `edit([])` is used when there is no such field; an empty result drops it.
    The fields of `headers` are already valid and `edit` builds values from
    parsed ones, so the result is assembled without re-checking every field.
    """
    canonical = canonical_name(name)
    key = canonical.lower()
    fields = headers._fields
    positions = headers._lookup().get(key)
    if positions:
        index = positions[0]
        _key, field_name, value = fields[index]
        values = edit(split_list(value))
        replacement = [(key, field_name, ", ".join(values))] if values else []
        return Headers._trusted(fields[:index] + replacement + fields[index + 1 :])
    values = edit([])
    return Headers._trusted([(key, canonical, ", ".join(values)), *fields]) if values else headers


def derive_branch(request: SipRequest, secret: bytes) -> str:
    """Same input branch -> same output branch (needed for CANCEL and ACK to match)."""
    top = request.headers.get("Via") or ""
    branch = top_via(request).branch if top else None
    if branch and branch.startswith(MAGIC_COOKIE):
        seed = f"{branch}|{top}"
    else:
        # RFC 2543 peers: identify the transaction by its fields instead (§16.11).
        number, _method = cseq(request)
        seed = "|".join(
            (
                request.uri,
                call_id(request),
                from_address(request).tag or "",
                to_address(request).tag or "",
                str(number),
                top,
            )
        )
    return EDGE_BRANCH + hashlib.blake2s(seed.encode(), key=secret[:32], digest_size=10).hexdigest()


def is_ours(route: str, interfaces: tuple[Interface, ...]) -> bool:
    """A Route entry that names one of the edge's own interfaces."""
    try:
        uri = parse_uri(parse_name_addr(route, "Route").uri)  # both memoised
    except SipParseError:
        return False
    if "cg" not in uri.params:
        return False
    return any(
        uri.host.strip("[]") == i.host and (uri.port or DEFAULT_PORTS[i.transport]) == i.port
        for i in interfaces
    )


def _stamped(via: ViaHeader, source: tuple[str, int]) -> str:
    """The top Via with received/rport set (RFC 3261 §18.2.1, RFC 3581 §4)."""
    params = via.params
    if via.has_rport:
        params = {**params, "rport": str(source[1]), "received": source[0]}
    elif via.host.strip("[]") != source[0]:
        params = {**params, "received": source[0]}
    return str(ViaHeader(via.transport, via.host, via.port, params, via.protocol))


_OWN_HEADERS = frozenset({ORIGIN_HEADER.lower(), TRANSFER_HEADER.lower()})


def forward_request(
    request: SipRequest,
    source: tuple[str, int],
    *,
    outgoing: Interface,
    incoming: Interface,
    interfaces: tuple[Interface, ...],
    secret: bytes,
    origin: str | None = None,
    transfer: int = 0,
) -> SipRequest:
    """The request as the edge passes it on: our Via on top (the sender's stamped with
    received/rport), Max-Forwards down by one, our leading Routes consumed, a double
    Record-Route on a dialog-creating request. One pass over the fields.

    `origin` becomes the `X-Callgate-Origin` header, `transfer` (a number, 0: none)
    `X-Callgate-Transfer` (refer.py); copies sent by a peer never pass.
    """
    headers = request.headers
    fields = headers._fields
    max_forwards = headers.get("Max-Forwards")
    remaining = int(max_forwards) if max_forwards and max_forwards.isdigit() else 70
    if remaining <= 0:
        raise TooManyHops
    record = request.method in _RECORD_ROUTED and to_address(request).tag is None
    ours = outgoing.via(derive_branch(request, secret))
    out: list[tuple[str, str, str]] = []
    append = out.append
    via_done = record_done = routes_done = False
    for field in fields:
        key = field[0]
        if key == "via" and not via_done:
            via_done = True
            values = split_list(field[2])
            if values:
                values[0] = _stamped(vias(request)[0], source)
            append((key, field[1], ", ".join([ours, *values])))
        elif key in _OWN_HEADERS:
            continue
        elif key == "max-forwards":
            append((key, field[1], str(remaining - 1)))
        elif key == "route" and not routes_done:
            # Loose routing: every leading Route entry that is us goes.
            values = split_list(field[2])
            kept = 0
            while kept < len(values) and is_ours(values[kept], interfaces):
                kept += 1
            if kept < len(values):
                routes_done = True
                append(field if not kept else (key, field[1], ", ".join(values[kept:])))
        elif key == "record-route" and record and not record_done:
            # Double Record-Route: one entry per side, so each side routes to its own
            # interface (the transports differ).
            record_done = True
            values = [outgoing.uri("out"), incoming.uri("in"), *split_list(field[2])]
            append((key, field[1], ", ".join(values)))
        else:
            append(field)
    if record and not record_done:
        out.insert(
            0, ("record-route", "Record-Route", f"{outgoing.uri('out')}, {incoming.uri('in')}")
        )
    if not via_done:
        out.insert(0, ("via", "Via", ours))
    forwarded = Headers._trusted(out)
    if origin is not None:
        forwarded.add(ORIGIN_HEADER, origin)
    if transfer:
        forwarded.add(TRANSFER_HEADER, str(transfer))
    if max_forwards is None:
        forwarded.add("Max-Forwards", str(remaining - 1))
    return SipRequest(request.method, request.uri, forwarded, request.body, request.version)


_RECORD_ROUTED = frozenset({"INVITE", "SUBSCRIBE", "REFER"})


def keep_in_route(response: SipResponse, internal: Interface) -> SipResponse:
    """A dialog-creating response for the engine, with the edge in its route set.

    A UAS must echo Record-Route (RFC 3261 §12.1.1), but some do not; the
    engine (the UAC) would then send ACK and BYE straight to the peer's
    Contact, past the edge. Adding the edge's internal entry to such a
    response keeps the engine's in-dialog requests on the edge; only the
    engine reads it.
    """
    if not 100 < response.status < 300 or "Record-Route" in response.headers:
        return response
    if cseq(response)[1] not in _RECORD_ROUTED:
        return response
    headers = edit_first(response.headers, "Record-Route", lambda _v: [internal.uri("in")])
    return SipResponse(response.status, response.reason, headers, response.body, response.version)


def next_hop_for_request(
    request: SipRequest, default_transport: str, interfaces: tuple[Interface, ...] = ()
) -> Hop:
    """Where the request goes once the edge forwarded it: the first Route entry that is
    not one of `interfaces` (forwarding consumes those), else the Request-URI (a DNS
    name is resolved when sending)."""
    target = request.uri
    for route in request.headers.get_all("Route"):
        if not is_ours(route, interfaces):
            target = parse_name_addr(route, "Route").uri
            break
    uri = parse_uri(target)  # memoised: a dialog's requests repeat their target
    transport = (uri.params.get("transport") or default_transport).lower()
    if uri.scheme == "sips":
        transport = "tls"
    return hop_to(transport, uri.host, uri.port)


def forward_response(response: SipResponse) -> tuple[SipResponse, Hop] | None:
    """Pop our Via and find where the response goes; None if the top Via is not ours."""
    parsed = vias(response)  # parsed (and validated) with the message
    if len(parsed) < 2:
        return None
    ours = parsed[0]
    if not (ours.branch or "").startswith(EDGE_BRANCH):
        return None
    headers = edit_first(response.headers, "Via", lambda values: values[1:])
    nxt = parsed[1]
    transport = nxt.transport.lower()
    host = nxt.received or nxt.host.strip("[]")
    port = nxt.rport or nxt.port or DEFAULT_PORTS.get(transport, 5060)
    out = SipResponse(response.status, response.reason, headers, response.body, response.version)
    return out, Hop(transport, host, port)
