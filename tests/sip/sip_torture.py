"""Loader for the RFC 4475 torture messages stored under `torture/`.

The files use the RFC's own conventions (§2): text between `<allOneLine>`
lines is one line; `<hex>..</hex>` is raw octets (NUL, BEL, trailing SP,
binary body parts). Every other LF is a CRLF on the wire.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.sip.message import SipMessage, SipRequest

VALID = [
    # §3.1.1 valid messages
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason",
    # §3.1.2.x / §3.3.x messages that are syntactically valid (see test_sip_torture)
    "baddate", "badbranch", "bcast", "bext01", "cparam01", "cparam02", "inv2543", "invut",
    "regaut01", "regescrt", "sdp01", "unksm2", "zeromf",
]  # fmt: skip

TORTURE_DIR = Path(__file__).parent / "torture"
_ALL_ONE_LINE = re.compile(r"<allOneLine>\n(.*?)</allOneLine>\n", re.DOTALL)
_HEX = re.compile(r"<hex>(.*?)</hex>", re.DOTALL)


def load(name: str) -> bytes:
    """The wire bytes of torture message `name` (e.g. "wsinv")."""
    text = (TORTURE_DIR / f"{name}.txt").read_text(encoding="utf-8")
    text = _ALL_ONE_LINE.sub(lambda m: m.group(1).replace("\n", "") + "\n", text)
    wire = bytearray()
    for index, part in enumerate(_HEX.split(text)):
        wire += bytes.fromhex(part) if index % 2 else part.replace("\n", "\r\n").encode()
    return bytes(wire)


def names() -> list[str]:
    """Every stored message name."""
    return sorted(path.stem for path in TORTURE_DIR.glob("*.txt"))


def structure(msg: SipMessage) -> tuple[object, ...]:
    """What a round trip must keep: everything but the Content-Length spelling.

    serialize() always writes Content-Length as len(body), so a datagram that
    had none (or wrote "0150") comes back with the canonical value.
    """
    fields = [(n, v) for n, v in msg.headers.items() if n != "Content-Length"]
    start = (msg.method, msg.uri) if isinstance(msg, SipRequest) else (msg.status, msg.reason)
    return (start, msg.version, fields, msg.body)
