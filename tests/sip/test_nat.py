"""NAT handling, pure: which Contacts hide behind NAT, what they become, where calls go."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.message import SipResponse, parse_message
from gateway.sip.nat import (
    destination,
    is_private,
    nated_contact,
    parse_destination,
    with_public_contact,
)


def test_private_addresses() -> None:
    for host in ("10.1.2.3", "192.168.0.10", "172.16.5.5", "100.64.0.1", "[fd00::1]", "fe80::1"):
        assert is_private(host), host
    for host in ("198.51.100.7", "127.0.0.1", "::1", "2001:db8::1", "sip.example.com"):
        assert not is_private(host), host


def test_a_private_contact_is_rewritten_to_the_source_keeping_user_and_params() -> None:
    contact = '"Bob" <sip:bob@192.168.1.20:5062;transport=udp;ob>;expires=60'
    assert (
        nated_contact(contact, ("203.0.113.9", 40123))
        == '"Bob" <sip:bob@203.0.113.9:40123;transport=udp;ob>;expires=60'
    )
    assert nated_contact("<sip:bob@192.168.1.20>", ("2001:db8::9", 5060)) == (
        "<sip:bob@[2001:db8::9]:5060>"
    )


def test_public_or_matching_contacts_stay() -> None:
    assert nated_contact("<sip:bob@198.51.100.7:5060>", ("203.0.113.9", 4000)) is None
    assert nated_contact("<sip:bob@10.0.0.5:5060>", ("10.0.0.5", 5060)) is None
    assert nated_contact("not a contact", ("203.0.113.9", 4000)) is None


def test_destination_of_a_binding() -> None:
    contact = "sip:bob@10.0.0.99:5099"
    assert destination("udp:203.0.113.9:40123", contact) == "udp:203.0.113.9:40123"
    assert destination("udp:10.0.0.99:5099", contact) == ""  # reachable as written
    assert destination("tcp:203.0.113.9:40123", contact) == "tcp:203.0.113.9:40123"  # its flow
    assert destination("tls:203.0.113.9:40123", contact) == "tls:203.0.113.9:40123"
    assert destination("udp:203.0.113.9:40123", "sip:bob@198.51.100.7") == ""
    assert destination(None, contact) == ""
    assert parse_destination("udp:203.0.113.9:40123") == ("udp", "203.0.113.9", 40123)
    assert parse_destination("udp:[2001:db8::9]:5060") == ("udp", "2001:db8::9", 5060)
    for bad in ("", "udp", "udp:host.example:5060", "udp:1.2.3.4:0", "sctp:1.2.3.4:5060"):
        assert parse_destination(bad) is None, bad


def test_over_a_stream_the_rewritten_contact_names_the_transport() -> None:
    source = ("203.0.113.9", 40123)
    assert (
        nated_contact("<sip:bob@10.0.0.5:5060;transport=tcp>;expires=60", source, "tcp")
        == "<sip:bob@203.0.113.9:40123;transport=tcp>;expires=60"
    )
    assert (
        nated_contact("<sip:bob@10.0.0.5:5060;ob>", source, "tcp")
        == "<sip:bob@203.0.113.9:40123;ob;transport=tcp>"
    )
    assert nated_contact("sip:bob@10.0.0.5", source, "tls") == (
        "<sip:bob@203.0.113.9:40123;transport=tls>"
    )
    assert nated_contact("<sips:bob@10.0.0.5:5061>", source, "tls") == (
        "<sips:bob@203.0.113.9:40123>"
    )
    # A Contact that asks for another transport than the one it came over: left alone.
    assert nated_contact("<sip:bob@10.0.0.5;transport=udp>", source, "tcp") is None
    assert nated_contact("<sip:bob@10.0.0.5;transport=tcp>", source, "udp") is None


def test_only_a_single_contact_of_a_message_is_fixed() -> None:
    raw = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Contact: <sip:b@10.0.0.99:5099>\r\nContent-Length: 0\r\n\r\n"
    )
    response = parse_message(raw)
    assert isinstance(response, SipResponse)
    fixed = with_public_contact(response, ("203.0.113.9", 4000))
    assert fixed.headers.get("Contact") == "<sip:b@203.0.113.9:4000>"
    assert response.headers.get("Contact") == "<sip:b@10.0.0.99:5099>"  # the original stays


@given(st.text(max_size=200), st.text(max_size=60), st.sampled_from(("udp", "tcp", "tls")))
def test_fuzz_never_raises(contact: str, value: str, transport: str) -> None:
    nated_contact(contact, ("203.0.113.9", 4000), transport)
    parse_destination(value)
    destination(value, contact)
