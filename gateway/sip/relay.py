"""The engine's responses relayed without a full parse.

Every response the engine sends the edge is PJSIP's own output to a request the
edge forwarded: the edge's Via on its own line first, the next hop's Via on the
line after it. Relaying one only takes removing that first line and reading the
second, so the edge does not parse, validate and re-serialise a message it can
trust (4 of the 13 datagrams of a bridged call; docs/BENCHMARKS.md has the
figures). Anything of another shape returns None and takes the full path
(`parse_message` + `forward_response`), which also answers malformed input.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.sip.address import parse_via
from gateway.sip.errors import SipParseError
from gateway.sip.fields import parse_call_id, parse_cseq
from gateway.sip.grammar import split_list
from gateway.sip.proxy import DEFAULT_PORTS, EDGE_BRANCH, Hop

_VIA = b"\r\nVia: "
_CALL_ID = b"\r\nCall-ID: "
_CSEQ = b"\r\nCSeq: "
# The edge's Via as the engine echoes it: PJSIP copies the branch as the edge wrote it.
_OWN_BRANCH = b";branch=" + EDGE_BRANCH.encode()


@dataclass(frozen=True, slots=True)
class Relayed:
    """An engine response ready to go: its bytes without the edge's Via, and where."""

    payload: bytes
    hop: Hop
    call_id: str
    method: str
    """The CSeq method: which request it answers."""


def _line(data: bytes, prefix: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(value start, line end) of the header line `prefix` begins at `start`, if it
    is one whole line (not folded) inside data[:end]."""
    if not data.startswith(prefix, start):
        return None
    value = start + len(prefix)
    stop = data.find(b"\r\n", value, end)
    if stop < 0:
        stop = end
    if data[stop + 2 : stop + 3] in (b" ", b"\t"):
        return None  # a folded line: the full parser joins those
    return value, stop


def _value(data: bytes, prefix: bytes, end: int) -> str | None:
    """The value of the one header line spelled `prefix` in data[:end], if exactly one."""
    at = data.find(prefix, 0, end)
    if at < 0 or data.find(prefix, at + 1, end) >= 0:
        return None
    found = _line(data, prefix, at, end)
    if found is None:
        return None
    return data[found[0] : found[1]].decode("utf-8", "surrogateescape").strip(" \t")


def relay_engine_response(data: bytes) -> Relayed | None:
    """The engine's response to one of the edge's requests, relayed; None: not that
    shape (the caller takes the full path)."""
    if not data.startswith(b"SIP/2.0 ") or not data[8:11].isdigit() or data[11:12] != b" ":
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    first = data.find(b"\r\n")
    ours = _line(data, _VIA, first, end)
    if ours is None:
        return None
    after = ours[1]
    nxt = _line(data, _VIA, after, end) if after < end else None
    if nxt is None:
        return None
    top = data[ours[0] : ours[1]]
    if b"," in top or _OWN_BRANCH not in top:
        return None  # not one Via, or not the edge's: the full path decides
    try:
        values = split_list(data[nxt[0] : nxt[1]].decode("utf-8", "surrogateescape"))
        call_id_text = _value(data, _CALL_ID, end)
        cseq_text = _value(data, _CSEQ, end)
        if not values or call_id_text is None or cseq_text is None:
            return None
        via = parse_via(values[0])
        call_id = parse_call_id(call_id_text)
        method = parse_cseq(cseq_text).method
    except SipParseError:
        return None
    transport = via.transport.lower()
    host = via.received or via.host.strip("[]")
    port = via.rport or via.port or DEFAULT_PORTS.get(transport, 5060)
    return Relayed(data[:first] + data[after:], Hop(transport, host, port), call_id, method)
