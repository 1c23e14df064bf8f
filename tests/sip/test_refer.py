"""A caller's REFER at the edge, pure and in memory: parsing, the verdict, retransmissions,
the BYE mark. No sockets: the edge answers through a recording peer; a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.accounts import TrunkConfig
from gateway.config.sip import SipConfig
from gateway.metrics import Metrics
from gateway.sip.admission import AdmissionRequest, Admit, Decision, Reject
from gateway.sip.directory import Directory
from gateway.sip.edge import SipEdge
from gateway.sip.errors import SipParseError
from gateway.sip.message import SipRequest, SipResponse, parse_message
from gateway.sip.proxy import Interface, forward_request
from gateway.sip.refer import (
    TRANSFER_HEADER,
    ReferLog,
    TransferRequest,
    TransferVerdict,
    parse_refer,
    refer_key,
)
from gateway.sip.transport import Peer


def refer_bytes(refer_to: str | None = "<sip:2345@198.51.100.7>", cseq: int = 2) -> bytes:
    head = (
        "REFER sip:1234@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-r\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@127.0.0.1>;tag=a\r\n"
        "To: <sip:1234@192.0.2.1>;tag=engine\r\n"
        "Call-ID: c1\r\n"
        f"CSeq: {cseq} REFER\r\n"
        "Referred-By: <sip:alice@127.0.0.1>\r\n"
    )
    if refer_to is not None:
        head += f"Refer-To: {refer_to}\r\n"
    return (head + "Content-Length: 0\r\n\r\n").encode()


def request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def test_a_refer_names_its_dialog_target_and_referrer() -> None:
    assert parse_refer(request(refer_bytes()), trunk="pbx") == TransferRequest(
        "c1", "sip:2345@198.51.100.7", "<sip:alice@127.0.0.1>", "", "pbx"
    )
    assert parse_refer(request(refer_bytes("tel:+4930123")), account="alice").refer_to == (
        "tel:+4930123"
    )


@pytest.mark.parametrize(
    ("refer_to", "status"),
    [
        (None, 400),
        ("<sip:1@a>, <sip:2@b>", 400),
        ("<http://example.com/x>", 416),
        ("<sip:2345@b?Replaces=x%40y%3Bto-tag%3D1%3Bfrom-tag%3D2>", 603),
        ("<sip:2345@b;method=BYE>", 603),
    ],
    ids=["missing", "two", "http", "attended", "not-invite"],
)
def test_unusable_refers_carry_their_answer(refer_to: str | None, status: int) -> None:
    with pytest.raises(SipParseError) as raised:
        parse_refer(request(refer_bytes(refer_to)))
    assert raised.value.status == status


@given(st.text(max_size=60))
def test_any_refer_to_parses_or_raises_the_planned_error(refer_to: str) -> None:
    value = refer_to.replace("\r", " ").replace("\n", " ").strip()
    try:
        message = request(refer_bytes(value or None))
    except SipParseError:
        return  # the message layer refused it already
    try:
        parse_refer(message)
    except SipParseError as exc:
        assert exc.status in (400, 416, 603)


def test_the_log_keeps_answers_for_a_transaction_lifetime() -> None:
    log = ReferLog(keep_for=32.0, max_entries=2)
    key = ("c1", "a", 2)
    log.remember(key, TransferVerdict(202, "Accepted", 1), now=0.0)
    log.remember(("c2", "b", 5), TransferVerdict(400, "Bad Request"), now=1.0)
    assert log.answer_for(key, now=31.9) == TransferVerdict(202, "Accepted", 1)
    assert log.transfer_accepted("c1", now=31.9) == 1
    assert log.transfer_accepted("c2", now=31.9) == 0  # refused: no transfer to wait for
    assert log.answer_for(key, now=32.0) is None
    assert log.transfer_accepted("c1", now=32.0) == 0
    log.remember(("c3", "", 1), TransferVerdict(202, "Accepted", 1), now=40.0)
    log.remember(("c4", "", 1), TransferVerdict(202, "Accepted", 1), now=40.0)
    log.remember(("c5", "", 1), TransferVerdict(202, "Accepted", 1), now=40.0)
    assert log.transfer_accepted("c3", now=41.0) == 0  # bounded: the oldest went first
    assert log.transfer_accepted("c5", now=41.0) == 1


_ENGINE = Interface("udp", "127.0.0.1", 5070)
_PUBLIC = Interface("udp", "192.0.2.1", 5060)


@pytest.mark.parametrize(("transfer", "expected"), [(0, []), (3, ["3"])])
def test_only_the_edge_marks_a_bye_with_the_transfer(transfer: int, expected: list[str]) -> None:
    bye = request(
        b"BYE sip:1234@192.0.2.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-b\r\n"
        b"From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:1234@192.0.2.1>;tag=engine\r\n"
        b"Call-ID: c1\r\nCSeq: 3 BYE\r\nX-Callgate-Transfer: 9\r\nContent-Length: 0\r\n\r\n"
    )
    forwarded = forward_request(
        bye,
        ("127.0.0.1", 5090),
        outgoing=_ENGINE,
        incoming=_PUBLIC,
        interfaces=(_ENGINE, _PUBLIC),
        secret=b"k" * 16,
        transfer=transfer,
    )
    assert forwarded.headers.get_all(TRANSFER_HEADER) == expected


# --- the edge itself, in memory ---------------------------------------------------------


class Handler:
    """Call control as the edge sees it: records requests, answers as told."""

    def __init__(self, verdict: TransferVerdict | None) -> None:
        self.verdict = verdict
        self.requests: list[TransferRequest] = []

    def transfer(self, request: TransferRequest) -> TransferVerdict | None:
        self.requests.append(request)
        return self.verdict


class Admission:
    """Admission policy: answers as told, records what it saw."""

    def __init__(self, decision: Decision | None = None) -> None:
        self.decision = decision or Admit()
        self.requests: list[AdmissionRequest] = []

    def admit(self, request: AdmissionRequest, now: float) -> Decision:
        self.requests.append(request)
        return self.decision


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def edge_with(handler: Handler, clock: Clock, admission: Admission | None = None) -> SipEdge:
    trunk = TrunkConfig(name="pbx", allow=("127.0.0.0/8",))
    edge = SipEdge(
        SipConfig(),
        Metrics(),
        ("127.0.0.1", 5070),
        Directory.from_config((), (trunk,)),
        admission or Admission(),
        clock=clock,
    )
    edge.transfers = handler
    return edge


def answers(edge: SipEdge, data: bytes, source: str = "127.0.0.1") -> list[SipResponse]:
    sent: list[bytes] = []
    edge.on_message(request(data), Peer("udp", (source, 5090), sent.append))
    parsed = [parse_message(raw) for raw in sent]
    return [m for m in parsed if isinstance(m, SipResponse)]


def test_the_edge_answers_a_refer_once_and_retransmissions_from_memory() -> None:
    handler, clock = Handler(TransferVerdict(202, "Accepted", 1)), Clock()
    edge = edge_with(handler, clock)
    (first,) = answers(edge, refer_bytes())
    assert (first.status, first.headers.get("To")) == (202, "<sip:1234@192.0.2.1>;tag=engine")
    clock.now += 1.0
    (again,) = answers(edge, refer_bytes())  # same CSeq: a retransmission
    assert again.status == 202
    assert handler.requests == [
        TransferRequest("c1", "sip:2345@198.51.100.7", "<sip:alice@127.0.0.1>", "", "pbx")
    ]
    handler.verdict = TransferVerdict(491, "Request Pending")
    (second,) = answers(edge, refer_bytes(cseq=3))  # a new REFER asks call control again
    assert second.status == 491 and len(handler.requests) == 2


def test_the_edge_refuses_a_refer_without_target_and_never_asks_call_control() -> None:
    handler = Handler(TransferVerdict(202, "Accepted", 1))
    (answer,) = answers(edge_with(handler, Clock()), refer_bytes(None))
    assert (answer.status, handler.requests) == (400, [])


def test_a_transfer_passes_admission_for_its_target_like_a_new_call() -> None:
    handler = Handler(TransferVerdict(202, "Accepted", 1))
    admission = Admission(Reject(503, "Service Unavailable", (("Retry-After", "5"),)))
    edge = edge_with(handler, Clock(), admission)
    (answer,) = answers(edge, refer_bytes())
    assert (answer.status, answer.headers.get("Retry-After")) == (503, "5")
    assert handler.requests == []
    (seen,) = admission.requests
    assert (seen.method, seen.request_uri, seen.trunk) == ("REFER", "sip:2345@198.51.100.7", "pbx")
    (again,) = answers(edge, refer_bytes())  # a retransmission: the same answer, no new check
    assert again.status == 503 and len(admission.requests) == 1


def test_a_refer_from_no_trunk_must_authenticate_as_an_account() -> None:
    handler = Handler(TransferVerdict(202, "Accepted", 1))
    (answer,) = answers(edge_with(handler, Clock()), refer_bytes(), source="198.51.100.20")
    assert answer.status == 407 and "Proxy-Authenticate" in answer.headers
    assert handler.requests == []


def test_refer_keys_are_per_transaction() -> None:
    assert refer_key(request(refer_bytes())) == ("c1", "a", 2)
    assert refer_key(request(refer_bytes(cseq=3))) == ("c1", "a", 3)


def test_the_edge_lets_the_engines_events_in_after_every_message() -> None:
    """`between_messages` runs after each message from either side, answered or refused,
    so the engine's call events are read within a burst of datagrams."""
    edge = edge_with(Handler(TransferVerdict(202, "Accepted", 1)), Clock())
    looks: list[int] = []
    edge.between_messages = lambda: looks.append(1)
    answers(edge, refer_bytes())
    answers(edge, refer_bytes(None))  # refused with 400
    stray = (  # from the engine, not through us: dropped
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKx\r\n"
        b"From: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=b\r\nCall-ID: c1\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    edge.on_internal_message(parse_message(stray), Peer("udp", edge.upstream, lambda _b: None))
    assert len(looks) == 3
