"""Hypothesis: any input parses or raises SipParseError, never anything else."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip.errors import SipParseError
from gateway.sip.framing import StreamFramer
from gateway.sip.limits import ParseLimits
from gateway.sip.message import (
    SipRequest,
    contacts,
    content_length,
    expires,
    from_address,
    max_forwards,
    parse_message,
    request_uri,
    serialize,
    to_address,
    vias,
)
from tests.sip.sip_torture import load, names, structure

SEEDS = [load(name) for name in names()]
SMALL = ParseLimits(max_message_bytes=4096, max_headers=32, max_header_line_bytes=1024)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A torture message with a few byte-level edits (flip, insert, delete, splice)."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "dup"]))
        if action == "flip" and data:
            data[position] = draw(
                st.sampled_from(b'\x00\r\n :;,<>"\\@%/=\t\xff' + bytes([data[position] ^ 1]))
            )
        elif action == "insert":
            data[position:position] = draw(st.binary(max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            data[position:position] = data[position : position + draw(st.integers(1, 40))]
    return bytes(data)


def _exercise(data: bytes, *, stream: bool = False) -> None:
    try:
        msg = parse_message(data, SMALL, stream=stream)
    except SipParseError as error:
        assert 400 <= error.status <= 599
        return
    # every accessor on an accepted message must also be safe
    for read in (vias, from_address, to_address, contacts, max_forwards, expires):
        read(msg)
    if isinstance(msg, SipRequest):
        with contextlib.suppress(SipParseError):
            request_uri(msg)
    again = parse_message(serialize(msg), SMALL, stream=True)
    assert structure(again) == structure(msg)
    assert content_length(again) == len(msg.body)


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(data: bytes) -> None:
    _exercise(data)


@FUZZ
@given(mutated())
def test_mutated_torture_messages(data: bytes) -> None:
    _exercise(data)


@FUZZ
@given(mutated(), st.integers(1, 64))
def test_framer_on_mutated_streams(data: bytes, chunk: int) -> None:
    framer = StreamFramer(SMALL)
    stream = data + b"\r\n\r\n" + data
    for start in range(0, len(stream), chunk):
        try:
            framer.feed(stream[start : start + chunk])
        except SipParseError as error:
            if error.close_connection:
                return
