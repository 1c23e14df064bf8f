"""Address headers (From, To, Contact, Route, ...) and Via (RFC 3261 §20, §25).

`NameAddress` keeps the URI as text: To/From may carry any absoluteURI
scheme (RFC 4475 unksm2), and only sip/sips/tel ones are parsed further, on
demand, through `NameAddress.sip_uri`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from gateway.sip.errors import SipParseError, bad_header
from gateway.sip.grammar import (
    LWS,
    QUOTED_RE,
    SIMPLE_PARAMS,
    TOKEN_CHARS,
    format_params,
    parse_params,
    quote,
    unescape_quoted,
)
from gateway.sip.uri import (
    MEMO_MAX_CHARS,
    PARSED_VALUE_CACHE,
    SCHEME_RE,
    SIP_SCHEMES,
    SIP_URI_SHAPE,
    SipUri,
    looks_like_sip_uri,
    parse_uri,
)

_DISPLAY_TOKENS_RE = re.compile(f"[{TOKEN_CHARS}]+(?:[ \\t]+[{TOKEN_CHARS}]+)*")
# absoluteURI characters (RFC 2396 uric plus the few SIP adds); no LWS, <, >, ".
_URI_CHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()%;/?:@&=+$,\[\]#]+")
_VIA_RE = re.compile(
    f"([{TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)
_MAX_PORT = 65535
# Fast paths for the usual shapes: `["display" | token display] <sip-uri>;params`
# and `SIP/2.0/UDP host:port;params`. Each matches only text the general parser
# below accepts with the same result, so a match skips it; anything else (quoted
# escapes, whitespace around `;`, addr-spec forms, ...) takes the general path.
_FAST_NAME_ADDR_RE = re.compile(
    f'(?:"([^"\\\\\r\n]*)"[ \\t]*|([{TOKEN_CHARS}]+(?:[ \\t]+[{TOKEN_CHARS}]+)*)[ \\t]*)?'
    f"<({SIP_URI_SHAPE})>(?:;({SIMPLE_PARAMS}))?"
)
_FAST_VIA_RE = re.compile(
    r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?"
    f"(?:;({SIMPLE_PARAMS}))?"
)


@dataclass(slots=True)
class NameAddress:
    """name-addr or addr-spec with header parameters (`tag`, `expires`, `q`, ...)."""

    uri: str
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The dialog tag (RFC 3261 §19.3), if any."""
        return self.params.get("tag")

    @property
    def is_wildcard(self) -> bool:
        """`Contact: *` (remove all bindings, RFC 3261 §10.2.2)."""
        return self.uri == "*"

    @property
    def sip_uri(self) -> SipUri:
        """The URI parsed as sip/sips/tel; SipParseError for other schemes."""
        return parse_uri(self.uri)

    def __str__(self) -> str:
        if self.is_wildcard:
            return "*" + format_params(self.params)
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"


def _check_uri(uri: str, header: str) -> None:
    if looks_like_sip_uri(uri):  # the common case, in one regex
        return
    scheme, colon, _rest = uri.partition(":")
    if not colon or SCHEME_RE.fullmatch(scheme) is None:
        raise bad_header(header, f"no URI scheme in {uri!r}")
    if _URI_CHARS_RE.fullmatch(uri) is None:
        raise bad_header(header, f"bad characters in URI {uri!r}")
    lowered = scheme.lower()
    if lowered in SIP_SCHEMES:
        raise bad_header(header, f"bad SIP URI {uri!r}")
    if lowered == "tel":
        try:
            SipUri.parse(uri)
        except SipParseError as exc:
            raise bad_header(header, exc.detail) from exc


def parse_name_addr(value: str, header: str, *, allow_wildcard: bool = False) -> NameAddress:
    """Parse one address value; errors are 400 naming `header`.

    Results for values of usual length are memoised (a UA repeats its
    From/To/Contact in every REGISTER and in the answer to a challenge); they
    are shared, so never mutate one. Errors are not memoised: a bad value is
    parsed again each time.
    """
    if len(value) <= MEMO_MAX_CHARS:
        return _memoised_name_addr(value, header, allow_wildcard)
    return _parse_name_addr(value, header, allow_wildcard)


def _parse_name_addr(value: str, header: str, allow_wildcard: bool) -> NameAddress:
    fast = _FAST_NAME_ADDR_RE.fullmatch(value)
    if fast is not None:
        quoted, token_display, uri, param_text = fast.groups()
        return NameAddress(
            uri,
            quoted if quoted is not None else token_display,
            _simple_params(param_text) if param_text is not None else {},
        )
    text = value.strip(LWS)
    if not text:
        raise bad_header(header, "empty value")
    display: str | None = None
    if text[0] == '"':
        match = QUOTED_RE.match(text)
        if match is None:
            raise bad_header(header, "unterminated quoted display name")
        display = unescape_quoted(match.group(1))
        rest = text[match.end() :].lstrip(LWS)
        if not rest.startswith("<"):
            raise bad_header(header, "quoted display name without <URI>")
        return _angle_part(rest, display, header)
    angle = text.find("<")
    if angle >= 0:
        name = text[:angle].rstrip(LWS)
        if name:
            if _DISPLAY_TOKENS_RE.fullmatch(name) is None:
                raise bad_header(header, f"display name {name!r} must be quoted")
            display = name
        return _angle_part(text[angle:], display, header)
    if allow_wildcard and text[0] == "*":
        rest = text[1:].lstrip(LWS)
        if rest and rest[0] != ";":
            raise bad_header(header, "junk after *")
        return NameAddress("*", None, parse_params(rest[1:], header) if rest else {})
    # addr-spec: the URI ends at the first ';' and must not carry ? or , (§20.10).
    uri, semicolon, param_text = text.partition(";")
    uri = uri.rstrip(LWS)
    if "?" in uri or "," in uri:
        raise bad_header(header, "URI with headers or commas must be in <>")
    _check_uri(uri, header)
    params = parse_params(param_text, header) if semicolon else {}
    return NameAddress(uri, None, params)


_memoised_name_addr = lru_cache(maxsize=PARSED_VALUE_CACHE)(_parse_name_addr)


def _simple_params(text: str) -> dict[str, str | None]:
    """Parameters already matched by SIMPLE_PARAMS (token names, plain values)."""
    params: dict[str, str | None] = {}
    for item in text.split(";"):
        name, equals, param_value = item.partition("=")
        params[name.lower()] = param_value if equals else None
    return params


def _angle_part(text: str, display: str | None, header: str) -> NameAddress:
    end = text.find(">")
    if end < 0:
        raise bad_header(header, "missing >")
    uri = text[1:end]
    _check_uri(uri, header)
    rest = text[end + 1 :].lstrip(LWS)
    if not rest:
        return NameAddress(uri, display, {})
    if rest[0] != ";":
        raise bad_header(header, f"junk after URI: {rest[:20]!r}")
    return NameAddress(uri, display, parse_params(rest[1:], header))


@dataclass(slots=True)
class ViaHeader:
    """One Via value: sent-protocol, sent-by and parameters (RFC 3261 §20.42)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """Transaction id; RFC 3261 ones start with the magic cookie z9hG4bK."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """Source address stamped by the server (RFC 3261 §18.2.1)."""
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        """Client asked for symmetric response routing (RFC 3581)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """Source port filled in by the server, None while still valueless."""
        value = self.params.get("rport")
        return int(value) if value is not None and value.isdigit() else None

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"


def _fast_via(value: str) -> ViaHeader | None:
    """The usual Via shape, or None to leave it (and its errors) to `parse_via`."""
    fast = _FAST_VIA_RE.fullmatch(value)
    if fast is None:
        return None
    transport, host, port_text, param_text = fast.groups()
    params = _simple_params(param_text) if param_text is not None else {}
    port = None if port_text is None else int(port_text)
    rport = params.get("rport")
    if (port is not None and port > _MAX_PORT) or (
        rport is not None and (not rport.isdigit() or int(rport) > _MAX_PORT)
    ):
        return None
    return ViaHeader(transport.upper(), host, port, params, "SIP/2.0")


def parse_via(value: str) -> ViaHeader:
    """Parse one Via value (already split from a comma list)."""
    fast = _fast_via(value)
    if fast is not None:
        return fast
    sent, semicolon, param_text = value.partition(";")
    match = _VIA_RE.fullmatch(sent.strip(LWS))
    if match is None:
        raise bad_header("Via", f"bad sent-protocol/sent-by {sent.strip(LWS)!r}")
    name, version, transport, host, port_text = match.groups()
    port: int | None = None
    if port_text is not None:
        port = int(port_text)
        if port > _MAX_PORT:
            raise bad_header("Via", "port out of range")
    params = parse_params(param_text, "Via") if semicolon else {}
    rport = params.get("rport")
    if rport is not None and (not rport.isdigit() or int(rport) > _MAX_PORT):
        raise bad_header("Via", "bad rport")
    return ViaHeader(transport.upper(), host, port, params, f"{name.upper()}/{version}")
