"""Stateless forwarding: the edge's own identity header never passes from a peer."""

from __future__ import annotations

from gateway.sip.message import SipRequest, parse_message
from gateway.sip.proxy import ORIGIN_HEADER, Interface, forward_request, origin_value

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
