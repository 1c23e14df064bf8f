"""The call state machine and call records: pure, fed by engine events, `now` passed in.

Every call moves through `TRANSITIONS` (data, readable below):

    setup ──ringing──▶ ringing ──answered──▶ answered ──ended──▶ ended
      │                  │
      └─ refused / callee_failed / no_answer ─▶ releasing ──ended──▶ ended

A route may give several targets (trunks): a callee leg that fails with
5xx or 408, or does not ring within the attempt timeout, is followed by a
leg to the next target (`failover`, which keeps the state); a trunk at its
channel limit is skipped. The engine drops a leg still under way when it
gets the next `PlaceCallee` for the call; legs are numbered so a late event
from an earlier leg is ignored.

A call to an account rings all its contacts at once (forked legs). As in
RFC 3261 §16.7, the first 200 wins (the engine cancels the others), a 6xx
from one contact ends the search at once, and otherwise the caller gets the
best final answer once every contact failed: 4xx before 5xx, and among
4xx 486 (busy) first, because a phone that is busy says more than one that
is off. Busy (486/600), unreachable (408/430/480/5xx) and a no-answer timer
then take the account's forwarding (`forwarded`, which keeps the state):
the target is routed again as if the account had dialled it, one hop
further; the hop cap and the caller's Max-Forwards end forwarding loops.

(`ended` is accepted from every live state: the caller can hang up or
cancel at any time.) An answered call can be transferred by its caller
(blind transfer, REFER; `transfer()`): the Refer-To is routed like a call
the caller placed, and the transfer legs are tried one at a time
(failover on 5xx/408, like callee legs; an account's contacts in turn):

    answered ──transfer──▶ transferring ──transfer_answered──▶ transferred ──ended──▶ ended
       ▲                        │
       └──transfer_failed───────┘   (the caller keeps the callee, or the callee is
                                     released if the caller already left)

Handling an event returns the commands the engine must
carry out; timers are data (`next_deadline()` / `expire(now)`), armed by the
adapter. Timestamps in records are the engine's (`event.at`, wall clock);
deadlines use the adapter's monotonic `now`.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import cast

from gateway.calls.callerid import CallerId, Headers
from gateway.calls.q850 import NO_ANSWER, NORMAL_CLEARING, q850_for_sip
from gateway.calls.routing import (
    CallRequest,
    Forwarding,
    Refusal,
    Routed,
    Router,
    Target,
    dialed_number,
)
from gateway.calls.transfer import (
    NOT_ALLOWED,
    NOT_ANSWERED,
    NOT_THE_CALLER,
    PENDING,
    Transfer,
    TransferPermission,
)
from gateway.sip.nat import DESTINATION_HEADER
from gateway.sip.refer import ACCEPTED, TransferRequest, TransferVerdict
from media.events import (
    CallAnswered,
    CallCommand,
    CalleeFailed,
    CalleeRinging,
    CallEnded,
    CallEvent,
    CallOffered,
    EndTransfer,
    EngineStopped,
    Party,
    PlaceCallee,
    PlaceTransfer,
    ReleaseCall,
    TransferAnswered,
    TransferFailed,
)


class CallState(StrEnum):
    SETUP = "setup"
    RINGING = "ringing"
    ANSWERED = "answered"
    RELEASING = "releasing"
    TRANSFERRING = "transferring"
    """The caller asked for a transfer; a leg to the target is under way."""
    TRANSFERRED = "transferred"
    """The callee talks to the transfer target; the caller left."""
    ENDED = "ended"


class CallInput(StrEnum):
    ROUTED = "routed"
    REFUSED = "refused"
    RINGING = "ringing"
    ANSWERED = "answered"
    CALLEE_FAILED = "callee_failed"
    FAILOVER = "failover"
    FORWARDED = "forwarded"
    NO_ANSWER = "no_answer"
    TRANSFER = "transfer"
    TRANSFER_FAILOVER = "transfer_failover"
    TRANSFER_ANSWERED = "transfer_answered"
    TRANSFER_FAILED = "transfer_failed"
    ENDED = "ended"


_S, _In = CallState, CallInput
TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (_S.SETUP, _In.ROUTED): _S.SETUP,
    (_S.SETUP, _In.REFUSED): _S.RELEASING,
    (_S.SETUP, _In.RINGING): _S.RINGING,
    (_S.RINGING, _In.RINGING): _S.RINGING,
    (_S.SETUP, _In.ANSWERED): _S.ANSWERED,
    (_S.RINGING, _In.ANSWERED): _S.ANSWERED,
    (_S.SETUP, _In.CALLEE_FAILED): _S.RELEASING,
    (_S.SETUP, _In.FAILOVER): _S.SETUP,
    (_S.RINGING, _In.FAILOVER): _S.RINGING,
    (_S.SETUP, _In.FORWARDED): _S.SETUP,
    (_S.RINGING, _In.FORWARDED): _S.RINGING,
    (_S.RINGING, _In.CALLEE_FAILED): _S.RELEASING,
    (_S.SETUP, _In.NO_ANSWER): _S.RELEASING,
    (_S.RINGING, _In.NO_ANSWER): _S.RELEASING,
    (_S.SETUP, _In.ENDED): _S.ENDED,
    (_S.RINGING, _In.ENDED): _S.ENDED,
    (_S.ANSWERED, _In.ENDED): _S.ENDED,
    (_S.RELEASING, _In.ENDED): _S.ENDED,
    (_S.ANSWERED, _In.TRANSFER): _S.TRANSFERRING,
    (_S.TRANSFERRING, _In.TRANSFER_FAILOVER): _S.TRANSFERRING,
    (_S.TRANSFERRING, _In.TRANSFER_ANSWERED): _S.TRANSFERRED,
    (_S.TRANSFERRING, _In.TRANSFER_FAILED): _S.ANSWERED,
    (_S.TRANSFERRING, _In.ENDED): _S.ENDED,
    (_S.TRANSFERRED, _In.ENDED): _S.ENDED,
}


class Disposition(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    """Refused by routing (unknown number) before any callee leg existed."""
    FAILED = "failed"


class Cause(StrEnum):
    CALLER_HANGUP = "caller_hangup"
    CALLEE_HANGUP = "callee_hangup"
    TARGET_HANGUP = "target_hangup"
    """The transfer target hung up (a transferred call)."""
    CALLER_CANCEL = "caller_cancel"
    ROUTE_REFUSED = "route_refused"
    CALLEE_BUSY = "callee_busy"
    CALLEE_DECLINED = "callee_declined"
    CALLEE_UNAVAILABLE = "callee_unavailable"
    CALLEE_FAILED = "callee_failed"
    NO_ANSWER = "no_answer"
    GATEWAY_RELEASE = "gateway_release"
    ENGINE_STOPPED = "engine_stopped"


@dataclass(frozen=True, slots=True)
class CallerAnswer:
    """What the caller hears when the callee leg fails with a given status."""

    status: int
    reason: str
    disposition: Disposition
    cause: Cause


# Callee final status -> what the caller gets (its Q.850 cause: gateway/calls/q850.py).
# Statuses the caller cannot act on (auth challenges for our own leg, server
# errors behind us) become 502/503.
CALLEE_FAILURES: dict[int, CallerAnswer] = {
    404: CallerAnswer(404, "Not Found", Disposition.FAILED, Cause.CALLEE_UNAVAILABLE),
    408: CallerAnswer(408, "Request Timeout", Disposition.NO_ANSWER, Cause.CALLEE_UNAVAILABLE),
    410: CallerAnswer(410, "Gone", Disposition.FAILED, Cause.CALLEE_UNAVAILABLE),
    480: CallerAnswer(
        480, "Temporarily Unavailable", Disposition.NO_ANSWER, Cause.CALLEE_UNAVAILABLE
    ),
    # The edge: the phone's TCP/TLS connection (its only way in through NAT) is gone.
    430: CallerAnswer(480, "Temporarily Unavailable", Disposition.FAILED, Cause.CALLEE_UNAVAILABLE),
    484: CallerAnswer(484, "Address Incomplete", Disposition.FAILED, Cause.CALLEE_FAILED),
    486: CallerAnswer(486, "Busy Here", Disposition.BUSY, Cause.CALLEE_BUSY),
    487: CallerAnswer(487, "Request Terminated", Disposition.CANCELLED, Cause.CALLEE_FAILED),
    488: CallerAnswer(488, "Not Acceptable Here", Disposition.FAILED, Cause.CALLEE_FAILED),
    401: CallerAnswer(503, "Service Unavailable", Disposition.FAILED, Cause.CALLEE_FAILED),
    407: CallerAnswer(503, "Service Unavailable", Disposition.FAILED, Cause.CALLEE_FAILED),
    503: CallerAnswer(503, "Service Unavailable", Disposition.FAILED, Cause.CALLEE_UNAVAILABLE),
    600: CallerAnswer(600, "Busy Everywhere", Disposition.BUSY, Cause.CALLEE_BUSY),
    603: CallerAnswer(603, "Decline", Disposition.FAILED, Cause.CALLEE_DECLINED),
    604: CallerAnswer(604, "Does Not Exist Anywhere", Disposition.FAILED, Cause.CALLEE_UNAVAILABLE),
}
_UNKNOWN_FAILURE = CallerAnswer(502, "Bad Gateway", Disposition.FAILED, Cause.CALLEE_FAILED)
_UNKNOWN_GLOBAL_FAILURE = CallerAnswer(603, "Decline", Disposition.FAILED, Cause.CALLEE_DECLINED)
_TRUNKS_FULL = Refusal(503, "Service Unavailable")


def fails_over(callee_status: int) -> bool:
    """The next target may do better: a server failure or timeout, not a callee's answer."""
    return callee_status == 408 or 500 <= callee_status <= 599


_BUSY = (486, 600)
_UNREACHABLE = (408, 430, 480)


def forward_target(forwarding: Forwarding, callee_status: int) -> str:
    """The forward a failed call to an account takes ("" for none): busy or unreachable."""
    if callee_status in _BUSY:
        return forwarding.busy
    if callee_status in _UNREACHABLE or 500 <= callee_status <= 599:
        return forwarding.unreachable
    return ""


def best_of(current: int | None, status: int) -> int:
    """RFC 3261 §16.7 choice among forked legs' failures: 4xx before 5xx, 486 first."""
    if current is None:
        return status
    return min(current, status, key=lambda s: (s // 100, s != 486, s))


class Timer(StrEnum):
    NO_ANSWER = "no_answer"
    ATTEMPT = "attempt"
    FORWARD = "forward"
    TRANSFER = "transfer"


def caller_answer_for(callee_status: int) -> CallerAnswer:
    known = CALLEE_FAILURES.get(callee_status)
    if known is not None:
        return known
    return _UNKNOWN_GLOBAL_FAILURE if callee_status >= 600 else _UNKNOWN_FAILURE


@dataclass(frozen=True, slots=True)
class CallSettings:
    """Call-control limits (the lead maps these from configuration)."""

    no_answer_timeout: float = 60.0
    """Seconds from the caller's INVITE until an unanswered call is released."""
    no_answer_status: int = 480
    no_answer_reason: str = "Temporarily Unavailable"
    attempt_timeout: float = 8.0
    """Seconds a callee leg has to ring before the next target is tried (if any)."""
    records_kept: int = 10_000
    """Finished call records also held in memory (tests, benchmarks); CDRs are in the store."""


@dataclass(slots=True)
class CallRecord:
    """A CDR-like record; complete once `state` is `ended`."""

    call: int
    sip_call_id: str
    caller: str
    dialed: str
    setup_at: float
    account: str = ""
    """The account that placed the call (empty for a trunk call)."""
    inbound_trunk: str = ""
    """The trunk the call came in from (empty for an account call)."""
    state: CallState = CallState.SETUP
    caller_e164: str = ""
    """The caller's number in E.164 (empty when it is not a number)."""
    callee_e164: str = ""
    """The dialled number in E.164 (empty when it is not a number)."""
    target: str = ""
    trunk: str = ""
    """The outbound trunk of the callee leg that answered or failed last (empty: none)."""
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    disposition: Disposition | None = None
    cause: Cause | None = None
    caller_status: int = 0
    """Final status the caller received (200 for an answered call)."""
    callee_status: int | None = None
    q850_cause: int | None = None
    """Q.850 cause value of the release (RFC 3326 Reason), when one is known."""
    ended_by: Party | None = None
    caller_codec: str = ""
    callee_codec: str = ""
    recording: str = ""
    """Reference to the call's recording in encrypted storage (empty: not recorded)."""
    deadline: float | None = field(default=None, repr=False)
    attempt_deadline: float | None = field(default=None, repr=False)
    leg: int = field(default=-1, repr=False)
    """Number of the current callee leg (0 for the first)."""
    legs: set[int] = field(default_factory=set, repr=False)
    """Callee legs under way (several when forked)."""
    pending: tuple[Target, ...] = field(default=(), repr=False)
    """Targets not tried yet."""
    best_status: int | None = field(default=None, repr=False)
    """Best failure of forked legs so far."""
    forwarding: Forwarding | None = field(default=None, repr=False)
    forward_deadline: float | None = field(default=None, repr=False)
    hops: int = 0
    """Forwards the call took."""
    max_forwards: int = field(default=70, repr=False)
    caller_id: CallerId | None = field(default=None, repr=False)
    channel: str = field(default="", repr=False)
    """The trunk whose channel the current leg holds (empty: none counted)."""
    transfer: Transfer | None = None
    """The caller's blind transfer, once asked for (the last one)."""


class CallRegistry:
    """All live calls of one engine, their transitions, and the finished records."""

    def __init__(
        self,
        router: Router,
        settings: CallSettings | None = None,
        may_transfer: TransferPermission | None = None,
    ) -> None:
        self.router = router
        self.settings = settings or CallSettings()
        self.may_transfer = may_transfer or _nobody
        """Whose calls may be transferred (the accounts'/trunks' `allow_transfer`)."""
        self.live: dict[int, CallRecord] = {}
        self._by_sip_call_id: dict[str, int] = {}
        self.finished: deque[CallRecord] = deque(maxlen=self.settings.records_kept)
        self.ignored = 0
        """Events that matched no transition (late or duplicate); counted, not fatal."""
        self._timers: list[tuple[float, int, Timer]] = []
        self.trunk_calls: Counter[str] = Counter()
        """Callee legs in progress per outbound trunk (for its `channels` limit)."""
        self._changed: dict[int, CallRecord] = {}

    def take_changed(self) -> list[CallRecord]:
        """Records offered, ringing, answered or finished since the last call, once each.

        The CDR writer stores them as they are now; a finished one (`state` is
        `ended`) is never reported again.
        """
        taken = list(self._changed.values())
        self._changed.clear()
        return taken

    def active_calls(self) -> int:
        return len(self.live)

    # --- events ------------------------------------------------------------------

    def handle(self, event: CallEvent, now: float) -> list[CallCommand]:
        """Apply one engine event; return what the engine must do next."""
        if isinstance(event, CallOffered):
            return self._offered(event, now)
        if isinstance(event, EngineStopped):
            self._engine_stopped(event)
            return []
        record = self.live.get(event.call)
        if record is None:
            self.ignored += 1
            return []
        if isinstance(event, CalleeRinging):
            if event.leg not in record.legs:
                self.ignored += 1
            elif self._move(record, CallInput.RINGING):
                if event.leg == record.leg:
                    record.attempt_deadline = None
                if record.ringing_at is None:
                    record.ringing_at = event.at
                    self._changed[record.call] = record
        elif isinstance(event, CallAnswered):
            if self._move(record, CallInput.ANSWERED):
                record.answered_at = event.at
                record.deadline = record.attempt_deadline = record.forward_deadline = None
                self._changed[record.call] = record
        elif isinstance(event, CalleeFailed):
            return self._callee_failed(record, event, now)
        elif isinstance(event, TransferFailed):
            return self._transfer_failed(record, event, now)
        elif isinstance(event, TransferAnswered):
            self._transfer_answered(record, event)
        else:
            self._ended(record, event)
        return []

    def _offered(self, event: CallOffered, now: float) -> list[CallCommand]:
        dialed = dialed_number(event.request_uri)
        record = CallRecord(
            event.call,
            event.sip_call_id,
            event.from_uri,
            dialed,
            event.at,
            account=event.account,
            inbound_trunk=event.trunk,
            max_forwards=event.max_forwards,
        )
        self.live[event.call] = record
        self._by_sip_call_id[event.sip_call_id] = event.call
        self._changed[event.call] = record
        request = CallRequest(
            dialed,
            event.from_uri,
            account=event.account,
            inbound_trunk=event.trunk,
            display=event.display_name,
            asserted=event.asserted_identity,
            privacy=event.privacy,
        )
        decision = self.router.route(request)
        record.caller_e164 = decision.numbers.caller_e164
        record.callee_e164 = decision.numbers.callee_e164
        if isinstance(decision, Refusal):
            return self._refuse(record, decision)
        record.caller_id = decision.caller_id  # kept through forwards: the caller stays
        commands = self._start(record, decision, now)
        if not commands:
            return self._refuse(record, _TRUNKS_FULL)
        self._move(record, CallInput.ROUTED)
        record.deadline = self._arm(record, Timer.NO_ANSWER, now + self.settings.no_answer_timeout)
        return commands

    def _start(self, record: CallRecord, decision: Routed, now: float) -> list[CallCommand]:
        """The first leg(s) of a routing decision; the engine drops legs still under way."""
        record.hops = decision.hops
        record.forwarding = decision.forwarding
        record.best_status = None
        record.forward_deadline = None
        if not decision.fork:
            record.pending = decision.targets
            if decision.emergency:  # channel limits never hold up an emergency call
                record.pending = tuple(replace(t, channels=None) for t in decision.targets)
            place = self._place_next(record, now)
            return [] if place is None else [place]
        self._free_channel(record)
        record.pending, record.attempt_deadline = (), None
        record.legs = set()
        commands: list[CallCommand] = []
        for target in decision.targets:
            record.leg += 1
            record.legs.add(record.leg)
            fork = bool(commands)
            commands.append(self._leg(record, target, fork))
        record.target, record.trunk = decision.targets[0].uri, ""
        forwarding = decision.forwarding
        if forwarding is not None and forwarding.no_answer:
            due = now + forwarding.no_answer_after
            record.forward_deadline = self._arm(record, Timer.FORWARD, due)
        return commands

    def _arm(self, record: CallRecord, timer: Timer, due: float) -> float:
        heapq.heappush(self._timers, (due, record.call, timer))
        return due

    def _refuse(self, record: CallRecord, refusal: Refusal) -> list[CallCommand]:
        self._move(record, CallInput.REFUSED)
        self._settle(record, Disposition.REJECTED, Cause.ROUTE_REFUSED, refusal.status)
        record.q850_cause = q850_for_sip(refusal.status)
        return [ReleaseCall(record.call, refusal.status, refusal.reason, record.q850_cause)]

    def _place_next(self, record: CallRecord, now: float) -> PlaceCallee | None:
        """The leg to the first pending target with a free channel (None: none left)."""
        target, record.pending = self._next_free(record.pending)
        if target is not None:
            self._hold_channel(record, target)
            record.leg += 1
            record.legs = {record.leg}
            record.target, record.trunk = target.uri, target.trunk
            record.attempt_deadline = None
            if record.pending:
                due = now + self.settings.attempt_timeout
                record.attempt_deadline = self._arm(record, Timer.ATTEMPT, due)
            return self._leg(record, target)
        return None

    def _next_free(self, pending: tuple[Target, ...]) -> tuple[Target | None, tuple[Target, ...]]:
        """The first target whose trunk has a free channel, and the targets after it."""
        for index, target in enumerate(pending):
            if target.channels is None or self.trunk_calls[target.trunk] < target.channels:
                return target, pending[index + 1 :]
        return None, ()  # every trunk is full

    def _hold_channel(self, holder: CallRecord | Transfer, target: Target) -> None:
        """`holder`'s leg now goes to `target`: it holds that trunk's channel instead."""
        self._free_channel(holder)
        if target.trunk:
            self.trunk_calls[target.trunk] += 1
            holder.channel = target.trunk

    @staticmethod
    def _leg(record: CallRecord, target: Target, fork: bool = False) -> PlaceCallee:
        caller, headers = record.caller, cast(Headers, ())
        if record.caller_id is not None:
            caller, headers = record.caller_id.towards(target.trusted)
        if target.destination:
            headers = (*headers, (DESTINATION_HEADER, target.destination))
        return PlaceCallee(
            record.call, target.uri, caller, target.trunk, headers, leg=record.leg, fork=fork
        )

    def _free_channel(self, holder: CallRecord | Transfer) -> None:
        if holder.channel:
            self.trunk_calls[holder.channel] -= 1
            if not self.trunk_calls[holder.channel]:
                del self.trunk_calls[holder.channel]
            holder.channel = ""

    def _callee_failed(
        self, record: CallRecord, event: CalleeFailed, now: float
    ) -> list[CallCommand]:
        if event.leg not in record.legs:
            self.ignored += 1  # an earlier leg, already replaced by failover or forwarding
            return []
        record.legs.discard(event.leg)
        record.callee_status = event.status
        status = event.status
        forked = bool(record.legs) or record.best_status is not None
        if forked and status < 600:  # a 6xx ends the search; the release cancels the others
            status = record.best_status = best_of(record.best_status, status)
            if record.legs:
                return []  # other contacts still ring
        if event.leg == record.leg:
            self._free_channel(record)
        live = (record.state, CallInput.FAILOVER) in TRANSITIONS
        if live and fails_over(status):
            place = self._place_next(record, now)
            if place is not None:
                self._move(record, CallInput.FAILOVER)
                return [place]
        if live and record.forwarding is not None:
            commands = self._forward(record, forward_target(record.forwarding, status), now)
            if commands:
                return commands
        if not self._move(record, CallInput.CALLEE_FAILED):
            return []
        answer = caller_answer_for(status)
        record.deadline = record.attempt_deadline = record.forward_deadline = None
        self._settle(record, answer.disposition, answer.cause, answer.status)
        # The callee's own Reason wins over the RFC 3398 mapping of its status.
        own = event.q850 if status == event.status else None
        record.q850_cause = own if own is not None else q850_for_sip(status)
        return [ReleaseCall(record.call, answer.status, answer.reason, record.q850_cause)]

    def _forward(self, record: CallRecord, target: str, now: float) -> list[CallCommand]:
        """Re-route the call to an account's forward `target` (no commands: not possible)."""
        forwarding = record.forwarding
        if not target or forwarding is None or record.hops + 1 >= record.max_forwards:
            return []
        request = CallRequest(target, record.caller, account=forwarding.account)
        decision = self.router.route(replace(request, hops=record.hops + 1))
        if isinstance(decision, Refusal):
            return []  # the caller hears why the account failed, not why the forward did
        before = (record.hops, record.forwarding, record.best_status, record.forward_deadline)
        commands = self._start(
            record, replace(decision, hops=max(decision.hops, record.hops + 1)), now
        )
        if commands:
            self._move(record, CallInput.FORWARDED)
        else:  # every trunk of the forward is full: the call stays as it was
            record.hops, record.forwarding, record.best_status, record.forward_deadline = before
        return commands

    def _ended(self, record: CallRecord, event: CallEnded) -> None:
        if not self._move(record, CallInput.ENDED):
            return
        record.ended_at = event.at
        record.ended_by = event.ended_by
        record.caller_codec = event.caller_codec
        record.callee_codec = event.callee_codec
        if record.q850_cause is None:
            record.q850_cause = event.q850
            if event.q850 is None and record.answered_at is not None:
                record.q850_cause = NORMAL_CLEARING
        if record.disposition is None:  # nobody decided the outcome before: the parties did
            if record.answered_at is not None:
                cause = _HANGUP_CAUSES.get(event.ended_by, Cause.CALLER_HANGUP)
                self._settle(record, Disposition.ANSWERED, cause, 200)
            elif event.ended_by is Party.CALLER:
                self._settle(record, Disposition.CANCELLED, Cause.CALLER_CANCEL, event.status)
            else:
                self._settle(record, Disposition.FAILED, Cause.GATEWAY_RELEASE, event.status)
        self._finish(record)

    # --- blind transfer (the caller's REFER) ---------------------------------------

    def transfer(
        self, request: TransferRequest, now: float
    ) -> tuple[TransferVerdict | None, list[CallCommand]]:
        """A caller's REFER: the edge's answer and the engine's commands.

        None: no live call has this Call-ID on its caller leg (the engine answers the
        REFER). An accepted transfer that routing refuses ends at once (NOTIFY with
        the refusal); the call stays as it was.
        """
        number = self._by_sip_call_id.get(request.call_id)
        record = self.live.get(number) if number is not None else None
        if record is None:
            return None, []
        if (request.account, request.trunk) != (record.account, record.inbound_trunk):
            return NOT_THE_CALLER, []
        if not self.may_transfer(record.account, record.inbound_trunk):
            return NOT_ALLOWED, []
        if record.state is CallState.TRANSFERRING:
            return PENDING, []
        if (record.state, CallInput.TRANSFER) not in TRANSITIONS:
            return NOT_ANSWERED, []
        dialed = dialed_number(request.refer_to)
        before = record.transfer
        number, leg = (before.number, before.leg) if before is not None else (0, -1)
        transfer = record.transfer = Transfer(number + 1, dialed, request.referred_by, leg=leg)
        accepted = replace(ACCEPTED, transfer=transfer.number)
        self._changed[record.call] = record
        decision = self.router.route(
            CallRequest(
                dialed,
                record.caller,
                account=record.account,
                inbound_trunk=record.inbound_trunk,
                hops=record.hops,
            )
        )
        if isinstance(decision, Refusal):
            transfer.status = decision.status
            return accepted, [EndTransfer(record.call, number + 1, *_refusal(decision))]
        transfer.pending = decision.targets
        if decision.emergency:  # channel limits never hold up an emergency call
            transfer.pending = tuple(replace(t, channels=None) for t in decision.targets)
        place = self._place_transfer(record)
        if place is None:
            transfer.status = _TRUNKS_FULL.status
            return accepted, [EndTransfer(record.call, number + 1, *_refusal(_TRUNKS_FULL))]
        self._move(record, CallInput.TRANSFER)
        due = now + self.settings.no_answer_timeout
        transfer.deadline = self._arm(record, Timer.TRANSFER, due)
        return accepted, [place]

    def _place_transfer(self, record: CallRecord) -> PlaceTransfer | None:
        """The transfer leg to the next target with a free channel (None: none left)."""
        transfer = record.transfer
        assert transfer is not None
        target, transfer.pending = self._next_free(transfer.pending)
        if target is None:
            return None
        self._hold_channel(transfer, target)
        transfer.leg += 1
        transfer.target, transfer.trunk = target.uri, target.trunk
        place = replace(self._leg(record, target), leg=transfer.leg)
        return PlaceTransfer(record.call, transfer.number, place)

    def _transfer_failed(
        self, record: CallRecord, event: TransferFailed, now: float
    ) -> list[CallCommand]:
        transfer = record.transfer
        if (
            transfer is None
            or event.leg != transfer.leg
            or record.state is not CallState.TRANSFERRING
        ):
            self.ignored += 1  # an earlier leg, or the transfer ended meanwhile
            return []
        if fails_over(event.status):
            place = self._place_transfer(record)
            if place is not None:
                self._move(record, CallInput.TRANSFER_FAILOVER)
                return [place]
        return self._end_transfer(record, event.status)

    def _transfer_timeout(self, record: CallRecord) -> list[CallCommand]:
        if record.transfer is not None:
            record.transfer.deadline = None
        if record.state is not CallState.TRANSFERRING:
            return []
        return self._end_transfer(record, self.settings.no_answer_status)

    def _end_transfer(self, record: CallRecord, status: int) -> list[CallCommand]:
        """No target took the transfer: the caller is told what it would have heard."""
        transfer = record.transfer
        assert transfer is not None
        self._move(record, CallInput.TRANSFER_FAILED)
        transfer.deadline, transfer.pending = None, ()
        self._free_channel(transfer)
        answer = caller_answer_for(status)
        transfer.status = answer.status
        self._changed[record.call] = record
        q850 = q850_for_sip(answer.status)
        return [EndTransfer(record.call, transfer.number, answer.status, answer.reason, q850)]

    def _transfer_answered(self, record: CallRecord, event: TransferAnswered) -> None:
        transfer = record.transfer
        if transfer is None or event.leg != transfer.leg:
            self.ignored += 1
            return
        if self._move(record, CallInput.TRANSFER_ANSWERED):
            transfer.deadline, transfer.pending = None, ()
            transfer.answered_at, transfer.status = event.at, 200
            self._changed[record.call] = record

    def _engine_stopped(self, event: EngineStopped) -> None:
        for record in list(self.live.values()):
            record.state = CallState.ENDED
            record.ended_at = event.at
            record.ended_by = Party.GATEWAY
            if record.disposition is None:
                if record.answered_at is not None:
                    self._settle(record, Disposition.ANSWERED, Cause.ENGINE_STOPPED, 200)
                else:
                    self._settle(record, Disposition.FAILED, Cause.ENGINE_STOPPED, 503)
            self._finish(record)

    # --- timers ------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When `expire` next has work (None: no timer needed)."""
        timers = self._timers
        while timers:
            due, call, timer = timers[0]
            record = self.live.get(call)
            if record is not None and due == _deadline(record, timer):
                return due
            heapq.heappop(timers)  # stale: answered, failed, replaced or ended meanwhile
        return None

    def expire(self, now: float) -> list[CallCommand]:
        """Fail over (attempt timer) or forward (no-answer forward) or release (no answer)."""
        commands: list[CallCommand] = []
        s = self.settings
        while (due := self.next_deadline()) is not None and due <= now:
            _, call, timer = heapq.heappop(self._timers)
            record = self.live[call]
            if timer is Timer.ATTEMPT:
                record.attempt_deadline = None
                place = self._place_next(record, now)  # the engine drops the silent leg
                if place is not None and self._move(record, CallInput.FAILOVER):
                    commands.append(place)
                continue
            if timer is Timer.TRANSFER:
                commands += self._transfer_timeout(record)
                continue
            if timer is Timer.FORWARD:
                record.forward_deadline = None
                if record.forwarding is not None:
                    commands += self._forward(record, record.forwarding.no_answer, now)
                continue
            record.deadline = record.attempt_deadline = record.forward_deadline = None
            if self._move(record, CallInput.NO_ANSWER):
                self._settle(record, Disposition.NO_ANSWER, Cause.NO_ANSWER, s.no_answer_status)
                record.q850_cause = NO_ANSWER
                commands.append(
                    ReleaseCall(call, s.no_answer_status, s.no_answer_reason, NO_ANSWER)
                )
        return commands

    # --- helpers -----------------------------------------------------------------

    def _move(self, record: CallRecord, event: CallInput) -> bool:
        target = TRANSITIONS.get((record.state, event))
        if target is None:
            self.ignored += 1
            return False
        record.state = target
        return True

    @staticmethod
    def _settle(record: CallRecord, disposition: Disposition, cause: Cause, status: int) -> None:
        record.disposition = disposition
        record.cause = cause
        record.caller_status = status

    def _finish(self, record: CallRecord) -> None:
        record.deadline = record.attempt_deadline = record.forward_deadline = None
        record.pending = ()
        record.legs = set()
        self._free_channel(record)
        if record.transfer is not None:
            record.transfer.deadline = None
            record.transfer.pending = ()
            self._free_channel(record.transfer)
        del self.live[record.call]
        if self._by_sip_call_id.get(record.sip_call_id) == record.call:
            del self._by_sip_call_id[record.sip_call_id]
        self.finished.append(record)
        self._changed[record.call] = record


_HANGUP_CAUSES = {
    Party.CALLEE: Cause.CALLEE_HANGUP,
    Party.TARGET: Cause.TARGET_HANGUP,
    Party.GATEWAY: Cause.GATEWAY_RELEASE,
}


def _refusal(refusal: Refusal) -> tuple[int, str]:
    return refusal.status, refusal.reason


def _nobody(_account: str, _trunk: str) -> bool:
    return False


def _deadline(record: CallRecord, timer: Timer) -> float | None:
    if timer is Timer.TRANSFER:
        return record.transfer.deadline if record.transfer is not None else None
    if timer is Timer.ATTEMPT:
        return record.attempt_deadline
    if timer is Timer.FORWARD:
        return record.forward_deadline
    return record.deadline
