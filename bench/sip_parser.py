"""SIP message parser throughput: parsed messages per second on one core.

Prints, for a typical INVITE (with SDP) and an authenticated REGISTER:
- parse_message (full validation: From/To/Via/Contact/CSeq/...),
- StreamFramer.feed of the same bytes (TCP path),
- serialize of the parsed message,
next to a baseline measured in the same run: splitting the header section
into name/value pairs with bare str methods and no validation, i.e. the cost
floor of touching every header once in Python.

Run: python bench/sip_parser.py [seconds-per-case]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.sip.framing import StreamFramer
from gateway.sip.message import parse_message, serialize

INVITE = (
    b"INVITE sip:+15551230002@gw.example.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---b5f3a1c2;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:alice@198.51.100.7:5060;transport=udp>\r\n"
    b'To: "Bob" <sip:+15551230002@gw.example.com;user=phone>\r\n'
    b'From: "Alice" <sip:alice@example.com>;tag=9fxced76sl\r\n'
    b"Call-ID: 3848276298220188511@198.51.100.7\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, UPDATE\r\n"
    b"Supported: replaces, timer, 100rel\r\n"
    b"User-Agent: Softphone/5.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 230\r\n\r\n"
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\ns=-\r\n"
    b"c=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=sendrecv\r\n"
)
REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---9a8b7c6d;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:alice@198.51.100.7:5060;rinstance=6b3c1d2e;transport=udp>;expires=3600\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b"From: <sip:alice@example.com>;tag=7c1e4f2a\r\n"
    b"Call-ID: NjQ4ZGM5YzQ0ZGQ1ZTBkMjY3\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b'Authorization: Digest username="alice", realm="example.com", '
    b'nonce="a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1", uri="sip:example.com", '
    b'response="6629fae49393a05397450978507c4ef1", algorithm=MD5, cnonce="0a4f113b", '
    b"qop=auth, nc=00000001\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, UPDATE\r\n"
    b"User-Agent: Softphone/5.1\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def baseline_split(data: bytes) -> list[tuple[str, str]]:
    """Cost floor: decode, split lines, partition each header; no checks at all."""
    head = data[: data.find(b"\r\n\r\n")].decode("utf-8", "surrogateescape")
    pairs = []
    for line in head.split("\r\n")[1:]:
        name, _colon, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return pairs


def rate(run: Callable[[], object], seconds: float) -> float:
    """Calls per second of `run`, measured over about `seconds`."""
    count, batch = 0, 200
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(batch):
            run()
        count += batch
    return count / (time.perf_counter() - start)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    print(f"{'message':<9} {'case':<28} {'msgs/s':>10}")
    for label, data in (("INVITE", INVITE), ("REGISTER", REGISTER)):
        parsed = parse_message(data)
        framer = StreamFramer()
        cases: list[tuple[str, Callable[[], object]]] = [
            ("baseline: bare header split", partial(baseline_split, data)),
            ("parse_message (datagram)", partial(parse_message, data)),
            ("StreamFramer.feed (stream)", partial(framer.feed, data)),
            ("serialize", partial(serialize, parsed)),
        ]
        for name, run in cases:
            print(f"{label:<9} {name:<28} {rate(run, seconds):>10,.0f}")


if __name__ == "__main__":
    main()
