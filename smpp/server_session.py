"""One SMSC-side SMPP 3.4 session (an ESME bound to Callgate), sans-IO.

Bytes and `now` (monotonic seconds) in, bytes and events out, one timer at
`next_timer()`; the adapter (`smpp.server`) owns the socket. Credentials are
checked through a `BindAuthenticator`, and what becomes of a submit_sm is the
application's decision: the session emits `SubmitReceived` and the adapter
answers it with `answer_submit`.

Limits built in, all from `ServerSessionSettings`: a connection must bind
within `bind_timeout` (slowloris), a bound one that stays silent for
`inactivity_timeout` is closed, at most `window` submits wait for the
application (more are answered ESME_RTHROTTLED), requests beyond a token
bucket of `max_pdu_rate` are refused ESME_RTHROTTLED, and no frame above
`max_pdu_bytes` is ever buffered: such a command_length (or one below the
header size) loses the framing and closes the connection.

Concatenated messages (UDHI set in esm_class) are passed on part by part, each
part's text as its own message, with the UDH removed; reassembly is not done.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal, Protocol

from smpp.encoding import Coding, SmsEncodingError, decode_text
from smpp.pdu import (
    DEFAULT_MAX_PDU_BYTES,
    MAX_SEQUENCE,
    RESPONSE_BIT,
    CommandStatus,
    ParamValue,
    Pdu,
    PduDecodeError,
    PduEncodeError,
    PduFramer,
    PduFramingError,
    decode_pdu,
    encode_pdu,
    response_name,
)

BindMode = Literal["transmitter", "receiver", "transceiver"]

ESME_RSUBMITFAIL: Final = 0x45
"""submit_sm failed (text that cannot be decoded, both short_message and payload)."""
ESME_RINVSCHED: Final = 0x61
ESME_RINVEXPIRY: Final = 0x62
UDHI: Final = 0x40
"""esm_class bit: short_message starts with a user data header."""
DATA_CODINGS: Final[Mapping[int, Coding]] = {
    0x00: Coding.GSM7,  # SMSC default alphabet, one septet per octet (unpacked)
    0x01: Coding.LATIN1,  # IA5 (ASCII) is a subset
    0x03: Coding.LATIN1,
    0x08: Coding.UCS2,
}
"""data_coding values a customer may submit with, and how their octets decode."""


class ServerState(Enum):
    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    """We sent unbind (shutdown) and wait for unbind_resp and the open submits."""
    UNBOUND = "unbound"
    """The ESME unbound and was answered; the connection is over."""
    CLOSED = "closed"


class ServerTrigger(Enum):
    BIND_AS_TX = "bind_as_tx"
    BIND_AS_RX = "bind_as_rx"
    BIND_AS_TRX = "bind_as_trx"
    BIND_REFUSED = "bind_refused"
    SEND_UNBIND = "send_unbind"
    PEER_UNBIND = "peer_unbind"
    UNBIND_DONE = "unbind_done"
    CLOSE = "close"
    """Connection lost, framing lost or a timeout: from any live state."""


S = ServerState
T = ServerTrigger
_BOUND: Final = frozenset({S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX})
FINISHED: Final = frozenset({S.UNBOUND, S.CLOSED})

TRANSITIONS: Final[Mapping[tuple[ServerState, ServerTrigger], ServerState]] = {
    (S.OPEN, T.BIND_AS_TX): S.BOUND_TX,
    (S.OPEN, T.BIND_AS_RX): S.BOUND_RX,
    (S.OPEN, T.BIND_AS_TRX): S.BOUND_TRX,
    (S.OPEN, T.BIND_REFUSED): S.CLOSED,
    **{(bound, T.SEND_UNBIND): S.UNBINDING for bound in _BOUND},
    **{(bound, T.PEER_UNBIND): S.UNBOUND for bound in _BOUND},
    (S.UNBINDING, T.PEER_UNBIND): S.UNBOUND,
    (S.UNBINDING, T.UNBIND_DONE): S.CLOSED,
    **{(state, T.CLOSE): S.CLOSED for state in ServerState if state not in FINISHED},
}
"""Every legal state change; anything else raises `ServerSessionStateError`."""

BIND_COMMANDS: Final[Mapping[str, tuple[BindMode, ServerTrigger]]] = {
    "bind_transmitter": ("transmitter", T.BIND_AS_TX),
    "bind_receiver": ("receiver", T.BIND_AS_RX),
    "bind_transceiver": ("transceiver", T.BIND_AS_TRX),
}
CAN_SUBMIT: Final = frozenset({S.BOUND_TX, S.BOUND_TRX})
ANSWERS_ENQUIRE_LINK: Final = frozenset({S.OPEN, *_BOUND, S.UNBINDING})
ACCEPTS_UNBIND: Final = frozenset({*_BOUND, S.UNBINDING})
ANSWERS_SUBMITS: Final = frozenset({*_BOUND, S.UNBINDING})
"""States in which answers to submits already handed to the application go out."""
INACTIVITY_APPLIES: Final = _BOUND


class ServerSessionStateError(RuntimeError):
    """A transition the table does not allow (a bug in the session)."""


class BindAuthenticator(Protocol):
    """Policy: who may bind. Returns the account of a valid system_id/password pair."""

    def authenticate(self, system_id: str, password: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ServerSessionSettings:
    """What one server session needs from `SmppServerConfig`."""

    system_id: str = "Callgate"
    """Our system_id in bind responses."""
    bind_timeout: float = 10.0
    inactivity_timeout: float = 120.0
    response_timeout: float = 10.0
    window: int = 10
    max_pdu_rate: float = 200.0
    pdu_burst: int = 200
    max_pdu_bytes: int = DEFAULT_MAX_PDU_BYTES


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class BindAccepted:
    system_id: str
    account: str
    mode: BindMode


@dataclass(frozen=True, slots=True)
class BindRejected:
    """A bind with wrong credentials; the connection is closed after the answer."""

    system_id: str


@dataclass(frozen=True, slots=True)
class SubmitReceived:
    """A decoded submit_sm; answer it with `answer_submit(sequence, ...)`.

    `schedule_delivery_time` and `validity_period` are the raw SMPP time
    strings (see `smpp_time`), since turning them into epochs needs the wall clock.
    """

    sequence: int
    account: str
    source: str
    destination: str
    text: str
    schedule_delivery_time: str
    validity_period: str
    registered_delivery: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """Always the last event. `unanswered` are submits handed out and not answered."""

    reason: str
    unanswered: tuple[int, ...]


ServerEvent = BindAccepted | BindRejected | SubmitReceived | SessionClosed


# ---------------------------------------------------------------- SMPP times


class SmppTimeError(ValueError):
    """A schedule_delivery_time / validity_period that is not SMPP 3.4 §7.1.1."""


def smpp_time(value: str, wall_now: float) -> float | None:
    """An SMPP absolute or relative time as epoch seconds; None when empty.

    Relative times count a month as 30 days and a year as 365 days.
    """
    if not value:
        return None
    if len(value) != 16 or not value[:13].isdigit() or value[15] not in "+-R":
        raise SmppTimeError(f"{value!r} is not YYMMDDhhmmsstnnp")
    yy, mo, dd, hh, mi, ss = (int(value[i : i + 2]) for i in range(0, 12, 2))
    tenths = int(value[12])
    if value[15] == "R":
        days = yy * 365 + mo * 30 + dd
        return wall_now + days * 86_400 + hh * 3600 + mi * 60 + ss
    if not value[13:15].isdigit() or int(value[13:15]) > 48:
        raise SmppTimeError(f"{value!r} has a bad UTC offset")
    offset = int(value[13:15]) * 900 * (1 if value[15] == "+" else -1)
    try:
        local = dt.datetime(2000 + yy, mo, dd, hh, mi, ss, tenths * 100_000, dt.UTC)
    except ValueError as exc:
        raise SmppTimeError(f"{value!r}: {exc}") from exc
    return local.timestamp() - offset


# ---------------------------------------------------------------- the session


@dataclass(slots=True)
class _TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float | None = None

    def take(self, now: float) -> bool:
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class _Outbox:
    chunks: list[bytes] = field(default_factory=list)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


class _SubmitRefusedError(Exception):
    def __init__(self, command_status: int, reason: str) -> None:
        super().__init__(reason)
        self.command_status = command_status


class SmppServerSession:
    """The SMSC side of one ESME connection: bind, submits, keep-alive, unbind."""

    def __init__(self, settings: ServerSessionSettings, authenticator: BindAuthenticator) -> None:
        if settings.window < 1:
            raise ValueError("window must be at least 1")
        self.settings = settings
        self._authenticator = authenticator
        self._state = ServerState.OPEN
        self._framer = PduFramer(settings.max_pdu_bytes)
        self._outbox = _Outbox()
        self._events: list[ServerEvent] = []
        self._bucket = _TokenBucket(
            settings.max_pdu_rate, float(settings.pdu_burst), float(settings.pdu_burst)
        )
        self._in_flight: set[int] = set()
        self._sequence = 0
        self._opened_at = 0.0
        self._last_received = 0.0
        self._unbind_deadline: float | None = None
        self._unbind_acked = False
        self.account: str | None = None
        self.system_id: str | None = None

    # -------------------------------------------------------------- observation

    @property
    def state(self) -> ServerState:
        return self._state

    @property
    def finished(self) -> bool:
        """Unbound or closed: flush `data_to_send()` and close the transport."""
        return self._state in FINISHED

    @property
    def submits_in_flight(self) -> int:
        return len(self._in_flight)

    def data_to_send(self) -> bytes:
        return self._outbox.take()

    def events(self) -> list[ServerEvent]:
        events, self._events = self._events, []
        return events

    def next_timer(self) -> float | None:
        """When `timer(now)` must be called next (None: nothing scheduled)."""
        if self._state is S.OPEN:
            return self._opened_at + self.settings.bind_timeout
        if self._state in INACTIVITY_APPLIES:
            return self._last_received + self.settings.inactivity_timeout
        if self._state is S.UNBINDING:
            return self._unbind_deadline
        return None

    # -------------------------------------------------------------- inputs

    def connection_made(self, now: float) -> None:
        self._opened_at = now
        self._last_received = now

    def data_received(self, data: bytes, now: float) -> None:
        if self.finished:
            return
        try:
            frames = self._framer.feed(data)
        except PduFramingError as error:
            for frame in error.frames:
                self._frame_received(frame, now)
                if self.finished:
                    return
            self._send_generic_nack(error.sequence, error.command_status)
            self._close(f"framing lost: {error.reason}")
            return
        for frame in frames:
            self._frame_received(frame, now)
            if self.finished:
                return

    def connection_lost(self, reason: str = "connection lost") -> None:
        self._close(reason)

    def timer(self, now: float) -> None:
        deadline = self.next_timer()
        if deadline is None or now < deadline:
            return
        if self._state is S.OPEN:
            self._close("no bind within bind_timeout")
        elif self._state is S.UNBINDING:
            self._close("no unbind_resp within response_timeout")
        else:
            self._close("inactive for inactivity_timeout")

    def answer_submit(self, sequence: int, status: int, message_id: str | None = None) -> None:
        """The application's answer to a `SubmitReceived`."""
        if sequence not in self._in_flight:
            return
        self._in_flight.discard(sequence)
        if self._state in ANSWERS_SUBMITS:
            params = {"message_id": message_id or ""} if status == CommandStatus.ESME_ROK else {}
            self._send_response("submit_sm", sequence, status, params)
        if self._state is S.UNBINDING and self._unbind_acked and not self._in_flight:
            self._unbind_done()

    def unbind(self, now: float) -> None:
        """Graceful end (shutdown): unbind when bound, else close."""
        if self._state in _BOUND:
            self._transition(T.SEND_UNBIND)
            self._unbind_deadline = now + self.settings.response_timeout
            self._outbox.chunks.append(encode_pdu("unbind", self._next_sequence()))
        elif self._state is not S.UNBINDING:
            self._close("server shutting down")

    # -------------------------------------------------------------- internals

    def _transition(self, trigger: ServerTrigger) -> None:
        target = TRANSITIONS.get((self._state, trigger))
        if target is None:
            raise ServerSessionStateError(f"{trigger.value} not allowed in {self._state.value}")
        self._state = target

    def _close(self, reason: str) -> None:
        if self.finished:
            return
        self._transition(T.CLOSE)
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        unanswered = tuple(sorted(self._in_flight))
        self._in_flight.clear()
        self._events.append(SessionClosed(reason, unanswered))

    def _unbind_done(self) -> None:
        self._transition(T.UNBIND_DONE)
        self._finish("unbound by the server")

    def _next_sequence(self) -> int:
        self._sequence = self._sequence + 1 if self._sequence < MAX_SEQUENCE else 1
        return self._sequence

    def _send_response(
        self,
        request: str,
        sequence: int,
        status: int,
        params: Mapping[str, ParamValue] | None = None,
    ) -> None:
        try:
            frame = encode_pdu(response_name(request), sequence, status, params)
        except PduEncodeError:
            frame = encode_pdu(response_name(request), sequence, CommandStatus.ESME_RSYSERR)
        self._outbox.chunks.append(frame)

    def _send_generic_nack(self, sequence: int, status: int) -> None:
        self._outbox.chunks.append(encode_pdu("generic_nack", sequence, status))

    def _frame_received(self, frame: bytes, now: float) -> None:
        self._last_received = now
        try:
            pdu = decode_pdu(frame)
        except PduDecodeError as error:
            if not error.command_id & RESPONSE_BIT:
                self._send_generic_nack(error.sequence, error.command_status)
            return
        if pdu.is_response:
            self._response_received(pdu)
            return
        if not self._bucket.take(now):
            self._refuse(pdu, CommandStatus.ESME_RTHROTTLED)
            return
        self._request_received(pdu)

    def _refuse(self, pdu: Pdu, status: int) -> None:
        if pdu.command in ("generic_nack", "alert_notification", "outbind"):
            return  # no response is defined
        self._send_response(pdu.command, pdu.sequence, status)

    def _response_received(self, pdu: Pdu) -> None:
        if pdu.command == "unbind_resp" and self._state is S.UNBINDING:
            self._unbind_acked = True
            if not self._in_flight:
                self._unbind_done()
        # Other answers (to our unbind in another state, stray ones) need nothing.

    def _request_received(self, pdu: Pdu) -> None:
        command = pdu.command
        if command in BIND_COMMANDS:
            self._bind(pdu)
        elif command == "submit_sm":
            self._submit(pdu)
        elif command == "enquire_link":
            status = (
                CommandStatus.ESME_ROK
                if self._state in ANSWERS_ENQUIRE_LINK
                else CommandStatus.ESME_RINVBNDSTS
            )
            self._send_response(command, pdu.sequence, status)
        elif command == "unbind":
            if self._state in ACCEPTS_UNBIND:
                self._send_response(command, pdu.sequence, CommandStatus.ESME_ROK)
                self._transition(T.PEER_UNBIND)
                self._finish("unbound by the ESME")
            else:
                self._send_response(command, pdu.sequence, CommandStatus.ESME_RINVBNDSTS)
        elif command in ("generic_nack", "alert_notification", "outbind"):
            pass  # no response is defined for these
        elif self._state is S.OPEN:
            self._send_response(command, pdu.sequence, CommandStatus.ESME_RINVBNDSTS)
        else:
            self._send_response(command, pdu.sequence, CommandStatus.ESME_RINVCMDID)

    def _bind(self, pdu: Pdu) -> None:
        command = pdu.command
        if self._state is not S.OPEN:
            self._send_response(command, pdu.sequence, CommandStatus.ESME_RALYBND)
            return
        mode, trigger = BIND_COMMANDS[command]
        system_id = pdu.text("system_id")
        account = self._authenticator.authenticate(system_id, pdu.text("password"))
        if account is None:
            self._send_response(command, pdu.sequence, CommandStatus.ESME_RBINDFAIL)
            self._events.append(BindRejected(system_id))
            self._transition(T.BIND_REFUSED)
            self._finish(f"bind refused for system_id {system_id!r}")
            return
        self._transition(trigger)
        self.account = account
        self.system_id = system_id
        self._send_response(
            command, pdu.sequence, CommandStatus.ESME_ROK, {"system_id": self.settings.system_id}
        )
        self._events.append(BindAccepted(system_id, account, mode))

    def _submit(self, pdu: Pdu) -> None:
        if self._state not in CAN_SUBMIT or self.account is None:
            self._send_response("submit_sm", pdu.sequence, CommandStatus.ESME_RINVBNDSTS)
            return
        if len(self._in_flight) >= self.settings.window:
            self._send_response("submit_sm", pdu.sequence, CommandStatus.ESME_RTHROTTLED)
            return
        if pdu.sequence in self._in_flight:
            self._send_response("submit_sm", pdu.sequence, CommandStatus.ESME_RSYSERR)
            return
        try:
            text = submitted_text(pdu)
        except _SubmitRefusedError as error:
            self._send_response("submit_sm", pdu.sequence, error.command_status)
            return
        self._in_flight.add(pdu.sequence)
        self._events.append(
            SubmitReceived(
                sequence=pdu.sequence,
                account=self.account,
                source=pdu.text("source_addr"),
                destination=pdu.text("destination_addr"),
                text=text,
                schedule_delivery_time=pdu.text("schedule_delivery_time"),
                validity_period=pdu.text("validity_period"),
                registered_delivery=pdu.integer("registered_delivery"),
            )
        )


def submitted_text(pdu: Pdu) -> str:
    """The text of a submit_sm: short_message or message_payload, UDH removed,
    decoded by data_coding; raises `_SubmitRefusedError` with the status to answer."""
    short_message = pdu.octets("short_message")
    payload = pdu.octets("message_payload")
    if short_message and payload:
        raise _SubmitRefusedError(ESME_RSUBMITFAIL, "both short_message and message_payload")
    data = payload or short_message
    if pdu.integer("esm_class") & UDHI and data:
        header_length = data[0] + 1
        if header_length > len(data):
            raise _SubmitRefusedError(ESME_RSUBMITFAIL, "user data header longer than the data")
        data = data[header_length:]
    coding = DATA_CODINGS.get(pdu.integer("data_coding"))
    if coding is None:
        raise _SubmitRefusedError(ESME_RSUBMITFAIL, "unsupported data_coding")
    try:
        return decode_text(data, coding)
    except SmsEncodingError as error:
        raise _SubmitRefusedError(error.command_status, str(error)) from error
