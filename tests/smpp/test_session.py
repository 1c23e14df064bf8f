"""Unit and protocol tests of the sans-IO SMPP session, the framer and the PDU codec.

The session talks to a tiny in-memory SMSC built from smpplib's own PDU
builders (an independent encoder/decoder); the clock is a number we move.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
import smpplib.smpp
from hypothesis import given, settings
from hypothesis import strategies as st

from smpp.pdu import (
    MAX_SEQUENCE,
    CommandStatus,
    ParamValue,
    PduDecodeError,
    PduEncodeError,
    PduFramer,
    PduFramingError,
    decode_pdu,
    encode_pdu,
)
from smpp.session import (
    Accepted,
    BindFailed,
    Bound,
    ConnectionLost,
    DeliverSm,
    NotBound,
    RateLimited,
    ResponseTimeout,
    SessionSettings,
    SessionState,
    SmppSession,
    SubmitResponse,
    Throttled,
    Unbound,
    WindowFull,
)

SETTINGS = SessionSettings(
    system_id="esme",
    password="secret",
    window=3,
    response_timeout=10.0,
    bind_timeout=5.0,
    enquire_link_interval=30.0,
    throttle_backoff_initial=1.0,
    throttle_backoff_max=4.0,
)
MESSAGE: dict[str, ParamValue] = {
    "source_addr": "1000",
    "destination_addr": "4915112345678",
    "short_message": b"hi",
}


class _SmpplibClient:
    sequence = 0

    def next_sequence(self) -> int:
        return 0


class FakeSmsc:
    """The SMSC end of an in-memory connection, using smpplib directly."""

    def __init__(self, session: SmppSession, bytewise: bool = False) -> None:
        self.session = session
        self.bytewise = bytewise
        self.received: list[Any] = []
        self.sequence = 1000

    def pull(self) -> list[Any]:
        """PDUs the session sent since the last pull (parsed by smpplib)."""
        data = self.session.data_to_send()
        new: list[Any] = []
        while data:
            (length,) = struct.unpack(">L", data[:4])
            frame, data = data[:length], data[length:]
            new.append(smpplib.smpp.parse_pdu(frame, client=_SmpplibClient()))
        self.received.extend(new)
        return new

    def push(self, frame: bytes, now: float) -> None:
        if self.bytewise:
            for index in range(len(frame)):
                self.session.data_received(frame[index : index + 1], now)
        else:
            self.session.data_received(frame, now)

    def send(
        self, command: str, now: float, sequence: int | None = None, status: int = 0, **params: Any
    ) -> int:
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        pdu = smpplib.smpp.make_pdu(command, client=_SmpplibClient(), **params)
        pdu.sequence = sequence
        pdu.status = status
        self.push(pdu.generate(), now)
        return sequence

    def answer(self, request: Any, now: float, status: int = 0, **params: Any) -> None:
        self.send(
            request.command + "_resp", now, sequence=request.sequence, status=status, **params
        )


def bound_session(
    settings: SessionSettings = SETTINGS, bytewise: bool = False, first_sequence: int = 1
) -> tuple[SmppSession, FakeSmsc]:
    session = SmppSession(settings, first_sequence=first_sequence)
    smsc = FakeSmsc(session, bytewise)
    session.connection_made(0.0)
    (bind,) = smsc.pull()
    smsc.answer(bind, 0.0, system_id="fake")
    assert session.events() == [Bound("fake")]
    return session, smsc


def of_type(events: list[Any], kind: type) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]


# ---------------------------------------------------------------- binding


@pytest.mark.parametrize(
    ("mode", "command", "state"),
    [
        ("transceiver", "bind_transceiver", SessionState.BOUND_TRX),
        ("transmitter", "bind_transmitter", SessionState.BOUND_TX),
        ("receiver", "bind_receiver", SessionState.BOUND_RX),
    ],
)
def test_bind_ok(mode: Any, command: str, state: SessionState) -> None:
    settings = SessionSettings(
        system_id="esme", password="secret", system_type="VMA", bind_mode=mode
    )
    session = SmppSession(settings)
    smsc = FakeSmsc(session)
    assert session.state.value == "open"
    session.connection_made(0.0)
    assert session.state is SessionState.BINDING
    (bind,) = smsc.pull()
    assert bind.command == command
    assert (bind.system_id, bind.password, bind.system_type) == (b"esme", b"secret", b"VMA")
    assert bind.interface_version == 0x34
    smsc.answer(bind, 0.5, system_id="fake-smsc")
    assert session.events() == [Bound("fake-smsc")]
    assert session.state is state


def test_bind_refused_closes_with_the_status() -> None:
    session = SmppSession(SETTINGS)
    smsc = FakeSmsc(session)
    session.connection_made(0.0)
    (bind,) = smsc.pull()
    smsc.answer(bind, 0.1, status=CommandStatus.ESME_RBINDFAIL)
    events = session.events()
    assert events[0] == BindFailed(CommandStatus.ESME_RBINDFAIL)
    assert isinstance(events[-1], ConnectionLost)
    assert session.closed
    assert isinstance(session.submit("m", MESSAGE, 0.2), NotBound)


def test_bind_timeout() -> None:
    session = SmppSession(SETTINGS)
    session.connection_made(100.0)
    assert session.next_timer() == 105.0
    session.timer(104.9)
    assert session.events() == []
    session.timer(105.0)
    events = session.events()
    assert events[0] == BindFailed(None)
    assert isinstance(events[1], ConnectionLost)
    assert session.closed


def test_submit_before_bound_is_refused() -> None:
    session = SmppSession(SETTINGS)
    session.connection_made(0.0)
    assert session.submit("m", MESSAGE, 0.0) == NotBound(SessionState.BINDING)


def test_receiver_cannot_submit() -> None:
    settings = SessionSettings(system_id="esme", password="secret", bind_mode="receiver")
    session, _ = bound_session(settings)
    assert isinstance(session.submit("m", MESSAGE, 1.0), NotBound)


# ---------------------------------------------------------------- window


def test_window_fills_and_drains() -> None:
    session, smsc = bound_session()
    outcomes = [session.submit(f"m{i}", MESSAGE, 1.0) for i in range(4)]
    assert [type(outcome) for outcome in outcomes] == [Accepted, Accepted, Accepted, WindowFull]
    submits = smsc.pull()
    assert [pdu.command for pdu in submits] == ["submit_sm"] * 3
    assert submits[0].destination_addr == b"4915112345678"
    assert submits[0].registered_delivery == SETTINGS.registered_delivery
    assert len({pdu.sequence for pdu in submits}) == 3
    assert session.window_free == 0

    # Answers out of order are correlated by sequence number.
    smsc.answer(submits[1], 1.1, message_id="id-1")
    assert session.events() == [SubmitResponse("m1", 0, "id-1")]
    assert session.window_free == 1
    assert isinstance(session.submit("m3", MESSAGE, 1.2), Accepted)
    assert isinstance(session.submit("m4", MESSAGE, 1.2), WindowFull)
    smsc.answer(submits[0], 1.3, message_id="id-0")
    smsc.answer(submits[2], 1.3, status=CommandStatus.ESME_RSYSERR)
    assert session.events() == [
        SubmitResponse("m0", 0, "id-0"),
        SubmitResponse("m2", CommandStatus.ESME_RSYSERR, None),
    ]
    assert session.submits_in_flight == 1


def test_response_timeout_frees_the_slot_and_ignores_late_answers() -> None:
    session, smsc = bound_session()
    assert isinstance(session.submit("late", MESSAGE, 2.0), Accepted)
    (submit,) = smsc.pull()
    assert session.next_timer() == 12.0
    session.timer(11.99)
    assert session.events() == []
    session.timer(12.0)
    assert session.events() == [ResponseTimeout("late")]
    assert session.submits_in_flight == 0
    smsc.answer(submit, 12.5, message_id="too-late")
    assert session.events() == []
    assert session.state is SessionState.BOUND_TRX


def test_generic_nack_answers_a_submit() -> None:
    session, smsc = bound_session()
    session.submit("m", MESSAGE, 1.0)
    (submit,) = smsc.pull()
    smsc.send("generic_nack", 1.1, sequence=submit.sequence, status=CommandStatus.ESME_RSYSERR)
    assert session.events() == [SubmitResponse("m", CommandStatus.ESME_RSYSERR, None, nacked=True)]


def test_encode_error_is_raised_before_taking_a_slot() -> None:
    session, _ = bound_session()
    with pytest.raises(PduEncodeError) as caught:
        session.submit("m", {**MESSAGE, "destination_addr": "1" * 30}, 1.0)
    assert caught.value.command_status == CommandStatus.ESME_RINVPARLEN
    with pytest.raises(PduEncodeError):
        session.submit("m", {**MESSAGE, "short_message": b"x" * 255}, 1.0)
    with pytest.raises(PduEncodeError):
        session.submit("m", {**MESSAGE, "no_such_field": 1}, 1.0)
    assert session.submits_in_flight == 0


# ---------------------------------------------------------------- keep-alive


def test_enquire_link_sent_after_idle_and_answered() -> None:
    session, smsc = bound_session()
    assert session.next_timer() == 30.0
    smsc.send("enquire_link", 20.0)  # any PDU from the SMSC resets the idle clock
    (resp,) = smsc.pull()
    assert resp.command == "enquire_link_resp"
    assert session.next_timer() == 50.0
    session.timer(49.0)
    assert smsc.pull() == []
    session.timer(50.0)
    (enquire,) = smsc.pull()
    assert enquire.command == "enquire_link"
    session.timer(55.0)  # outstanding: no second one
    assert smsc.pull() == []
    smsc.answer(enquire, 51.0)
    assert session.events() == []
    assert session.next_timer() == 81.0


def test_unanswered_enquire_link_closes_the_session() -> None:
    session, smsc = bound_session()
    session.submit("in-flight", MESSAGE, 29.0)
    session.timer(30.0)
    assert [pdu.command for pdu in smsc.pull()] == ["submit_sm", "enquire_link"]
    session.timer(39.0)
    assert session.events() == [ResponseTimeout("in-flight")]
    session.timer(40.0)
    (lost,) = session.events()
    assert isinstance(lost, ConnectionLost)
    assert "enquire_link" in lost.reason
    assert session.closed
    assert session.next_timer() is None


# ---------------------------------------------------------------- throttling and rate


@pytest.mark.parametrize("status", [CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL])
def test_throttling_pauses_submits_with_backoff(status: int) -> None:
    session, smsc = bound_session()
    session.submit("a", MESSAGE, 1.0)
    session.submit("b", MESSAGE, 1.0)
    a, b = smsc.pull()
    smsc.answer(a, 2.0, status=status)
    assert session.events() == [Throttled("a", status, 3.0)]
    assert session.submit("c", MESSAGE, 2.5) == RateLimited(3.0)
    # b was in flight with a: its throttle does not lengthen the pause.
    smsc.answer(b, 2.6, status=status)
    assert session.events() == [Throttled("b", status, 3.0)]
    assert isinstance(session.submit("c", MESSAGE, 3.0), Accepted)
    (c,) = smsc.pull()
    smsc.answer(c, 3.1, status=status)  # throttled again: the pause doubles
    assert session.events() == [Throttled("c", status, 5.1)]
    session.submit("d", MESSAGE, 5.1)
    (d,) = smsc.pull()
    smsc.answer(d, 5.2, status=status)
    assert session.events() == [Throttled("d", status, 9.2)]  # capped at 4 s
    session.submit("e", MESSAGE, 9.2)
    (e,) = smsc.pull()
    smsc.answer(e, 9.3, message_id="ok")  # success resets the backoff
    session.submit("f", MESSAGE, 9.3)
    (f,) = smsc.pull()
    smsc.answer(f, 9.4, status=status)
    assert session.events()[-1] == Throttled("f", status, 10.4)


def test_max_submit_rate_token_bucket() -> None:
    settings = SessionSettings(
        system_id="esme", password="pw", window=100, max_submit_rate=10.0, submit_burst=2
    )
    session, _ = bound_session(settings)
    assert isinstance(session.submit(1, MESSAGE, 1.0), Accepted)
    assert isinstance(session.submit(2, MESSAGE, 1.0), Accepted)
    outcome = session.submit(3, MESSAGE, 1.0)
    assert isinstance(outcome, RateLimited)
    assert outcome.retry_at == pytest.approx(1.1)
    assert isinstance(session.submit(3, MESSAGE, 1.1), Accepted)
    assert isinstance(session.submit(4, MESSAGE, 1.1), RateLimited)
    accepted = sum(
        isinstance(session.submit(n, MESSAGE, 2.0 + n / 100), Accepted) for n in range(100)
    )
    assert accepted == 11  # one second at 10/s, plus the token refilled at the start


# ---------------------------------------------------------------- deliveries


def test_deliver_sm_is_acknowledged_only_after_the_application_says_so() -> None:
    session, smsc = bound_session()
    seq = smsc.send(
        "deliver_sm",
        1.0,
        source_addr="4915112345678",
        destination_addr="1000",
        esm_class=0x04,
        short_message=b"id:1000000 sub:001 dlvrd:001 stat:DELIVRD",
        receipted_message_id="1000000",
        message_state=2,
    )
    (event,) = session.events()
    assert isinstance(event, DeliverSm)
    assert event.sequence == seq
    assert event.is_receipt
    assert event.pdu.text("receipted_message_id") == "1000000"
    assert event.pdu.integer("message_state") == 2
    assert smsc.pull() == []  # not stored yet: no answer
    assert session.awaiting_ack == 1
    session.ack_deliver(seq, CommandStatus.ESME_ROK)
    (resp,) = smsc.pull()
    assert (resp.command, resp.sequence, resp.status) == ("deliver_sm_resp", seq, 0)
    session.ack_deliver(seq, CommandStatus.ESME_ROK)  # twice: ignored
    assert smsc.pull() == []


def test_deliver_sm_with_unknown_tlvs_is_tolerated() -> None:
    session, smsc = bound_session()
    pdu = smpplib.smpp.make_pdu(
        "deliver_sm",
        client=_SmpplibClient(),
        source_addr="1",
        destination_addr="2",
        short_message=b"mo",
    )
    pdu.sequence = 7
    frame = pdu.generate()
    # A vendor TLV, and a TLV smpplib knows but not for deliver_sm (source_addr_subunit).
    extra = bytes.fromhex("1403000201ff") + bytes.fromhex("000d000102")
    frame = struct.pack(">L", len(frame) + len(extra)) + frame[4:] + extra
    smsc.push(frame, 1.0)
    (event,) = session.events()
    assert isinstance(event, DeliverSm)
    assert not event.is_receipt
    assert event.pdu.octets("short_message") == b"mo"
    assert event.pdu.unknown_tlvs == {0x1403: b"\x01\xff", 0x000D: b"\x02"}


def test_deliver_sm_to_a_transmitter_is_refused() -> None:
    settings = SessionSettings(system_id="esme", password="pw", bind_mode="transmitter")
    session, smsc = bound_session(settings)
    seq = smsc.send("deliver_sm", 1.0, source_addr="1", destination_addr="2", short_message=b"x")
    assert session.events() == []
    (resp,) = smsc.pull()
    assert (resp.command, resp.sequence, resp.status) == (
        "deliver_sm_resp",
        seq,
        CommandStatus.ESME_RINVBNDSTS,
    )


# ---------------------------------------------------------------- errors and unbinding


def test_generic_nack_on_undecodable_pdu() -> None:
    session, smsc = bound_session()
    # Unknown command_id.
    smsc.push(struct.pack(">LLLL", 16, 0x00000077, 0, 42), 1.0)
    (nack,) = smsc.pull()
    assert (nack.command, nack.status, nack.sequence) == (
        "generic_nack",
        CommandStatus.ESME_RINVCMDID,
        42,
    )
    # Known command, body truncated inside a C-string.
    smsc.push(struct.pack(">LLLL", 19, 0x00000005, 0, 43) + b"abc", 1.0)
    (nack,) = smsc.pull()
    assert (nack.command, nack.status, nack.sequence) == (
        "generic_nack",
        CommandStatus.ESME_RINVCMDLEN,
        43,
    )
    # A command an ESME never receives.
    smsc.send("submit_sm", 1.0, sequence=44, source_addr="1", destination_addr="2")
    (nack,) = smsc.pull()
    assert (nack.command, nack.status, nack.sequence) == (
        "generic_nack",
        CommandStatus.ESME_RINVCMDID,
        44,
    )
    assert session.state is SessionState.BOUND_TRX
    assert session.events() == []


def test_bad_command_length_nacks_and_closes_after_earlier_frames() -> None:
    session, smsc = bound_session()
    session.submit("answered", MESSAGE, 1.0)
    session.submit("lost", MESSAGE, 1.0)
    answered, _ = smsc.pull()
    resp = smpplib.smpp.make_pdu("submit_sm_resp", client=_SmpplibClient(), message_id="9")
    resp.sequence = answered.sequence
    # The simulator's malformed PDU (command_length 10) right behind a valid answer.
    smsc.push(resp.generate() + bytes.fromhex("0000000a800000040000"), 2.0)
    events = session.events()
    assert events[0] == SubmitResponse("answered", 0, "9")
    assert isinstance(events[1], ConnectionLost)
    assert events[1].unacked == ("lost",)
    (nack,) = smsc.pull()
    assert (nack.command, nack.status) == ("generic_nack", CommandStatus.ESME_RINVCMDLEN)
    assert session.closed
    session.data_received(b"more", 3.0)  # ignored once closed
    assert session.events() == []


def test_peer_unbind_is_answered_and_reports_unacked() -> None:
    session, smsc = bound_session()
    session.submit("pending", MESSAGE, 1.0)
    smsc.pull()
    seq = smsc.send("unbind", 2.0)
    (resp,) = smsc.pull()
    assert (resp.command, resp.sequence, resp.status) == ("unbind_resp", seq, 0)
    events = session.events()
    assert events[0] == Unbound(by_peer=True)
    assert events[1] == ConnectionLost("unbound by the SMSC", ("pending",))
    assert session.closed


def test_local_unbind() -> None:
    session, smsc = bound_session()
    session.unbind(1.0)
    assert session.state is SessionState.UNBINDING
    assert isinstance(session.submit("m", MESSAGE, 1.0), NotBound)
    (unbind,) = smsc.pull()
    assert unbind.command == "unbind"
    smsc.send("enquire_link", 1.1)  # still answered while unbinding
    assert smsc.pull()[0].command == "enquire_link_resp"
    smsc.answer(unbind, 1.2)
    assert session.events() == [Unbound(by_peer=False), ConnectionLost("unbound", ())]
    assert session.closed


def test_unanswered_unbind_closes() -> None:
    session, smsc = bound_session()
    session.unbind(1.0)
    smsc.pull()
    session.timer(11.0)
    (lost,) = session.events()
    assert isinstance(lost, ConnectionLost)
    assert session.closed


def test_connection_lost_reports_in_flight_submits() -> None:
    session, smsc = bound_session()
    for ref in ("a", "b"):
        session.submit(ref, MESSAGE, 1.0)
    submits = smsc.pull()
    smsc.answer(submits[0], 1.1, message_id="1")
    session.connection_lost(1.2)
    events = session.events()
    assert events == [SubmitResponse("a", 0, "1"), ConnectionLost("connection lost", ("b",))]
    session.connection_lost(1.3)
    assert session.events() == []


def test_sequence_numbers_wrap() -> None:
    session, smsc = bound_session(first_sequence=MAX_SEQUENCE - 1)
    for ref in range(3):
        session.submit(ref, MESSAGE, 1.0)
    submits = smsc.pull()
    # The bind took MAX-1; the submits take MAX, then wrap to 1 and 2.
    assert [pdu.sequence for pdu in submits] == [MAX_SEQUENCE, 1, 2]
    for pdu, message_id in zip(submits, "xyz", strict=True):
        smsc.answer(pdu, 1.1, message_id=message_id)
    assert [getattr(event, "message_ref", None) for event in session.events()] == [0, 1, 2]


def test_whole_conversation_fed_one_byte_at_a_time() -> None:
    session, smsc = bound_session(bytewise=True)
    session.submit("m", MESSAGE, 1.0)
    (submit,) = smsc.pull()
    smsc.answer(submit, 1.1, message_id="abc")
    seq = smsc.send(
        "deliver_sm",
        1.2,
        source_addr="1",
        destination_addr="2",
        short_message=b"hello",
        esm_class=0,
    )
    smsc.send("enquire_link", 1.3)
    events = session.events()
    assert events[0] == SubmitResponse("m", 0, "abc")
    assert isinstance(events[1], DeliverSm)
    assert events[1].pdu.octets("short_message") == b"hello"
    session.ack_deliver(seq)
    assert [pdu.command for pdu in smsc.pull()] == ["enquire_link_resp", "deliver_sm_resp"]
    smsc.send("unbind", 1.4)
    assert session.closed


def test_state_table_rejects_illegal_transitions() -> None:
    session, _ = bound_session()
    with pytest.raises(RuntimeError):
        session.connection_made(1.0)


# ---------------------------------------------------------------- framer and codec


def _frames(draw: Callable[..., Any]) -> list[bytes]:
    out = []
    for sequence in range(draw(st.integers(0, 5))):
        message = draw(st.binary(max_size=254))
        out.append(
            encode_pdu(
                "deliver_sm", sequence + 1, 0, {"source_addr": "1", "short_message": message}
            )
        )
    return out


@given(data=st.data())
def test_framer_reassembles_any_chunking(data: st.DataObject) -> None:
    frames = _frames(data.draw)
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    framer = PduFramer()
    got: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        got.extend(framer.feed(stream[start:cut]))
        start = cut
    assert got == frames
    assert framer.buffered == 0


@settings(max_examples=300)
@given(chunks=st.lists(st.binary(max_size=200), max_size=10), limit=st.integers(16, 300))
def test_framer_yields_frames_or_the_planned_error(chunks: list[bytes], limit: int) -> None:
    framer = PduFramer(max_pdu_bytes=limit)
    for chunk in chunks:
        try:
            frames = framer.feed(chunk)
        except PduFramingError as error:
            assert error.command_status == CommandStatus.ESME_RINVCMDLEN
            assert framer.buffered == 0
            with pytest.raises(PduFramingError):
                framer.feed(b"")
            return
        for frame in frames:
            assert 16 <= len(frame) <= limit
            assert int.from_bytes(frame[:4], "big") == len(frame)
        assert framer.buffered < limit


@pytest.mark.parametrize("length", [0, 15, 65_537, 0xFFFFFFFF])
def test_framer_rejects_bad_lengths_without_buffering(length: int) -> None:
    framer = PduFramer()
    with pytest.raises(PduFramingError) as caught:
        framer.feed(struct.pack(">LLLL", length, 4, 0, 9) + b"x" * 1000)
    assert caught.value.sequence == 9
    assert framer.buffered == 0
    framer = PduFramer()
    with pytest.raises(PduFramingError):
        framer.feed(struct.pack(">L", length))  # rejected as soon as the length is known


def test_framer_accepts_exactly_the_limit() -> None:
    framer = PduFramer(max_pdu_bytes=64 * 1024)
    frame = struct.pack(">LLLL", 64 * 1024, 5, 0, 1) + bytes(64 * 1024 - 16)
    assert framer.feed(frame) == [frame]


@settings(max_examples=500)
@given(frame=st.binary(max_size=300))
def test_decode_arbitrary_bytes_parses_or_raises_planned_error(frame: bytes) -> None:
    try:
        decode_pdu(frame)
    except PduDecodeError as error:
        assert error.command_status in set(CommandStatus)


_COMMAND_IDS = [
    0x80000000,
    1,
    0x80000001,
    2,
    0x80000002,
    3,
    4,
    0x80000004,
    5,
    0x80000005,
    6,
    0x80000006,
    9,
    0x80000009,
    0x15,
    0x80000015,
    0x102,
    0x103,
    0x80000103,
    0x77,
]


@settings(max_examples=1000)
@given(
    command_id=st.sampled_from(_COMMAND_IDS),
    body=st.binary(max_size=200),
    sequence=st.integers(0, 0xFFFFFFFF),
)
def test_decode_any_body_parses_or_raises_planned_error(
    command_id: int, body: bytes, sequence: int
) -> None:
    frame = struct.pack(">LLLL", 16 + len(body), command_id, 0, sequence) + body
    try:
        pdu = decode_pdu(frame)
    except PduDecodeError as error:
        assert error.sequence == sequence
        assert error.command_status in set(CommandStatus)
    else:
        assert pdu.sequence == sequence


@settings(max_examples=300)
@given(
    source=st.text(alphabet="0123456789", max_size=20),
    message=st.binary(max_size=254),
    data_coding=st.integers(0, 255),
    sequence=st.integers(1, MAX_SEQUENCE),
    tlv=st.tuples(st.integers(0x1400, 0x3FFF), st.binary(max_size=20)),
)
def test_encode_decode_roundtrip(
    source: str, message: bytes, data_coding: int, sequence: int, tlv: tuple[int, bytes]
) -> None:
    frame = encode_pdu(
        "deliver_sm",
        sequence,
        0,
        {"source_addr": source, "short_message": message, "data_coding": data_coding},
    )
    tag, value = tlv
    frame += struct.pack(">HH", tag, len(value)) + value
    frame = struct.pack(">L", len(frame)) + frame[4:]
    pdu = decode_pdu(frame)
    assert (pdu.command, pdu.sequence) == ("deliver_sm", sequence)
    assert pdu.text("source_addr") == source
    assert pdu.octets("short_message") == message
    assert pdu.integer("data_coding") == data_coding
    assert pdu.unknown_tlvs == {tag: value}
