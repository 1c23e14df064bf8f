"""RFC 3261 §25 lexical building blocks shared by the header parsers.

Every pattern here is a single character class under one quantifier, or
alternatives of disjoint single characters, so matching is linear: no input
can make the regex engine backtrack exponentially.
"""

from __future__ import annotations

import re

from gateway.sip.errors import bad_header

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"  # noqa: S105 - a character class, not a secret
TOKEN_RE = re.compile(f"[{TOKEN_CHARS}]+")
# A quoted-string body: qdtext or quoted-pair (RFC 3261 §25.1); CR/LF excluded.
QUOTED_RE = re.compile(r'"((?:[^"\\\r\n]|\\[^\r\n])*)"')
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)
# Parameter values: token, or host forms (IPv6 references, bare IPv6 in received=).
_PARAM_VALUE_RE = re.compile(f"[{TOKEN_CHARS}:\\[\\]]+")
# The common case in one linear regex: `name[=value]` items with token names,
# unquoted values and no whitespace. Every text it matches is one that
# `parse_params` accepts item by item, so a match lets it skip the per-item checks.
_SIMPLE_PARAM = f"[{TOKEN_CHARS}]+(?:=[{TOKEN_CHARS}:\\[\\]]+)?"
SIMPLE_PARAMS = f"{_SIMPLE_PARAM}(?:;{_SIMPLE_PARAM})*"
_SIMPLE_PARAMS_RE = re.compile(SIMPLE_PARAMS)
LWS = " \t"
_KNOWN_METHODS = frozenset(
    {
        *("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK"),
        *("SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"),
    }
)
"""Methods that are tokens for sure: a set lookup spares them the token regex."""


def is_token(text: str) -> bool:
    """True when `text` is a non-empty RFC 3261 token."""
    return TOKEN_RE.fullmatch(text) is not None


def is_method(text: str) -> bool:
    """True when `text` can be a method (a token); the usual ones skip the regex."""
    return text in _KNOWN_METHODS or is_token(text)


def unescape_quoted(inner: str) -> str:
    """Resolve quoted-pairs inside a quoted-string body."""
    if "\\" not in inner:
        return inner
    return _QUOTED_PAIR_RE.sub(r"\1", inner)


def quote(text: str) -> str:
    """Render `text` as a quoted-string, escaping `"` and `\\`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is outside quoted strings and `<...>`.

    Values without quotes or angle brackets take the C-speed `str.split` path.
    """
    if '"' not in text and "<" not in text:
        return text.split(separator)
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    escaped = False
    for index, char in enumerate(text):
        if in_quotes:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_quotes = False
        elif in_angle:
            if char == ">":
                in_angle = False
        elif char == '"':
            in_quotes = True
        elif char == "<":
            in_angle = True
        elif char == separator:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return parts


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value into its elements (stripped).

    Empty elements are kept (as "") so validators can reject `a,,b`; an
    entirely empty value yields no elements.
    """
    if "," not in value:
        stripped = value.strip(LWS)
        return [stripped] if stripped else []
    return [part.strip(LWS) for part in split_outside_quotes(value, ",")]


def parse_params(text: str, header: str) -> dict[str, str | None]:
    """Parse `name[=value]` items separated by `;` (the leading `;` removed).

    Names are lower-cased (parameter names are case-insensitive); valueless
    parameters map to None; quoted values keep their quotes so they can be
    written back unchanged. Empty items (`;;`) are a syntax error.
    """
    params: dict[str, str | None] = {}
    if _SIMPLE_PARAMS_RE.fullmatch(text) is not None:
        for item in text.split(";"):
            name, equals, value = item.partition("=")
            params[name.lower()] = value if equals else None
        return params
    for item in split_outside_quotes(text, ";"):
        name, equals, value = item.partition("=")
        name = name.strip(LWS)
        if not is_token(name):
            raise bad_header(header, f"bad parameter {item!r}")
        if not equals:
            params[name.lower()] = None
            continue
        value = value.strip(LWS)
        if not value:
            raise bad_header(header, f"parameter {name!r} has no value")
        if value[0] == '"':
            if QUOTED_RE.fullmatch(value) is None:
                raise bad_header(header, f"bad quoted value for {name!r}")
        elif _PARAM_VALUE_RE.fullmatch(value) is None:
            raise bad_header(header, f"bad value for {name!r}")
        params[name.lower()] = value
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Render parameters as `;name=value;flag`."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
