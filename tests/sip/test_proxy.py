"""Stateless forwarding: the edge's own identity header never passes from a peer."""

from __future__ import annotations

from gateway.sip.message import SipRequest, parse_message
from gateway.sip.proxy import (
    ORIGIN_HEADER,
    Hop,
    Interface,
    forward_request,
    next_hop_for_request,
    origin_value,
)

_INVITE = (
    b"INVITE sip:1234@192.0.2.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@example.com>;tag=a\r\n"
    b"To: <sip:1234@example.com>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"X-Callgate-Origin: account=mallory\r\n"
    b"Content-Length: 0\r\n\r\n"
)
_ENGINE = Interface("udp", "127.0.0.1", 5070)
_PUBLIC = Interface("udp", "192.0.2.1", 5060)


def _forward(origin: str | None) -> SipRequest:
    request = parse_message(_INVITE)
    assert isinstance(request, SipRequest)
    return forward_request(
        request,
        ("198.51.100.7", 5060),
        outgoing=_ENGINE,
        incoming=_PUBLIC,
        interfaces=(_ENGINE, _PUBLIC),
        secret=b"k" * 16,
        origin=origin,
    )


def test_origin_from_a_peer_is_replaced_by_the_edges() -> None:
    forwarded = _forward(origin_value("alice", None))
    assert forwarded.headers.get_all(ORIGIN_HEADER) == ["account=alice"]


def test_origin_from_a_peer_is_removed_when_the_edge_sets_none() -> None:
    assert _forward(None).headers.get_all(ORIGIN_HEADER) == []


def test_trunk_origin_wins_over_account() -> None:
    assert origin_value("alice", "carrier") == "trunk=carrier"
    assert origin_value(None, None) is None


_EDGE_IN = Interface("udp", "127.0.0.1", 5070)
_EDGE_OUT = Interface("udp", "192.0.2.1", 5060)
_TLS_OUT = Interface("tls", "192.0.2.1", 5061)
_ROUTE_IN = "<sip:127.0.0.1:5070;lr;cg=in>"


def _engine_request(*lines: str, uri: str = "sip:callee@198.51.100.9:5062") -> SipRequest:
    head = "\r\n".join(
        (
            f"INVITE {uri} SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5080;rport;branch=z9hG4bKPj-1",
            "From: <sip:caller@127.0.0.1>;tag=e1",
            "To: <sip:callee@198.51.100.9>",
            "Call-ID: b1",
            "CSeq: 7 INVITE",
            *lines,
        )
    )
    request = parse_message(f"{head}\r\nContent-Length: 0\r\n\r\n".encode())
    assert isinstance(request, SipRequest)
    return request


def _from_engine(request: SipRequest, outgoing: Interface = _EDGE_OUT) -> SipRequest:
    return forward_request(
        request,
        ("127.0.0.1", 5080),
        outgoing=outgoing,
        incoming=_EDGE_IN,
        interfaces=(_EDGE_IN, _EDGE_OUT, _TLS_OUT),
        secret=b"k" * 32,
    )


def test_forwarding_stamps_the_sender_adds_our_via_and_counts_the_hop() -> None:
    forwarded = _from_engine(_engine_request("Max-Forwards: 70"))
    ours, sender = forwarded.headers.get_all("Via")
    assert ours.startswith("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcg")
    assert sender == "SIP/2.0/UDP 127.0.0.1:5080;rport=5080;branch=z9hG4bKPj-1;received=127.0.0.1"
    assert forwarded.headers.get("Max-Forwards") == "69"
    # A new dialog: one Record-Route entry per side, in front.
    assert forwarded.headers.get_all("Record-Route") == [
        "<sip:192.0.2.1:5060;lr;cg=out>",
        "<sip:127.0.0.1:5070;lr;cg=in>",
    ]
    assert forwarded.headers.items()[0][0] == "Record-Route"


def test_forwarding_without_max_forwards_adds_one_last() -> None:
    forwarded = _from_engine(_engine_request())
    assert forwarded.headers.items()[-1] == ("Max-Forwards", "69")


def test_forwarding_consumes_our_leading_routes_across_fields() -> None:
    forwarded = _from_engine(
        _engine_request(
            f"Route: {_ROUTE_IN}",
            f"Route: <sip:192.0.2.1;lr;cg=out>, <sip:203.0.113.1;lr>, {_ROUTE_IN}",
        )
    )
    # Only the leading entries that are us go; a later one stays (a spiral).
    assert forwarded.headers.get_all("Route") == ["<sip:203.0.113.1;lr>", _ROUTE_IN]


def test_next_hop_skips_our_routes_and_reads_the_transport() -> None:
    through_us = _engine_request(f"Route: {_ROUTE_IN}", uri="sip:callee@198.51.100.9;transport=tls")
    interfaces = (_EDGE_IN, _EDGE_OUT, _TLS_OUT)
    assert next_hop_for_request(through_us, "udp", interfaces) == Hop("tls", "198.51.100.9", 5061)
    # Without knowing our interfaces, our own Route is the next hop.
    assert next_hop_for_request(through_us, "udp") == Hop("udp", "127.0.0.1", 5070)
    routed = _engine_request(f"Route: {_ROUTE_IN}, <sip:203.0.113.1:5070;lr>")
    assert next_hop_for_request(routed, "udp", interfaces) == Hop("udp", "203.0.113.1", 5070)
