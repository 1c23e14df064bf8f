"""Best-effort error responses to requests the parser rejected.

A rejected request cannot be trusted as a whole, but RFC 3261 §8.2.6 still
wants the answer routed back along its Via with From, To, Call-ID and CSeq
copied. This salvages those lines from the raw bytes with no validation
beyond what routing needs.
"""

from __future__ import annotations

import hashlib

from gateway.sip.errors import SipParseError
from gateway.sip.headers import Headers, canonical_name
from gateway.sip.message import SipResponse

_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")
_SALVAGE_LIMIT = 16384


def _salvage_fields(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    text = data[:_SALVAGE_LIMIT].lstrip(b"\r\n").decode("utf-8", "surrogateescape")
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n")
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        canonical = canonical_name(name.strip(" \t"))
        if colon and canonical in _COPIED and "\r" not in value and "\n" not in value:
            fields.append((canonical, value.strip(" \t")))
    return lines[0], fields


def response_for(
    error: SipParseError, data: bytes, to_tag: str | None = None
) -> SipResponse | None:
    """The response answering the rejected request in `data`, if one can be routed.

    None for responses, ACKs (never answered) and requests without a Via.
    Without `to_tag`, a tag is derived from the request so retransmissions
    get the same answer from this stateless path (§8.2.7).
    """
    start, fields = _salvage_fields(data)
    method = start.split(" ", 1)[0]
    if start[:4].upper() == "SIP/" or method == "ACK" or not any(n == "Via" for n, _ in fields):
        return None
    tag = to_tag or hashlib.blake2s(data[:_SALVAGE_LIMIT], digest_size=8).hexdigest()
    return SipResponse(error.status, error.reason, _copied(fields, tag))


def bad_gateway_for(data: bytes) -> SipResponse | None:
    """A 502 standing in for a response the parser rejected, if its transaction is known.

    A peer that answers garbage must end its transaction now (so call control
    can fail over), not after the client's 32 s timeout: RFC 3261 §21.5.3
    names 502 for "an invalid response from the downstream server". None when
    `data` is not a response or lacks a usable Via, From, To, Call-ID or CSeq.
    """
    start, fields = _salvage_fields(data)
    if start[:4].upper() != "SIP/":
        return None
    try:
        headers = _copied(fields, hashlib.blake2s(data[:_SALVAGE_LIMIT], digest_size=8).hexdigest())
    except SipParseError:
        return None
    if any(name not in headers for name in _COPIED):
        return None
    return SipResponse(502, "Bad Gateway", headers)


def _copied(fields: list[tuple[str, str]], to_tag: str) -> Headers:
    """The routing fields of a salvaged message; a To without a tag gets `to_tag`."""
    headers = Headers()
    for wanted in _COPIED:
        for name, value in fields:
            if name != wanted:
                continue
            copied = value
            if name == "To" and ";tag=" not in value.replace(" ", ""):
                copied = f"{value};tag={to_tag}"
            headers.add(name, copied)
            if name != "Via":
                break
    return headers
