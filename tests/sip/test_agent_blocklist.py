"""The User-Agent blocklist matcher: case-insensitive substrings, taken literally."""

from __future__ import annotations

from gateway.sip.edge import _agent_matcher


def test_blocklist_matches_substrings_in_any_case() -> None:
    matcher = _agent_matcher(("friendly-scanner", "VaxSIPUserAgent"))
    assert matcher is not None
    assert matcher.search("Friendly-Scanner 1.0")
    assert matcher.search("x vaxsipuseragent/3.1")
    assert not matcher.search("Linphone/5.2")


def test_blocklist_entries_are_literal_text() -> None:
    matcher = _agent_matcher(("a.b(",))
    assert matcher is not None
    assert matcher.search("ua a.b( 1")
    assert not matcher.search("ua axb( 1")


def test_empty_blocklist_matches_nothing() -> None:
    assert _agent_matcher(()) is None
