"""AnswerLog: answers kept for the retransmissions of REGISTERs (RFC 3261 §17.2.2)."""

from __future__ import annotations

from gateway.sip.answers import AnswerLog, answer_key
from gateway.sip.message import SipRequest, parse_message

SOURCE = ("192.0.2.1", 5060)


def _register(call_id: str = "c1@test", cseq: int = 2, branch: str = "z9hG4bK-1") -> SipRequest:
    message = parse_message(
        (
            "REGISTER sip:example.test SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
            "From: <sip:bob@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


def test_a_retransmission_gets_the_answer_already_sent() -> None:
    log = AnswerLog(keep_for=32.0)
    original = _register()
    log.remember(answer_key(original, SOURCE), b"SIP/2.0 200 OK\r\n...", now=100.0)
    # The same request again (SIPp and phones keep the branch; the key does not need it).
    again = answer_key(_register(branch="z9hG4bK-1"), SOURCE)
    assert log.answer_for(again, now=131.9) == b"SIP/2.0 200 OK\r\n..."


def test_other_requests_and_other_senders_are_not_answered_from_the_log() -> None:
    log = AnswerLog()
    log.remember(answer_key(_register(), SOURCE), b"answer", now=0.0)
    assert log.answer_for(answer_key(_register(cseq=3), SOURCE), now=1.0) is None
    assert log.answer_for(answer_key(_register(call_id="c2@test"), SOURCE), now=1.0) is None
    assert log.answer_for(answer_key(_register(), ("192.0.2.2", 5060)), now=1.0) is None


def test_answers_expire_after_timer_j_and_are_swept() -> None:
    log = AnswerLog(keep_for=32.0)
    key = answer_key(_register(), SOURCE)
    log.remember(key, b"answer", now=0.0)
    assert log.answer_for(key, now=32.0) is None
    log.remember(answer_key(_register(cseq=3), SOURCE), b"next", now=40.0)
    assert len(log) == 1


def test_the_log_is_bounded_and_forgets_the_oldest_first() -> None:
    log = AnswerLog(keep_for=32.0, max_entries=3)
    keys = [answer_key(_register(cseq=n), SOURCE) for n in range(5)]
    for n, key in enumerate(keys):
        log.remember(key, f"answer {n}".encode(), now=float(n))
    assert len(log) == 3
    assert [log.answer_for(k, now=5.0) for k in keys] == [
        None, None, b"answer 2", b"answer 3", b"answer 4",
    ]  # fmt: skip


def test_remembering_a_key_again_moves_it_to_the_end() -> None:
    log = AnswerLog(keep_for=10.0)
    first, second = answer_key(_register(cseq=1), SOURCE), answer_key(_register(cseq=2), SOURCE)
    log.remember(first, b"a", now=0.0)
    log.remember(second, b"b", now=1.0)
    log.remember(first, b"a2", now=5.0)
    # `second` (due at 11) is now the oldest and goes first; `first` lives until 15.
    log.remember(answer_key(_register(cseq=3), SOURCE), b"c", now=12.0)
    assert log.answer_for(second, now=12.0) is None
    assert log.answer_for(first, now=12.0) == b"a2"
