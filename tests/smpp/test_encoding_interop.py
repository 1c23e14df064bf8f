"""Encoded segments against the independent SMSC simulator (Node ``smpp``), byte-exact.

Submits go through smpplib's blocking client (enough for this check; the gateway's
own client is tested elsewhere). MO texts encoded by the simulator's library are
checked against our decoder, so the two GSM 03.38 tables are compared too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smpp.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Coding,
    ConcatMethod,
    ConcatReferences,
    Segment,
    choose_coding,
    decode_text,
    encode_gsm7,
    reference_bits,
    split_message,
)
from tests.smsc.blocking_esme import BlockingEsme
from tests.smsc.simulator import SmscSimulator

DESTINATION = "4915112345678"


@pytest.fixture
def simulator() -> Iterator[SmscSimulator]:
    with SmscSimulator().start(dlr_delay_ms=0) as sim:
        yield sim


@pytest.fixture
def client(simulator: SmscSimulator) -> Iterator[BlockingEsme]:
    with BlockingEsme(simulator.host, simulator.smpp_port) as esme:
        esme.bind("transceiver")
        yield esme


def submit_segments(client: BlockingEsme, segments: list[Segment]) -> None:
    for segment in segments:
        params: dict[str, object] = {
            "destination_addr": DESTINATION,
            "esm_class": segment.esm_class,
            "data_coding": segment.data_coding,
            "short_message": segment.short_message,
        }
        if segment.sar_msg_ref_num is not None:
            params["sar_msg_ref_num"] = segment.sar_msg_ref_num
            params["sar_total_segments"] = segment.sar_total_segments
            params["sar_segment_seqnum"] = segment.sar_segment_seqnum
        if segment.message_payload is not None:
            params["short_message"] = None
            params["message_payload"] = segment.message_payload
        client.submit(**params)
        assert client.expect("submit_sm_resp").status == 0


CASES: list[tuple[str, str, ConcatMethod]] = [
    ("gsm7-161-udh8", "a" * 161, "udh8"),
    ("gsm7-escape-at-153", "a" * 152 + "€" + "b" * 10, "udh8"),
    ("gsm7-extension-udh16", "{[~]}|^\\€" * 30, "udh16"),
    ("gsm7-sar", "Grüße aus Köln! " * 15, "sar"),
    ("ucs2-emoji-udh8", "Привет 😀 " * 12, "udh8"),
    ("ucs2-sar", "你好世界" * 30, "sar"),
    ("latin1-udh8", "Ðÿ¾ " * 50, "udh8"),
    ("gsm7-payload", "Hello payload € " * 10, "payload"),
    ("single", "Hello", "udh8"),
]


@pytest.mark.parametrize(("text", "method"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_segments_arrive_byte_exact(
    simulator: SmscSimulator, client: BlockingEsme, text: str, method: ConcatMethod
) -> None:
    coding = choose_coding(text, allow_latin1=True)
    ref = ConcatReferences(reference_bits(method)).next(DESTINATION) + 0x7F
    segments = split_message(text, coding, method, ref)
    submit_segments(client, segments)

    records = simulator.messages()
    assert len(records) == len(segments)
    for record, segment in zip(records, segments, strict=True):
        assert record["command_status"] == 0
        assert record["destination_addr"] == DESTINATION
        assert record["data_coding"] == int(coding)
        assert record["esm_class"] == segment.esm_class
        assert bytes.fromhex(record["short_message_hex"]) == segment.short_message
        assert record.get("sar_msg_ref_num") == segment.sar_msg_ref_num
        assert record.get("sar_total_segments") == segment.sar_total_segments
        assert record.get("sar_segment_seqnum") == segment.sar_segment_seqnum
        if segment.message_payload is None:
            assert "message_payload_hex" not in record
        else:
            assert bytes.fromhex(record["message_payload_hex"]) == segment.message_payload
    received = "".join(decode_text(_user_data(record), coding) for record in records)
    assert received == text


def _user_data(record: dict[str, object]) -> bytes:
    """The text octets the SMSC received, UDH stripped (read from the record, not ours)."""
    payload = record.get("message_payload_hex")
    if isinstance(payload, str):
        return bytes.fromhex(payload)
    data = bytes.fromhex(str(record["short_message_hex"]))
    esm_class = record["esm_class"]
    assert isinstance(esm_class, int)
    return data[data[0] + 1 :] if esm_class & 0x40 else data


def test_udh8_header_exact_on_the_wire(simulator: SmscSimulator, client: BlockingEsme) -> None:
    segments = split_message("x" * 161, Coding.GSM7, "udh8", 0x42)
    submit_segments(client, segments)
    first, second = simulator.messages()
    assert first["short_message_hex"].startswith("050003420201")
    assert second["short_message_hex"] == "050003420202" + "78" * 8
    assert first["esm_class"] == second["esm_class"] == 0x40
    # The raw PDU carries sm_length 159 (6 UDH octets + 153 septets, unpacked).
    assert bytes.fromhex(first["raw_pdu_hex"]).find(bytes.fromhex("9f050003420201")) > 0


@pytest.mark.parametrize(
    "text",
    [
        "".join(c for c in GSM7_BASIC if c not in "\x1b\r\n"),
        "".join(GSM7_EXTENSION),
        "Hello € {world} [x] ~y| \\ ^",
    ],
    ids=["basic", "extension", "mixed"],
)
def test_simulator_gsm_encoder_agrees_with_ours(simulator: SmscSimulator, text: str) -> None:
    with BlockingEsme(simulator.host, simulator.smpp_port) as receiver:
        receiver.bind("receiver")
        simulator.inject_mo(DESTINATION, "CALLGATE", text, data_coding=0)
        mo = receiver.expect("deliver_sm")
    assert mo.data_coding == 0
    assert mo.short_message == encode_gsm7(text)
    assert decode_text(mo.short_message, Coding.GSM7) == text


def test_simulator_ucs2_encoder_agrees_with_ours(simulator: SmscSimulator) -> None:
    text = "Привет 😀 你好"
    with BlockingEsme(simulator.host, simulator.smpp_port) as receiver:
        receiver.bind("transceiver")
        simulator.inject_mo(DESTINATION, "CALLGATE", text, data_coding=8)
        mo = receiver.expect("deliver_sm")
    assert mo.short_message == text.encode("utf-16-be")
    assert decode_text(mo.short_message, Coding.UCS2) == text
