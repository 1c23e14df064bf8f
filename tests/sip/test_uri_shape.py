"""The unrolled URI regexes accept exactly what the per-character grammar accepts."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.uri import _HEADER_RE, _PARAM_RE, _PASSWORD_RE, _USER_RE, looks_like_sip_uri

# RFC 3261 §25.1 as written: one escaped or plain character at a time.
_ESCAPED = "%[0-9A-Fa-f]{2}"
_USER = rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|{_ESCAPED})"
_PASSWORD = rf"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|{_ESCAPED})"
_PARAM = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|{_ESCAPED})"
_HEADER = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$]|{_ESCAPED})"
_HEADERS = rf"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$=&]|{_ESCAPED})"  # name=value&...
REFERENCE = re.compile(
    rf"[sS][iI][pP][sS]?:(?:{_USER}+(?::{_PASSWORD}*)?@)?"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-.]*[A-Za-z0-9.])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
    rf"(?:;{_PARAM}+(?:={_PARAM}+)?)*"
    rf"(?:\?{_HEADERS}*)?"
)
PARTS = {
    _USER_RE: re.compile(f"{_USER}+"),
    _PASSWORD_RE: re.compile(f"{_PASSWORD}*"),
    _PARAM_RE: re.compile(f"{_PARAM}+"),
    _HEADER_RE: re.compile(f"{_HEADER}*"),
}
# The characters that decide: delimiters, escapes (good and bad) and a few plain ones.
TEXT = st.text(alphabet='sSiIpP:@;=?&%aF09.-[]/,~ <>"', max_size=24)


@settings(max_examples=3000, deadline=None)
@given(TEXT)
def test_uri_shape_matches_the_grammar(tail: str) -> None:
    for text in (tail, "sip:" + tail):
        assert looks_like_sip_uri(text) == (REFERENCE.fullmatch(text) is not None), text


@settings(max_examples=2000, deadline=None)
@given(TEXT)
def test_uri_parts_match_the_grammar(text: str) -> None:
    for fast, reference in PARTS.items():
        assert (fast.fullmatch(text) is None) == (reference.fullmatch(text) is None), text


def test_escapes_count_and_bad_escapes_do_not() -> None:
    assert looks_like_sip_uri("sip:%61lice@example.com;x=%2F?h=%41")
    assert not looks_like_sip_uri("sip:%6zlice@example.com")
    assert not looks_like_sip_uri("sip:alice@example.com;x=%")
