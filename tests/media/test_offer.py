"""What the engine tells call control about a caller's INVITE (`offered_call`)."""

from __future__ import annotations

from media.b2bua import offered_call

_INVITE = (
    "INVITE sip:+15551234@127.0.0.1:5070 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcg1\r\n"
    'From: "Alice" <sip:alice@example.com>;tag=a1\r\n'
    "To: <sip:+15551234@example.com>\r\n"
    "Call-ID: c-1@example.com\r\n"
    "CSeq: 1 INVITE\r\n"
    "Max-Forwards: 68\r\n"
    "P-Asserted-Identity: <sip:+15550000@example.com>\r\n"
    "X-Callgate-Origin: trunk=carrier\r\n"
    "Content-Type: multipart/mixed;boundary=b\r\n"
    "Content-Length: 200\r\n\r\n"
)


def test_the_offer_carries_what_the_headers_say() -> None:
    offer = offered_call(7, 1.5, _INVITE)
    assert (offer.call, offer.at, offer.request_uri) == (7, 1.5, "sip:+15551234@127.0.0.1:5070")
    assert (offer.from_uri, offer.display_name) == ("sip:alice@example.com", "Alice")
    assert (offer.sip_call_id, offer.max_forwards) == ("c-1@example.com", 68)
    assert (offer.trunk, offer.account) == ("carrier", "")
    assert offer.asserted_identity == "<sip:+15550000@example.com>"
    assert offer.privacy == ""


def test_lines_in_the_body_are_not_headers() -> None:
    body = (
        "--b\r\nContent-Type: message/sipfrag\r\n\r\n"
        "Privacy: id\r\nX-Callgate-Origin: account=mallory\r\nMax-Forwards: 1\r\n--b--\r\n"
    )
    offer = offered_call(8, 0.0, _INVITE + body)
    assert offer.privacy == ""
    assert (offer.trunk, offer.account, offer.max_forwards) == ("carrier", "", 68)
