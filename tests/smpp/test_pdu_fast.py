"""The fast codec against smpplib: same bytes, same `Pdu`, same planned errors.

`encode_pdu` / `decode_pdu` take a hand-written path for the PDUs of the
message flow; `smpplib_encode_pdu` / `smpplib_decode_pdu` are the smpplib path
they replaced there. For generated parameters and frames (valid, truncated,
with wrong lengths, unknown and misfitting TLVs, random bodies) both must give
exactly the same result: the same bytes or `Pdu`, or a `PduEncodeError` /
`PduDecodeError` with the same command_status, sequence, command_id and reason.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
import smpplib.consts
import smpplib.smpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from smpplib.ptypes import flag, ostr

import smpp.pdu
from smpp.pdu import (
    FAST_DECODE_COMMANDS,
    FAST_ENCODE_COMMANDS,
    Pdu,
    PduDecodeError,
    PduEncodeError,
    decode_pdu,
    encode_pdu,
    smpplib_decode_pdu,
    smpplib_encode_pdu,
)

Draw = Callable[..., Any]
COMMAND_IDS = {
    "submit_sm_resp": 0x80000004,
    "deliver_sm": 0x00000005,
    "deliver_sm_resp": 0x80000005,
    "enquire_link": 0x00000015,
    "enquire_link_resp": 0x80000015,
    "generic_nack": 0x80000000,
}
TAGS = sorted(set(smpplib.consts.OPTIONAL_PARAMS.values()))
"""Every tag smpplib knows, known to deliver_sm or not."""


class _NoClient:
    sequence = 0

    def next_sequence(self) -> int:
        return 0


def template(command: str) -> Any:
    return smpplib.smpp.make_pdu(command, client=_NoClient(), sequence=0)


# ---------------------------------------------------------------- encoding


def _value(draw: Draw, param: Any) -> object:
    """A value for one field: usually fitting, sometimes too long, out of range,
    of the wrong type, with NUL or characters outside Latin-1."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.integers(-2, 70000), st.text(max_size=3), st.binary(max_size=3)))
    if param.type is int:
        top = 1 << (8 * param.size)
        return draw(st.one_of(st.integers(0, top - 1), st.sampled_from([0, top - 1, top, -1])))
    if param.type is str:
        limit = getattr(param, "max", None) or getattr(param, "size", None) or 20
        alphabet = st.one_of(
            st.characters(min_codepoint=0x30, max_codepoint=0x7A),
            st.sampled_from(["\0", "é", "€", "ß", " "]),
        )
        text = draw(st.text(alphabet=alphabet, max_size=limit + 1))
        return text.encode("latin-1", "replace") if draw(st.booleans()) else text
    if param.type is ostr:
        limit = getattr(param, "max", None) or getattr(param, "size", None) or 20
        return draw(st.binary(max_size=limit + 2))
    assert param.type is flag
    return draw(st.sampled_from([b"", 0, 1]))


@st.composite
def encode_cases(draw: Draw) -> tuple[str, int, int, dict[str, Any]]:
    command = draw(st.sampled_from(FAST_ENCODE_COMMANDS))
    layout = template(command)
    names = list(layout.params_order)
    chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    if command == "submit_sm":  # mostly what SmsService sends, plus extras
        chosen = list(dict.fromkeys(["source_addr", "destination_addr", "short_message", *chosen]))
    params = {name: _value(draw, layout.params[name]) for name in chosen}
    if draw(st.integers(0, 20)) == 0:
        params["no_such_field"] = 1
    sequence = draw(st.one_of(st.integers(1, 0x7FFFFFFF), st.sampled_from([0, -1, 1 << 32])))
    status = draw(st.one_of(st.just(0), st.integers(0, 0xFFFFFFFF), st.just(-1)))
    return command, sequence, status, params


def _encoded(encode: Callable[..., bytes], *args: Any) -> tuple[object, ...]:
    try:
        return ("bytes", encode(*args))
    except PduEncodeError as error:
        return ("error", error.command_status, str(error))


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(case=encode_cases())
def test_fast_encoder_gives_smpplib_bytes_or_the_same_error(
    case: tuple[str, int, int, dict[str, Any]],
) -> None:
    assert _encoded(encode_pdu, *case) == _encoded(smpplib_encode_pdu, *case)


@settings(max_examples=500)
@given(
    source=st.text(alphabet="0123456789+", max_size=20),
    destination=st.text(alphabet="0123456789", max_size=20),
    message=st.binary(max_size=254),
    payload=st.none() | st.binary(min_size=1, max_size=400),
    esm_class=st.integers(0, 255),
    data_coding=st.integers(0, 255),
    sar=st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 255), st.integers(0, 255)),
    sequence=st.integers(1, 0x7FFFFFFF),
)
def test_fast_encoder_on_the_service_submit_sm_shape(
    source: str,
    destination: str,
    message: bytes,
    payload: bytes | None,
    esm_class: int,
    data_coding: int,
    sar: tuple[int, int, int] | None,
    sequence: int,
) -> None:
    params: dict[str, Any] = {
        "source_addr_ton": 5,
        "source_addr_npi": 0,
        "source_addr": source,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": destination,
        "esm_class": esm_class,
        "data_coding": data_coding,
        "short_message": b"" if payload else message,
        "validity_period": "261124120000000+",
        "registered_delivery": 1,
    }
    if sar is not None:
        params.update(sar_msg_ref_num=sar[0], sar_total_segments=sar[1], sar_segment_seqnum=sar[2])
    if payload is not None:
        params["message_payload"] = payload
    frame = encode_pdu("submit_sm", sequence, 0, params)
    assert frame == smpplib_encode_pdu("submit_sm", sequence, 0, params)
    assert len(frame) == int.from_bytes(frame[:4])


# ---------------------------------------------------------------- decoding


def _mandatory_bytes(draw: Draw, command: str) -> bytes:
    """The mandatory fields of `command`, each well-formed or not, in order."""
    layout = template(command)
    out = bytearray()
    length = 0
    for name in layout.params_order:
        if name in smpplib.consts.OPTIONAL_PARAMS and name not in getattr(
            layout, "mandatory_fields", ()
        ):
            break
        param = layout.params[name]
        if param.type is int:
            value = draw(st.integers(0, (1 << (8 * param.size)) - 1))
            if name == getattr(layout.params.get("short_message"), "len_field", None):
                value = draw(st.one_of(st.just(value), st.integers(0, 40)))
                length = value
            out += value.to_bytes(param.size)
        elif param.type is str:
            out += draw(
                st.binary(max_size=getattr(param, "max", 8) + 2).map(
                    lambda b: b.replace(b"\0", b"x")
                )
            )
            out += b"\0"
        else:
            out += draw(st.binary(min_size=length, max_size=length))
    return bytes(out)


def _tlv(draw: Draw) -> bytes:
    tag = draw(st.one_of(st.sampled_from(TAGS), st.integers(0, 0xFFFF)))
    size = draw(st.one_of(st.integers(0, 4), st.integers(0, 70)))
    value = draw(st.binary(min_size=size, max_size=size))
    if draw(st.booleans()) and value:
        value = value[:-1] + b"\0"  # a well-formed C-string
    declared = size if draw(st.integers(0, 9)) else draw(st.integers(0, 0xFFFF))
    return struct.pack(">HH", tag, declared) + value


@st.composite
def frames(draw: Draw) -> bytes:
    """A frame of a fast-decoded command: built field by field and then maybe cut,
    padded or given a wrong length, or an arbitrary body."""
    command = draw(st.sampled_from(FAST_DECODE_COMMANDS))
    if draw(st.integers(0, 4)) == 0:
        body = draw(st.binary(max_size=120))
    else:
        body = _mandatory_bytes(draw, command)
        body += b"".join(_tlv(draw) for _ in range(draw(st.integers(0, 6))))
        if draw(st.integers(0, 5)) == 0:
            body = body[: draw(st.integers(0, len(body)))]
    status = draw(st.one_of(st.just(0), st.integers(0, 0xFFFFFFFF)))
    sequence = draw(st.integers(0, 0xFFFFFFFF))
    length = 16 + len(body)
    if draw(st.integers(0, 20)) == 0:
        length = draw(st.integers(0, 0xFFFFFFFF))
    frame = struct.pack(">LLLL", length, COMMAND_IDS[command], status, sequence) + body
    if draw(st.integers(0, 20)) == 0:
        frame = frame[: draw(st.integers(0, len(frame)))]
    return frame


def _decoded(decode: Callable[[bytes], Pdu], frame: bytes) -> tuple[object, ...]:
    try:
        return ("pdu", decode(frame))
    except PduDecodeError as error:
        return (
            "error",
            type(error),
            error.command_status,
            error.sequence,
            error.command_id,
            error.reason,
        )


@settings(max_examples=2500, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames())
def test_fast_decoder_gives_smpplib_pdu_or_the_same_error(frame: bytes) -> None:
    assert _decoded(decode_pdu, frame) == _decoded(smpplib_decode_pdu, frame)


@settings(max_examples=1000)
@given(
    command=st.sampled_from(FAST_DECODE_COMMANDS),
    body=st.binary(max_size=300),
    status=st.integers(0, 0xFFFFFFFF),
    sequence=st.integers(0, 0xFFFFFFFF),
)
def test_fast_decoder_on_arbitrary_bodies(
    command: str, body: bytes, status: int, sequence: int
) -> None:
    frame = struct.pack(">LLLL", 16 + len(body), COMMAND_IDS[command], status, sequence) + body
    assert _decoded(decode_pdu, frame) == _decoded(smpplib_decode_pdu, frame)


def test_receipt_with_every_tlv_kind() -> None:
    """A delivery receipt with the TLVs the service reads, SAR, a misfitting
    message_state, a submit_sm-only tag and an unknown vendor tag."""
    frame = bytearray(
        smpplib_encode_pdu(
            "deliver_sm",
            77,
            0,
            {
                "source_addr": "4915112345678",
                "esm_class": 4,
                "short_message": b"id:ab stat:DELIVRD",
            },
        )
    )
    frame += struct.pack(">HH", 0x001E, 3) + b"ab\0"  # receipted_message_id
    frame += struct.pack(">HHB", 0x0427, 1, 2)  # message_state
    frame += struct.pack(">HH", 0x0424, 4) + b"body"  # message_payload
    frame += struct.pack(">HHH", 0x020C, 2, 513)  # sar_msg_ref_num
    frame += struct.pack(">HHB", 0x020E, 1, 3) + struct.pack(">HHB", 0x020F, 1, 1)
    frame += struct.pack(">HHH", 0x0427, 2, 9)  # message_state of the wrong size: raw
    frame += struct.pack(">HHB", 0x0030, 1, 1)  # dest_addr_subunit: not a deliver_sm TLV
    frame += struct.pack(">HH", 0x1501, 2) + b"\x01\x02"  # vendor specific
    frame[0:4] = len(frame).to_bytes(4)
    pdu = decode_pdu(bytes(frame))
    assert pdu == smpplib_decode_pdu(bytes(frame))
    assert pdu.params["receipted_message_id"] == b"ab"
    assert pdu.params["message_state"] == 2
    assert pdu.params["message_payload"] == b"body"
    assert (pdu.params["sar_msg_ref_num"], pdu.params["sar_total_segments"]) == (513, 3)
    assert pdu.unknown_tlvs == {0x0427: b"\x00\x09", 0x0030: b"\x01", 0x1501: b"\x01\x02"}


def test_hot_pdus_do_not_touch_smpplib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the fast path: none of the message-flow PDUs reach smpplib."""
    receipt = smpplib_encode_pdu("deliver_sm", 5, 0, {"esm_class": 4, "receipted_message_id": "x1"})
    responses = [smpplib_encode_pdu("submit_sm_resp", 6, 0, {"message_id": "x1"})]
    responses += [smpplib_encode_pdu(c, 7) for c in ("enquire_link", "enquire_link_resp")]
    responses.append(smpplib_encode_pdu("generic_nack", 8, 3))

    def refuse(*_args: object) -> None:
        raise AssertionError("smpplib path taken")

    monkeypatch.setattr(smpp.pdu, "smpplib_decode_pdu", refuse)
    monkeypatch.setattr(smpp.pdu, "smpplib_encode_pdu", refuse)
    for frame in [receipt, *responses]:
        decode_pdu(frame)
    encode_pdu(
        "submit_sm",
        1,
        0,
        {"source_addr": "x", "short_message": b"hi", "sar_msg_ref_num": 1},
    )
    for command in ("deliver_sm_resp", "enquire_link", "enquire_link_resp", "generic_nack"):
        encode_pdu(command, 2, 0)


def test_string_tlvs_take_the_smpplib_path() -> None:
    """smpplib writes a C-string TLV's length in characters and its value in
    UTF-8: the fast path leaves those to smpplib (same bytes, same oddity)."""
    params: dict[str, Any] = {"source_subaddress": "é1", "short_message": b"x"}
    frame = encode_pdu("submit_sm", 3, 0, params)
    assert frame == smpplib_encode_pdu("submit_sm", 3, 0, params)
    assert frame.endswith(struct.pack(">HH", 0x0202, 3) + "é1\0".encode())


def test_receipt_whose_tlvs_are_all_unknown_has_no_empty_short_message() -> None:
    """smpplib's quirk kept: sm_length 0 followed only by TLVs it cannot take
    leaves short_message unset; one TLV it takes makes it b""."""
    head = smpplib_encode_pdu("deliver_sm", 9, 0, {"esm_class": 4})
    for tlvs, has_short_message in (
        (struct.pack(">HH", 0x1501, 0), False),
        (struct.pack(">HHB", 0x0427, 1, 2), True),
    ):
        frame = bytearray(head + tlvs)
        frame[0:4] = len(frame).to_bytes(4)
        pdu = decode_pdu(bytes(frame))
        assert pdu == smpplib_decode_pdu(bytes(frame))
        assert ("short_message" in pdu.params) is has_short_message
