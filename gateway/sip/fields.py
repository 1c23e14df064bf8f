"""Parsers for the scalar header values the transaction layer relies on.

Each raises SipParseError 400 naming its header, so a bad CSeq answers
"Bad Header: CSeq" instead of surfacing as a ValueError somewhere else.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.sip.errors import bad_header
from gateway.sip.grammar import LWS, is_method

MAX_DELTA_SECONDS = 2**32 - 1
MAX_FORWARDS_LIMIT = 255
_MAX_DIGITS = 20  # far above any legal value, far below int()'s digit limit


class CSeq(NamedTuple):
    """Command sequence: number and method (RFC 3261 §20.16); unpacks as a pair."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def _digits(value: str, header: str) -> int:
    if value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS:
        return int(value)  # the usual value: bare digits, nothing to strip or word
    text = value.strip(LWS)
    if not text or not (text.isascii() and text.isdigit()):
        raise bad_header(header, f"not a number: {value[:40]!r}")
    if len(text) > _MAX_DIGITS:
        raise bad_header(header, "number out of range")
    return int(text)


def parse_cseq(value: str) -> CSeq:
    """`1*DIGIT LWS Method`; the number must fit 32 bits (RFC 4475 scalar02)."""
    parts = value.split()
    if len(parts) != 2:
        raise bad_header("CSeq", f"expected 'number method': {value[:40]!r}")
    digits, method = parts
    if not is_method(method):
        raise bad_header("CSeq", f"expected 'number method': {value[:40]!r}")
    number = _digits(digits, "CSeq")
    if number > MAX_DELTA_SECONDS:
        raise bad_header("CSeq", "sequence number out of range")
    return CSeq(number, method)


def parse_content_length(value: str) -> int:
    """Non-negative decimal (RFC 4475 ncl: negative or words are errors)."""
    return _digits(value, "Content-Length")


def parse_max_forwards(value: str) -> int:
    """0..255 (RFC 3261 §20.22)."""
    hops = _digits(value, "Max-Forwards")
    if hops > MAX_FORWARDS_LIMIT:
        raise bad_header("Max-Forwards", "above 255")
    return hops


def parse_delta_seconds(value: str, header: str = "Expires") -> int:
    """Delta-seconds; oversized values clamp to 2**32-1 as RFC 4475 scalar02 permits."""
    return min(_digits(value, header), MAX_DELTA_SECONDS)


def parse_call_id(value: str) -> str:
    """`word ["@" word]`: non-empty and free of whitespace."""
    text = value.strip(LWS)
    if not text or any(c in text for c in " \t"):
        raise bad_header("Call-ID", "empty or contains whitespace")
    return text
