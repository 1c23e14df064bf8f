"""In-process cost of one call's SIP through the edge, without sockets, engine or SIPp.

The 13 datagrams a bridged call sends through the edge (as bench/call_timeline.py
shows them: the caller's INVITE, ACK and BYE and the callee's 180 and 200s on the
public side; the engine's 100, 180, 200s, B-leg INVITE, ACK and BYE on the internal
side) are handed straight to the edge's two UDP protocol objects, each answer built
from what the edge forwarded (so every Via branch is the edge's own). Only the edge's
work is timed (CPU time around `datagram_received`); building the datagrams is not.
The figure is microseconds per call and per message kind; the baseline, measured in
the same run, is the bare header split of the same datagrams (`sip_parser`), the least
any Python edge has to do per message.

In the daemon each message also costs a `sendto` (the kernel's loopback delivery)
and call control's share (`between_messages`); neither is here.

Run: python bench/sip_call_path.py [--calls 2000] [--batches 10] [--profile FILE]

Instructions per call, which a shared machine cannot blur: `--instructions N`
records N calls, then replays their datagrams on a fresh edge inside
`functools.reduce`, the only region callgrind collects with

    valgrind --tool=callgrind --toggle-collect=functools_reduce \
        .venv/bin/python bench/sip_call_path.py --instructions 1000

Ir (the `totals:` line of the callgrind.out file) / N is the edge's instructions
per call.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import ipaddress
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after ROOT: bench/smpp.py must not shadow smpp/

from sip_parser import baseline_split  # noqa: E402
from sip_register_path import Wire  # noqa: E402

from gateway.calls.overload import CallAdmission, OverloadLimits, OverloadPolicy  # noqa: E402
from gateway.config.sip import SipConfig, SipProtectionConfig  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.sip.admission import AuthenticatedOnly  # noqa: E402
from gateway.sip.directory import Directory  # noqa: E402
from gateway.sip.edge import SipEdge  # noqa: E402
from gateway.sip.grammar import split_list  # noqa: E402
from gateway.sip.proxy import Interface  # noqa: E402
from gateway.sip.transport import UdpEndpoint  # noqa: E402

EDGE = ("127.0.0.1", 5060)
INTERNAL = ("127.0.0.1", 5070)
ENGINE = ("127.0.0.1", 5080)
CALLER = ("127.0.0.1", 40000)
CALLEE = ("127.0.0.1", 40002)
SDP = (
    "v=0\r\no=- 3913 3913 IN IP4 127.0.0.1\r\ns=pjmedia\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=sendrecv\r\n"
)
# The Routes PJSIP puts on the engine's requests: the edge's internal side, as call
# control names it for a new call and as the edge's Record-Route put it in the dialog.
ROUTE_ENGINE = f"<sip:{INTERNAL[0]}:{INTERNAL[1]};lr;cg=engine>"
ROUTE_IN = f"<sip:{INTERNAL[0]}:{INTERNAL[1]};lr;cg=in>"
PJSIP_HEADERS = (
    "Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, "
    "MESSAGE, OPTIONS\r\nSupported: replaces, 100rel, timer, norefersub\r\n"
    "User-Agent: Callgate\r\n"
)


SECRET = b"s" * 32  # the edge's branch key, fixed so a recorded call replays exactly


def _edge() -> tuple[UdpEndpoint, UdpEndpoint, Wire, Wire]:
    """The edge with a public and an internal endpoint on wires, loopback a trunk."""
    config = SipConfig(protection=SipProtectionConfig(packet_rate=1e9, packet_burst=10**9))
    network = Directory({}, [(ipaddress.ip_network("127.0.0.0/8"), "bench")])
    limits = OverloadLimits(
        max_new_per_second=1e9,
        burst=10**9,
        max_concurrent=10**9,
        max_loop_lag=1.0,
        retry_after=5,
    )
    policy = OverloadPolicy(
        AuthenticatedOnly(),
        CallAdmission(limits),
        active_calls=lambda: 0,
        loop_lag=lambda: 0.0,
        on_reject=lambda _why: None,
    )
    edge = SipEdge(config, Metrics(), ENGINE, network, policy)
    edge._secret = SECRET
    public = UdpEndpoint(edge._limits(), edge.on_message, edge.on_bad_message, edge._allow_packet)
    internal = edge.internal_endpoint()
    public_wire, internal_wire = Wire(), Wire()
    public.connection_made(public_wire)  # type: ignore[arg-type]
    internal.connection_made(internal_wire)  # type: ignore[arg-type]
    edge._udp.append(public)
    edge._public.append(Interface("udp", *EDGE))
    edge._internal = internal
    edge._internal_iface = Interface("udp", *INTERNAL)
    edge.engine_answered = policy.intake.offered
    return public, internal, public_wire, internal_wire


def _request(method: str, uri: str, via: str, dialog: tuple[str, str, str], cseq: int) -> str:
    call_id, from_tag, to_tag = dialog
    to = f"<{uri}>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via}\r\nMax-Forwards: 70\r\n"
        f"From: <sip:caller@127.0.0.1>;tag={from_tag}\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
    )


def _with_body(head: str, extra: str = "") -> bytes:
    body = SDP
    return (
        f"{head}{extra}Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def _empty(head: str, extra: str = "") -> bytes:
    return f"{head}{extra}Content-Length: 0\r\n\r\n".encode()


def _answer(request: bytes, status: str, to_tag: str, contact: str, sdp: bool) -> bytes:
    """A response to `request` as its receiver would build it: Vias, From, Call-ID, CSeq
    and Record-Route copied, a To tag and a Contact added. From the engine (`contact`
    names it) each Via goes on its own line, as PJSIP writes them; SIPp echoes the
    lines as received."""
    pjsip = contact.startswith(f"sip:{ENGINE[0]}")
    head = ["SIP/2.0 " + status]
    vias: list[str] = []
    for line in request.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]:
        name, _colon, value = line.partition(":")
        name = name.lower()
        if name == "via" and pjsip:
            vias.extend(f"Via: {v}" for v in split_list(value.strip()))
        elif name in ("via", "from", "call-id", "cseq", "record-route"):
            head.append(line)
        elif name == "to":
            head.append(line if ";tag=" in line or not to_tag else f"{line};tag={to_tag}")
    head[1:1] = vias
    text = "\r\n".join(head) + f"\r\nContact: <{contact}>\r\n"
    return _with_body(text) if sdp else _empty(text)


class CallPath:
    """Hands one call's datagrams to the edge and checks where each went."""

    def __init__(self) -> None:
        self.public, self.internal, self.public_wire, self.internal_wire = _edge()
        self.spent: dict[str, int] = defaultdict(int)
        self.datagrams: list[bytes] = []
        self.log: list[tuple[UdpEndpoint, bytes, tuple[str, int]]] = []

    def _give(self, kind: str, side: UdpEndpoint, data: bytes, source: tuple[str, int]) -> None:
        self.datagrams.append(data)
        self.log.append((side, data, source))
        t0 = time.thread_time_ns()
        side.datagram_received(data, source)
        self.spent[kind] += time.thread_time_ns() - t0

    def _through(self, kind: str, data: bytes, source: tuple[str, int], first: bytes) -> bytes:
        """Hand `data` from `source` to the edge; returns what the edge sent on the other
        side, which must start with `first`."""
        from_engine = source == ENGINE
        self._give(kind, self.internal if from_engine else self.public, data, source)
        wire = self.public_wire if from_engine else self.internal_wire
        sent = wire.sent.pop()
        if wire.sent or not sent.startswith(first):
            raise RuntimeError(f"{kind}: expected {first!r}, got {sent[:120]!r}")
        return sent

    def call(self, n: int) -> None:
        through = self._through
        engine = f"sip:{ENGINE[0]}:{ENGINE[1]}"
        callee = f"sip:callee@{CALLEE[0]}:{CALLEE[1]}"
        a = (f"a{n}@bench", f"ta{n}", "")
        a_dialog = (a[0], a[1], f"te{n}")
        b = (f"b{n}@engine", f"tb{n}", "")
        b_dialog = (b[0], b[1], f"tc{n}")

        def caller_via(suffix: str) -> str:
            return f"{CALLER[0]}:{CALLER[1]};branch=z9hG4bK-a{n}{suffix}"

        def engine_via(suffix: str) -> str:
            return f"{ENGINE[0]}:{ENGINE[1]};rport;branch=z9hG4bKPj-b{n}{suffix}"

        uri = f"sip:1555{n:07d}@{EDGE[0]}:{EDGE[1]}"
        caller_contact = f"Contact: <sip:caller@{CALLER[0]}:{CALLER[1]}>\r\n"
        invite = _with_body(_request("INVITE", uri, caller_via(""), a, 1), caller_contact)
        a_invite = through("caller INVITE", invite, CALLER, b"INVITE ")
        through("engine 100", _answer(a_invite, "100 Trying", "", engine, False), ENGINE,
                b"SIP/2.0 100")  # fmt: skip
        b_uri = f"sip:1555{n:07d}@{CALLEE[0]}:{CALLEE[1]}"
        b_head = f"Contact: <{engine}>\r\nRoute: {ROUTE_ENGINE}\r\n{PJSIP_HEADERS}"
        b_invite = _with_body(_request("INVITE", b_uri, engine_via(""), b, 1), b_head)
        to_callee = through("engine INVITE", b_invite, ENGINE, b"INVITE ")
        ringing = _answer(to_callee, "180 Ringing", f"tc{n}", callee, False)
        through("callee 180", ringing, CALLEE, b"SIP/2.0 180")
        ringing = _answer(a_invite, "180 Ringing", f"te{n}", engine, False)
        through("engine 180", ringing, ENGINE, b"SIP/2.0 180")
        answer = _answer(to_callee, "200 OK", f"tc{n}", callee, True)
        through("callee 200", answer, CALLEE, b"SIP/2.0 200")
        route = f"Route: {ROUTE_IN}\r\n"
        ack = _empty(_request("ACK", callee, engine_via("-ack"), b_dialog, 1), route)
        through("engine ACK", ack, ENGINE, b"ACK ")
        answer = _answer(a_invite, "200 OK", f"te{n}", engine, True)
        through("engine 200", answer, ENGINE, b"SIP/2.0 200")
        ack = _empty(_request("ACK", engine, caller_via("-ack"), a_dialog, 1))
        through("caller ACK", ack, CALLER, b"ACK ")
        bye = _empty(_request("BYE", engine, caller_via("-bye"), a_dialog, 2))
        a_bye = through("caller BYE", bye, CALLER, b"BYE ")
        answer = _answer(a_bye, "200 OK", "", engine, False)
        through("engine 200 BYE", answer, ENGINE, b"SIP/2.0 200")
        bye = _empty(_request("BYE", callee, engine_via("-bye"), b_dialog, 2), route)
        to_callee_bye = through("engine BYE", bye, ENGINE, b"BYE ")
        answer = _answer(to_callee_bye, "200 OK", "", callee, False)
        through("callee 200 BYE", answer, CALLEE, b"SIP/2.0 200")


def instructions_run(calls: int) -> None:
    """`calls` calls recorded on one edge, then replayed on a fresh one (same branch
    key, so every response matches) inside `functools.reduce`: the only region
    callgrind collects with --toggle-collect=functools_reduce (see the module note)."""
    recorder = CallPath()
    for n in range(calls):
        recorder.call(n)
    replay = CallPath()
    sides = {id(recorder.public): replay.public, id(recorder.internal): replay.internal}
    log = [(sides[id(side)].datagram_received, data, source) for side, data, source in recorder.log]
    functools.reduce(lambda _, item: item[0](item[1], item[2]), log, None)
    sent = len(replay.public_wire.sent) + len(replay.internal_wire.sent)
    if sent != len(log):
        raise RuntimeError(f"{len(log)} datagrams in, {sent} out")


def baseline_ns(datagrams: list[bytes]) -> int:
    clock = time.thread_time_ns
    t0 = clock()
    for datagram in datagrams:
        baseline_split(datagram)
    return clock() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls per batch")
    parser.add_argument("--batches", type=int, default=10, help="the fastest batch counts")
    parser.add_argument("--profile", type=Path, help="write a cProfile dump of one more batch")
    parser.add_argument(
        "--instructions", type=int, metavar="N", help="only replay N calls (for callgrind)"
    )
    args = parser.parse_args()
    if args.instructions is not None:
        instructions_run(args.instructions)
        return
    path = CallPath()
    for n in range(500):  # warm-up
        path.call(n)
    best: dict[str, int] | None = None
    base = None
    for batch in range(args.batches):
        path.spent.clear()
        path.datagrams.clear()
        start = (batch + 1) * 10**6
        for n in range(start, start + args.calls):
            path.call(n)
        if best is None or sum(path.spent.values()) < sum(best.values()):
            best = dict(path.spent)
        split = baseline_ns(path.datagrams)
        base = split if base is None else min(base, split)
    assert best is not None and base is not None
    calls = args.calls
    print(f"{calls} calls per batch, fastest of {args.batches} batches")
    for kind, spent in best.items():
        print(f"  {kind:16} {spent / calls / 1000:7.1f} us")
    per_call = sum(best.values()) / calls / 1000
    print(f"edge per call      {per_call:7.1f} us ({1e6 / per_call:,.0f} calls/s on one core)")
    print(f"baseline per call  {base / calls / 1000:7.1f} us (bare header split, 13 messages)")
    if args.profile is not None:
        profile = cProfile.Profile()
        profile.enable()
        for n in range(9 * 10**7, 9 * 10**7 + calls):
            path.call(n)
        profile.disable()
        profile.dump_stats(args.profile)


if __name__ == "__main__":
    main()
