"""Where a call's set-up time goes: every SIP datagram of a few calls, kernel-timestamped.

Starts the real daemon (loopback as a trunk, every number routed to a SIPp
UAS through the engine), places `--calls` calls one after another with SIPp
(tests/sipp/call_uac_overload.xml: INVITE, 200, 200 ms, BYE), and captures
every SIP datagram on the loopback interface with a packet socket
(`AF_PACKET`, root only) and the kernel's receive timestamp
(`SO_TIMESTAMPNS`). For each call it prints the datagrams in order with their
time since the caller's INVITE and who sent them to whom (caller, edge public
side, edge internal side, engine, callee), then per hop the median time a
message spent in each process: the edge's forwarding time, the engine's, and
the callee's (SIPp: the baseline of what one hop costs on this machine).

This is a diagnostic, not a throughput figure: it shows how many hops lie
on the INVITE -> 200 path and what each costs at the machine's current load.

With `--load RATE`, the same capture under load: SIPp offers RATE calls/s
for `--seconds` (as bench/daemon_calls.py does) while its latency probe
places sequential calls; only the probe's datagrams are kept (its caller
name travels on the callee leg too), and every segment of the INVITE -> 200
path is reported as p50 / p90 / p99 over the probe's calls: where the tail
of the set-up latency builds up; then the slowest 2 % of the probe's calls
segment by segment (one long wait, or every hop slow at once). The table's
last row, the node's own time (the whole less the callee's INVITE -> 200), is
the latency the node adds on the wire. The capture keeps only SIP ports (a
socket filter in the kernel), so RTP costs it nothing.

Run (root): python bench/call_timeline.py [--calls 5] [--load 300 --seconds 20]
[--realtime-priority 0]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import itertools
import socket
import statistics
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.calls import (  # noqa: E402
    SO_TIMESTAMPNS,
    add_realtime_option,
    pct,
    run_probe,
    start_uas,
    uac_argv,
)
from bench.daemon_calls import (  # noqa: E402
    DAEMON_SETTINGS,
    PROBE_INTERVAL_S,
    PROBE_PER_SECOND,
    UNLIMITED,
    offer,
    running_node,
)
from tests.calls.test_call_through_edge import trunk_to  # noqa: E402
from tests.support.daemon import DaemonProcess, write_config  # noqa: E402
from tests.support.ports import free_udp_port  # noqa: E402

SCENARIO = ROOT / "tests" / "sipp" / "call_uac_overload.xml"
ETH_P_IP = 0x0800
SO_ATTACH_FILTER = 26
UDP = 17
# Calls are placed this far apart, so one call's datagrams never mix with the next's.
CALL_GAP_S = 0.5
# A datagram a process sends this soon after one arrived counts as its reaction.
REACTION_S = 0.02


@dataclass(frozen=True)
class Datagram:
    at: float
    source: int
    destination: int
    first_line: str


class Capture:
    """SIP datagrams on `lo` with kernel receive timestamps, on a thread."""

    def __init__(self, ports: tuple[int, ...] = (), marker: bytes = b"") -> None:
        """`ports`: only UDP datagrams from or to these (a kernel filter); `marker`: only
        datagrams whose SIP text holds it."""
        self.datagrams: list[Datagram] = []
        self._marker = marker
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_IP))
        if ports:
            _port_filter(self._sock, ports)
        self._sock.bind(("lo", 0))
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Capture:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, ancillary, _flags, _address = self._sock.recvmsg(65535, 256)
            except TimeoutError:
                continue
            if self._marker and self._marker not in frame:
                continue
            datagram = _sip_datagram(frame, ancillary)
            if datagram is not None:
                self.datagrams.append(datagram)


class _SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def _port_filter(sock: socket.socket, ports: tuple[int, ...]) -> None:
    """Attach a classic BPF program: IPv4 UDP (20-byte IP header, as on loopback) from
    or to one of `ports`; everything else stays in the kernel."""
    n = len(ports)
    drop, accept = 6 + 2 * n, 7 + 2 * n  # instruction indexes, see below
    program: list[tuple[int, int, int, int]] = [  # (code, jump if true, if false, k)
        (0x28, -1, -1, 12),  # ldh [12]: ethertype
        (0x15, -1, drop, ETH_P_IP),
        (0x30, -1, -1, 23),  # ldb [23]: IP protocol
        (0x15, -1, drop, UDP),
    ]
    for offset in (34, 36):  # ldh the source port, then the destination port
        program.append((0x28, -1, -1, offset))
        program += [(0x15, accept, -1, port) for port in ports]
    program += [(0x06, -1, -1, 0), (0x06, -1, -1, 0x40000)]  # ret 0 (drop), ret 256 KiB

    def relative(target: int, at: int) -> int:
        return 0 if target < 0 else target - at - 1  # BPF jumps count from the next one

    instructions = (_SockFilter * len(program))(
        *(
            _SockFilter(code, relative(jt, at), relative(jf, at), k)
            for at, (code, jt, jf, k) in enumerate(program)
        )
    )
    # The kernel copies the program while attaching it.
    sock.setsockopt(
        socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(_SockFprog(len(program), instructions))
    )


def _sip_datagram(frame: bytes, ancillary: list[tuple[int, int, bytes]]) -> Datagram | None:
    ip = frame[14:]  # after the (loopback's all-zero) Ethernet header
    if len(ip) < 28 or ip[9] != UDP or not ancillary:
        return None
    header = (ip[0] & 0x0F) * 4
    source, destination = struct.unpack("!HH", ip[header : header + 4])
    payload = ip[header + 8 :]
    first_line = payload.split(b"\r\n", 1)[0].decode("ascii", "replace")
    if not (first_line.endswith("SIP/2.0") or first_line.startswith("SIP/2.0 ")):
        return None  # RTP, CRLF keep-alives, anything else
    seconds, nanoseconds = struct.unpack("qq", ancillary[0][2][:16])
    return Datagram(seconds + nanoseconds / 1e9, source, destination, first_line)


async def place_calls(count: int) -> tuple[list[Datagram], dict[int, str]]:
    work = Path(tempfile.mkdtemp(prefix="callgate-timeline-"))
    callee_port = free_udp_port()
    config = write_config(
        work / "c.toml",
        work / "data",
        extra=trunk_to(callee_port, "max_new_per_second = 1000.0"),
        daemon="\n".join(DAEMON_SETTINGS),
    )
    daemon = DaemonProcess(config, work / "data")
    try:
        await asyncio.to_thread(daemon.wait_event, "ready", 60)
        names = {
            daemon.sip_port("udp"): "edge",
            int(daemon.runtime()["engine"]["port"]): "engine",
            callee_port: "callee",
        }
        uas = await start_uas(work, callee_port)
        try:
            await asyncio.sleep(CALL_GAP_S)
            with Capture() as capture:
                for _ in range(count):
                    argv = [*uac_argv(f"127.0.0.1:{daemon.sip_port('udp')}", SCENARIO)]
                    argv += ["-m", "1", "-timeout", "20", "-timeout_error"]
                    caller = await asyncio.create_subprocess_exec(
                        *argv,
                        cwd=work,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                    if await caller.wait() != 0:
                        raise SystemExit("a SIPp call failed")
                    await asyncio.sleep(CALL_GAP_S)
            return capture.datagrams, names
        finally:
            uas.terminate()
            await uas.wait()
    finally:
        daemon.stop()


# The probe's INVITE -> 200 path, in order: (sender, receiver, method or status).
PATH = (
    ("caller", "edge", "INVITE"),
    ("edge(int)", "engine", "INVITE"),
    ("engine", "edge(int)", "100"),
    ("engine", "edge(int)", "INVITE"),
    ("edge", "callee", "INVITE"),
    ("callee", "edge", "180"),
    ("edge(int)", "engine", "180"),
    ("engine", "edge(int)", "180"),
    ("edge", "caller", "180"),
)
# From the callee's INVITE on, the 200 follows its own path (the callee sends it
# after its 180): these segments start at the callee's INVITE.
ANSWER_PATH = (
    ("edge", "callee", "INVITE"),
    ("callee", "edge", "200"),
    ("edge(int)", "engine", "200"),
    ("engine", "edge(int)", "200"),
    ("edge", "caller", "200"),
)


async def probe_under_load(
    rate: float, seconds: float
) -> tuple[list[Datagram], dict[int, str], list[float]]:
    """SIPp load at `rate` and the latency probe beside it; the probe's datagrams."""
    work = Path(tempfile.mkdtemp(prefix="callgate-timeline-"))
    callee_port = free_udp_port()
    uas = await start_uas(work, callee_port)
    try:
        async with running_node(work, callee_port, UNLIMITED) as node:
            edge = int(node.target.rpartition(":")[2])
            engine = int(node.daemon.runtime()["engine"]["port"])
            names = {edge: "edge", engine: "engine", callee_port: "callee"}
            # Edge <-> engine traffic is caught by the engine's port.
            with Capture(ports=(edge, engine, callee_port), marker=b"probe") as capture:
                count = int(seconds * PROBE_PER_SECOND)
                (_ok, failed, _wall), samples = await asyncio.gather(
                    offer(work, node.target, rate, int(rate * seconds)),
                    run_probe(node.target, count, PROBE_INTERVAL_S),
                )
                await asyncio.sleep(CALL_GAP_S)
            if failed:
                print(f"warning: {failed} load calls failed", file=sys.stderr)
            return capture.datagrams, names, [answer for _ringing, answer in samples]
    finally:
        uas.terminate()
        await uas.wait()


def report_under_load(datagrams: list[Datagram], names: dict[int, str], probe: list[float]) -> None:
    edge_internal = edge_internal_port(datagrams, names)
    calls: list[dict[tuple[str, str, str], float]] = []
    for d in datagrams:
        key = (who(d.source, names, edge_internal), who(d.destination, names, edge_internal))
        step = (*key, _word(d.first_line))
        if step == PATH[0]:
            calls.append({})
        if calls:
            calls[-1].setdefault(step, d.at)  # the first one: not a retransmission
    complete = [c for c in calls if all(step in c for step in (*PATH, *ANSWER_PATH))]
    print(
        f"{len(complete)} of {len(calls)} probe calls seen whole; the probe's own INVITE -> 200: "
        f"p50 {statistics.median(probe):.2f} ms, p99 {pct(probe, 99):.2f} ms"
    )
    print("| segment of the probe's INVITE -> 200 | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|")
    for path in (PATH, ANSWER_PATH):
        for start, end in itertools.pairwise(path):
            values = [(c[end] - c[start]) * 1e3 for c in complete]
            label = f"{_arrow(start)} => {_arrow(end)}"
            print(
                f"| {label} | {statistics.median(values):.2f} | {pct(values, 90):.2f} "
                f"| {pct(values, 99):.2f} |"
            )
    total = [(c[ANSWER_PATH[-1]] - c[PATH[0]]) * 1e3 for c in complete]
    print(
        f"| caller's INVITE => its 200 (on the wire) | {statistics.median(total):.2f} "
        f"| {pct(total, 90):.2f} | {pct(total, 99):.2f} |"
    )
    # What the node adds: the whole less the callee's own INVITE -> 200. On this machine
    # the callee shares the cores with the node, so it answers slower than in the direct
    # baseline; that slowdown is not on the wire between two machines.
    callee = [(c[ANSWER_PATH[1]] - c[ANSWER_PATH[0]]) * 1e3 for c in complete]
    own = [whole - answer for whole, answer in zip(total, callee, strict=True)]
    print(
        f"| the node's own time: the above less the callee's INVITE => 200 "
        f"| {statistics.median(own):.2f} | {pct(own, 90):.2f} | {pct(own, 99):.2f} |"
    )
    report_slowest(complete, total)


def report_slowest(complete: list[dict[tuple[str, str, str], float]], total: list[float]) -> None:
    """The slowest 2 % of calls, segment by segment: one long wait or many short ones."""
    ranked = sorted(range(len(complete)), key=total.__getitem__, reverse=True)
    slowest = ranked[: max(1, len(ranked) // 50)]
    segments = [pair for path in (PATH, ANSWER_PATH) for pair in itertools.pairwise(path)]
    print(f"\nthe slowest {len(slowest)} calls, ms per segment (in the order above), total last:")
    for i in slowest:
        c = complete[i]
        parts = " ".join(f"{(c[end] - c[start]) * 1e3:5.2f}" for start, end in segments)
        print(f"{parts} | {total[i]:6.2f}")


def _arrow(step: tuple[str, str, str]) -> str:
    return f"{step[0]}->{step[1]} {step[2]}"


def split_calls(datagrams: list[Datagram]) -> list[list[Datagram]]:
    calls: list[list[Datagram]] = []
    for datagram in datagrams:
        if not calls or datagram.at - calls[-1][-1].at > CALL_GAP_S / 2:
            calls.append([])
        calls[-1].append(datagram)
    return calls


def edge_internal_port(datagrams: list[Datagram], names: dict[int, str]) -> int | None:
    """The edge's internal side: whatever talks to the engine and is not the engine."""
    engine = next(port for port, name in names.items() if name == "engine")
    return next((d.source for d in datagrams if d.destination == engine), None)


def who(port: int, names: dict[int, str], edge_internal: int | None) -> str:
    if port == edge_internal:
        return "edge(int)"
    return names.get(port, "caller")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--load", type=float, help="calls/s of SIPp load beside the probe")
    parser.add_argument("--seconds", type=float, default=20.0, help="of load (with --load)")
    add_realtime_option(parser)
    args = parser.parse_args()
    DAEMON_SETTINGS.append(f"realtime_priority = {args.realtime_priority}")
    if args.load:
        report_under_load(*asyncio.run(probe_under_load(args.load, args.seconds)))
        return
    datagrams, names = asyncio.run(place_calls(args.calls))
    edge_internal = edge_internal_port(datagrams, names)
    # A process's reaction: from a datagram's arrival to the next datagram it sends.
    reactions: dict[str, list[float]] = {}
    for number, call in enumerate(split_calls(datagrams), 1):
        start = call[0].at
        print(f"--- call {number}")
        for index, d in enumerate(call):
            source = who(d.source, names, edge_internal)
            destination = who(d.destination, names, edge_internal)
            print(f"{(d.at - start) * 1e3:8.2f} ms  {source:>9} -> {destination:<9} {d.first_line}")
            process = destination.split("(")[0]
            if process == "caller":
                continue
            # What the process sent next within REACTION_S, and when it passed this message
            # on (the same method or status), if it did.
            sent = [
                x
                for x in call[index + 1 :]
                if x.at - d.at <= REACTION_S
                and who(x.source, names, edge_internal).startswith(process)
            ]
            word = _word(d.first_line)
            for reply in {*sent[:1], *(x for x in sent[:4] if _word(x.first_line) == word)}:
                key = f"{process}: {word} -> {_word(reply.first_line)}"
                reactions.setdefault(key, []).append(reply.at - d.at)
    print("--- median time from a datagram's arrival at a process to the next one it sends")
    for key, values in sorted(reactions.items()):
        print(f"{key:<28} {statistics.median(values) * 1e3:6.2f} ms  ({len(values)} seen)")


def _word(first_line: str) -> str:
    """INVITE for a request, the status code for a response."""
    return first_line.split()[1 if first_line.startswith("SIP/") else 0]


if __name__ == "__main__":
    main()
