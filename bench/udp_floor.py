"""The floor under the SIP edge: what a Python uvloop UDP server spends per REGISTER
when it does almost nothing (split lines, answer 401 then 200, no digest, no
registrar), under the same SIPp load as `bench/sip_edge.py`'s step (1).

Prints CPU per message of that server next to the edge's handler CPU per message
measured the same way (`SipEdge` on uvloop, its UDP handler timed with
`thread_time_ns`, no store, no engine). The difference is the edge's own Python.

Run: python bench/udp_floor.py [--rates 1000,2000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvloop

from gateway.config.sip import (
    SipAuthConfig,
    SipConfig,
    SipListener,
    SipProtectionConfig,
)
from gateway.metrics import Metrics
from gateway.sip.admission import AuthenticatedOnly
from gateway.sip.directory import Account, Directory, format_ha1, parse_ha1
from gateway.sip.edge import SipEdge
from gateway.sip.transport import UdpEndpoint
from tests.support.ports import free_udp_port

ROOT = Path(__file__).resolve().parents[1]
REALM = "example.test"
USERS = 200
_CHALLENGE = (
    f'WWW-Authenticate: Digest realm="{REALM}", nonce="0123456789abcdef", algorithm=MD5, '
    'qop="auth"\r\n'
).encode()
_KEPT = (b"Via:", b"From", b"To: ", b"Call", b"CSeq")


class Floor(asyncio.DatagramProtocol):
    """Answers 401 to a REGISTER without credentials, 200 with them; checks nothing."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = data.partition(b"\r\n\r\n")[0]
        lines = head.split(b"\r\n")
        kept = [line for line in lines[1:] if line[:4] in _KEPT]
        if b"Authorization:" in head:
            kept += [line + b";expires=3600" for line in lines if line.startswith(b"Contact:")]
            first, extra = b"SIP/2.0 200 OK\r\n", b""
        else:
            first, extra = b"SIP/2.0 401 Unauthorized\r\n", _CHALLENGE
        self.transport.sendto(
            first + b"\r\n".join(kept) + b"\r\n" + extra + b"Content-Length: 0\r\n\r\n", addr
        )


def _timed_edge_handler() -> list[int]:
    """Wrap the edge's UDP handler: [nanoseconds, messages] accumulate in the list."""
    original = UdpEndpoint.datagram_received
    totals = [0, 0]

    def timed(self: UdpEndpoint, data: bytes, addr: tuple[str | int, ...]) -> None:
        started = time.thread_time_ns()
        original(self, data, addr)
        totals[0] += time.thread_time_ns() - started
        totals[1] += 1

    UdpEndpoint.datagram_received = timed  # type: ignore[method-assign]
    return totals


async def _serve(kind: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = [0, 0]
    if kind == "floor":
        await loop.create_datagram_endpoint(Floor, local_addr=("127.0.0.1", port))
    else:
        handler = _timed_edge_handler()
        config = SipConfig(
            listen=(SipListener(transport="udp", host="127.0.0.1", port=port),),
            auth=SipAuthConfig(realm=REALM, algorithms=("MD5",)),
            protection=SipProtectionConfig(packet_rate=1e9, packet_burst=10**9),
        )
        accounts = {
            f"u{n}": Account(f"u{n}", parse_ha1(format_ha1(f"u{n}", REALM, f"pw{n}"), "x"), None)
            for n in range(1, USERS + 1)
        }
        edge = SipEdge(
            config, Metrics(), ("127.0.0.1", 9), Directory(accounts, []), AuthenticatedOnly()
        )
        await edge.start()
    print("ready", flush=True)
    line = sys.stdin.readline  # one line per step: report since the last one
    before = 0.0
    while True:
        await loop.run_in_executor(None, line)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        print(f"{cpu - before} {handler[0]} {handler[1]}", flush=True)
        before, handler[0], handler[1] = cpu, 0, 0


def _users(path: Path) -> Path:
    path.write_text(
        "SEQUENTIAL\n" + "".join(f"u{n};pw{n};3600\n" for n in range(1, USERS + 1)),
        encoding="utf-8",
    )
    return path


def _step(port: int, rate: int, seconds: float, users: Path, work: Path) -> tuple[int, int]:
    """SIPp REGISTER pairs at `rate`: (successful, failed)."""
    out = subprocess.run(
        [
            shutil.which("sipp") or "sipp",
            f"127.0.0.1:{port}",
            *("-sf", str(ROOT / "tests" / "sipp" / "register.xml"), "-inf", str(users)),
            *("-t", "u1", "-i", "127.0.0.1", "-m", str(int(rate * seconds)), "-r", str(rate)),
            *("-rp", "1000", "-l", "10000", "-nostdin", "-buff_size", "4194304"),
            *("-timeout", f"{seconds + 30:.0f}s"),
        ],
        capture_output=True,
        text=True,
        cwd=work,
        check=False,
    )
    counts = []
    for label in ("Successful call", "Failed call"):
        rows = [r for r in out.stdout.splitlines() if r.strip().startswith(label)]
        counts.append(int(rows[-1].split("|")[2]) if rows else 0)
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rates", default="1000,2000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", choices=("floor", "edge"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(_serve(args.serve, args.port))
        return
    with tempfile.TemporaryDirectory(prefix="udp-floor-") as tmp:
        work = Path(tmp)
        users = _users(work / "users.csv")
        for kind in ("floor", "edge"):
            port = free_udp_port()
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", kind, "--port", str(port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            assert server.stdin is not None and server.stdout is not None
            try:
                assert server.stdout.readline().strip() == "ready"
                for rate in (int(r) for r in args.rates.split(",")):
                    server.stdin.write("\n")
                    server.stdin.flush()
                    server.stdout.readline()  # start of the step
                    ok, failed = _step(port, rate, args.seconds, users, work)
                    server.stdin.write("\n")
                    server.stdin.flush()
                    cpu, handler_ns, messages = server.stdout.readline().split()
                    per_message = float(cpu) / max(2 * ok, 1) * 1e6
                    timed = (
                        f", handler {int(handler_ns) / max(int(messages), 1) / 1000:.0f} us/msg"
                        if kind == "edge"
                        else ""
                    )
                    print(
                        f"{kind:5s} {rate:5d}/s: {ok} pairs ok, {failed} failed, "
                        f"process CPU {per_message:.0f} us/msg{timed}",
                        flush=True,
                    )
            finally:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
