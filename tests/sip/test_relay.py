"""The engine's responses relayed without a full parse: the same result as the full
path for PJSIP's shape, the full path for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.sip import SipConfig
from gateway.metrics import Metrics
from gateway.sip.admission import AuthenticatedOnly
from gateway.sip.directory import Directory
from gateway.sip.edge import SipEdge
from gateway.sip.message import SipResponse, parse_message, serialize
from gateway.sip.proxy import EDGE_BRANCH, Hop, Interface, forward_response
from gateway.sip.relay import relay_engine_response

OURS = f"SIP/2.0/UDP 127.0.0.1:5070;rport=5070;received=127.0.0.1;branch={EDGE_BRANCH}0a1b2c"
NEXT = "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-19534-1-inv"
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def pjsip_response(
    status: str = "180 Ringing",
    vias: tuple[str, ...] = (OURS, NEXT),
    method: str = "INVITE",
    extra: str = "",
    body: str = "",
) -> bytes:
    """A response as PJSIP writes it: one Via per line, first; double spaces in
    Content-Length."""
    head = "".join(f"Via: {via}\r\n" for via in vias)
    return (
        f"SIP/2.0 {status}\r\n{head}"
        "Record-Route: <sip:127.0.0.1:5060;lr;cg=out>\r\n"
        "Call-ID: 1-19534@127.0.0.1\r\n"
        "From: <sip:caller@127.0.0.1>;tag=19534SIPpTag001\r\n"
        "To: <sip:1000@127.0.0.1>;tag=b7602309\r\n"
        f"CSeq: 1 {method}\r\n{extra}"
        f"Content-Length:  {len(body)}\r\n\r\n{body}"
    ).encode()


def full_path(data: bytes) -> tuple[bytes, Hop]:
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    routed = forward_response(response)
    assert routed is not None
    return serialize(routed[0]), routed[1]


@pytest.mark.parametrize(
    ("next_via", "hop"),
    [
        (NEXT, Hop("udp", "198.51.100.7", 5060)),
        (
            "SIP/2.0/UDP 198.51.100.7:5062;rport=4000;received=203.0.113.9;branch=z9hG4bK-2",
            Hop("udp", "203.0.113.9", 4000),
        ),
        ("SIP/2.0/TCP [2001:db8::7];branch=z9hG4bK-3", Hop("tcp", "2001:db8::7", 5060)),
        ("SIP/2.0/TLS phone.example;branch=z9hG4bK-4", Hop("tls", "phone.example", 5061)),
    ],
)
@pytest.mark.parametrize(
    ("status", "method", "body"),
    [("100 Trying", "INVITE", ""), ("200 OK", "INVITE", SDP), ("200 OK", "BYE", "")],
)
def test_relay_matches_the_full_path(
    next_via: str, hop: Hop, status: str, method: str, body: str
) -> None:
    data = pjsip_response(status, (OURS, next_via, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-5"),
                          method, body=body)  # fmt: skip
    relayed = relay_engine_response(data)
    assert relayed is not None
    payload, full_hop = full_path(data)
    assert relayed.hop == full_hop == hop
    # The same message; only the formatting the full path normalises may differ.
    assert serialize(parse_message(relayed.payload)) == payload
    assert relayed.payload == data.replace(f"Via: {OURS}\r\n".encode(), b"")
    assert (relayed.call_id, relayed.method) == ("1-19534@127.0.0.1", method)


@pytest.mark.parametrize(
    "data",
    [
        pjsip_response(vias=(NEXT, OURS)),  # top Via is not the edge's
        pjsip_response(vias=(OURS,)),  # nowhere to send it
        pjsip_response(vias=(f"{OURS}, {NEXT}",)),  # one line, two values
        pjsip_response(vias=(OURS, NEXT)).replace(b"\r\nVia: ", b"\r\nv: ", 1),  # compact
        pjsip_response(vias=(OURS, NEXT)).replace(b"Call-ID: ", b"i: "),
        pjsip_response(vias=(OURS, NEXT)).replace(b"CSeq: 1 INVITE\r\n", b""),
        pjsip_response(extra="Call-ID: again@127.0.0.1\r\n"),  # which one?
        pjsip_response(vias=(OURS, NEXT)).replace(OURS.encode(), OURS.encode() + b"\r\n ;x=1"),
        pjsip_response(vias=(OURS, "SIP/2.0/UDP 198.51.100.7:99999;branch=z9hG4bK-1")),
        pjsip_response().replace(b"SIP/2.0 180 Ringing", b"SIP/2.0 18 Ringing"),
        pjsip_response().split(b"\r\n\r\n")[0],  # no end of headers
        b"INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: " + OURS.encode() + b"\r\n\r\n",
    ],
    ids=[
        "not-ours", "one-via", "comma-list", "compact-via", "compact-call-id", "no-cseq",
        "two-call-ids", "folded", "bad-next-via", "bad-status", "no-blank-line", "request",
    ],
)  # fmt: skip
def test_other_shapes_take_the_full_path(data: bytes) -> None:
    assert relay_engine_response(data) is None


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=64),
    st.integers(min_value=0, max_value=400),
)
def test_any_bytes_relay_or_fall_back_never_raise(noise: bytes, position: int) -> None:
    data = bytearray(pjsip_response())
    data[position:position] = noise
    relayed = relay_engine_response(bytes(data))
    if relayed is not None:  # the engine is trusted: only the two Vias were read
        assert relayed.payload.startswith(b"SIP/2.0 ")
        assert relayed.hop.port > 0


def _edge() -> SipEdge:
    return SipEdge(
        SipConfig(), Metrics(), ("127.0.0.1", 5070), Directory({}, []), AuthenticatedOnly()
    )


def test_edge_relays_only_the_engines_datagrams() -> None:
    edge = _edge()
    sent: list[tuple[bytes, Hop]] = []
    answered: list[str] = []
    polled: list[int] = []
    edge._send_to_hop = lambda hop, payload, *_rest: sent.append((payload, hop))  # type: ignore[method-assign]
    edge.engine_answered = answered.append
    edge.between_messages = lambda: polled.append(1)
    data = pjsip_response()
    assert not edge.relay_engine_response(data, ("127.0.0.1", 5999))  # not the engine
    assert edge.relay_engine_response(data, edge.upstream)
    assert sent == [
        (data.replace(f"Via: {OURS}\r\n".encode(), b""), Hop("udp", "198.51.100.7", 5060))
    ]
    assert answered == ["1-19534@127.0.0.1"]  # overload control hears of the answer
    assert polled == [1]  # and call events are taken as after any message
    assert edge.relay_engine_response(pjsip_response("200 OK", method="BYE"), edge.upstream)
    assert answered == ["1-19534@127.0.0.1"]  # a BYE's answer is no INVITE intake


def test_an_engine_request_leaves_on_the_interface_of_its_real_next_hop() -> None:
    """The engine's Route names the edge itself; the Via and Record-Route the callee
    sees come from the interface of the hop after it (TLS here), not from that Route."""
    edge = _edge()
    edge._internal_iface = Interface("udp", "127.0.0.1", 5071)
    edge._public = [Interface("udp", "192.0.2.1", 5060), Interface("tls", "192.0.2.1", 5061)]
    sent: list[tuple[bytes, Hop]] = []
    edge._send_to_hop = lambda hop, payload, *_rest: sent.append((payload, hop))  # type: ignore[method-assign]
    invite = (
        b"INVITE sip:callee@198.51.100.9;transport=tls SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bKPj-1\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=e1\r\n"
        b"To: <sip:callee@198.51.100.9>\r\nCall-ID: b1\r\nCSeq: 1 INVITE\r\n"
        b"Route: <sip:127.0.0.1:5071;lr;cg=engine>\r\nContent-Length: 0\r\n\r\n"
    )
    edge.internal_endpoint().datagram_received(invite, edge.upstream)
    [(payload, hop)] = sent
    assert hop == Hop("tls", "198.51.100.9", 5061)
    forwarded = parse_message(payload)
    assert (forwarded.headers.get("Via") or "").startswith("SIP/2.0/TLS 192.0.2.1:5061;")
    assert forwarded.headers.get("Record-Route") == "<sip:192.0.2.1:5061;transport=tls;lr;cg=out>"
    assert "Route" not in forwarded.headers
