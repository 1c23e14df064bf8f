"""The call state machine and call records: pure, fed by engine events, `now` passed in.

Every call moves through `TRANSITIONS` (data, readable below):

    setup ──ringing──▶ ringing ──answered──▶ answered ──ended──▶ ended
      │                  │
      └─ refused / callee_failed / no_answer ─▶ releasing ──ended──▶ ended

(`ended` is accepted from every live state: the caller can hang up or
cancel at any time.) Handling an event returns the commands the engine must
carry out; timers are data (`next_deadline()` / `expire(now)`), armed by the
adapter. Timestamps in records are the engine's (`event.at`, wall clock);
deadlines use the adapter's monotonic `now`.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from gateway.calls.routing import CallRequest, Refusal, Router, dialed_number
from media.events import (
    CallAnswered,
    CallCommand,
    CalleeFailed,
    CalleeRinging,
    CallEnded,
    CallEvent,
    CallOffered,
    EngineStopped,
    Party,
    PlaceCallee,
    ReleaseCall,
)


class CallState(StrEnum):
    SETUP = "setup"
    RINGING = "ringing"
    ANSWERED = "answered"
    RELEASING = "releasing"
    ENDED = "ended"


class CallInput(StrEnum):
    ROUTED = "routed"
    REFUSED = "refused"
    RINGING = "ringing"
    ANSWERED = "answered"
    CALLEE_FAILED = "callee_failed"
    NO_ANSWER = "no_answer"
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
    (_S.RINGING, _In.CALLEE_FAILED): _S.RELEASING,
    (_S.SETUP, _In.NO_ANSWER): _S.RELEASING,
    (_S.RINGING, _In.NO_ANSWER): _S.RELEASING,
    (_S.SETUP, _In.ENDED): _S.ENDED,
    (_S.RINGING, _In.ENDED): _S.ENDED,
    (_S.ANSWERED, _In.ENDED): _S.ENDED,
    (_S.RELEASING, _In.ENDED): _S.ENDED,
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


# Callee final status -> what the caller gets. A small SIP->SIP table for now;
# Q.850 Reason headers come later. Statuses the caller cannot act on (auth
# challenges for our own leg, server errors behind us) become 502/503.
CALLEE_FAILURES: dict[int, CallerAnswer] = {
    404: CallerAnswer(404, "Not Found", Disposition.FAILED, Cause.CALLEE_UNAVAILABLE),
    408: CallerAnswer(408, "Request Timeout", Disposition.NO_ANSWER, Cause.CALLEE_UNAVAILABLE),
    410: CallerAnswer(410, "Gone", Disposition.FAILED, Cause.CALLEE_UNAVAILABLE),
    480: CallerAnswer(
        480, "Temporarily Unavailable", Disposition.NO_ANSWER, Cause.CALLEE_UNAVAILABLE
    ),
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
    records_kept: int = 10_000
    """Finished call records held in memory (until the store table exists)."""


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


class CallRegistry:
    """All live calls of one engine, their transitions, and the finished records."""

    def __init__(self, router: Router, settings: CallSettings | None = None) -> None:
        self.router = router
        self.settings = settings or CallSettings()
        self.live: dict[int, CallRecord] = {}
        self.finished: deque[CallRecord] = deque(maxlen=self.settings.records_kept)
        self.ignored = 0
        """Events that matched no transition (late or duplicate); counted, not fatal."""
        self._timers: list[tuple[float, int]] = []
        self._unreported: list[CallRecord] = []

    def take_finished(self) -> list[CallRecord]:
        """Records finished since the last call (for a sink such as the store)."""
        taken, self._unreported = self._unreported, []
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
            if self._move(record, CallInput.RINGING) and record.ringing_at is None:
                record.ringing_at = event.at
        elif isinstance(event, CallAnswered):
            if self._move(record, CallInput.ANSWERED):
                record.answered_at = event.at
                record.deadline = None
        elif isinstance(event, CalleeFailed):
            return self._callee_failed(record, event)
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
        )
        self.live[event.call] = record
        decision = self.router.route(
            CallRequest(dialed, event.from_uri, account=event.account, inbound_trunk=event.trunk)
        )
        if isinstance(decision, Refusal):
            self._move(record, CallInput.REFUSED)
            self._settle(record, Disposition.REJECTED, Cause.ROUTE_REFUSED, decision.status)
            return [ReleaseCall(event.call, decision.status, decision.reason)]
        self._move(record, CallInput.ROUTED)
        record.target = decision.uri
        record.trunk = decision.trunk
        record.deadline = now + self.settings.no_answer_timeout
        heapq.heappush(self._timers, (record.deadline, event.call))
        return [PlaceCallee(event.call, decision.uri, event.from_uri, trunk=decision.trunk)]

    def _callee_failed(self, record: CallRecord, event: CalleeFailed) -> list[CallCommand]:
        if not self._move(record, CallInput.CALLEE_FAILED):
            return []
        answer = caller_answer_for(event.status)
        record.callee_status = event.status
        record.deadline = None
        self._settle(record, answer.disposition, answer.cause, answer.status)
        return [ReleaseCall(record.call, answer.status, answer.reason)]

    def _ended(self, record: CallRecord, event: CallEnded) -> None:
        if not self._move(record, CallInput.ENDED):
            return
        record.ended_at = event.at
        record.ended_by = event.ended_by
        record.caller_codec = event.caller_codec
        record.callee_codec = event.callee_codec
        if record.disposition is None:  # nobody decided the outcome before: the parties did
            if record.answered_at is not None:
                cause = Cause.CALLER_HANGUP
                if event.ended_by is Party.CALLEE:
                    cause = Cause.CALLEE_HANGUP
                elif event.ended_by is Party.GATEWAY:
                    cause = Cause.GATEWAY_RELEASE
                self._settle(record, Disposition.ANSWERED, cause, 200)
            elif event.ended_by is Party.CALLER:
                self._settle(record, Disposition.CANCELLED, Cause.CALLER_CANCEL, event.status)
            else:
                self._settle(record, Disposition.FAILED, Cause.GATEWAY_RELEASE, event.status)
        self._finish(record)

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
            due, call = timers[0]
            record = self.live.get(call)
            if record is not None and record.deadline == due:
                return due
            heapq.heappop(timers)  # stale: answered, failed or ended meanwhile
        return None

    def expire(self, now: float) -> list[CallCommand]:
        """Release every call whose no-answer timer is due."""
        commands: list[CallCommand] = []
        s = self.settings
        while (due := self.next_deadline()) is not None and due <= now:
            _, call = heapq.heappop(self._timers)
            record = self.live[call]
            record.deadline = None
            if self._move(record, CallInput.NO_ANSWER):
                self._settle(record, Disposition.NO_ANSWER, Cause.NO_ANSWER, s.no_answer_status)
                commands.append(ReleaseCall(call, s.no_answer_status, s.no_answer_reason))
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
        record.deadline = None
        del self.live[record.call]
        self.finished.append(record)
        self._unreported.append(record)
