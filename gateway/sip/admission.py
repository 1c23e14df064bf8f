"""The admission interface: the edge asks policy about each new INVITE/MESSAGE/SUBSCRIBE.

Protocol code never decides on accounts or limits itself; later work (rate
limits, caller-ID checks) plugs in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class AdmissionRequest:
    """What policy gets to see about a new request."""

    method: str
    account: str | None
    """Authenticated account, or None for trunk traffic."""
    trunk: str | None
    """Trunk matched by source address, or None for account traffic."""
    source: tuple[str, int]
    request_uri: str
    from_uri: str
    to_uri: str
    identity: dict[str, str] = field(default_factory=dict)
    """Identity-related headers as received: P-Asserted-Identity, Identity, Privacy."""
    transaction: str = ""
    """Call-ID and top Via branch: the same for retransmissions of this request."""
    call_id: str = ""
    waited: float = 0.0
    """Seconds the request waited in the edge's receive queue before it was read: how
    far behind the edge is (UDP only; 0.0 over TCP/TLS)."""


@dataclass(frozen=True)
class Admit:
    """Go ahead."""


@dataclass(frozen=True)
class Reject:
    """Refuse with this SIP answer."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


Decision = Admit | Reject


class AdmissionPolicy(Protocol):
    def admit(self, request: AdmissionRequest, now: float) -> Decision: ...


class AuthenticatedOnly:
    """The shipped policy: admit what is authenticated (an account or a trunk)."""

    def admit(self, request: AdmissionRequest, now: float) -> Decision:
        if request.account is None and request.trunk is None:
            return Reject(403, "Forbidden")
        return Admit()
