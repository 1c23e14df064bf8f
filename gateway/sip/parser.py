"""Start line and header section parsing (RFC 3261 §7), shared by the
datagram entry point (`message.parse_message`) and the stream framer.

The hot path works on whole lines with C-level string methods; nothing here
loops per byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.sip.errors import (
    MESSAGE_TOO_LARGE,
    UNSUPPORTED_URI_SCHEME,
    VERSION_NOT_SUPPORTED,
    SipParseError,
    bad_request,
)
from gateway.sip.grammar import LWS, is_method, is_token
from gateway.sip.headers import SPELLINGS, Headers
from gateway.sip.limits import ParseLimits
from gateway.sip.uri import (
    PARSED_VALUE_CACHE,
    SCHEME_RE,
    SIP_SCHEMES,
    SipUri,
    looks_like_sip_uri,
)

SIP_VERSION = "SIP/2.0"
_VERSION_RE = re.compile(r"SIP/([0-9]{1,4})\.([0-9]{1,4})", re.IGNORECASE)
_URI_CHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%;/?:@&=+$,\[\]#]+")


@dataclass(slots=True)
class Head:
    """A parsed start line and header section, before body framing."""

    is_request: bool
    method: str  # request method, "" for responses
    uri: str  # Request-URI, "" for responses
    status: int  # response status, 0 for requests
    reason: str
    headers: Headers


def _check_version(version: str) -> None:
    if version == SIP_VERSION:
        return
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        raise bad_request("Bad SIP-Version", repr(version[:20]))
    if (int(match.group(1)), int(match.group(2))) != (2, 0):
        raise SipParseError(VERSION_NOT_SUPPORTED, "Version Not Supported", detail=version)


@lru_cache(maxsize=PARSED_VALUE_CACHE)  # most requests repeat a few (a domain, trunk numbers)
def _check_request_uri(uri: str, schemes: frozenset[str]) -> None:
    """Raise unless `uri` is a usable Request-URI with one of `schemes`; only the URIs
    that pass are remembered (a raised error is not cached)."""
    if looks_like_sip_uri(uri):  # the usual case; its alphabet is within _URI_CHARS_RE
        scheme = uri[: uri.index(":")].lower()
        if "?" in uri[uri.rfind("@") + 1 :]:  # §19.1.1: no headers here (RFC 4475 escruri)
            raise bad_request("Bad Request-URI", "URI headers are not allowed")
        if scheme not in schemes:
            raise SipParseError(UNSUPPORTED_URI_SCHEME, "Unsupported URI Scheme", detail=scheme)
        return
    scheme, colon, _rest = uri.partition(":")
    if not colon or SCHEME_RE.fullmatch(scheme) is None or _URI_CHARS_RE.fullmatch(uri) is None:
        raise bad_request("Bad Request-URI", repr(uri[:60]))
    scheme = scheme.lower()
    if scheme in SIP_SCHEMES:
        if not looks_like_sip_uri(uri):
            raise bad_request("Bad Request-URI", repr(uri[:60]))
        if "?" in uri[uri.rfind("@") + 1 :]:  # §19.1.1: no headers here (RFC 4475 escruri)
            raise bad_request("Bad Request-URI", "URI headers are not allowed")
    elif scheme == "tel":
        try:
            SipUri.parse(uri)
        except SipParseError as exc:
            raise bad_request("Bad Request-URI", exc.detail) from exc
    if scheme not in schemes:
        raise SipParseError(UNSUPPORTED_URI_SCHEME, "Unsupported URI Scheme", detail=scheme)


def _parse_start_line(line: str, limits: ParseLimits) -> Head:
    if line[:4].upper() == "SIP/":
        version, _sp, rest = line.partition(" ")
        _check_version(version)
        code, _sp, reason = rest.partition(" ")
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            raise bad_request("Bad Status-Line", repr(line[:40]))
        return Head(False, "", "", int(code), reason, Headers._trusted([]))
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):  # RFC 4475 lwsstart, trws, lwsruri
        raise bad_request("Bad Request-Line", repr(line[:80]))
    method, uri, version = parts
    if not is_method(method):
        raise bad_request("Bad Request-Line", f"method {method[:20]!r} is not a token")
    _check_version(version)
    _check_request_uri(uri, limits.uri_schemes)
    return Head(True, method, uri, 0, "", Headers._trusted([]))


def _field_name(name: str) -> tuple[str, str]:
    """(key, name) for a spelling not in SPELLINGS: trailing LWS, odd case, or unknown."""
    name = name.rstrip(LWS)
    known = SPELLINGS.get(name) or SPELLINGS.get(name.lower())
    if known is not None:
        return known
    if not is_token(name):
        raise bad_request("Bad Header Name", repr(name[:40]))
    return (name.lower(), name)


def parse_head(data: bytes, limits: ParseLimits) -> Head:
    """Parse the bytes before the blank line: start line plus header fields.

    Folded lines are joined with one SP (RFC 3261 §7.3.1). Lines must end in
    CRLF; a bare CR or LF is rejected rather than guessed at, so this parser
    and any other on the path agree on where each header ends.
    """
    text = data.decode("utf-8", "surrogateescape")
    crlf = text.count("\r\n")
    if text.count("\r") != crlf or text.count("\n") != crlf:
        raise bad_request("Bad Line Ending", "bare CR or LF in header section")
    lines = text.split("\r\n")
    if len(text) > limits.max_header_line_bytes and (
        max(map(len, lines)) > limits.max_header_line_bytes
    ):
        raise SipParseError(MESSAGE_TOO_LARGE, "Message Too Large", detail="header line too long")
    if len(lines) > limits.max_headers * 4 + 1:  # cheap early bound; exact count below
        raise SipParseError(MESSAGE_TOO_LARGE, "Message Too Large", detail="too many headers")
    head = _parse_start_line(lines[0], limits)
    folded = "\r\n " in text or "\r\n\t" in text  # rare: only then look for continuations
    # One pass: name lookup, value trim and the key -> positions index together,
    # so no later lookup re-scans the fields.
    fields: list[tuple[str, str, str]] = []
    index: dict[str, list[int]] = {}
    append = fields.append
    names = SPELLINGS
    for line in lines[1:]:
        if folded and line[:1] in (" ", "\t"):  # folded continuation (RFC 3261 §7.3.1)
            if not fields:
                raise bad_request("Bad Header Folding", "continuation before any header")
            key, name, value = fields[-1]
            fields[-1] = (key, name, f"{value} {line.strip(LWS)}" if value else line.strip(LWS))
            continue
        name, colon, value = line.partition(":")
        known = names.get(name) if colon else None
        if known is None:
            if not colon:
                raise bad_request("Bad Header Line", repr(line[:40]))
            known = _field_name(name)
        key = known[0]
        positions = index.get(key)
        if positions is None:
            index[key] = [len(fields)]
        else:
            positions.append(len(fields))
        append((key, known[1], value.strip(LWS)))
    if len(fields) > limits.max_headers:
        raise SipParseError(MESSAGE_TOO_LARGE, "Message Too Large", detail="too many headers")
    head.headers = Headers._trusted(fields, index)
    return head
