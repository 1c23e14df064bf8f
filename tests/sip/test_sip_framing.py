"""StreamFramer: byte-at-a-time equals all-at-once, keep-alives, limits, errors."""

from __future__ import annotations

import pytest

from gateway.sip.errors import SipParseError
from gateway.sip.framing import PONG, StreamFramer, is_keepalive
from gateway.sip.limits import ParseLimits
from gateway.sip.message import SipMessage, SipRequest, call_id, parse_message, serialize
from tests.sip.sip_torture import load

STREAMABLE = ["wsinv", "intmeth", "esc01", "longreq", "mpart01", "unreason", "noreason", "invut"]


def _stream() -> bytes:
    return b"\r\n\r\n".join(load(name) for name in STREAMABLE) + b"\r\n\r\n\r\n"


def _feed_in_chunks(data: bytes, size: int) -> tuple[list[SipMessage], int]:
    framer = StreamFramer()
    messages: list[SipMessage] = []
    for start in range(0, len(data), size):
        messages += framer.feed(data[start : start + size])
    return messages, framer.take_pings()


def test_all_at_once_yields_every_message_and_pings() -> None:
    messages, pings = _feed_in_chunks(_stream(), len(_stream()))
    assert [call_id(m) for m in messages] == [call_id(parse_message(load(n))) for n in STREAMABLE]
    # one CRLFCRLF ping between each pair, one at the end; the last CRLF waits for more
    assert pings == len(STREAMABLE)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_byte_at_a_time_equals_all_at_once(size: int) -> None:
    whole = _feed_in_chunks(_stream(), len(_stream()))
    assert _feed_in_chunks(_stream(), size) == whole


def test_lone_crlf_is_not_a_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(load("noreason")) != []
    assert framer.take_pings() == 0
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pings == 1
    assert framer.take_pings() == 1
    assert framer.pings == 0
    assert PONG == b"\r\n"


def test_missing_content_length_is_fatal() -> None:
    framer = StreamFramer()
    msg = load("inv2543")  # no Content-Length: fine on UDP, unframeable on TCP
    with pytest.raises(SipParseError) as caught:
        framer.feed(msg)
    assert caught.value.status == 400
    assert caught.value.header == "Content-Length"
    assert caught.value.close_connection
    with pytest.raises(SipParseError):
        framer.feed(load("noreason"))  # dead after a framing error


def test_bad_message_with_intact_framing_is_skipped() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as caught:
        framer.feed(load("mismatch01"))
    assert not caught.value.close_connection
    assert [m.status for m in framer.feed(load("noreason"))] == [100]  # type: ignore[union-attr]


def test_error_after_good_messages_is_deferred_not_lost() -> None:
    framer = StreamFramer()
    good = framer.feed(load("lwsdisp") + load("mismatch01") + load("zeromf"))
    assert [m.method for m in good] == ["OPTIONS"]  # type: ignore[union-attr]
    with pytest.raises(SipParseError) as caught:
        framer.feed(b"")
    assert caught.value.header == "CSeq"
    assert [call_id(m) for m in framer.feed(b"")] == ["zeromf.jfasdlfnm2o2l43r5u0asdfas"]


def test_next_message_api() -> None:
    framer = StreamFramer()
    framer.receive(load("lwsdisp") + load("zeromf")[:10])
    first = framer.next_message()
    assert isinstance(first, SipRequest)
    assert framer.next_message() is None
    assert framer.buffered == 10


def test_oversized_header_section_fails_before_terminator() -> None:
    framer = StreamFramer(ParseLimits(max_message_bytes=1024))
    with pytest.raises(SipParseError) as caught:
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"a" * 50 + b"\r\n")
    assert caught.value.close_connection
    assert framer.buffered == 0


def test_oversized_body_fails_from_content_length_alone() -> None:
    framer = StreamFramer(ParseLimits(max_message_bytes=1024))
    head = (
        load("invut").split(b"\r\n\r\n")[0].replace(b"Content-Length: 40", b"Content-Length: 5000")
    )
    with pytest.raises(SipParseError) as caught:
        framer.feed(head + b"\r\n\r\n")
    assert caught.value.status == 413
    assert caught.value.close_connection


def test_serialized_messages_reframe() -> None:
    msg = parse_message(load("esc01"))
    assert StreamFramer().feed(serialize(msg) * 3) == [msg, msg, msg]


def test_is_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n")
    assert is_keepalive(b"\r\n")
    assert not is_keepalive(b"")
    assert not is_keepalive(load("zeromf"))
