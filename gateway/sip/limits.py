"""`ParseLimits`: the bounds that keep one peer from exhausting the parser.

Defaults are safe for a public edge; the edge builds its own from
`SipConfig` so the numbers live in configuration, not in code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Size and count limits plus the Request-URI schemes this element serves."""

    max_message_bytes: int = 65535
    """Whole message (start line, headers, body); larger gets 413."""
    max_headers: int = 128
    """Header fields per message; more gets 513."""
    max_header_line_bytes: int = 8192
    """One physical header line; longer gets 513."""
    uri_schemes: frozenset[str] = frozenset({"sip", "sips", "tel"})
    """Request-URI schemes served; other well-formed schemes get 416."""
