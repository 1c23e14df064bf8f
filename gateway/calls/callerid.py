"""Caller ID on the callee leg: From, P-Asserted-Identity and Privacy (RFC 3323/3325).

The B2BUA writes a new From for each callee leg, so it decides what the
callee sees. Who the caller is comes from what we authenticated: the
account (its configured name and number) or, for a trunk in our trust
domain, the P-Asserted-Identity it sent. A P-Asserted-Identity from anyone
else is ignored (RFC 3325 §5: only a trusted peer may assert an identity).

Privacy (the caller's `Privacy: id`, `user` or `header`, or the account's
`private` setting) gives the anonymous From of RFC 3323 §4.1.1.3. The real
identity still goes to trusted trunks in P-Asserted-Identity with
`Privacy: id` (they need it for emergency services and lawful purposes)
and to nobody else.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sip.address import parse_name_addr
from gateway.sip.errors import SipParseError
from gateway.sip.uri import SipUri

ANONYMOUS_FROM = '"Anonymous" <sip:anonymous@anonymous.invalid>'
_PRIVATE_VALUES = frozenset({"id", "user", "header"})

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class CallerId:
    """The caller's identity as presented on callee legs."""

    uri: str
    """The identity's SIP URI (number as user part)."""
    display: str = ""
    private: bool = False
    """Hide the identity from the callee (RFC 3323)."""

    def towards(self, trusted: bool) -> tuple[str, Headers]:
        """From value and extra headers for a callee leg; `trusted`: inside the trust domain."""
        asserted = _name_addr(self.display, self.uri)
        if self.private:
            headers: Headers = (
                (("P-Asserted-Identity", asserted), ("Privacy", "id")) if trusted else ()
            )
            return ANONYMOUS_FROM, headers
        shown = asserted if self.display else self.uri
        return shown, ((("P-Asserted-Identity", asserted),) if trusted else ())


def requests_privacy(privacy: str) -> bool:
    """The caller's Privacy header asks to hide its identity (`none` or absent: no)."""
    values = {v.strip().lower() for v in privacy.replace(",", ";").split(";")}
    return bool(values & _PRIVATE_VALUES)


def asserted_uri(value: str) -> str:
    """The URI of a P-Asserted-Identity value ("" when absent or unusable)."""
    if not value:
        return ""
    first = value.split(",", 1)[0]  # a sip URI first; a tel URI may follow (RFC 3325 §9.1)
    try:
        return parse_name_addr(first, "P-Asserted-Identity").uri
    except SipParseError:
        return ""


def identity_uri(caller_uri: str, number: str) -> str:
    """`caller_uri` with `number` as its user part (the host stays the caller's)."""
    if not number:
        return caller_uri
    try:
        host = SipUri.parse(caller_uri).host
    except SipParseError:
        return caller_uri
    return f"sip:{number}@{host}" if host else f"tel:{number}"


def _name_addr(display: str, uri: str) -> str:
    if not display:
        return f"<{uri}>"
    escaped = display.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{uri}>'
