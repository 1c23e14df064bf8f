"""`SipUri`: sip:, sips: and tel: URIs (RFC 3261 §19.1, RFC 3966).

Components are kept in their escaped wire form so a URI written back is the
URI received; `unescape` and `SipUri.aor` give the decoded, comparable forms.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote as _pct_quote

from gateway.sip.errors import SipParseError, bad_request
from gateway.sip.grammar import format_params

SIP_SCHEMES = frozenset({"sip", "sips"})
SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = "-_.!~*'()"
_AOR_USER_SAFE = _UNRESERVED + "&=+$,;?/"
# A user part made only of characters `aor` leaves as they are: the usual case.
_PLAIN_USER_RE = re.compile(f"[A-Za-z0-9{re.escape(_AOR_USER_SAFE)}]*")
_HEX_ESCAPE = "%[0-9A-Fa-f]{2}"


def _escaped_run(chars: str, *, empty: bool = False) -> str:
    """A regex for `(?:[chars]|%HH)+` (`*` with `empty`), unrolled: runs of `chars` and
    escapes alternate, so the engine tests one class per character instead of an
    alternation (~300 vs ~50 instructions a character in CPython's re). The runs are
    atomic: `chars` never holds `%`, so giving a character back cannot help a match.
    Atomic groups, not possessive quantifiers: before CPython 3.11.5 (gh-106052) those
    matched wrongly inside an optional group, and Debian 12's python3 is 3.11.2."""
    run, escape = f"[{chars}]", _HEX_ESCAPE
    rest = f"(?>(?:{escape}(?>{run}*))*)"
    if empty:
        return f"(?>{run}*){rest}"
    return f"(?:(?>{run}+){rest}|(?>(?:{escape}(?>{run}*))+))"


_USER_CHARS = r"A-Za-z0-9\-_.!~*'()&=+$,;?/"
_PASSWORD_CHARS = r"A-Za-z0-9\-_.!~*'()&=+$,"  # noqa: S105 - a character class, not a secret
_PARAM_CHARS = r"A-Za-z0-9\-_.!~*'()\[\]/:&+$"
_HEADER_CHARS = r"A-Za-z0-9\-_.!~*'()\[\]/?:+$"
_USER_RE = re.compile(_escaped_run(_USER_CHARS))
_PASSWORD_RE = re.compile(_escaped_run(_PASSWORD_CHARS, empty=True))
_PARAM_RE = re.compile(_escaped_run(_PARAM_CHARS))
_HEADER_RE = re.compile(_escaped_run(_HEADER_CHARS, empty=True))
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?")
_IPV4_RE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_TEL_RE = re.compile(r"[0-9A-Fa-f*#+\-.()pPwW]+")
_MAX_PORT = 65535
PARSED_VALUE_CACHE = 4096
"""Entries per memo of parsed header values: enough for the active UAs of a busy
edge; beyond it the least recently used are parsed again, never wrong."""
MEMO_MAX_CHARS = 256
"""Longer values are parsed every time, so the memos stay a few MB whatever peers send."""
# Structural shape of a sip/sips URI in one linear regex; `looks_like_sip_uri`
# uses it so header validation need not build a SipUri per address.
SIP_URI_SHAPE = (
    r"[sS][iI][pP][sS]?:"
    f"(?:{_escaped_run(_USER_CHARS)}(?::{_escaped_run(_PASSWORD_CHARS, empty=True)})?@)?"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?"
    f"(?:;{_escaped_run(_PARAM_CHARS)}(?:={_escaped_run(_PARAM_CHARS)})?)*"
    f"(?:\\?{_escaped_run(_HEADER_CHARS + '=&', empty=True)})?"
)
_SIP_URI_SHAPE_RE = re.compile(SIP_URI_SHAPE)


def looks_like_sip_uri(text: str) -> bool:
    """Cheap syntax check; `SipUri.parse` adds range checks (port, IPv4, IPv6)."""
    return _SIP_URI_SHAPE_RE.fullmatch(text) is not None


def unescape(text: str) -> str:
    """Decode %HH escapes (RFC 3261 §19.1.4: escaped and plain chars are equal)."""
    if "%" not in text:
        return text
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return raw.encode("latin-1", "surrogateescape").decode("utf-8", "surrogateescape")


def _bad(detail: str) -> SipParseError:
    return bad_request("Bad URI", detail)


def valid_host(host: str) -> bool:
    """hostname / IPv4address / IPv6reference per RFC 3261 §25.1."""
    if host.startswith("["):
        if not host.endswith("]"):
            return False
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if _IPV4_RE.fullmatch(host):
        return all(int(octet) <= 255 for octet in host.split("."))
    return _HOSTNAME_RE.fullmatch(host) is not None and ".." not in host


@dataclass(slots=True)
class SipUri:
    """A parsed sip/sips/tel URI; `params` keys are lower-case."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI, raising SipParseError (400 "Bad URI") when malformed."""
        scheme, colon, rest = text.partition(":")
        if not colon or SCHEME_RE.fullmatch(scheme) is None:
            raise _bad(f"no scheme in {text!r}")
        scheme = scheme.lower()
        if scheme == "tel":
            return cls._parse_tel(rest)
        if scheme not in SIP_SCHEMES:
            raise _bad(f"not a SIP URI: {text!r}")
        user: str | None = None
        password: str | None = None
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, has_password, pw = userinfo.partition(":")
            if _USER_RE.fullmatch(user) is None:
                raise _bad(f"bad user part in {text!r}")
            if has_password:
                if _PASSWORD_RE.fullmatch(pw) is None:
                    raise _bad(f"bad password in {text!r}")
                password = pw
        rest, question, header_text = rest.partition("?")
        hostport, *param_items = rest.split(";")
        host, port = _split_hostport(hostport, text)
        params = _parse_uri_params(param_items, text)
        headers: dict[str, str] = {}
        if question:
            for item in header_text.split("&"):
                name, _eq, value = item.partition("=")
                if not name or _HEADER_RE.fullmatch(name) is None:
                    raise _bad(f"bad header in {text!r}")
                if _HEADER_RE.fullmatch(value) is None:
                    raise _bad(f"bad header value in {text!r}")
                headers[name] = value
        return cls(scheme, host, user, password, port, params, headers)

    @classmethod
    def _parse_tel(cls, rest: str) -> SipUri:
        number, *param_items = rest.split(";")
        if _TEL_RE.fullmatch(number) is None:
            raise _bad(f"bad telephone number {number!r}")
        return cls("tel", "", number, None, None, _parse_uri_params(param_items, rest))

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += ":" + self.password
            userinfo += "@"
        port = "" if self.port is None else f":{self.port}"
        headers = "&".join(f"{k}={v}" for k, v in self.headers.items())
        tail = f"?{headers}" if headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{tail}"

    def aor(self) -> str:
        """Canonical address-of-record: scheme, unescaped user, lower-case host.

        The user is re-escaped minimally so `%75ser` and `user` give the same
        key while `%00` stays distinct from the empty user (RFC 4475 escnull).
        """
        if self.scheme == "tel":
            return f"tel:{self.user}"
        scheme = "sip" if self.scheme == "sips" else self.scheme
        user = ""
        if self.user is not None:
            if _PLAIN_USER_RE.fullmatch(self.user) is not None:
                user = self.user + "@"
            else:
                user = (
                    _pct_quote(unescape(self.user), safe=_AOR_USER_SAFE, errors="surrogateescape")
                    + "@"
                )
        return f"{scheme}:{user}{self.host.lower()}"


def _split_hostport(hostport: str, text: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        host, port_text = hostport[: end + 1], hostport[end + 1 :]
        if end < 0 or (port_text and not port_text.startswith(":")):
            raise _bad(f"bad IPv6 reference in {text!r}")
        port_text = port_text[1:] if port_text else ""
        has_port = bool(hostport[end + 1 :])
    else:
        host, colon, port_text = hostport.partition(":")
        has_port = bool(colon)
    if not valid_host(host):
        raise _bad(f"bad host in {text!r}")
    if not has_port:
        return host, None
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
        raise _bad(f"bad port in {text!r}")
    port = int(port_text)
    if port > _MAX_PORT:
        raise _bad(f"port out of range in {text!r}")
    return host, port


def _parse_uri_params(items: list[str], text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if _PARAM_RE.fullmatch(name) is None:
            raise _bad(f"bad parameter {item!r} in {text!r}")
        if equals and _PARAM_RE.fullmatch(value) is None:
            raise _bad(f"bad parameter value {item!r} in {text!r}")
        params[name.lower()] = value if equals else None
    return params


def parse_uri(text: str) -> SipUri:
    """`SipUri.parse`, memoised for usual lengths: results are shared, so never mutate one."""
    if len(text) <= MEMO_MAX_CHARS:
        return _memoised_uri(text)
    return SipUri.parse(text)


_memoised_uri = lru_cache(maxsize=PARSED_VALUE_CACHE)(SipUri.parse)


def hostport(host: str, port: int | None, transport: str = "udp") -> str:
    """`host[:port][;transport=...]` for writing a URI: IPv6 in brackets, no port for None,
    no transport parameter for UDP."""
    name = f"[{host}]" if ":" in host else host
    params = "" if transport == "udp" else f";transport={transport}"
    return f"{name}{'' if port is None else f':{port}'}{params}"


@lru_cache(maxsize=PARSED_VALUE_CACHE)  # asked for every message the edge sends
def is_ip_literal(host: str) -> bool:
    """An IPv4 or IPv6 address (brackets allowed), not a DNS name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
