"""One ESME-side SMPP 3.4 session, sans-IO: bytes and `now` in, bytes and events out.

The adapter (`smpp.client`) feeds received bytes, asks for bytes to send and
events to handle, and re-arms a single timer at `next_timer()`. Nothing here
reads a clock, touches a socket or knows about queues or accounts: the
application decides what a status means and when to re-offer a message.

States follow SMPP 3.4 §2.3 and live in `TRANSITIONS`; what each state may do
(submit, receive) is in the tables below it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

from smpp.pdu import (
    DEFAULT_MAX_PDU_BYTES,
    MAX_SEQUENCE,
    RESPONSE_BIT,
    CommandStatus,
    ParamValue,
    Pdu,
    PduDecodeError,
    PduFramer,
    PduFramingError,
    decode_pdu,
    encode_pdu,
    response_name,
)

MessageRef = Hashable
"""The application's handle on a message (queue row id, tuple, ...)."""
BindMode = Literal["transmitter", "receiver", "transceiver"]

RECEIPT_ESM_CLASS_MASK: Final = 0x3C
RECEIPT_ESM_CLASS: Final = 0x04
"""esm_class message type bits of an SMSC delivery receipt (SMPP 3.4 §5.2.12)."""
TRANSIENT_SUBMIT_STATUSES: Final = frozenset(
    {CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL}
)
"""submit_sm_resp statuses that mean "slow down and offer it again"."""


class SessionState(Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class Trigger(Enum):
    SEND_BIND = "send_bind"
    BOUND_AS_TX = "bound_as_tx"
    BOUND_AS_RX = "bound_as_rx"
    BOUND_AS_TRX = "bound_as_trx"
    BIND_REFUSED = "bind_refused"
    SEND_UNBIND = "send_unbind"
    PEER_UNBIND = "peer_unbind"
    UNBIND_ACKED = "unbind_acked"
    CLOSE = "close"
    """Connection lost, protocol error or timeout: from anywhere but CLOSED."""


S = SessionState
_BOUND: Final = frozenset({S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX})

TRANSITIONS: Final[Mapping[tuple[SessionState, Trigger], SessionState]] = {
    (S.OPEN, Trigger.SEND_BIND): S.BINDING,
    (S.BINDING, Trigger.BOUND_AS_TX): S.BOUND_TX,
    (S.BINDING, Trigger.BOUND_AS_RX): S.BOUND_RX,
    (S.BINDING, Trigger.BOUND_AS_TRX): S.BOUND_TRX,
    (S.BINDING, Trigger.BIND_REFUSED): S.CLOSED,
    **{(bound, Trigger.SEND_UNBIND): S.UNBINDING for bound in _BOUND},
    **{(bound, Trigger.PEER_UNBIND): S.CLOSED for bound in _BOUND},
    (S.UNBINDING, Trigger.PEER_UNBIND): S.CLOSED,
    (S.UNBINDING, Trigger.UNBIND_ACKED): S.CLOSED,
    **{(state, Trigger.CLOSE): S.CLOSED for state in SessionState if state is not S.CLOSED},
}
"""Every legal state change; anything else is a bug and raises `SessionStateError`."""

BIND_REQUESTS: Final[Mapping[BindMode, tuple[str, Trigger]]] = {
    "transmitter": ("bind_transmitter", Trigger.BOUND_AS_TX),
    "receiver": ("bind_receiver", Trigger.BOUND_AS_RX),
    "transceiver": ("bind_transceiver", Trigger.BOUND_AS_TRX),
}
CAN_SUBMIT: Final = frozenset({S.BOUND_TX, S.BOUND_TRX})
CAN_RECEIVE: Final = frozenset({S.BOUND_RX, S.BOUND_TRX})
ANSWERS_ENQUIRE_LINK: Final = frozenset({S.BINDING, *_BOUND, S.UNBINDING})
SENDS_ENQUIRE_LINK: Final = _BOUND
ACCEPTS_UNBIND: Final = frozenset({*_BOUND, S.UNBINDING})
DELIVERY_REQUESTS: Final = frozenset({"deliver_sm", "data_sm"})


class SessionStateError(RuntimeError):
    """A transition the table does not allow (a bug in the caller or the session)."""


# ---------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """What one session needs from `SmscConfig`, with the password already read."""

    system_id: str
    password: str
    system_type: str = ""
    bind_mode: BindMode = "transceiver"
    address_range: str = ""
    window: int = 10
    response_timeout: float = 10.0
    bind_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    max_submit_rate: float | None = None
    submit_burst: int = 1
    throttle_backoff_initial: float = 1.0
    throttle_backoff_max: float = 30.0
    max_pdu_bytes: int = DEFAULT_MAX_PDU_BYTES
    registered_delivery: int = 0


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Bound:
    smsc_system_id: str


@dataclass(frozen=True, slots=True)
class BindFailed:
    status: int | None
    """The bind_resp command_status, or None when no answer came within bind_timeout."""


@dataclass(frozen=True, slots=True)
class SubmitResponse:
    """The SMSC's final answer to a submit_sm (accepted, or rejected for good)."""

    message_ref: MessageRef
    status: int
    message_id: str | None
    nacked: bool = False
    """The answer was a generic_nack rather than a submit_sm_resp."""


@dataclass(frozen=True, slots=True)
class Throttled:
    """The SMSC said "not now" (ESME_RTHROTTLED / ESME_RMSGQFUL): offer it again.

    Submits are refused until `retry_at`.
    """

    message_ref: MessageRef
    status: int
    retry_at: float


@dataclass(frozen=True, slots=True)
class ResponseTimeout:
    """No answer within response_timeout; the SMSC may or may not have the message."""

    message_ref: MessageRef


@dataclass(frozen=True, slots=True)
class DeliverSm:
    """A deliver_sm or data_sm (MO or delivery receipt), to be acknowledged with
    `SmppSession.ack_deliver(sequence, status)` once the application stored it."""

    sequence: int
    pdu: Pdu

    @property
    def params(self) -> Mapping[str, ParamValue]:
        return self.pdu.params

    @property
    def is_receipt(self) -> bool:
        return self.pdu.integer("esm_class") & RECEIPT_ESM_CLASS_MASK == RECEIPT_ESM_CLASS


@dataclass(frozen=True, slots=True)
class Unbound:
    by_peer: bool


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The session is over (always the last event). `unacked` are submits sent
    without an answer: the SMSC may or may not have them; offer them again."""

    reason: str
    unacked: tuple[MessageRef, ...]


Event = (
    Bound
    | BindFailed
    | SubmitResponse
    | Throttled
    | ResponseTimeout
    | DeliverSm
    | Unbound
    | ConnectionLost
)


# ---------------------------------------------------------------- submit outcomes


@dataclass(frozen=True, slots=True)
class Accepted:
    sequence: int


@dataclass(frozen=True, slots=True)
class WindowFull:
    """`window` submits are awaiting answers; retry after the next answer."""


@dataclass(frozen=True, slots=True)
class RateLimited:
    """Paused after throttling, or over max_submit_rate: retry at `retry_at`."""

    retry_at: float


@dataclass(frozen=True, slots=True)
class NotBound:
    """The session cannot submit in its current state (binding, receiver, closed)."""

    state: SessionState


SubmitOutcome = Accepted | WindowFull | RateLimited | NotBound


# ---------------------------------------------------------------- the session


@dataclass(slots=True)
class _Request:
    command: str
    deadline: float
    sent_at: float
    message_ref: MessageRef | None = None


@dataclass(slots=True)
class _TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float | None = None

    def take(self, now: float) -> float | None:
        """Take one token; None if taken, else when one will be there."""
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return now + (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class _Throttle:
    initial: float
    maximum: float
    backoff: float
    paused_until: float = float("-inf")
    paused_at: float = float("-inf")

    def hit(self, request_sent_at: float, now: float) -> float:
        """A throttling answer. Answers to requests sent before the current pause
        began do not lengthen it (they were all in flight together)."""
        if request_sent_at >= self.paused_at:
            self.paused_at = now
            self.paused_until = now + self.backoff
            self.backoff = min(self.backoff * 2.0, self.maximum)
        return self.paused_until

    def ok(self) -> None:
        self.backoff = self.initial


@dataclass(slots=True)
class _Outbox:
    chunks: list[bytes] = field(default_factory=list)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class SmppSession:
    """ESME side of one SMPP connection: bind, windowed submits, deliveries, keep-alive."""

    def __init__(self, settings: SessionSettings, first_sequence: int = 1) -> None:
        if settings.window < 1:
            raise ValueError("window must be at least 1")
        if not 1 <= first_sequence <= MAX_SEQUENCE:
            raise ValueError("first_sequence must be in 1..0x7FFFFFFF")
        self.settings = settings
        self._state = SessionState.OPEN
        self._framer = PduFramer(settings.max_pdu_bytes)
        self._outbox = _Outbox()
        self._events: list[Event] = []
        self._pending: dict[int, _Request] = {}
        self._submits_in_flight = 0
        self._awaiting_ack: dict[int, str] = {}
        self._sequence = first_sequence - 1
        self._last_received = 0.0
        self._enquire_outstanding = False
        self._bucket = (
            _TokenBucket(
                settings.max_submit_rate,
                float(settings.submit_burst),
                float(settings.submit_burst),
            )
            if settings.max_submit_rate
            else None
        )
        self._throttle = _Throttle(
            settings.throttle_backoff_initial,
            settings.throttle_backoff_max,
            settings.throttle_backoff_initial,
        )

    # -------------------------------------------------------------- observation

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is SessionState.CLOSED

    @property
    def submits_in_flight(self) -> int:
        return self._submits_in_flight

    @property
    def window_free(self) -> int:
        return self.settings.window - self._submits_in_flight

    @property
    def awaiting_ack(self) -> int:
        """deliver_sm received and not yet acknowledged by the application."""
        return len(self._awaiting_ack)

    def data_to_send(self) -> bytes:
        return self._outbox.take()

    def events(self) -> list[Event]:
        """Events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def next_timer(self) -> float | None:
        """When `timer(now)` must be called next (None: nothing scheduled)."""
        deadlines: list[float] = []
        if self._pending:
            # Every request waits the same timeout, so the oldest one expires first.
            deadlines.append(next(iter(self._pending.values())).deadline)
        if self._state in SENDS_ENQUIRE_LINK and not self._enquire_outstanding:
            deadlines.append(self._last_received + self.settings.enquire_link_interval)
        return min(deadlines) if deadlines else None

    # -------------------------------------------------------------- inputs

    def connection_made(self, now: float) -> None:
        """Send the bind request."""
        command, _ = BIND_REQUESTS[self.settings.bind_mode]
        self._transition(Trigger.SEND_BIND)
        self._last_received = now
        self._send_request(
            command,
            now,
            {
                "system_id": self.settings.system_id,
                "password": self.settings.password,
                "system_type": self.settings.system_type,
                "address_range": self.settings.address_range,
            },
            timeout=self.settings.bind_timeout,
        )

    def data_received(self, data: bytes, now: float) -> None:
        if self.closed:
            return
        try:
            frames = self._framer.feed(data)
        except PduFramingError as error:
            for frame in error.frames:
                self._frame_received(frame, now)
            if not self.closed:
                self._send_generic_nack(error.sequence, error.command_status)
                self._close(f"framing error: {error.reason}")
            return
        for frame in frames:
            self._frame_received(frame, now)
            if self.closed:
                return

    def connection_lost(self, now: float, reason: str = "connection lost") -> None:
        self._close(reason)

    def submit(
        self, message_ref: MessageRef, params: Mapping[str, ParamValue], now: float
    ) -> SubmitOutcome:
        """Send a submit_sm if the state, window, throttle pause and rate allow.

        Raises `PduEncodeError` for parameters that do not fit a submit_sm.
        """
        if self._state not in CAN_SUBMIT:
            return NotBound(self._state)
        if self._submits_in_flight >= self.settings.window:
            return WindowFull()
        if now < self._throttle.paused_until:
            return RateLimited(self._throttle.paused_until)
        if self._bucket is not None:
            retry_at = self._bucket.take(now)
            if retry_at is not None:
                return RateLimited(retry_at)
        fields = dict(params)
        fields.setdefault("registered_delivery", self.settings.registered_delivery)
        sequence = self._next_sequence()
        frame = encode_pdu("submit_sm", sequence, 0, fields)
        self._pending[sequence] = _Request(
            "submit_sm", now + self.settings.response_timeout, now, message_ref
        )
        self._submits_in_flight += 1
        self._outbox.chunks.append(frame)
        return Accepted(sequence)

    def ack_deliver(self, sequence: int, status: int = CommandStatus.ESME_ROK) -> None:
        """Answer a `DeliverSm` once the application has stored it (or refused it)."""
        command = self._awaiting_ack.pop(sequence, None)
        if command is None or self.closed:
            return
        self._send_response(command, sequence, status)

    def unbind(self, now: float) -> None:
        """Start a graceful unbind; before bound, just close."""
        if self._state in _BOUND:
            self._transition(Trigger.SEND_UNBIND)
            self._send_request("unbind", now)
        elif self._state is not SessionState.UNBINDING:
            self._close("closed before bound")

    def timer(self, now: float) -> None:
        while self._pending and not self.closed:
            sequence, request = next(iter(self._pending.items()))
            if request.deadline > now:
                break
            del self._pending[sequence]
            if request.command == "submit_sm":
                self._submits_in_flight -= 1
                self._events.append(ResponseTimeout(request.message_ref))
            elif request.command.startswith("bind_"):
                self._events.append(BindFailed(None))
                self._close("no bind_resp within bind_timeout")
            else:
                self._close(f"no {request.command}_resp within response_timeout")
        if (
            self._state in SENDS_ENQUIRE_LINK
            and not self._enquire_outstanding
            and now >= self._last_received + self.settings.enquire_link_interval
        ):
            self._enquire_outstanding = True
            self._send_request("enquire_link", now)

    # -------------------------------------------------------------- internals

    def _transition(self, trigger: Trigger) -> None:
        target = TRANSITIONS.get((self._state, trigger))
        if target is None:
            raise SessionStateError(f"{trigger.value} not allowed in {self._state.value}")
        self._state = target

    def _close(self, reason: str) -> None:
        if self.closed:
            return
        self._transition(Trigger.CLOSE)
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        unacked = tuple(
            request.message_ref
            for request in self._pending.values()
            if request.command == "submit_sm"
        )
        self._pending.clear()
        self._submits_in_flight = 0
        self._awaiting_ack.clear()
        self._events.append(ConnectionLost(reason, unacked))

    def _next_sequence(self) -> int:
        while True:
            self._sequence = self._sequence + 1 if self._sequence < MAX_SEQUENCE else 1
            if self._sequence not in self._pending:
                return self._sequence

    def _send_request(
        self,
        command: str,
        now: float,
        params: Mapping[str, ParamValue] | None = None,
        timeout: float | None = None,
    ) -> None:
        sequence = self._next_sequence()
        wait = self.settings.response_timeout if timeout is None else timeout
        self._outbox.chunks.append(encode_pdu(command, sequence, 0, params))
        self._pending[sequence] = _Request(command, now + wait, now)

    def _send_response(self, request: str, sequence: int, status: int) -> None:
        self._outbox.chunks.append(encode_pdu(response_name(request), sequence, status))

    def _send_generic_nack(self, sequence: int, status: int) -> None:
        self._outbox.chunks.append(encode_pdu("generic_nack", sequence, status))

    def _frame_received(self, frame: bytes, now: float) -> None:
        self._last_received = now
        try:
            pdu = decode_pdu(frame)
        except PduDecodeError as error:
            # Requests get a generic_nack; a broken response is dropped and its
            # request runs into response_timeout.
            if not error.command_id & RESPONSE_BIT:
                self._send_generic_nack(error.sequence, error.command_status)
            return
        if pdu.is_response:
            self._response_received(pdu, now)
        else:
            self._request_received(pdu)

    def _request_received(self, pdu: Pdu) -> None:
        command = pdu.command
        if command == "enquire_link":
            if self._state in ANSWERS_ENQUIRE_LINK:
                self._send_response(command, pdu.sequence, CommandStatus.ESME_ROK)
        elif command == "unbind":
            if self._state in ACCEPTS_UNBIND:
                self._send_response(command, pdu.sequence, CommandStatus.ESME_ROK)
                self._transition(Trigger.PEER_UNBIND)
                self._events.append(Unbound(by_peer=True))
                self._finish("unbound by the SMSC")
            else:
                self._send_response(command, pdu.sequence, CommandStatus.ESME_RINVBNDSTS)
        elif command in DELIVERY_REQUESTS:
            if self._state in CAN_RECEIVE:
                self._awaiting_ack[pdu.sequence] = command
                self._events.append(DeliverSm(pdu.sequence, pdu))
            else:
                self._send_response(command, pdu.sequence, CommandStatus.ESME_RINVBNDSTS)
        elif command == "alert_notification":
            pass  # no response is defined; nothing to do for a client
        else:
            self._send_generic_nack(pdu.sequence, CommandStatus.ESME_RINVCMDID)

    def _response_received(self, pdu: Pdu, now: float) -> None:
        request = self._pending.get(pdu.sequence)
        if request is None:
            return  # late answer to a timed-out request, or unsolicited
        nacked = pdu.command == "generic_nack"
        if not nacked and pdu.command != response_name(request.command):
            return  # answer of the wrong kind: keep waiting for the right one
        del self._pending[pdu.sequence]
        command = request.command
        if command == "submit_sm":
            self._submits_in_flight -= 1
            self._submit_answered(request, pdu, nacked, now)
        elif command == "enquire_link":
            self._enquire_outstanding = False
        elif command == "unbind":
            self._transition(Trigger.UNBIND_ACKED)
            self._events.append(Unbound(by_peer=False))
            self._finish("unbound")
        elif command.startswith("bind_"):
            if pdu.status == CommandStatus.ESME_ROK and not nacked:
                self._transition(BIND_REQUESTS[self.settings.bind_mode][1])
                self._events.append(Bound(pdu.text("system_id")))
            else:
                self._transition(Trigger.BIND_REFUSED)
                self._events.append(BindFailed(pdu.status))
                self._finish(f"bind refused with status 0x{pdu.status:02x}")

    def _submit_answered(self, request: _Request, pdu: Pdu, nacked: bool, now: float) -> None:
        if pdu.status in TRANSIENT_SUBMIT_STATUSES:
            retry_at = self._throttle.hit(request.sent_at, now)
            self._events.append(Throttled(request.message_ref, pdu.status, retry_at))
            return
        if pdu.status == CommandStatus.ESME_ROK and not nacked:
            self._throttle.ok()
            message_id: str | None = pdu.text("message_id") or None
        else:
            message_id = None
        self._events.append(SubmitResponse(request.message_ref, pdu.status, message_id, nacked))
