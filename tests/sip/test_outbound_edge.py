"""The edge's pure pieces for the engine's outbound legs: route set, 502 stand-ins, probes."""

from __future__ import annotations

import pytest

from gateway.calls.trunk_probe import options_request
from gateway.sip.errors import SipParseError
from gateway.sip.message import SipRequest, SipResponse, parse_message, serialize, vias
from gateway.sip.proxy import (
    LOCAL_BRANCH,
    Hop,
    Interface,
    derive_branch,
    forward_response,
    keep_in_route,
)
from gateway.sip.rejection import bad_gateway_for

_INTERNAL = Interface("udp", "127.0.0.1", 5070)


def _response(status: int, method: str = "INVITE", extra: str = "") -> SipResponse:
    data = (
        f"SIP/2.0 {status} Whatever\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcg0123abcd;rport\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKPj-1;received=127.0.0.1\r\n"
        "From: <sip:a@example.com>;tag=a\r\n"
        "To: <sip:1234@198.51.100.9>;tag=b\r\n"
        "Call-ID: c1\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


@pytest.mark.parametrize("status", [180, 183, 200])
def test_dialog_response_without_record_route_gets_the_edge(status: int) -> None:
    kept = keep_in_route(_response(status), _INTERNAL)
    assert kept.headers.get_all("Record-Route") == ["<sip:127.0.0.1:5070;lr;cg=in>"]


@pytest.mark.parametrize(
    ("status", "method", "extra"),
    [
        (200, "INVITE", "Record-Route: <sip:192.0.2.1:5060;lr;cg=out>\r\n"),
        (100, "INVITE", ""),
        (486, "INVITE", ""),
        (200, "BYE", ""),
        (200, "OPTIONS", ""),
    ],
)
def test_other_responses_are_left_alone(status: int, method: str, extra: str) -> None:
    response = _response(status, method, extra)
    assert keep_in_route(response, _INTERNAL) is response


_GARBAGE = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcg0123abcd;rport=5060\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKPj-1;received=127.0.0.1\r\n"
    b"From: <sip:a@example.com>;tag=a\r\n"
    b"To: <sip:1234@198.51.100.9>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"this line is no header field\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_garbage_response_is_replaced_by_a_routable_502() -> None:
    with pytest.raises(SipParseError):
        parse_message(_GARBAGE)
    stand_in = bad_gateway_for(_GARBAGE)
    assert stand_in is not None and stand_in.status == 502
    assert ";tag=" in (stand_in.headers.get("To") or "")
    reparsed = parse_message(serialize(stand_in))  # what the engine will parse
    routed = forward_response(reparsed)  # type: ignore[arg-type]
    assert routed is not None
    assert (routed[1].host, routed[1].port) == ("127.0.0.1", 5080)
    assert bad_gateway_for(_GARBAGE) == stand_in  # retransmissions get the same stand-in


@pytest.mark.parametrize(
    "data",
    [
        _GARBAGE.replace(b"SIP/2.0 200 OK", b"INVITE sip:x@y SIP/2.0"),  # a request
        _GARBAGE.replace(b"CSeq: 1 INVITE\r\n", b""),
        _GARBAGE.replace(b"Call-ID: c1\r\n", b""),
        b"\x00\xff garbage",
        b"",
    ],
)
def test_no_stand_in_without_a_transaction_to_end(data: bytes) -> None:
    assert bad_gateway_for(data) is None


@pytest.mark.parametrize(
    ("hop", "uri"),
    [
        (Hop("udp", "198.51.100.9", 5060), "sip:198.51.100.9:5060"),
        (Hop("tcp", "2001:db8::9", 5070), "sip:[2001:db8::9]:5070;transport=tcp"),
    ],
)
def test_options_probe_parses_and_its_response_stays_at_the_edge(hop: Hop, uri: str) -> None:
    branch = LOCAL_BRANCH + "00ff"
    request = options_request(hop, Interface("udp", "192.0.2.1", 5060), branch, "p1", "Callgate")
    parsed = parse_message(serialize(request))
    assert isinstance(parsed, SipRequest)
    assert (parsed.method, parsed.uri) == ("OPTIONS", uri)
    assert [v.branch for v in vias(parsed)] == [branch]


def test_forwarded_branches_never_look_local() -> None:
    """Responses to forwarded requests must not be taken for probe responses."""
    request = options_request(
        Hop("udp", "198.51.100.9", 5060), _INTERNAL, "z9hG4bK-x", "c", "Callgate"
    )
    for n in range(200):
        assert not derive_branch(request, n.to_bytes(4, "big") * 8).startswith(LOCAL_BRANCH)
