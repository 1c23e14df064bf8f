"""SMS text encoding and segmentation for SMPP: pure functions, no I/O.

Alphabets (``Coding``, the value is the SMPP ``data_coding``):

- GSM 03.38 default alphabet (``0x00``) with its extension table; extension
  characters (``^{}\\[~]|€`` and form feed) take two septets, ESC (0x1B) plus
  the character's code. SMPP carries these *unpacked*, one septet per octet,
  and the SMSC packs them for the air interface; ``pack_septets`` /
  ``unpack_septets`` exist for the peers that want packed data.
- Latin-1 (``0x03``), one octet per character.
- UCS-2 (``0x08``) sent as UTF-16-BE, so characters outside the BMP become
  surrogate pairs (two units).

Segmentation (``split_message``): a text that fits one message is sent as one
plain segment; otherwise it is cut into concatenated parts marked with an
8-bit (``udh8``) or 16-bit (``udh16``) reference User Data Header, or with the
SAR TLVs (``sar``), or sent whole in one ``message_payload`` TLV (``payload``).
A character is never split across segments: neither a GSM escape pair nor a
UTF-16 surrogate pair.

Per-segment limits follow the air interface (140 octets of user data):
160 septets / 140 octets / 70 UCS-2 units unsegmented; with a 6-octet UDH
(``udh8``) 153 septets / 134 octets / 67 units; with a 7-octet UDH (``udh16``)
152 septets / 133 octets / 66 units. ``sar`` uses the ``udh16`` limits because
the SMSC turns the 16-bit ``sar_msg_ref_num`` into a 16-bit reference UDH.
"""

from __future__ import annotations

import enum
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_MAX_TRACKED_DESTINATIONS",
    "Coding",
    "ConcatMethod",
    "ConcatReferences",
    "Segment",
    "SmsEncodingError",
    "choose_coding",
    "decode_gsm7",
    "decode_text",
    "encode_gsm7",
    "encode_text",
    "gsm7_encodable",
    "pack_septets",
    "reference_bits",
    "segment_limit",
    "split_message",
    "unpack_septets",
]

ConcatMethod = Literal["udh8", "udh16", "sar", "payload"]

ESME_RINVMSGLEN: Final = 0x01
ESME_RSUBMITFAIL: Final = 0x45


class SmsEncodingError(ValueError):
    """Text that cannot be encoded or split as asked, or bytes that do not decode.

    ``command_status`` is the SMPP status to answer a submit_sm with.
    """

    def __init__(self, message: str, command_status: int = ESME_RSUBMITFAIL) -> None:
        super().__init__(message)
        self.command_status = command_status


class Coding(enum.IntEnum):
    """The alphabets Callgate sends; the value is the SMPP ``data_coding``."""

    GSM7 = 0x00
    LATIN1 = 0x03
    UCS2 = 0x08


# ---------------------------------------------------------------------- GSM 03.38

ESCAPE: Final = 0x1B
# 3GPP TS 23.038 section 6.2.1, default alphabet, code 0x00..0x7F; 0x1B is the escape.
GSM7_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# 3GPP TS 23.038 section 6.2.1.1, default extension table (after ESC).
GSM7_EXTENSION: Final = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
_BASIC_ENCODE: Final = {char: code for code, char in enumerate(GSM7_BASIC) if code != ESCAPE}
_EXTENSION_DECODE: Final = {code: char for char, code in GSM7_EXTENSION.items()}
# "ESC ESC" is reserved for another extension table; TS 23.038 says show a space.
_UNKNOWN_ESCAPE_DISPLAY: Final = " "

assert len(GSM7_BASIC) == 128

# Whole-text checks and encodings in C (regex, str.translate) rather than per
# character in Python: they run for every submitted message.
_GSM7_ONLY: Final = re.compile(
    "[" + "".join(re.escape(char) for char in [*_BASIC_ENCODE, *GSM7_EXTENSION]) + "]*"
)
_LATIN1_ONLY: Final = re.compile("[\x00-\xff]*")
_GSM7_TRANSLATION: Final = str.maketrans(
    {char: chr(code) for char, code in _BASIC_ENCODE.items()}
    | {char: chr(ESCAPE) + chr(code) for char, code in GSM7_EXTENSION.items()}
)


def gsm7_encodable(text: str) -> bool:
    """True if every character is in the GSM 03.38 default or extension table."""
    return _GSM7_ONLY.fullmatch(text) is not None


def _gsm7_char(char: str) -> bytes:
    code = _BASIC_ENCODE.get(char)
    if code is not None:
        return bytes((code,))
    extension = GSM7_EXTENSION.get(char)
    if extension is not None:
        return bytes((ESCAPE, extension))
    raise SmsEncodingError(f"{char!r} (U+{ord(char):04X}) is not in the GSM 03.38 alphabet")


def encode_gsm7(text: str) -> bytes:
    """Unpacked septets, one per octet, as SMPP ``data_coding`` 0 carries them."""
    if gsm7_encodable(text):
        return text.translate(_GSM7_TRANSLATION).encode("latin-1")
    return b"".join(_gsm7_char(char) for char in text)  # raises for the first bad one


def decode_gsm7(data: bytes) -> str:
    """Unpacked septets to text.

    An escape followed by a code the extension table lacks shows the basic
    character, as TS 23.038 asks (ESC ESC and a trailing ESC show a space).
    """
    chars: list[str] = []
    escaped = False
    for position, code in enumerate(data):
        if code > 0x7F:
            raise SmsEncodingError(f"octet 0x{code:02X} at {position} is not a GSM 7-bit septet")
        if escaped:
            escaped = False
            if code == ESCAPE:
                chars.append(_UNKNOWN_ESCAPE_DISPLAY)
            else:
                chars.append(_EXTENSION_DECODE.get(code, GSM7_BASIC[code]))
        elif code == ESCAPE:
            escaped = True
        else:
            chars.append(GSM7_BASIC[code])
    if escaped:
        chars.append(_UNKNOWN_ESCAPE_DISPLAY)
    return "".join(chars)


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack 7-bit septets into octets (TS 23.038 6.1.2.1), LSB first.

    ``fill_bits`` (0..6) leading zero bits align the first septet on a septet
    boundary after a UDH: for a UDH of ``n`` octets that is ``(7 - n*8 % 7) % 7``.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    accumulator = 0
    bit_count = fill_bits
    out = bytearray()
    for position, septet in enumerate(septets):
        if septet > 0x7F:
            raise SmsEncodingError(f"0x{septet:02X} at {position} is not a septet")
        accumulator |= septet << bit_count
        bit_count += 7
        while bit_count >= 8:
            out.append(accumulator & 0xFF)
            accumulator >>= 8
            bit_count -= 8
    if bit_count:
        out.append(accumulator & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> bytes:
    """Inverse of ``pack_septets``; ``count`` septets (the packed form cannot tell)."""
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    if (count * 7 + fill_bits + 7) // 8 > len(data):
        raise SmsEncodingError(f"{len(data)} octets cannot hold {count} septets")
    value = int.from_bytes(data, "little") >> fill_bits
    return bytes((value >> (7 * index)) & 0x7F for index in range(count))


# ---------------------------------------------------------------------- coding choice


def _latin1_encodable(text: str) -> bool:
    return _LATIN1_ONLY.fullmatch(text) is not None


def choose_coding(text: str, allow_latin1: bool) -> Coding:
    """GSM 03.38 if it can hold the text, else Latin-1 if allowed and enough, else UCS-2."""
    if gsm7_encodable(text):
        return Coding.GSM7
    if allow_latin1 and _latin1_encodable(text):
        return Coding.LATIN1
    return Coding.UCS2


def _char_bytes(char: str, coding: Coding) -> bytes:
    if coding is Coding.GSM7:
        return _gsm7_char(char)
    if coding is Coding.LATIN1:
        if ord(char) > 0xFF:
            raise SmsEncodingError(f"{char!r} (U+{ord(char):04X}) is not in Latin-1")
        return bytes((ord(char),))
    return _utf16(char)


def _utf16(text: str) -> bytes:
    try:
        return text.encode("utf-16-be")
    except UnicodeEncodeError as error:
        raise SmsEncodingError(f"lone surrogate in text: {error.reason}") from error


def encode_text(text: str, coding: Coding) -> bytes:
    """The ``short_message`` / ``message_payload`` octets of ``text`` in ``coding``."""
    if coding is Coding.GSM7:
        return encode_gsm7(text)
    if coding is Coding.LATIN1:
        if not _latin1_encodable(text):
            raise SmsEncodingError("text is not Latin-1 encodable")
        return text.encode("latin-1")
    return _utf16(text)


def decode_text(data: bytes, coding: Coding) -> str:
    """Inverse of ``encode_text``."""
    if coding is Coding.GSM7:
        return decode_gsm7(data)
    if coding is Coding.LATIN1:
        return data.decode("latin-1")
    if len(data) % 2:
        raise SmsEncodingError("UCS-2 data has an odd number of octets")
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as error:
        raise SmsEncodingError(f"invalid UTF-16-BE: {error.reason}") from error


# ---------------------------------------------------------------------- segmentation

UDHI: Final = 0x40
MAX_SEGMENTS: Final = 255
MAX_PAYLOAD_OCTETS: Final = 0xFFFF

# (unsegmented, with 8-bit reference UDH, with 16-bit reference UDH), in units of the
# coding: septets for GSM7 (an escaped character counts 2), octets for Latin-1,
# UTF-16 code units for UCS-2 (a character outside the BMP counts 2).
_LIMITS: Final[dict[Coding, tuple[int, int, int]]] = {
    Coding.GSM7: (160, 153, 152),
    Coding.LATIN1: (140, 134, 133),
    Coding.UCS2: (70, 67, 66),
}
_UNIT_OCTETS: Final = {Coding.GSM7: 1, Coding.LATIN1: 1, Coding.UCS2: 2}


def segment_limit(coding: Coding, method: ConcatMethod | None) -> int:
    """Units per segment: ``None`` for an unsegmented message, else for ``method``."""
    single, udh8, udh16 = _LIMITS[coding]
    if method is None or method == "payload":
        return single
    return udh8 if method == "udh8" else udh16


def reference_bits(method: ConcatMethod) -> Literal[8, 16]:
    """Width of the concatenation reference ``method`` carries."""
    return 8 if method in ("udh8", "payload") else 16


@dataclass(frozen=True, slots=True)
class Segment:
    """One submit_sm's worth of a message.

    ``esm_class`` holds only the UDHI bit (0x40) when ``short_message`` starts
    with a UDH; the caller ORs in the messaging mode. The SAR fields are set
    only for the ``sar`` method, ``message_payload`` only for ``payload``
    (``short_message`` is then empty, as SMPP requires).
    """

    short_message: bytes
    data_coding: int
    esm_class: int = 0
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_payload: bytes | None = None

    @property
    def user_data(self) -> bytes:
        """The encoded text of this segment, without any UDH."""
        if self.message_payload is not None:
            return self.message_payload
        if self.esm_class & UDHI and self.short_message:
            return self.short_message[self.short_message[0] + 1 :]
        return self.short_message


def _units(char: str, coding: Coding) -> int:
    if coding is Coding.UCS2:
        return 2 if ord(char) > 0xFFFF else 1
    return len(_char_bytes(char, coding))


def _chunks(text: str, coding: Coding, limit: int) -> Iterator[bytes]:
    """Greedy cut into pieces of at most ``limit`` units, never inside a character."""
    piece = bytearray()
    used = 0
    for char in text:
        units = _units(char, coding)
        if used + units > limit:
            yield bytes(piece)
            piece.clear()
            used = 0
        piece += _char_bytes(char, coding)
        used += units
    if piece:
        yield bytes(piece)


def _udh(method: ConcatMethod, ref: int, total: int, seqnum: int) -> bytes:
    if method == "udh8":
        # UDHL 5, IEI 0x00 (concatenated SMS, 8-bit reference), IEDL 3.
        return bytes((0x05, 0x00, 0x03, ref, total, seqnum))
    # UDHL 6, IEI 0x08 (concatenated SMS, 16-bit reference), IEDL 4.
    return bytes((0x06, 0x08, 0x04, ref >> 8, ref & 0xFF, total, seqnum))


def split_message(text: str, coding: Coding, method: ConcatMethod, ref: int) -> list[Segment]:
    """Cut ``text`` into the submit_sm payloads for ``method`` (see the module docstring).

    ``ref`` is the concatenation reference (8-bit for ``udh8``, 16-bit for
    ``udh16`` and ``sar``; get it from ``ConcatReferences``); it is unused when
    the text fits one message or goes in ``message_payload``.
    """
    if method not in ("udh8", "udh16", "sar", "payload"):
        raise ValueError(f"unknown concatenation method {method!r}")
    maximum_ref = (1 << reference_bits(method)) - 1
    if not 0 <= ref <= maximum_ref:
        raise ValueError(f"reference {ref} out of range 0..{maximum_ref} for {method}")
    data_coding = int(coding)

    if method == "payload":
        payload = encode_text(text, coding)
        if len(payload) > MAX_PAYLOAD_OCTETS:
            raise SmsEncodingError(
                f"{len(payload)} octets exceed message_payload's {MAX_PAYLOAD_OCTETS}",
                ESME_RINVMSGLEN,
            )
        return [Segment(b"", data_coding, message_payload=payload)]

    encoded = encode_text(text, coding)
    if len(encoded) // _UNIT_OCTETS[coding] <= segment_limit(coding, None):
        return [Segment(encoded, data_coding)]

    pieces = list(_chunks(text, coding, segment_limit(coding, method)))
    total = len(pieces)
    if total > MAX_SEGMENTS:
        raise SmsEncodingError(
            f"text needs {total} segments, at most {MAX_SEGMENTS} can be concatenated",
            ESME_RINVMSGLEN,
        )
    if method == "sar":
        return [
            Segment(
                piece,
                data_coding,
                sar_msg_ref_num=ref,
                sar_total_segments=total,
                sar_segment_seqnum=seqnum,
            )
            for seqnum, piece in enumerate(pieces, start=1)
        ]
    return [
        Segment(_udh(method, ref, total, seqnum) + piece, data_coding, esm_class=UDHI)
        for seqnum, piece in enumerate(pieces, start=1)
    ]


# ---------------------------------------------------------------------- references

DEFAULT_MAX_TRACKED_DESTINATIONS: Final = 10_000


class ConcatReferences:
    """Concatenation reference numbers per destination: incrementing, wrapping, bounded.

    Handsets reassemble by (originator, reference), so consecutive long
    messages to one destination must not reuse a reference while parts may
    still be in flight; counting up per destination achieves that without
    randomness. At most ``max_destinations`` counters are kept (least recently
    used dropped); a destination seen for the first time, or again after being
    dropped, starts from a shared counter that moves with every allocation, so
    it does not restart at the same number each time.
    """

    def __init__(
        self,
        bits: Literal[8, 16],
        max_destinations: int = DEFAULT_MAX_TRACKED_DESTINATIONS,
    ) -> None:
        if bits not in (8, 16):
            raise ValueError("bits must be 8 or 16")
        if max_destinations < 1:
            raise ValueError("max_destinations must be at least 1")
        self.bits = bits
        self.max_destinations = max_destinations
        self._modulus = 1 << bits
        self._last: OrderedDict[str, int] = OrderedDict()
        self._shared = 0

    def next(self, destination: str) -> int:
        """The reference for the next concatenated message to ``destination``."""
        last = self._last.pop(destination, None)
        reference = self._shared if last is None else (last + 1) % self._modulus
        self._shared = (self._shared + 1) % self._modulus
        self._last[destination] = reference
        if len(self._last) > self.max_destinations:
            self._last.popitem(last=False)
        return reference

    def __len__(self) -> int:
        """How many destinations are tracked (never more than ``max_destinations``)."""
        return len(self._last)
