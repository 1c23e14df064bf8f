"""RFC 4475 torture messages: valid ones parse to the right structure,
invalid ones raise SipParseError with the status RFC 4475 recommends."""

from __future__ import annotations

import pytest

from gateway.sip.address import parse_name_addr
from gateway.sip.errors import SipParseError
from gateway.sip.message import (
    SipRequest,
    SipResponse,
    call_id,
    contacts,
    cseq,
    expires,
    from_address,
    max_forwards,
    parse_message,
    request_uri,
    to_address,
    vias,
)
from gateway.sip.uri import SipUri, unescape
from tests.sip.sip_torture import VALID, load, names

# name -> (status, header named in the error or None)
INVALID: dict[str, tuple[int, str | None]] = {
    "badinv01": (400, "Via"),  # empty Via params/values
    "clerr": (400, "Content-Length"),  # datagram shorter than Content-Length
    "ncl": (400, "Content-Length"),  # negative
    "scalar02": (400, "CSeq"),  # CSeq > 2**32-1 (checked before Max-Forwards/Expires)
    "scalarlg": (400, "CSeq"),  # a response: the edge drops it, status is informative
    "quotbal": (400, "To"),
    "ltgtruri": (400, None),
    "lwsruri": (400, None),
    "lwsstart": (400, None),  # we do not take the liberal option of ignoring extra SP
    "trws": (400, None),
    "escruri": (400, None),  # headers in a Request-URI
    "regbadct": (400, "Contact"),  # addr-spec Contact with ?headers
    "badaspec": (400, "To"),  # "< sip:... >"
    "baddn": (400, "From"),  # unquoted display name with a comma
    "badvers": (505, None),
    "mismatch01": (400, "CSeq"),
    # RFC 4475 §3.3.2 prefers 501 for an unknown method with a mismatched CSeq,
    # but allows 400; the parser cannot know what the element implements.
    "mismatch02": (400, "CSeq"),
    "bigcode": (400, None),  # a response: dropped by the edge
    "insuf": (400, "Call-ID"),
    "unkscm": (416, None),  # well-formed absoluteURI of a scheme we do not serve
    "novelsc": (416, None),
    "multi01": (400, "Call-ID"),  # duplicated single-instance headers
    "mcl01": (400, "Content-Length"),
}


def test_every_stored_message_is_classified() -> None:
    assert sorted(VALID + list(INVALID)) == names()


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_parse(name: str) -> None:
    msg = parse_message(load(name))
    assert call_id(msg)
    assert vias(msg)


@pytest.mark.parametrize(("name", "status", "header"), [(n, s, h) for n, (s, h) in INVALID.items()])
def test_invalid_messages_raise_planned_error(name: str, status: int, header: str | None) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(load(name))
    assert caught.value.status == status
    assert caught.value.header == header
    if header is not None:
        assert header in caught.value.reason


def _request(name: str) -> SipRequest:
    msg = parse_message(load(name))
    assert isinstance(msg, SipRequest)
    return msg


def test_wsinv_structure() -> None:
    msg = _request("wsinv")
    assert msg.method == "INVITE"
    assert msg.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert request_uri(msg).params == {"unknownparam": None}
    assert to_address(msg).tag == "1918181833n"
    sender = from_address(msg)
    assert sender.display_name == 'J Rosenberg \\"'
    assert sender.tag == "98asjd8"
    assert max_forwards(msg) == 68
    assert cseq(msg).number == 9
    assert cseq(msg).method == "INVITE"
    assert [(v.transport, v.host, v.branch) for v in vias(msg)] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    (contact,) = contacts(msg)
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.headers.get_all("Route") == [
        "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    ]
    assert len(msg.body) == 150


def test_intmeth_structure() -> None:
    msg = _request("intmeth")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = request_uri(msg)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"
    assert to_address(msg).display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    sender = from_address(msg)
    assert sender.display_name == "token1~` token2'+_ token3*%!.-"
    assert sender.params["fromparam''~+*_!.-%"] == '"работающий"'
    assert sender.tag == "_token~1'+`*%!-."
    assert call_id(msg) == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert vias(msg)[0].branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert max_forwards(msg) == 255


def test_esc01_keeps_escapes_and_compares_unescaped() -> None:
    msg = _request("esc01")
    assert request_uri(msg).user == "sips%3Auser%40example.com"
    assert unescape(request_uri(msg).user or "") == "sips:user@example.com"
    assert to_address(msg).sip_uri.aor() == "sip:user@example.com"
    assert unescape(from_address(msg).sip_uri.user or "") == "I have spaces"
    (contact,) = contacts(msg)
    params = contact.sip_uri.params
    assert params == {"%6c%72": None, "n%61me": "v%61lue%25%34%31"}
    assert unescape("v%61lue%25%34%31") == "value%41"  # never unescaped twice
    assert msg.headers.get("Content-Type") == "application/sdp"


def test_escnull_keeps_distinct_contacts() -> None:
    msg = _request("escnull")
    aors = [c.sip_uri.aor() for c in contacts(msg)]
    assert aors == ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]
    assert to_address(msg).sip_uri.aor() == "sip:null-%00-null@example.com"


def test_esc02_percent_is_not_an_escape_outside_uris() -> None:
    msg = _request("esc02")
    assert msg.method == "RE%47IST%45R"
    assert to_address(msg).display_name == "%Z%45"
    assert [c.uri for c in contacts(msg)] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp_token_display_name_without_space() -> None:
    assert from_address(_request("lwsdisp")).display_name == "caller"


def test_longreq_long_values() -> None:
    msg = _request("longreq")
    assert len(vias(msg)) == 34
    assert [v.host for v in vias(msg)[:3]] == [f"sip{n}.example.com" for n in (33, 32, 31)]
    last = vias(msg)[-1]
    assert last.received == "192.0.2.5"
    assert last.branch == "very" + "long" * 50 + "branchvalue"
    target = to_address(msg)
    assert target.sip_uri.port == 6000
    assert len(target.sip_uri.params) == 3
    assert from_address(msg).tag == "12" + "982" * 50 + "424"
    assert call_id(msg) == "longreq.one" + "really" * 20 + "longcallid"
    assert len(msg.body) == 150


def test_dblreq_ignores_octets_after_declared_body() -> None:
    """RFC 3261 §18.3: the INVITE-looking tail of the datagram is noise."""
    msg = _request("dblreq")
    assert msg.method == "REGISTER"
    assert msg.body == b""
    assert call_id(msg) == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def test_semiuri_user_contains_semicolon_param() -> None:
    msg = _request("semiuri")
    uri = request_uri(msg)
    assert uri.user == "user;par=u%40example.net"
    assert unescape(uri.user or "") == "user;par=u@example.net"
    assert uri.params == {}
    assert len(msg.headers.get_all("Accept")) == 6


def test_transports_accepts_any_transport_token() -> None:
    assert [v.transport for v in vias(_request("transports"))] == [
        "UDP", "SCTP", "TLS", "UNKNOWN", "TCP",
    ]  # fmt: skip


def test_mpart01_binary_body_framed_by_content_length() -> None:
    msg = _request("mpart01")
    assert len(msg.body) == 339
    assert b"\x00" in msg.body
    assert msg.body.endswith(b"--7a9cbec02ceef655--\r\n")
    assert vias(msg)[0].has_rport
    assert vias(msg)[0].rport is None
    assert vias(msg)[0].port == 5070
    assert (msg.headers.get("Identity") or "").startswith("r5mwreLuyDRYBi")


def test_unreason_and_noreason() -> None:
    unusual = parse_message(load("unreason"))
    assert isinstance(unusual, SipResponse)
    assert unusual.status == 200
    assert unusual.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    empty = parse_message(load("noreason"))
    assert isinstance(empty, SipResponse)
    assert (empty.status, empty.reason) == (100, "")


def test_semantically_odd_but_well_formed_messages() -> None:
    """RFC 4475 §3.1.2.12, §3.3.x: parsing succeeds; later stages decide.

    - baddate: the Date is not GMT. We never use Date, and RFC 4475 says not
      to reject unless it matters, so it is accepted as opaque text.
    - badbranch: "z9hG4bK" with nothing after it is syntactically valid; the
      transaction layer may fall back to RFC 2543 matching.
    - unksm2: To/From/Contact with non-SIP schemes parse; the registrar
      answers 416 since it cannot bind them.
    - inv2543: RFC 2543 style (no Max-Forwards, no branch, no Content-Length).
    - zeromf: Max-Forwards 0 parses; a proxy answers 483, not the parser.
    """
    assert _request("baddate").headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    assert vias(_request("badbranch"))[0].branch == "z9hG4bK"
    odd = _request("unksm2")
    assert to_address(odd).uri == "isbn:2983792873"
    assert from_address(odd).uri == "http://www.example.com"
    with pytest.raises(SipParseError):
        _ = to_address(odd).sip_uri
    old = _request("inv2543")
    assert max_forwards(old) is None
    assert vias(old)[0].branch is None
    assert old.body.startswith(b"v=0\r\n")
    assert max_forwards(_request("zeromf")) == 0


def test_contact_param_placement() -> None:
    """cparam01: addr-spec params belong to the header; cparam02: inside <> to the URI."""
    (bare,) = contacts(_request("cparam01"))
    assert bare.params == {"unknownparam": None}
    assert bare.sip_uri.params == {}
    (bracketed,) = contacts(_request("cparam02"))
    assert bracketed.params == {}
    assert bracketed.sip_uri.params == {"unknownparam": None}


def test_regescrt_contact_uri_headers_are_kept() -> None:
    (contact,) = contacts(_request("regescrt"))
    assert contact.sip_uri.headers == {"Route": "%3Csip:sip.example.com%3E"}
    assert expires(_request("regescrt")) is None


def test_scalar02_oversized_expires_clamps_when_read_alone() -> None:
    """RFC 4475 §3.1.2.4: a too-large Expires may be treated as a default."""
    from gateway.sip.fields import parse_delta_seconds

    assert parse_delta_seconds("1" + "0" * 15) == 2**32 - 1


def test_parse_name_addr_rejects_unbalanced_quotes_with_header_name() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_name_addr('"Mr J. User <sip:j@example.com> <sip:realj@example.net>', "To")
    assert caught.value.reason == "Bad Header: To"


def test_sip_uri_parse_roundtrip_ipv6() -> None:
    uri = SipUri.parse("sips:alice:secret@[2001:db8::1]:5061;transport=tls?subject=hi")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "alice", "secret", "[2001:db8::1]", 5061,
    )  # fmt: skip
    assert str(uri) == "sips:alice:secret@[2001:db8::1]:5061;transport=tls?subject=hi"
