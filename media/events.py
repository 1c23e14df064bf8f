"""What crosses the thread boundary for calls: events out of the engine, commands into it.

Plain frozen dataclasses, no pjsua2: the engine thread builds events and
hands them to asyncio in batches; call control answers with commands that
the engine executes on its own thread. A call is named by `call`, an
integer the engine assigns when the caller's INVITE arrives (pjsua call ids
are reused, these are not).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar

_T = TypeVar("_T")


def _pickled_by_position(cls: type[_T]) -> type[_T]:
    """Pickle as (class, field values). A frozen slotted dataclass otherwise goes through
    dataclasses' __getstate__/__setstate__, which list its fields and set each one with
    object.__setattr__: twice the cost both ways, and several cross per call."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    def __reduce__(self: Any) -> tuple[type[_T], tuple[Any, ...]]:
        return cls, tuple([getattr(self, name) for name in names])

    setattr(cls, "__reduce__", __reduce__)  # noqa: B010 - a method added after @dataclass
    return cls


class Party(StrEnum):
    """Which side of a bridged call did something."""

    CALLER = "caller"
    CALLEE = "callee"
    GATEWAY = "gateway"
    TARGET = "target"
    """The transfer target (C): the callee talks to it after a blind transfer."""


# --- events: engine thread -> asyncio ------------------------------------------


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class CallOffered:
    """A caller's INVITE reached the engine; it waits for a routing decision."""

    call: int
    at: float
    request_uri: str
    from_uri: str
    sip_call_id: str
    account: str = ""
    """The account the edge authenticated the caller as (empty for a trunk or unknown)."""
    trunk: str = ""
    """The trunk the edge admitted the call from by source address (empty otherwise)."""
    max_forwards: int = 70
    """The INVITE's Max-Forwards (after the edge's hop): forwarding stops before 0."""
    display_name: str = ""
    """The From header's display name."""
    asserted_identity: str = ""
    """The INVITE's P-Asserted-Identity value (call control decides whether to believe it)."""
    privacy: str = ""
    """The INVITE's Privacy value (RFC 3323)."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class CalleeRinging:
    """The callee answered 180 (or 183); relayed to the caller already."""

    call: int
    at: float
    status: int
    leg: int = 0
    """The callee leg (`PlaceCallee.leg`) that rings."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The callee answered 200 and the engine answered the caller."""

    call: int
    at: float


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class CalleeFailed:
    """The callee's leg ended with a final non-2xx; the caller is still waiting."""

    call: int
    at: float
    status: int
    reason: str
    leg: int = 0
    """The callee leg (`PlaceCallee.leg`) that failed."""
    q850: int | None = None
    """Q.850 cause from the callee's Reason header (RFC 3326), if it sent one."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class CallEnded:
    """The caller's leg is gone (and the callee's is being torn down)."""

    call: int
    at: float
    ended_by: Party
    status: int
    """Last SIP status of the leg that ended the call (BYE ends: 200)."""
    reason: str
    caller_codec: str
    callee_codec: str
    q850: int | None = None
    """Q.850 cause of the release (a peer's Reason header or call control's), if known."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class TransferAnswered:
    """The transfer target answered: the callee now talks to it; the caller's leg is
    told (NOTIFY 200) and released."""

    call: int
    at: float
    leg: int
    """The transfer leg (`PlaceTransfer.place.leg`) that answered."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class TransferFailed:
    """A transfer leg ended without an answer; call control tries the next target or
    ends the transfer (`EndTransfer`)."""

    call: int
    at: float
    status: int
    reason: str
    leg: int


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class EngineStopped:
    """The engine thread ended (a clean stop or a crash); every call it held is gone."""

    at: float
    reason: str
    crashed: bool


CallEvent = (
    CallOffered
    | CalleeRinging
    | CallAnswered
    | CalleeFailed
    | CallEnded
    | TransferAnswered
    | TransferFailed
    | EngineStopped
)


# --- commands: asyncio -> engine thread ----------------------------------------


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class PlaceCallee:
    """Place the callee's leg for `call` to `target` (a SIP URI)."""

    call: int
    target: str
    caller_uri: str
    """From presented to the callee (a URI or a name-addr with display name)."""
    trunk: str = ""
    """The outbound trunk the leg goes to (its credentials answer challenges); empty: none."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers for the callee's INVITE (P-Asserted-Identity, Privacy, ...)."""
    leg: int = 0
    """Numbers the call's callee legs (failover places more than one, one at a time);
    events about a leg carry it. A leg still under way when the next is placed is
    dropped (CANCEL/BYE) and reports nothing more."""
    fork: bool = False
    """Ring in parallel with the legs under way (an account's contacts) instead of
    replacing them; the first to answer wins and the engine drops the others."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class ReleaseCall:
    """End `call`: the caller gets `status` if not yet answered (else BYE); callee is cancelled."""

    call: int
    status: int
    reason: str
    q850: int | None = None
    """Q.850 cause sent to the legs in a Reason header (RFC 3326); None: no header."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class PlaceTransfer:
    """Place a leg of the caller's blind transfer (routed by call control like a call the
    caller placed): the first one tells the caller NOTIFY 100; when one answers, the
    callee is connected to it and the caller's leg is released. A later leg replaces
    one still under way (failover)."""

    call: int
    transfer: int
    """The call's transfer number (1 for its first; `TransferVerdict.transfer`)."""
    place: PlaceCallee
    """The leg as for a callee (target, presented caller, trunk, headers, leg number)."""


@_pickled_by_position
@dataclass(frozen=True, slots=True)
class EndTransfer:
    """The transfer ends without a target: the caller gets a final NOTIFY with `status`
    and keeps the callee; if the caller already left, the callee is released."""

    call: int
    transfer: int
    status: int
    reason: str
    q850: int | None = None
    """Q.850 cause for the callee's release (when the caller left); None: no Reason."""


CallCommand = PlaceCallee | ReleaseCall | PlaceTransfer | EndTransfer
