"""SIP requests and responses: parsing, serialising, and building responses.

`parse_message` takes one datagram (or, with `stream=True`, one exactly
framed stream message) and either returns a fully validated message or
raises `SipParseError` carrying the response to send. Structured values
(From, To, Via, CSeq, ...) parsed during validation are cached on the
message, so the accessors below cost nothing afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from gateway.sip.address import NameAddress, ViaHeader, parse_name_addr, parse_via
from gateway.sip.errors import (
    REQUEST_ENTITY_TOO_LARGE,
    SipParseError,
    bad_header,
    bad_request,
    missing_header,
)
from gateway.sip.fields import (
    CSeq,
    parse_call_id,
    parse_content_length,
    parse_cseq,
    parse_delta_seconds,
    parse_max_forwards,
)
from gateway.sip.headers import Headers
from gateway.sip.limits import ParseLimits
from gateway.sip.parser import SIP_VERSION, Head, parse_head
from gateway.sip.uri import SipUri, parse_uri

__all__ = [
    "ParseLimits",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "call_id",
    "contacts",
    "content_length",
    "cseq",
    "expires",
    "from_address",
    "make_response",
    "max_forwards",
    "parse_message",
    "request_uri",
    "serialize",
    "to_address",
    "top_via",
    "vias",
]

# Headers a message may carry at most once (RFC 4475 multi01, mcl01).
_SINGLE = tuple(
    (name.lower(), name)
    for name in ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length")
)
_MANDATORY = tuple((name.lower(), name) for name in ("Call-ID", "CSeq", "From", "To"))
DEFAULT_LIMITS = ParseLimits()


# Per-message values are not frozen dataclasses: those set every field through
# object.__setattr__ and cost ~5x to build (docs/BENCHMARKS.md, SIP edge evening round).
@dataclass(slots=True)
class SipRequest:
    """A request. `uri` is the Request-URI exactly as received."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION
    cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


@dataclass(slots=True)
class SipResponse:
    """A response."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION
    cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


SipMessage = SipRequest | SipResponse


def _required(msg: SipMessage, name: str) -> str:
    value = msg.headers.get(name)
    if value is None:
        raise missing_header(name)
    return value


# Accessors parse once and keep the result in `msg.cache` (no closures on the hot path).


def call_id(msg: SipMessage) -> str:
    """Call-ID (400 when missing or malformed)."""
    value = msg.cache.get("call-id")
    if value is None:
        value = msg.cache["call-id"] = parse_call_id(_required(msg, "Call-ID"))
    return cast(str, value)


def cseq(msg: SipMessage) -> CSeq:
    """CSeq number and method."""
    value = msg.cache.get("cseq")
    if value is None:
        value = msg.cache["cseq"] = parse_cseq(_required(msg, "CSeq"))
    return cast(CSeq, value)


def from_address(msg: SipMessage) -> NameAddress:
    """Parsed From header."""
    value = msg.cache.get("from")
    if value is None:
        value = msg.cache["from"] = parse_name_addr(_required(msg, "From"), "From")
    return cast(NameAddress, value)


def to_address(msg: SipMessage) -> NameAddress:
    """Parsed To header."""
    value = msg.cache.get("to")
    if value is None:
        value = msg.cache["to"] = parse_name_addr(_required(msg, "To"), "To")
    return cast(NameAddress, value)


def vias(msg: SipMessage) -> list[ViaHeader]:
    """Every Via value, topmost first."""
    value = msg.cache.get("via")
    if value is None:
        value = msg.cache["via"] = [parse_via(v) for v in msg.headers.get_all("Via")]
    return cast("list[ViaHeader]", value)


def top_via(msg: SipMessage) -> ViaHeader:
    """The topmost Via (400 when there is none)."""
    all_vias = vias(msg)
    if not all_vias:
        raise missing_header("Via")
    return all_vias[0]


def contacts(msg: SipMessage) -> list[NameAddress]:
    """Every Contact value (`*` included, see `NameAddress.is_wildcard`)."""
    value = msg.cache.get("contact")
    if value is None:
        value = msg.cache["contact"] = [
            parse_name_addr(v, "Contact", allow_wildcard=True)
            for v in msg.headers.get_all("Contact")
        ]
    return cast("list[NameAddress]", value)


def max_forwards(msg: SipMessage) -> int | None:
    """Max-Forwards, None when absent (RFC 2543 peers omit it, RFC 4475 inv2543)."""
    value = msg.headers.get("Max-Forwards")
    return None if value is None else parse_max_forwards(value)


def content_length(msg: SipMessage) -> int | None:
    """Content-Length as received, None when absent."""
    value = msg.headers.get("Content-Length")
    return None if value is None else parse_content_length(value)


def expires(msg: SipMessage) -> int | None:
    """Expires header in seconds (clamped to 2**32-1), None when absent."""
    cache = msg.cache
    if "expires" not in cache:
        value = msg.headers.get("Expires")
        cache["expires"] = None if value is None else parse_delta_seconds(value)
    return cast("int | None", cache["expires"])


def request_uri(msg: SipRequest) -> SipUri:
    """The Request-URI parsed (sip/sips/tel; 400 "Bad URI" otherwise)."""
    value = msg.cache.get("request-uri")
    if value is None:
        value = msg.cache["request-uri"] = parse_uri(msg.uri)
    return cast(SipUri, value)


def _validate(msg: SipMessage) -> None:
    """Header checks every element needs before transaction matching.

    Every header an accessor above can read is parsed here, once, and the
    result cached: an accepted message never raises later from an accessor.
    Other headers were checked for basic syntax (name a token, no bare CR or
    LF) by the parser and are parsed only by whoever reads them.
    """
    headers = msg.headers
    index = headers._lookup()
    fields = headers._fields
    for key, name in _SINGLE:
        positions = index.get(key)
        if positions is not None and len(positions) > 1:
            raise bad_header(name, "appears more than once")
    for key, name in _MANDATORY:
        if key not in index:
            raise missing_header(name)
    # The accessors' work inlined (one value each: duplicates were refused above).
    cache = msg.cache
    number_method = cache["cseq"] = parse_cseq(fields[index["cseq"][0]][2])
    if isinstance(msg, SipRequest) and number_method.method != msg.method:
        raise bad_header("CSeq", "method does not match the Request-Line")  # mismatch01/02
    cache["call-id"] = parse_call_id(fields[index["call-id"][0]][2])
    cache["from"] = parse_name_addr(fields[index["from"][0]][2], "From")
    cache["to"] = parse_name_addr(fields[index["to"][0]][2], "To")
    if not vias(msg):
        raise missing_header("Via")
    if "max-forwards" in index:
        parse_max_forwards(fields[index["max-forwards"][0]][2])
    if "contact" in index:
        contacts(msg)
    if "expires" in index:
        expires(msg)


def _build(head: Head, body: bytes, validate: bool = True) -> SipMessage:
    msg: SipMessage
    if head.is_request:
        msg = SipRequest(head.method, head.uri, head.headers, body)
    else:
        msg = SipResponse(head.status, head.reason, head.headers, body)
    if validate:
        _validate(msg)
    return msg


def too_large(detail: str, *, stream: bool) -> SipParseError:
    """413 for an oversized message; on a stream the framing is lost too."""
    return SipParseError(
        REQUEST_ENTITY_TOO_LARGE, "Request Entity Too Large", detail=detail, close_connection=stream
    )


def parse_message(
    data: bytes,
    limits: ParseLimits = DEFAULT_LIMITS,
    *,
    stream: bool = False,
    validate: bool = True,
) -> SipMessage:
    """Parse one whole message.

    `validate=False` is for a sender the caller trusts (the engine): the start line
    and header fields are checked as always, but header values are parsed only when
    an accessor reads them, so an accessor may raise `SipParseError` later.

    Datagram rules (RFC 3261 §18.3): without Content-Length the body is the
    rest of the datagram; a Content-Length beyond the data is 400; octets
    after the declared body are discarded (RFC 4475 dblreq). With
    `stream=True` Content-Length is mandatory and `data` must end with the body.
    """
    if len(data) > limits.max_message_bytes:
        raise too_large(f"{len(data)} bytes", stream=stream)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # keep-alive CRLFs before the start line (§7.5)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise bad_request("Incomplete Message", "no blank line after the headers")
    head = parse_head(data[:end], limits)
    body_start = end + 4
    available = len(data) - body_start
    length_text = head.headers.get("Content-Length")
    if length_text is None:
        if stream:
            raise missing_header("Content-Length")
        return _build(head, data[body_start:], validate)
    length = parse_content_length(length_text)
    if length > available:
        raise bad_header("Content-Length", f"{length} exceeds the {available} body bytes")
    if stream and length < available:
        raise bad_request("Trailing Data", f"{available - length} bytes after the body")
    return _build(head, data[body_start : body_start + length], validate)


def start_line(msg: SipMessage) -> str:
    """Request-Line or Status-Line without CRLF."""
    if isinstance(msg, SipRequest):
        return f"{msg.method} {msg.uri} {msg.version}"
    return f"{msg.version} {msg.status} {msg.reason}"


def serialize(msg: SipMessage) -> bytes:
    """Wire form; Content-Length always written and always equal to the body."""
    lines = [start_line(msg)]
    append = lines.append
    length = f"Content-Length: {len(msg.body)}"
    wrote_length = False
    for key, name, value in msg.headers._fields:
        if key == "content-length":
            if not wrote_length:
                append(length)
                wrote_length = True
            continue
        append(f"{name}: {value}")
    if not wrote_length:
        append(length)
    append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + msg.body


# Copied into every response after the Vias, in this order (RFC 3261 §8.2.6.2).
_COPIED = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))


def make_response(
    request: SipRequest,
    status: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """Response per RFC 3261 §8.2.6: Via, From, To, Call-ID, CSeq copied.

    `to_tag` is added to To only when the request's To has no tag (an
    in-dialog request keeps the dialog's tag); 100 Trying gets the request's
    Timestamp echoed (§8.2.6.1). Copied fields are taken as the request holds
    them (already validated); only `headers` are checked.
    """
    source = request.headers
    fields = source._fields
    index = source._lookup()
    out = [fields[i] for i in index.get("via", ())]
    for key, name in _COPIED:
        positions = index.get(key)
        if not positions:
            raise missing_header(name)
        field = fields[positions[0]]
        if key == "to" and to_tag is not None and to_address(request).tag is None:
            field = (field[0], field[1], f"{field[2]};tag={to_tag}")
        out.append(field)
    if status == 100 and "timestamp" in index:
        out.append(fields[index["timestamp"][0]])
    checked = Headers._checked
    for name, value in headers:
        out.append(checked(name, value))
    return SipResponse(status, reason, Headers._trusted(out), body)
