"""Hold detection in SDP offers (RFC 3264 section 8.4, RFC 2543 0.0.0.0): pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.hold import hold_requested

_BASE = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\n{session}t=0 0\r\n{media}"
_AUDIO = "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 {addr}\r\na=rtpmap:0 PCMU/8000\r\n{attr}"


def _offer(media_attr: str = "", session_attr: str = "", addr: str = "127.0.0.1") -> str:
    media = _AUDIO.format(addr=addr, attr=f"a={media_attr}\r\n" if media_attr else "")
    return _BASE.format(session=f"a={session_attr}\r\n" if session_attr else "", media=media)


@pytest.mark.parametrize(
    ("media_attr", "session_attr", "addr", "held"),
    [
        ("", "", "127.0.0.1", False),
        ("sendrecv", "", "127.0.0.1", False),
        ("sendonly", "", "127.0.0.1", True),
        ("inactive", "", "127.0.0.1", True),
        ("recvonly", "", "127.0.0.1", False),
        ("", "sendonly", "127.0.0.1", True),
        ("sendrecv", "inactive", "127.0.0.1", False),  # media level wins
        ("", "", "0.0.0.0", True),  # RFC 2543 hold
    ],
)
def test_hold_requested(media_attr: str, session_attr: str, addr: str, held: bool) -> None:
    assert hold_requested(_offer(media_attr, session_attr, addr)) is held


def test_only_the_first_audio_stream_counts() -> None:
    offer = _offer("sendrecv") + "m=audio 4002 RTP/AVP 0\r\na=inactive\r\n"
    assert hold_requested(offer) is False
    video_first = _BASE.format(session="", media="m=video 5000 RTP/AVP 31\r\na=inactive\r\n")
    assert hold_requested(video_first + _AUDIO.format(addr="127.0.0.1", attr="")) is False


def test_no_audio_is_no_hold() -> None:
    assert hold_requested("v=0\r\nm=video 5000 RTP/AVP 31\r\na=sendonly\r\n") is False


@given(st.text())
def test_any_text_gives_an_answer(sdp: str) -> None:
    assert hold_requested(sdp) in (True, False)
