"""Round trips, Headers API, response building and datagram framing rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip import parser
from gateway.sip.address import ViaHeader, parse_name_addr, parse_via
from gateway.sip.errors import SipParseError
from gateway.sip.headers import Headers
from gateway.sip.limits import ParseLimits
from gateway.sip.message import (
    SipRequest,
    SipResponse,
    content_length,
    cseq,
    from_address,
    make_response,
    parse_message,
    serialize,
    to_address,
)
from tests.sip.sip_torture import VALID, load, structure

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b"From: <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060>;expires=3600, <sip:alice@[2001:db8::1]>;q=0.5\r\n"
    b"Timestamp: 54\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize("name", VALID)
def test_torture_round_trip(name: str) -> None:
    first = parse_message(load(name))
    again = parse_message(serialize(first), stream=True)
    assert structure(again) == structure(first)
    assert content_length(again) == len(first.body)
    if "Content-Length" in first.headers and content_length(first) == len(first.body):
        assert again == first


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "X-CUSTOM"]),
    user=_token,
    host=_token.map(lambda s: "h" + s.strip(".-") + "x.example.com"),
    tag=_token,
    number=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=300),
    extra=st.lists(st.tuples(st.sampled_from(["X-A", "Subject", "Supported"]), _token), max_size=4),
)
def test_generated_round_trip(
    method: str,
    user: str,
    host: str,
    tag: str,
    number: int,
    body: bytes,
    extra: list[tuple[str, str]],
) -> None:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/TCP {host};branch=z9hG4bK{tag}"),
            ("From", f'"{user}" <sip:{user}@{host}>;tag={tag}'),
            ("To", f"sip:{user}@{host}"),
            ("Call-ID", f"{tag}@{host}"),
            ("CSeq", f"{number} {method}"),
            *extra,
        ]
    )
    original = SipRequest(method, f"sip:{user}@{host}", headers, body)
    parsed = parse_message(serialize(original), stream=True)
    assert structure(parsed) == structure(original)


def test_headers_api() -> None:
    headers = Headers(
        [("v", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b"), ("VIA", "SIP/2.0/UDP c")]
    )
    assert headers.get("via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert headers.get_all("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b", "SIP/2.0/UDP c",
    ]  # fmt: skip
    assert headers.items()[0][0] == "Via"
    assert "v" in headers
    assert headers.count("Via") == 2
    headers.add("WWW-Authenticate", 'Digest realm="a,b", nonce="x"')
    assert headers.get_all("www-authenticate") == ['Digest realm="a,b", nonce="x"']
    headers.add("m", '"Doe, John" <sip:j@example.com>;q=1, <sip:k@example.com>')
    assert headers.get_all("Contact") == [
        '"Doe, John" <sip:j@example.com>;q=1',
        "<sip:k@example.com>",
    ]
    headers.set("Via", "SIP/2.0/TLS z")
    assert headers.get_all("Via") == ["SIP/2.0/TLS z"]
    assert next(iter(headers)) == "Via"
    assert headers.remove("contact") == 1
    assert "Contact" not in headers
    assert headers.get("Missing") is None
    with pytest.raises(ValueError, match="CR or LF"):
        headers.add("X-Evil", "a\r\nInjected: 1")
    with pytest.raises(ValueError, match="invalid header name"):
        headers.add("Bad Name", "x")


def test_make_response_copies_per_rfc3261_8_2_6() -> None:
    request = parse_message(REGISTER)
    assert isinstance(request, SipRequest)
    response = make_response(request, 200, "OK", to_tag="srv1", headers=[("Expires", "3600")])
    assert [name for name, _ in response.headers.items()] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Expires",
    ]  # fmt: skip
    assert to_address(response).tag == "srv1"
    wire = serialize(response)
    assert wire.startswith(b"SIP/2.0 200 OK\r\n")
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")
    reparsed = parse_message(wire)
    assert isinstance(reparsed, SipResponse)
    trying = make_response(request, 100, "Trying", to_tag="ignored-not")
    assert trying.headers.get("Timestamp") == "54"
    in_dialog = make_response(make_request_with_to_tag(), 200, "OK", to_tag="new")
    assert to_address(in_dialog).tag == "existing"


def make_request_with_to_tag() -> SipRequest:
    msg = parse_message(
        REGISTER.replace(b"To: <sip:alice@example.com>", b"To: <sip:a@b.c>;tag=existing")
    )
    assert isinstance(msg, SipRequest)
    return msg


def test_via_rport_received_round_trip() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport")
    assert via.has_rport and via.rport is None
    via.params["received"] = "198.51.100.7"
    via.params["rport"] = "40123"
    assert str(via) == (
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=40123;received=198.51.100.7"
    )
    assert parse_via(str(via)).rport == 40123
    v6 = parse_via("SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKx;received=2001:db8::1")
    assert (v6.host, v6.port, v6.received) == ("[2001:db8::9]", 5070, "2001:db8::1")
    assert isinstance(v6, ViaHeader)
    with pytest.raises(SipParseError, match="Via"):
        parse_via("SIP/2.0/UDP host;rport=99999")


def test_datagram_content_length_rules() -> None:
    body = b"hello"
    base = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 5")
    assert parse_message(base + body + b"trailing junk").body == body  # truncated (§18.3)
    with pytest.raises(SipParseError) as caught:
        parse_message(base + b"hi")
    assert (caught.value.status, caught.value.reason) == (400, "Bad Header: Content-Length")
    no_length = REGISTER.replace(b"Content-Length: 0\r\n", b"")
    assert parse_message(no_length + b"rest").body == b"rest"
    with pytest.raises(SipParseError, match="Content-Length"):
        parse_message(no_length, stream=True)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"\r\n\r\n", 400),
        (REGISTER.replace(b"\r\nMax-Forwards", b"\nMax-Forwards"), 400),  # bare LF
        (REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        (REGISTER.replace(b"Call-ID", b"X-Call-ID"), 400),
        (REGISTER.replace(b"SIP/2.0\r\nVia", b"SIP/2.0\r\n folded\r\nVia", 1), 400),
        (REGISTER.replace(b"REGISTER sip:example.com", b"REGISTER tel:+1;;x", 1), 400),
        (REGISTER.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (REGISTER + b"x" * 70000, 413),
        (REGISTER.replace(b"Timestamp: 54", b"X-Long: " + b"a" * 9000), 513),
        (REGISTER.replace(b"Timestamp: 54", b"X: 1\r\n" * 200 + b"Y: 2"), 513),
    ],
)
def test_malformed_datagrams(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    assert caught.value.status == status


def test_limits_are_configurable() -> None:
    tight = ParseLimits(max_message_bytes=200)
    with pytest.raises(SipParseError) as caught:
        parse_message(REGISTER, tight)
    assert caught.value.status == 413
    only_sip = ParseLimits(uri_schemes=frozenset({"sip"}))
    with pytest.raises(SipParseError) as caught:
        parse_message(
            REGISTER.replace(b"REGISTER sip:example.com", b"REGISTER tel:+15551234"), only_sip
        )
    assert caught.value.status == 416


def test_response_for_rejected_request() -> None:
    data = load("mismatch01")
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    response = caught.value.response_for(data)
    assert response is not None
    assert (response.status, response.reason) == (400, "Bad Header: CSeq")
    assert response.headers.get("Call-ID") == "mismatch01.dj0234sxdfl3"
    tag = to_address(response).tag
    assert tag is not None
    again = caught.value.response_for(data)
    assert again is not None
    assert to_address(again).tag == tag  # retransmissions get the same tag
    parse_message(serialize(response))
    bad_response = load("bigcode")
    with pytest.raises(SipParseError) as dropped:
        parse_message(bad_response)
    assert dropped.value.response_for(bad_response) is None


def test_memoised_addresses_are_per_value_and_errors_are_not_memoised() -> None:
    """parse_name_addr keeps results, not failures: a bad value raises every time."""
    first = parse_name_addr("<sip:a@example.com>;tag=1", "From")
    assert parse_name_addr("<sip:a@example.com>;tag=1", "From") is first
    assert parse_name_addr("<sip:a@example.com>;tag=2", "From").tag == "2"
    for _ in range(2):
        with pytest.raises(SipParseError) as caught:
            parse_name_addr('"unbalanced <sip:a@example.com>', "To")
        assert caught.value.header == "To"
    assert parse_name_addr("*", "Contact", allow_wildcard=True).is_wildcard
    with pytest.raises(SipParseError):
        parse_name_addr("*", "Contact")
    long_value = f"<sip:{'a' * 300}@example.com>"  # beyond MEMO_MAX_CHARS: parsed each time
    assert parse_name_addr(long_value, "To") is not parse_name_addr(long_value, "To")
    assert parse_name_addr(long_value, "To").uri == long_value[1:-1]


def test_checked_request_uris_are_remembered_within_a_bound_and_per_scheme_set() -> None:
    parser._check_request_uri.cache_clear()
    for n in range(parser.PARSED_VALUE_CACHE + 10):
        parser._check_request_uri(f"sip:{n}@example.test", ParseLimits().uri_schemes)
    assert 0 < parser._check_request_uri.cache_info().currsize <= parser.PARSED_VALUE_CACHE
    # Accepted under the default schemes does not mean accepted where tel is not allowed.
    parser._check_request_uri("tel:+15551234567", ParseLimits().uri_schemes)
    with pytest.raises(SipParseError) as raised:
        parser._check_request_uri("tel:+15551234567", frozenset({"sip", "sips"}))
    assert raised.value.status == 416


def test_a_trusted_message_parses_its_values_only_when_read() -> None:
    data = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKcg1\r\n"
        b"From: not an address\r\nTo: <sip:b@127.0.0.1>;tag=2\r\nCall-ID: c\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    with pytest.raises(SipParseError):
        parse_message(data)
    message = parse_message(data, validate=False)
    assert cseq(message).method == "INVITE"
    with pytest.raises(SipParseError):
        from_address(message)
    # The start line and the fields' framing are checked all the same.
    with pytest.raises(SipParseError):
        parse_message(b"SIP/2.0 2000 OK\r\nCall-ID: c\r\n\r\n", validate=False)
