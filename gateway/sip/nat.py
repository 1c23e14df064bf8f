"""Phones behind NAT: reach them where their packets come from, not where they say they are.

A softphone behind a NAT writes its private address in Contact. Requests to
that address never arrive. The edge does what Kamailio's nathelper does for
UDP: a Contact with a private address that is not the packet's source is
rewritten to the source (in INVITE-dialog requests and responses from the
public side, so the engine's in-dialog requests go to the NAT binding), and a
call to a registered contact is sent to the address its REGISTER came from
(`Binding.received`), named in `DESTINATION_HEADER` by call control and
consumed by the edge. Over TCP and TLS the phone's source is its connection
(the flow of RFC 5626): the rewritten Contact names the transport, so the
engine's in-dialog requests come back to the edge and leave on that
connection, and a call to the binding goes out on it too (the phone keeps it
open with CRLF keep-alives, which the edge answers). A flow that has closed
cannot be reopened through the NAT: the edge answers such a call leg 430
Flow Failed (RFC 5626 §5.3) instead of dialling the phone's private address.

Pure functions: text in, text out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import TypeVar

from gateway.sip.address import NameAddress, parse_name_addr
from gateway.sip.errors import SipParseError
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.uri import SipUri, hostport, is_ip_literal, parse_uri

M = TypeVar("M", SipRequest, SipResponse)

DESTINATION_HEADER = "X-Callgate-Destination"
"""`transport:host:port` the edge sends an engine request to instead of its Request-URI
host; set by call control only (the edge removes copies from peers)."""


_NAT_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)


def is_private(host: str) -> bool:
    """An address behind NAT: RFC 1918, RFC 6598, link-local, IPv6 ULA (not loopback or
    documentation ranges, which `ipaddress` also calls private)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a name: not ours to judge
    return any(address in network for network in _NAT_NETWORKS)


def nated_contact(contact: str, source: tuple[str, int], transport: str = "udp") -> str | None:
    """`contact` (a header value) rewritten to `source` when it hides behind NAT, else None.

    Over a stream `transport` the rewritten URI says so (`;transport=tcp`), or it
    would be reached over UDP; a Contact asking for another transport is left alone.
    """
    try:
        parsed: NameAddress = parse_name_addr(contact, "Contact")
        uri = parse_uri(parsed.uri)  # memoised: a dialog's messages repeat their Contact
    except SipParseError:
        return None
    host, port = uri.host.strip("[]"), uri.port or 5060
    if (host, port) == source or not is_private(host):
        return None
    start = contact.find(parsed.uri)
    if start < 0:
        return None
    named = "tls" if uri.scheme == "sips" else (uri.params.get("transport") or "").lower()
    if named not in ("", transport):
        return None
    rewritten = _with_hostport(parsed.uri, uri, hostport(*source))
    if not named and transport != "udp":  # a stream the URI does not name: name it
        head, mark, tail = rewritten.partition("?")
        rewritten = f"{head};transport={transport}{mark}{tail}"
        if contact[start - 1 : start] != "<":  # addr-spec: URI params need the brackets
            rewritten = f"<{rewritten}>"
    return contact[:start] + rewritten + contact[start + len(parsed.uri) :]


def with_public_contact(message: M, source: tuple[str, int], transport: str = "udp") -> M:
    """`message` with its single Contact rewritten to `source` if it hides behind NAT."""
    values = message.headers.get_all("Contact")
    if len(values) != 1:
        return message  # none, or a REGISTER-style list: not a dialog's remote target
    fixed = nated_contact(values[0], source, transport)
    if fixed is None:
        return message
    headers = message.headers.copy()
    headers.set("Contact", fixed)
    return replace(message, headers=headers, cache={})


def _with_hostport(text: str, uri: SipUri, hostport: str) -> str:
    """`text` (the URI as written) with its host[:port] replaced."""
    written = uri.host if uri.port is None else f"{uri.host}:{uri.port}"
    at = text.find("@")
    start = text.find(written, at + 1 if at >= 0 else text.find(":") + 1)
    if start < 0:
        return text
    return text[:start] + hostport + text[start + len(written) :]


def destination(received: str | None, contact: str) -> str:
    """`DESTINATION_HEADER` value for a call to a registered `contact` that registered
    from `received` (`transport:ip:port`); empty when the contact is reachable as written."""
    source = parse_destination(received) if received else None
    if source is None:
        return ""
    try:
        uri = SipUri.parse(contact)
    except SipParseError:
        return ""
    if (uri.host.strip("[]"), uri.port or 5060) == source[1:] or not is_private(uri.host):
        return ""
    return received or ""


def parse_destination(value: str) -> tuple[str, str, int] | None:
    """(transport, host, port) of a `DESTINATION_HEADER` value, or None when malformed."""
    transport, _, hostport = value.strip().partition(":")
    host, _, port = hostport.rpartition(":")
    if transport not in ("udp", "tcp", "tls") or not host or not port.isdigit():
        return None
    number = int(port)
    if not 0 < number < 65536:
        return None
    if not is_ip_literal(host):
        return None
    return transport, host.strip("[]"), number
