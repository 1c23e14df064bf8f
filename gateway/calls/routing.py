"""Where a call goes: the Router interface and what it answers.

A router answers with `Routed` (callee targets to try in order) or a
`Refusal` (the status the caller gets), both with the call's numbers in
E.164. It is policy, called by the call registry; it never talks to the
engine. The dial plan that implements it lives in `dialplan.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.calls.callerid import CallerId
from gateway.sip.errors import SipParseError
from gateway.sip.uri import parse_uri


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What a router may look at."""

    dialed: str
    """The user part of the Request-URI (the number the caller dialled)."""
    caller: str
    """The caller's From URI."""
    account: str = ""
    """The account the caller authenticated as (empty when it came from a trunk)."""
    inbound_trunk: str = ""
    """The trunk the call came in from (empty when an account placed it)."""
    hops: int = 0
    """Forwards this call went through already (loop protection)."""
    display: str = ""
    """The caller's From display name."""
    asserted: str = ""
    """The caller's P-Asserted-Identity (believed only from a trusted trunk)."""
    privacy: str = ""
    """The caller's Privacy header (RFC 3323)."""


@dataclass(frozen=True, slots=True)
class Numbers:
    """The call's numbers in E.164 (empty: not a number)."""

    caller_e164: str = ""
    callee_e164: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    """One callee leg to try."""

    uri: str
    trunk: str = ""
    """The outbound trunk it goes to (empty: not a trunk)."""
    channels: int | None = None
    """Calls the trunk takes at once; None: no limit (or an emergency call, which ignores it)."""
    trusted: bool = False
    """Inside our trust domain (RFC 3325): it gets P-Asserted-Identity."""
    destination: str = ""
    """Where the edge sends the leg instead of the URI's host (a registered phone behind
    NAT: `transport:ip:port`); empty: the URI as it is."""


@dataclass(frozen=True, slots=True)
class Forwarding:
    """Where a call to an account goes when its contacts do not take it (dial strings,
    routed again as if the account dialled them; empty: no forward)."""

    account: str
    busy: str = ""
    no_answer: str = ""
    no_answer_after: float = 20.0
    unreachable: str = ""
    """Used when every contact failed without answering busy (408, 480, 5xx, ...)."""


@dataclass(frozen=True, slots=True)
class Routed:
    targets: tuple[Target, ...]
    """In the order to try them: the next one after a 5xx, 408 or attempt timeout;
    all at once when `fork`."""
    numbers: Numbers = Numbers()
    emergency: bool = False
    fork: bool = False
    """Ring every target in parallel (an account's registered contacts)."""
    forwarding: Forwarding | None = None
    hops: int = 0
    """Forwards taken to get here."""
    caller_id: CallerId | None = None
    """What callee legs present as the caller (None: the caller's From as it came)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    numbers: Numbers = Numbers()


RouteDecision = Routed | Refusal


class Router(Protocol):
    def route(self, request: CallRequest) -> RouteDecision: ...


def dialed_number(request_uri: str) -> str:
    """The user part of a sip:/sips:/tel: Request-URI; empty when there is none."""
    try:
        return parse_uri(request_uri).user or ""
    except SipParseError:
        return ""
