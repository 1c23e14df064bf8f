"""SMS encoding and segmentation: byte-exact vectors and hypothesis round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Coding,
    ConcatMethod,
    ConcatReferences,
    Segment,
    SmsEncodingError,
    choose_coding,
    decode_gsm7,
    decode_text,
    encode_gsm7,
    encode_text,
    gsm7_encodable,
    pack_septets,
    segment_limit,
    split_message,
    unpack_septets,
)

METHODS: list[ConcatMethod] = ["udh8", "udh16", "sar", "payload"]
GSM_CHARS = "".join(c for c in GSM7_BASIC if c != "\x1b") + "".join(GSM7_EXTENSION)


# ---------------------------------------------------------------------- GSM 03.38 vectors


@pytest.mark.parametrize(
    ("text", "septets"),
    [
        ("Hello", "48656c6c6f"),
        ("€", "1b65"),
        ("@£$¥", "00010203"),
        ("^{}\\[~]|\f", "1b141b281b291b2f1b3c1b3d1b3e1b401b0a"),
        ("ΔΦΓΛΩΠΨΣΘΞ", "1012131415161718191a"),
        ("ÆæßÉ¡ÄÖÑÜ§¿äöñüà", "1c1d1e1f405b5c5d5e5f607b7c7d7e7f"),
        ("a\nb\rc", "610a620d63"),
    ],
)
def test_gsm7_vectors(text: str, septets: str) -> None:
    assert encode_gsm7(text) == bytes.fromhex(septets)
    assert decode_gsm7(bytes.fromhex(septets)) == text
    assert gsm7_encodable(text)


@pytest.mark.parametrize("text", ["Привет", "`", "ÿ", "😀", "a\tb", "ç"])
def test_not_gsm7_encodable(text: str) -> None:
    assert not gsm7_encodable(text)
    with pytest.raises(SmsEncodingError) as refused:
        encode_gsm7(text)
    assert refused.value.command_status == 0x45


def test_decode_gsm7_escape_oddities() -> None:
    assert decode_gsm7(bytes.fromhex("1b41")) == "A"  # unknown extension: basic character
    assert decode_gsm7(bytes.fromhex("1b1b41")) == " A"  # ESC ESC: space
    assert decode_gsm7(bytes.fromhex("411b")) == "A "  # trailing ESC: space
    with pytest.raises(SmsEncodingError):
        decode_gsm7(b"\x80")


def test_pack_septets_vectors() -> None:
    # TS 23.038 style example: "hellohello" packs into 9 octets.
    assert pack_septets(encode_gsm7("hellohello")) == bytes.fromhex("e8329bfd4697d9ec37")
    assert unpack_septets(bytes.fromhex("e8329bfd4697d9ec37"), 10) == encode_gsm7("hellohello")
    # After a 6-octet UDH one fill bit aligns the first septet.
    assert pack_septets(b"\x41", fill_bits=1) == b"\x82"
    assert unpack_septets(b"\x82", 1, fill_bits=1) == b"\x41"
    with pytest.raises(SmsEncodingError):
        unpack_septets(b"\x00", 2)


# ---------------------------------------------------------------------- coding choice


@pytest.mark.parametrize(
    ("text", "allow_latin1", "coding"),
    [
        ("Hello €", False, Coding.GSM7),
        ("Hello €", True, Coding.GSM7),
        ("ÿes", True, Coding.LATIN1),
        ("ÿes", False, Coding.UCS2),
        ("Привет", True, Coding.UCS2),
        ("€ÿ", True, Coding.UCS2),  # € is not Latin-1, ÿ is not GSM
        ("", False, Coding.GSM7),
    ],
)
def test_choose_coding(text: str, allow_latin1: bool, coding: Coding) -> None:
    assert choose_coding(text, allow_latin1) is coding


def test_coding_values_are_data_coding() -> None:
    assert (Coding.GSM7, Coding.LATIN1, Coding.UCS2) == (0x00, 0x03, 0x08)


def test_ucs2_vectors() -> None:
    assert encode_text("Привет", Coding.UCS2) == bytes.fromhex("041f04400438043204350442")
    assert encode_text("😀", Coding.UCS2) == bytes.fromhex("d83dde00")
    assert decode_text(bytes.fromhex("d83dde00"), Coding.UCS2) == "😀"
    assert encode_text("ÿ", Coding.LATIN1) == b"\xff"
    with pytest.raises(SmsEncodingError):
        decode_text(b"\xd8\x3d", Coding.UCS2)  # half a surrogate pair
    with pytest.raises(SmsEncodingError):
        encode_text("\ud83d", Coding.UCS2)  # lone surrogate


# ---------------------------------------------------------------------- segmentation vectors


def test_single_message_limits() -> None:
    assert len(split_message("a" * 160, Coding.GSM7, "udh8", 1)) == 1
    assert len(split_message("a" * 161, Coding.GSM7, "udh8", 1)) == 2
    assert len(split_message("€" * 80, Coding.GSM7, "udh8", 1)) == 1
    assert len(split_message("€" * 80 + "a", Coding.GSM7, "udh8", 1)) == 2
    assert len(split_message("ÿ" * 140, Coding.LATIN1, "udh8", 1)) == 1
    assert len(split_message("ÿ" * 141, Coding.LATIN1, "udh8", 1)) == 2
    assert len(split_message("Ж" * 70, Coding.UCS2, "udh8", 1)) == 1
    assert len(split_message("Ж" * 71, Coding.UCS2, "udh8", 1)) == 2
    assert len(split_message("😀" * 35, Coding.UCS2, "udh8", 1)) == 1
    assert len(split_message("😀" * 35 + "a", Coding.UCS2, "udh8", 1)) == 2


def test_single_segment_has_no_udh() -> None:
    [segment] = split_message("Hello", Coding.GSM7, "udh8", 7)
    assert segment == Segment(b"Hello", 0x00)
    assert segment.esm_class == 0
    assert segment.sar_msg_ref_num is None


def test_161_gsm_chars_make_two_udh8_segments() -> None:
    text = "a" * 161
    first, second = split_message(text, Coding.GSM7, "udh8", 0x2A)
    assert first.short_message == bytes.fromhex("0500032a0201") + b"a" * 153
    assert second.short_message == bytes.fromhex("0500032a0202") + b"a" * 8
    assert first.esm_class == second.esm_class == 0x40
    assert first.data_coding == 0


def test_udh16_header_and_limit() -> None:
    text = "b" * 161
    first, second = split_message(text, Coding.GSM7, "udh16", 0x1234)
    assert first.short_message == bytes.fromhex("06080412340201") + b"b" * 152
    assert second.short_message == bytes.fromhex("06080412340202") + b"b" * 9
    assert first.esm_class == 0x40


def test_escape_pair_at_segment_boundary_moves_to_next_segment() -> None:
    # Septet positions 152 and 153 (0-based) would hold ESC and 0x65: too late for part 1.
    text = "a" * 152 + "€" + "b" * 10
    first, second = split_message(text, Coding.GSM7, "udh8", 1)
    assert first.short_message == bytes.fromhex("050003010201") + b"a" * 152
    assert second.short_message == bytes.fromhex("050003010202") + b"\x1b\x65" + b"b" * 10


def test_escape_pair_that_fits_stays() -> None:
    text = "a" * 151 + "€" + "b" * 10
    first, second = split_message(text, Coding.GSM7, "udh8", 1)
    assert first.user_data == b"a" * 151 + b"\x1b\x65"
    assert second.user_data == b"b" * 10


def test_ucs2_segments_and_surrogate_pair_not_split() -> None:
    text = "Ж" * 66 + "😀" + "Ж" * 10
    first, second = split_message(text, Coding.UCS2, "udh8", 9)
    assert first.short_message[:6] == bytes.fromhex("050003090201")
    assert first.user_data == "Ж".encode("utf-16-be") * 66
    assert second.user_data == "😀Ж".encode("utf-16-be") + "Ж".encode("utf-16-be") * 9
    assert first.data_coding == 0x08

    first, _ = split_message("Ж" * 71, Coding.UCS2, "udh8", 9)
    assert len(first.user_data) == 67 * 2
    first, _ = split_message("Ж" * 71, Coding.UCS2, "udh16", 9)
    assert len(first.user_data) == 66 * 2


def test_latin1_segments() -> None:
    first, second = split_message("ÿ" * 141, Coding.LATIN1, "udh8", 3)
    assert first.user_data == b"\xff" * 134
    assert second.user_data == b"\xff" * 7
    assert first.data_coding == 0x03


def test_sar_segments_carry_tlvs_and_no_udh() -> None:
    segments = split_message("c" * 305, Coding.GSM7, "sar", 0xBEEF)
    assert [s.sar_segment_seqnum for s in segments] == [1, 2, 3]
    assert {s.sar_total_segments for s in segments} == {3}
    assert {s.sar_msg_ref_num for s in segments} == {0xBEEF}
    assert {s.esm_class for s in segments} == {0}
    assert [len(s.short_message) for s in segments] == [152, 152, 1]


def test_payload_puts_whole_text_in_message_payload() -> None:
    text = "Привет " * 40
    [segment] = split_message(text, Coding.UCS2, "payload", 0)
    assert segment.short_message == b""
    assert segment.message_payload == text.encode("utf-16-be")
    assert segment.esm_class == 0
    assert segment.data_coding == 0x08


def test_reference_out_of_range() -> None:
    with pytest.raises(ValueError, match="reference"):
        split_message("x", Coding.GSM7, "udh8", 256)
    with pytest.raises(ValueError, match="reference"):
        split_message("x", Coding.GSM7, "sar", 65536)
    assert (
        split_message("x" * 200, Coding.GSM7, "udh16", 65535)[0].short_message[3:5] == b"\xff\xff"
    )


def test_too_many_segments() -> None:
    with pytest.raises(SmsEncodingError) as refused:
        split_message("a" * (153 * 255 + 1), Coding.GSM7, "udh8", 0)
    assert refused.value.command_status == 0x01
    assert len(split_message("a" * (153 * 255), Coding.GSM7, "udh8", 0)) == 255


def test_unencodable_text_for_coding() -> None:
    with pytest.raises(SmsEncodingError):
        split_message("Привет", Coding.GSM7, "udh8", 0)
    with pytest.raises(SmsEncodingError):
        split_message("€", Coding.LATIN1, "udh8", 0)


# ---------------------------------------------------------------------- references


def test_references_increment_per_destination() -> None:
    refs = ConcatReferences(8)
    a1, a2 = refs.next("491"), refs.next("491")
    b1 = refs.next("492")
    a3 = refs.next("491")
    assert (a2 - a1) % 256 == 1
    assert (a3 - a2) % 256 == 1
    assert b1 not in (a1, a2)


def test_references_wrap() -> None:
    refs = ConcatReferences(8)
    values = [refs.next("491") for _ in range(300)]
    assert values[:256] == list(range(256))
    assert values[256:] == list(range(44))
    refs16 = ConcatReferences(16)
    values16 = [refs16.next("491") for _ in range(65537)]
    assert values16[-2:] == [65535, 0]


def test_references_memory_is_bounded() -> None:
    refs = ConcatReferences(16, max_destinations=100)
    for n in range(1000):
        refs.next(f"dest{n}")
    assert len(refs) == 100
    # A dropped destination does not restart at the same number.
    assert refs.next("dest0") == 1000


def test_references_reject_bad_config() -> None:
    with pytest.raises(ValueError):
        ConcatReferences(12)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ConcatReferences(8, max_destinations=0)


# ---------------------------------------------------------------------- properties

gsm_text = st.text(alphabet=GSM_CHARS, max_size=700)
any_text = st.text(max_size=400)
latin1_text = st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=500)


@given(gsm_text)
def test_gsm7_round_trip(text: str) -> None:
    assert gsm7_encodable(text)
    assert decode_gsm7(encode_gsm7(text)) == text


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_pack_round_trip(septets: bytes, fill_bits: int) -> None:
    packed = pack_septets(septets, fill_bits)
    assert len(packed) == (len(septets) * 7 + fill_bits + 7) // 8
    assert unpack_septets(packed, len(septets), fill_bits) == septets


@given(any_text, st.booleans())
def test_chosen_coding_round_trips(text: str, allow_latin1: bool) -> None:
    coding = choose_coding(text, allow_latin1)
    assert decode_text(encode_text(text, coding), coding) == text
    if coding is Coding.LATIN1:
        assert allow_latin1


def _check_split(text: str, coding: Coding, method: ConcatMethod, ref: int) -> None:
    segments = split_message(text, coding, method, ref)
    assert "".join(decode_text(s.user_data, coding) for s in segments) == text
    unit = 2 if coding is Coding.UCS2 else 1
    if method == "payload":
        assert len(segments) == 1
        assert segments[0].short_message == b""
        return
    if len(segments) == 1:
        assert len(segments[0].user_data) // unit <= segment_limit(coding, None)
        assert segments[0].esm_class == 0
        return
    total = len(segments)
    for seqnum, segment in enumerate(segments, start=1):
        assert len(segment.user_data) // unit <= segment_limit(coding, method)
        assert len(segment.short_message) <= 254
        assert segment.data_coding == coding
        if method == "sar":
            assert (segment.sar_msg_ref_num, segment.sar_total_segments) == (ref, total)
            assert segment.sar_segment_seqnum == seqnum
            assert segment.esm_class == 0
        else:
            assert segment.esm_class == 0x40
            udh = segment.short_message[: segment.short_message[0] + 1]
            if method == "udh8":
                assert udh == bytes((5, 0, 3, ref, total, seqnum))
            else:
                assert udh == bytes((6, 8, 4, ref >> 8, ref & 0xFF, total, seqnum))


@given(gsm_text, st.sampled_from(METHODS), st.integers(0, 255))
def test_split_gsm7_round_trip_within_limits(text: str, method: ConcatMethod, ref: int) -> None:
    _check_split(text, Coding.GSM7, method, ref)


@given(any_text, st.sampled_from(METHODS), st.integers(0, 255))
def test_split_ucs2_round_trip_within_limits(text: str, method: ConcatMethod, ref: int) -> None:
    _check_split(text, Coding.UCS2, method, ref)


@given(latin1_text, st.sampled_from(METHODS), st.integers(0, 255))
def test_split_latin1_round_trip_within_limits(text: str, method: ConcatMethod, ref: int) -> None:
    _check_split(text, Coding.LATIN1, method, ref)


@given(st.binary(max_size=300))
def test_decode_gsm7_decodes_or_raises_planned_error(data: bytes) -> None:
    try:
        decode_gsm7(data)
    except SmsEncodingError:
        assert any(b > 0x7F for b in data)


@given(st.binary(max_size=300))
def test_decode_ucs2_decodes_or_raises_planned_error(data: bytes) -> None:
    try:
        text = decode_text(data, Coding.UCS2)
    except SmsEncodingError:
        return
    assert encode_text(text, Coding.UCS2) == data
