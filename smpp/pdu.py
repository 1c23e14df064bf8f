"""SMPP 3.4 PDUs: framing, a small typed form, and the planned decode error.

This is the only module that imports smpplib, and it uses it for encoding and
decoding only. smpplib's parser trusts its input (a missing NUL rewinds the
cursor, a known TLV the command does not list raises KeyError, wrong TLV
lengths misalign it), so every frame is checked against smpplib's own field
tables first; TLVs it cannot take are kept raw in `Pdu.unknown_tlvs`. Whatever
is wrong with a frame comes out as `PduDecodeError`, which carries the
command_status to answer with in a generic_nack.

The PDUs of the message path (submit_sm out, submit_sm_resp and deliver_sm in,
their acknowledgements, enquire_link, generic_nack) take a fast path instead:
smpplib builds an object with every optional field per PDU, which profiles
showed to be the largest single cost at a few thousand messages per second.
The fast path is driven by the same smpplib field tables (read once) and
produces exactly smpplib's bytes and `Pdu` values, including its quirks
(`tests/smpp/test_pdu_fast.py` proves it against `smpplib_decode_pdu` /
`smpplib_encode_pdu`); parameters it has no exact rule for (string TLVs, flag
TLVs, values smpplib would reject) go through smpplib.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, cast

import smpplib.consts
import smpplib.exceptions
import smpplib.smpp
from smpplib import command_codes
from smpplib.ptypes import flag, ostr

HEADER_SIZE: Final = 16
"""command_length, command_id, command_status, sequence_number: four 32-bit words."""
DEFAULT_MAX_PDU_BYTES: Final = 64 * 1024
"""Largest frame accepted unless configured otherwise."""
MAX_SEQUENCE: Final = 0x7FFFFFFF
"""Sequence numbers run 1..0x7FFFFFFF and then wrap to 1 (SMPP 3.4 §3.2)."""
RESPONSE_BIT: Final = 0x80000000

ParamValue = int | bytes | str
"""int for integer fields, bytes for octet strings; C-strings decode as bytes and
encode from str (Latin-1) or bytes."""


class CommandStatus(IntEnum):
    """The command_status values this gateway sends or reacts to (SMPP 3.4 §5.1.3)."""

    ESME_ROK = 0x00
    ESME_RINVMSGLEN = 0x01
    ESME_RINVCMDLEN = 0x02
    ESME_RINVCMDID = 0x03
    ESME_RINVBNDSTS = 0x04
    ESME_RALYBND = 0x05
    ESME_RSYSERR = 0x08
    ESME_RBINDFAIL = 0x0D
    ESME_RMSGQFUL = 0x14
    ESME_RTHROTTLED = 0x58
    ESME_RX_T_APPN = 0x64
    ESME_RINVOPTPARSTREAM = 0xC0
    ESME_RINVPARLEN = 0xC2
    ESME_RUNKNOWNERR = 0xFF


class PduDecodeError(Exception):
    """A frame that cannot be decoded; answer it with generic_nack(command_status).

    `command_id` is 0 when the header itself was unreadable.
    """

    def __init__(
        self, command_status: int, sequence: int, reason: str, command_id: int = 0
    ) -> None:
        super().__init__(reason)
        self.command_status = command_status
        self.sequence = sequence
        self.command_id = command_id
        self.reason = reason


class PduFramingError(PduDecodeError):
    """The byte stream cannot be split into frames; the connection must be closed.

    `frames` are the complete frames that arrived before the bad length, in
    order; they are valid and should still be handled.
    """

    frames: tuple[bytes, ...] = ()


class PduEncodeError(ValueError):
    """Parameters that do not fit the PDU (unknown field, value too long)."""

    def __init__(self, command_status: int, reason: str) -> None:
        super().__init__(reason)
        self.command_status = command_status


@dataclass(frozen=True, slots=True)
class Pdu:
    """One decoded PDU: what the session needs, without smpplib objects."""

    command: str
    """smpplib's command name, e.g. `submit_sm_resp`."""
    sequence: int
    status: int = 0
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    """Fields that were present, mandatory and TLV, by smpplib's names."""
    unknown_tlvs: Mapping[int, bytes] = field(default_factory=dict)
    """TLVs smpplib has no entry for in this command, raw by tag."""

    @property
    def is_response(self) -> bool:
        return self.command in _RESPONSE_COMMANDS

    def text(self, name: str, default: str = "") -> str:
        """A C-string field as text (Latin-1: SMPP strings are ASCII on the wire)."""
        value = self.params.get(name)
        if isinstance(value, bytes):
            return value.decode("latin-1")
        if isinstance(value, str):
            return value
        return default

    def integer(self, name: str, default: int = 0) -> int:
        value = self.params.get(name)
        return value if isinstance(value, int) else default

    def octets(self, name: str) -> bytes:
        value = self.params.get(name)
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("latin-1")
        return b""


class _SequenceSource:
    """Stands in for smpplib's client: its commands ask one for a sequence number
    when constructed; ours are always set explicitly afterwards."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_SEQUENCE_SOURCE: Final = _SequenceSource()
_UNPACK_HEADER: Final = struct.Struct(">LLLL")
_UNPACK_TLV_HEAD: Final = struct.Struct(">HH")
_TLV_NAMES: Final[dict[int, str]] = {
    code: name for name, code in smpplib.consts.OPTIONAL_PARAMS.items()
}
# What smpplib.parse_pdu / make_pdu can raise on input it does not expect.
_SMPPLIB_ERRORS: Final = (
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    UnicodeError,
    smpplib.exceptions.UnknownCommandError,
    smpplib.exceptions.PDUError,
)


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    kind: type
    size: int | None
    max: int | None
    len_field: str | None


@dataclass(frozen=True, slots=True)
class _Layout:
    """smpplib's field table for one command, read once from a template PDU."""

    mandatory: tuple[_FieldSpec, ...]
    optional: Mapping[str, _FieldSpec]
    by_name: Mapping[str, _FieldSpec]
    """Mandatory and optional fields by name (mandatory first, as encode looks them up)."""
    defaults: Mapping[str, ParamValue]
    """Fields smpplib's command class presets (SubmitSM.sm_length = 0): a decoded
    PDU has them even when its body ends before them."""
    order: tuple[str, ...]
    """smpplib's params_order: the order fields are encoded in."""


_LAYOUTS: dict[str, _Layout] = {}


def _spec(name: str, param: Any) -> _FieldSpec:
    return _FieldSpec(
        name=name,
        kind=param.type,
        size=getattr(param, "size", None),
        max=getattr(param, "max", None),
        len_field=getattr(param, "len_field", None),
    )


def _layout(command: str) -> _Layout:
    """The field table of `command`; raises UnknownCommandError if smpplib lacks it."""
    cached = _LAYOUTS.get(command)
    if cached is not None:
        return cached
    template = smpplib.smpp.make_pdu(command, client=_SEQUENCE_SOURCE, sequence=0)
    mandatory: list[_FieldSpec] = []
    optional: dict[str, _FieldSpec] = {}
    in_mandatory = True
    for name in template.params_order:
        is_optional = bool(template.field_is_optional(name))
        if is_optional:
            in_mandatory = False  # smpplib stops reading mandatory fields here
            optional[name] = _spec(name, template.params[name])
        elif in_mandatory:
            mandatory.append(_spec(name, template.params[name]))
    defaults: dict[str, ParamValue] = {}
    for name in template.params_order:
        value = getattr(template, name, None)
        if isinstance(value, int | bytes):
            defaults[name] = value
    by_name = {spec.name: spec for spec in mandatory}
    for name, spec in optional.items():
        by_name.setdefault(name, spec)
    layout = _Layout(tuple(mandatory), optional, by_name, defaults, tuple(template.params_order))
    _LAYOUTS[command] = layout
    return layout


_COMMAND_NAMES: Final[dict[int, str]] = {
    int(code): str(name) for name, code in reversed(command_codes.commands.items())
}
"""command_id -> name; the first name wins, as in smpplib's linear search."""
_RESPONSE_COMMANDS: Final = frozenset(
    name for code, name in _COMMAND_NAMES.items() if code & RESPONSE_BIT
)


def command_name(command_id: int) -> str | None:
    """The smpplib name of a command_id, or None if SMPP 3.4 has no such command."""
    return _COMMAND_NAMES.get(command_id)


def response_name(command: str) -> str:
    return command + "_resp"


def peek_header(frame: bytes) -> tuple[int, int, int, int] | None:
    """(length, command_id, status, sequence) if `frame` holds a full header."""
    if len(frame) < HEADER_SIZE:
        return None
    length, command_id, status, sequence = _UNPACK_HEADER.unpack_from(frame)
    return length, command_id, status, sequence


def decode_pdu(frame: bytes) -> Pdu:
    """Decode one complete frame (as cut by `PduFramer`); raises only `PduDecodeError`."""
    if len(frame) >= HEADER_SIZE:
        length, command_id, status, sequence = _UNPACK_HEADER.unpack_from(frame)
        fast = _FAST_DECODERS.get(command_id)
        if fast is not None and length == len(frame):
            return fast.decode(frame, status, sequence)
    return smpplib_decode_pdu(frame)


def smpplib_decode_pdu(frame: bytes) -> Pdu:
    """`decode_pdu` through smpplib for every command: the reference the fast path
    is tested against, and the path for the commands it does not cover."""
    header = peek_header(frame)
    if header is None:
        raise PduDecodeError(
            CommandStatus.ESME_RINVCMDLEN, 0, f"frame of {len(frame)} bytes has no header"
        )
    length, command_id, status, sequence = header
    if length != len(frame):
        raise PduDecodeError(
            CommandStatus.ESME_RINVCMDLEN,
            sequence,
            f"command_length {length} but frame has {len(frame)} bytes",
            command_id,
        )
    name = command_name(command_id)
    if name is None:
        raise PduDecodeError(
            CommandStatus.ESME_RINVCMDID,
            sequence,
            f"unknown command_id 0x{command_id:08x}",
            command_id,
        )
    try:
        layout = _layout(name)
    except smpplib.exceptions.UnknownCommandError:
        raise PduDecodeError(
            CommandStatus.ESME_RINVCMDID, sequence, f"unsupported command {name}", command_id
        ) from None
    parseable, unknown_tlvs = _check_body(layout, frame, sequence, command_id)
    try:
        parsed = smpplib.smpp.parse_pdu(
            parseable, client=_SEQUENCE_SOURCE, allow_unknown_opt_params=True
        )
    except _SMPPLIB_ERRORS as exc:
        raise PduDecodeError(
            CommandStatus.ESME_RSYSERR,
            sequence,
            f"smpplib cannot parse {name}: {exc!r}",
            command_id,
        ) from exc
    params: dict[str, ParamValue] = {}
    for spec in layout.mandatory:
        value = getattr(parsed, spec.name, None)
        if isinstance(value, int | bytes):
            params[spec.name] = value
    for tlv_name in layout.optional:
        value = getattr(parsed, tlv_name, None)
        if isinstance(value, int | bytes):
            params[tlv_name] = value
    return Pdu(name, sequence, status, params, unknown_tlvs)


def _check_body(
    layout: _Layout, frame: bytes, sequence: int, command_id: int
) -> tuple[bytes, dict[int, bytes]]:
    """Walk the body as smpplib will; return a frame it can parse safely and the
    TLVs removed from it. Raises `PduDecodeError` for truncated or overlong fields."""

    def fail(status: int, reason: str) -> PduDecodeError:
        return PduDecodeError(status, sequence, reason, command_id)

    end = len(frame)
    pos = HEADER_SIZE
    ints: dict[str, int] = {}
    for spec in layout.mandatory:
        if pos == end:
            break  # smpplib leaves the remaining fields unset (e.g. error responses)
        if spec.kind is int:
            size = spec.size or 1
            if pos + size > end:
                raise fail(CommandStatus.ESME_RINVCMDLEN, f"{spec.name} truncated")
            ints[spec.name] = int.from_bytes(frame[pos : pos + size], "big")
            pos += size
        elif spec.kind is str:
            nul = frame.find(b"\0", pos)
            if nul < 0:
                raise fail(CommandStatus.ESME_RINVCMDLEN, f"{spec.name} lacks its NUL")
            pos = nul + 1
        elif spec.kind is ostr:
            length = ints.get(spec.len_field or "", 0)
            if pos + length > end:
                raise fail(CommandStatus.ESME_RINVMSGLEN, f"{spec.name} runs past the PDU")
            pos += length
    kept = bytearray(frame[:pos])
    unknown: dict[int, bytes] = {}
    while pos < end:
        if pos + 4 > end:
            raise fail(CommandStatus.ESME_RINVOPTPARSTREAM, "truncated TLV header")
        tag, length = _UNPACK_TLV_HEAD.unpack_from(frame, pos)
        value_end = pos + 4 + length
        if value_end > end:
            raise fail(CommandStatus.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04x} runs past the PDU")
        value = frame[pos + 4 : value_end]
        tlv = layout.optional.get(_TLV_NAMES.get(tag, ""))
        if tlv is not None and _smpplib_reads_exactly(tlv, value):
            kept += frame[pos:value_end]
        else:
            unknown[tag] = bytes(value)
        pos = value_end
    if unknown:
        kept[0:4] = len(kept).to_bytes(4, "big")
    return bytes(kept), unknown


def _smpplib_reads_exactly(spec: _FieldSpec, value: bytes) -> bool:
    """Whether smpplib consumes exactly len(value) bytes for this TLV (else it misaligns)."""
    if spec.kind is int:
        return spec.size == len(value)
    if spec.kind is str:
        return len(value) >= 1 and value.endswith(b"\0")
    if spec.kind is ostr:
        return True
    return spec.kind is flag and not value


def encode_pdu(
    command: str,
    sequence: int,
    status: int = 0,
    params: Mapping[str, ParamValue] | None = None,
) -> bytes:
    """Encode a PDU as smpplib does; raises `PduEncodeError` for parameters that
    would not survive (smpplib silently truncates overlong strings)."""
    fast = _FAST_ENCODERS.get(command)
    if fast is not None:
        data = fast.encode(sequence, status, params or {})
        if data is not None:
            return data
    return smpplib_encode_pdu(command, sequence, status, params)


def smpplib_encode_pdu(
    command: str,
    sequence: int,
    status: int = 0,
    params: Mapping[str, ParamValue] | None = None,
) -> bytes:
    """`encode_pdu` through smpplib for every command: the reference the fast path
    is tested against, and the path for everything it does not cover."""
    try:
        layout = _layout(command)
    except smpplib.exceptions.UnknownCommandError:
        raise PduEncodeError(CommandStatus.ESME_RINVCMDID, f"unknown command {command}") from None
    fields: dict[str, object] = {}
    specs = layout.by_name
    for name, value in (params or {}).items():
        spec = specs.get(name)
        if spec is None:
            raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{command} has no field {name}")
        fields[name] = _encodable(command, spec, value)
    try:
        pdu = smpplib.smpp.make_pdu(command, client=_SEQUENCE_SOURCE, **fields)
        pdu.sequence = sequence
        pdu.status = status
        data: bytes = pdu.generate()
    except _SMPPLIB_ERRORS as exc:
        raise PduEncodeError(
            CommandStatus.ESME_RSYSERR, f"cannot encode {command}: {exc!r}"
        ) from exc
    return data


def _encodable(command: str, spec: _FieldSpec, value: ParamValue) -> object:
    if spec.kind is int:
        if not isinstance(value, int):
            raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{spec.name} must be an int")
        if not 0 <= value < 1 << (8 * (spec.size or 1)):
            raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{spec.name}={value} out of range")
        return value
    if spec.kind is str:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not isinstance(text, str):
            raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{spec.name} must be text")
        if "\0" in text:
            raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{spec.name} contains NUL")
        limit = spec.size if spec.size is not None else spec.max
        if limit is not None and len(text) >= limit:
            raise PduEncodeError(
                CommandStatus.ESME_RINVPARLEN,
                f"{command}.{spec.name} is {len(text)} characters, at most {limit - 1}",
            )
        return text
    if spec.kind is ostr:
        if not isinstance(value, bytes):
            raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{spec.name} must be bytes")
        if spec.len_field is not None and spec.max is not None and len(value) > spec.max:
            raise PduEncodeError(
                CommandStatus.ESME_RINVMSGLEN,
                f"{spec.name} is {len(value)} octets, at most {spec.max}",
            )
        if len(value) > 0xFFFF:
            raise PduEncodeError(CommandStatus.ESME_RINVPARLEN, f"{spec.name} over 65535 octets")
        return value
    raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{spec.name}: unsupported field type")


# ---------------------------------------------------------------- the fast path

FAST_DECODE_COMMANDS: Final = (
    "submit_sm_resp",
    "deliver_sm",
    "deliver_sm_resp",
    "enquire_link",
    "enquire_link_resp",
    "generic_nack",
)
"""Decoded without smpplib: what an ESME receives for every message it sends."""
FAST_ENCODE_COMMANDS: Final = (
    "submit_sm",
    "deliver_sm_resp",
    "enquire_link",
    "enquire_link_resp",
    "generic_nack",
)
"""Encoded without smpplib (unless a parameter needs one of smpplib's odd rules)."""

_INT: Final = 0
_CSTR: Final = 1
_OSTR: Final = 2
_FLAG: Final = 3
_KINDS: Final[dict[type, int]] = {int: _INT, str: _CSTR, ostr: _OSTR, flag: _FLAG}
_INT_FORMATS: Final[dict[int, str]] = {1: "B", 2: "H", 4: "L"}
_NUL: Final = b"\0"

_Mandatory = tuple[str, int, int, str]
"""name, kind, size (ints), len_field (octet strings)."""
_Tlv = tuple[str, int, int]
"""name, kind, size."""


def _tag(name: str) -> int:
    return int(smpplib.consts.OPTIONAL_PARAMS[name])


def _kind(spec: _FieldSpec) -> int:
    return _KINDS[spec.kind]


class _FastDecoder:
    """One command's body walk, checked as `_check_body` checks and valued as
    smpplib values (C-strings and octet strings as bytes, presets kept)."""

    __slots__ = ("command", "command_id", "defaults", "mandatory", "tlvs")

    def __init__(self, command: str, layout: _Layout) -> None:
        self.command = command
        self.command_id = int(command_codes.get_command_code(command))
        for spec in layout.mandatory:
            if spec.kind is str and spec.size is not None:
                raise ValueError(f"{command}.{spec.name}: fixed-size C-string")
            if spec.kind is flag:
                raise ValueError(f"{command}.{spec.name}: mandatory flag")
        self.mandatory: tuple[_Mandatory, ...] = tuple(
            (spec.name, _kind(spec), spec.size or 1, spec.len_field or "")
            for spec in layout.mandatory
        )
        self.defaults = dict(layout.defaults)
        self.tlvs: dict[int, _Tlv] = {}
        for name, spec in layout.optional.items():
            tag = _tag(name)
            if _TLV_NAMES.get(tag) == name:  # how _check_body names a tag
                self.tlvs[tag] = (name, _kind(spec), spec.size or 0)

    def decode(self, frame: bytes, status: int, sequence: int) -> Pdu:
        params: dict[str, ParamValue] = dict(self.defaults)
        end = len(frame)
        pos = HEADER_SIZE
        empty_tail: list[str] = []
        for name, kind, size, len_field in self.mandatory:
            if pos == end:
                break  # smpplib leaves the remaining fields unset (e.g. error responses)
            if kind == _INT:
                next_pos = pos + size
                if next_pos > end:
                    raise self._error(CommandStatus.ESME_RINVCMDLEN, sequence, f"{name} truncated")
                params[name] = frame[pos] if size == 1 else int.from_bytes(frame[pos:next_pos])
                pos = next_pos
            elif kind == _CSTR:
                nul = frame.find(_NUL, pos)
                if nul < 0:
                    raise self._error(
                        CommandStatus.ESME_RINVCMDLEN, sequence, f"{name} lacks its NUL"
                    )
                params[name] = frame[pos:nul]
                pos = nul + 1
            else:
                next_pos = pos + cast(int, params.get(len_field, 0))
                if next_pos > end:
                    raise self._error(
                        CommandStatus.ESME_RINVMSGLEN, sequence, f"{name} runs past the PDU"
                    )
                params[name] = frame[pos:next_pos]
                if next_pos == pos:
                    empty_tail.append(name)
                    continue
                pos = next_pos
            empty_tail.clear()
        unknown: dict[int, bytes] = {}
        kept = False
        tlvs = self.tlvs
        while pos < end:
            if pos + 4 > end:
                raise self._error(
                    CommandStatus.ESME_RINVOPTPARSTREAM, sequence, "truncated TLV header"
                )
            tag = frame[pos] << 8 | frame[pos + 1]
            value_end = pos + 4 + (frame[pos + 2] << 8 | frame[pos + 3])
            if value_end > end:
                raise self._error(
                    CommandStatus.ESME_RINVOPTPARSTREAM,
                    sequence,
                    f"TLV 0x{tag:04x} runs past the PDU",
                )
            value = frame[pos + 4 : value_end]
            pos = value_end
            tlv = tlvs.get(tag)
            if tlv is None:
                unknown[tag] = value
                continue
            name, kind, size = tlv
            if kind == _INT:
                if len(value) == size:
                    params[name] = int.from_bytes(value)
                    kept = True
                    continue
            elif kind == _CSTR:
                if value[-1:] == _NUL:
                    params[name] = value[:-1]
                    kept = True
                    continue
            elif kind == _OSTR:
                params[name] = value
                kept = True
                continue
            elif not value:
                kept = True  # an empty flag: smpplib reads it and sets nothing
                continue
            unknown[tag] = value  # smpplib would misread it
        if empty_tail and not kept:
            # smpplib parses the body without the TLVs it cannot take; when none
            # is left it ends right after the last non-empty mandatory field, so
            # an empty octet string there (sm_length 0) is not read at all.
            for name in empty_tail:
                del params[name]
                if name in self.defaults:
                    params[name] = self.defaults[name]
        return Pdu(self.command, sequence, status, params, unknown)

    def _error(self, status: int, sequence: int, reason: str) -> PduDecodeError:
        return PduDecodeError(status, sequence, reason, self.command_id)


class _FastEncoder:
    """One command's encoding with smpplib's byte rules: a mandatory int of 0 or
    unset is one NUL octet, an unset C-string is a NUL, an empty octet string
    (mandatory or TLV) is left out, an int TLV is written whenever set, and the
    length field of a mandatory octet string is its length (SubmitSM.prep)."""

    __slots__ = (
        "command",
        "command_id",
        "exclusive",
        "lengths",
        "mandatory",
        "slow",
        "specs",
        "tlv_names",
        "tlvs",
    )

    def __init__(self, command: str, layout: _Layout) -> None:
        self.command = command
        self.command_id = int(command_codes.get_command_code(command))
        self.specs = layout.by_name
        for spec in layout.mandatory:
            if spec.kind is int and spec.size != 1:
                raise ValueError(f"{command}.{spec.name}: smpplib writes 0 as one octet")
            if spec.kind is str and spec.size is not None:
                raise ValueError(f"{command}.{spec.name}: fixed-size C-string")
            if spec.kind is flag:
                raise ValueError(f"{command}.{spec.name}: mandatory flag")
        self.mandatory: tuple[tuple[str, int], ...] = tuple(
            (spec.name, _kind(spec)) for spec in layout.mandatory
        )
        self.lengths = {
            spec.len_field: spec.name
            for spec in layout.mandatory
            if spec.kind is ostr and spec.len_field is not None
        }
        """length field -> the octet string it measures."""
        self.exclusive = ("short_message", "message_payload") if command == "submit_sm" else None
        """SubmitSM.prep refuses both at once (with its own message: smpplib path)."""
        mandatory_names = {spec.name for spec in layout.mandatory}
        tlvs: list[tuple[str, int, int, str | None]] = []
        slow: set[str] = set()
        for name in layout.order:
            tlv = layout.optional.get(name)
            if tlv is None or name in mandatory_names:
                continue
            if tlv.kind is int and tlv.size is not None and tlv.size in _INT_FORMATS:
                tlvs.append((name, _tag(name), tlv.size, ">HH" + _INT_FORMATS[tlv.size]))
            elif tlv.kind is ostr:
                tlvs.append((name, _tag(name), 0, None))
            else:
                slow.add(name)
        self.tlvs = tuple(tlvs)
        """(name, tag, int size, struct format for ints or None for octet strings), in order."""
        self.tlv_names = frozenset(name for name, *_ in tlvs)
        self.slow = frozenset(slow)
        """C-string TLVs (smpplib writes UTF-8 after a character count) and flag
        TLVs (smpplib writes nothing): such parameters take the smpplib path."""

    def encode(self, sequence: int, status: int, params: Mapping[str, ParamValue]) -> bytes | None:
        """The PDU's bytes; None when only smpplib knows what it makes of `params`."""
        fields: dict[str, object] = {}
        specs = self.specs
        command = self.command
        for name, param in params.items():
            spec = specs.get(name)
            if spec is None:
                raise PduEncodeError(CommandStatus.ESME_RSYSERR, f"{command} has no field {name}")
            fields[name] = _encodable(command, spec, param)
        if self.slow and not self.slow.isdisjoint(fields):
            return None
        if self.exclusive is not None and all(fields.get(name) for name in self.exclusive):
            return None
        lengths = self.lengths
        body = bytearray()
        for name, kind in self.mandatory:
            value = fields.get(name)
            if kind == _INT:
                measured = lengths.get(name)
                if measured is not None:
                    octets = fields.get(measured)
                    value = len(octets) if isinstance(octets, bytes) else 0
                body.append(value if isinstance(value, int) else 0)
            elif kind == _CSTR:
                if isinstance(value, str) and value:
                    try:
                        body += value.encode("latin-1")
                    except UnicodeEncodeError:
                        return None  # smpplib's own error
                body.append(0)
            elif isinstance(value, bytes) and value:
                body += value
        for name, tag, size, int_format in (
            self.tlvs if not self.tlv_names.isdisjoint(fields) else ()
        ):
            value = fields.get(name)
            if value is None:
                continue
            if int_format is not None:
                body += struct.pack(int_format, tag, size, value)
            elif isinstance(value, bytes) and value:
                body += _UNPACK_TLV_HEAD.pack(tag, len(value))
                body += value
        try:
            header = _UNPACK_HEADER.pack(HEADER_SIZE + len(body), self.command_id, status, sequence)
        except struct.error:
            return None  # out-of-range sequence or status: smpplib's own error
        return header + body


_FAST_DECODERS: Final[dict[int, _FastDecoder]] = {}
_FAST_ENCODERS: Final[dict[str, _FastEncoder]] = {}
for _command in FAST_DECODE_COMMANDS:
    _decoder = _FastDecoder(_command, _layout(_command))
    _FAST_DECODERS[_decoder.command_id] = _decoder
for _command in FAST_ENCODE_COMMANDS:
    _FAST_ENCODERS[_command] = _FastEncoder(_command, _layout(_command))


class PduFramer:
    """Cuts a byte stream into frames by command_length.

    Holds at most one incomplete frame (never more than `max_pdu_bytes`); a
    length below the header size or above the limit raises `PduFramingError`
    and the framer stays broken, since the stream cannot be resynchronised.
    """

    def __init__(self, max_pdu_bytes: int = DEFAULT_MAX_PDU_BYTES) -> None:
        if max_pdu_bytes < HEADER_SIZE:
            raise ValueError("max_pdu_bytes is smaller than a PDU header")
        self._max = max_pdu_bytes
        self._buffer = bytearray()
        self._error: PduFramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the frames completed by them, in order."""
        if self._error is not None:
            raise self._error
        if self._buffer:
            return self._feed_buffered(data)
        # The usual case: whole frames cut straight out of the read, no copying
        # through the buffer; the rest (a partial frame, a bad length) goes the
        # buffered way.
        if not isinstance(data, bytes):
            data = bytes(data)
        frames: list[bytes] = []
        pos = 0
        size = len(data)
        limit = self._max
        while size - pos >= 4:
            length = int.from_bytes(data[pos : pos + 4])
            if length < HEADER_SIZE or length > limit or pos + length > size:
                break
            frames.append(data[pos : pos + length])
            pos += length
        if pos == size:
            return frames
        try:
            frames += self._feed_buffered(data[pos:])
        except PduFramingError as error:
            error.frames = (*frames, *error.frames)
            raise
        return frames

    def _feed_buffered(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        buffer = self._buffer
        view = memoryview(data)
        while True:
            if len(buffer) < 4:
                take = min(4 - len(buffer), len(view))
                buffer += view[:take]
                view = view[take:]
                if len(buffer) < 4:
                    break
            length = int.from_bytes(buffer[:4], "big")
            if length < HEADER_SIZE or length > self._max:
                header = bytes(buffer) + bytes(view[: HEADER_SIZE - len(buffer)])
                sequence = int.from_bytes(header[12:16], "big") if len(header) >= 16 else 0
                command_id = int.from_bytes(header[4:8], "big") if len(header) >= 8 else 0
                self._buffer = bytearray()
                self._error = PduFramingError(
                    CommandStatus.ESME_RINVCMDLEN,
                    sequence,
                    f"command_length {length} outside {HEADER_SIZE}..{self._max}",
                    command_id,
                )
                error = PduFramingError(
                    self._error.command_status, sequence, self._error.reason, command_id
                )
                error.frames = tuple(frames)
                raise error
            take = min(length - len(buffer), len(view))
            buffer += view[:take]
            view = view[take:]
            if len(buffer) < length:
                break
            frames.append(bytes(buffer))
            buffer.clear()
        return frames
