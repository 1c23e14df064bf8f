"""Concurrent bridged calls with two-way RTP (G.711, 20 ms) held through the engine.

For each count N of `--counts`: a SIPp UAC (tests/sipp/call_uac_hangup.xml)
places N calls at `--rate`/s through the PJSIP engine (in this process, as in
bench/calls.py) to a SIPp UAS (tests/sipp/call_uas_answer.xml) and holds each
long enough that all N are up together for `--window` seconds. RTP: both
SIPp peers run `-rtp_echo` (the caller's SDP points at a second SIPp echo),
and the engine sends PCMU every 20 ms on each leg (VAD off), so every leg
sends and receives 50 packets/s through the conference bridge. Over the
window the engine's RTCP receive statistics of every leg give packets
received and lost (sequence gaps); CPU is this process (engine thread,
PJSIP media and bridge threads, call control), 100 % = one core.

Baseline in the same run: the same UAC straight to the same UAS with the
same count and hold (signalling only: SIPp does not originate RTP) and the
packets a leg should receive, 50/s.

Run: python bench/held_calls.py [--counts 200,400,800] [--rate 80] [--window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pjsua2 as pj  # the engine's own build; stream_totals runs on its thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.calls import (
    add_realtime_option,
    engine_to,
    proc_cpu,
    process_cpu,
    run_uac,
    start_uas,
    stat_cpu,
)
from gateway.config.models import LoggingConfig
from gateway.logs import configure_logging
from tests.support.ports import free_media_port, free_udp_port

# G.711 with 20 ms packets.
PACKETS_PER_SECOND = 50
# One SIPp echo socket takes every leg's RTP: the engine's clock sends all legs' packets
# in one burst per 20 ms, which overflows that socket's receive buffer (SIPp leaves it at
# net.core.rmem_default, 208 KB; its -buff_size is for the SIP socket only): the drops are
# counted in SIPp's socket (`ss -uamp`), not the engine's. Far ends are separate hosts in
# real life; `--echo-rmem` raises the default for the run (root), and puts it back.
RMEM_DEFAULT = Path("/proc/sys/net/core/rmem_default")
# Seconds after the last call is placed before the window opens (answers, ACKs).
SETTLE_S = 3.0
# Seconds of hold after the window closes, before the first BYE.
MARGIN_S = 3.0


@dataclass(frozen=True)
class StreamTotals:
    legs: int
    received: int
    lost: int


def stream_totals(_endpoint: Any, max_calls: int) -> StreamTotals:
    """On the engine thread: RTCP receive counters summed over every leg with media."""
    legs = received = lost = 0
    for call_id in range(max_calls):
        call = pj.Call.lookup(call_id)
        if call is None:
            continue
        try:
            rx = call.getStreamStat(0).rtcp.rxStat
        except pj.Error:
            continue  # no media (yet, or any more)
        legs += 1
        received += rx.pkt
        lost += rx.loss
    return StreamTotals(legs, received, lost)


@dataclass
class Held:
    path: str
    count: int
    ok: int
    failed: int
    legs: int = 0
    received: int = 0
    lost: int = 0
    window: float = 0.0
    cpu: float | None = None
    echo_cpu: tuple[float, ...] = ()
    """CPU of the callee's and the caller's SIPp echo: near 100 % they are the limit."""

    def row(self) -> str:
        expected = self.legs * PACKETS_PER_SECOND * self.window
        if self.path == "direct":
            media = "- | - | - | -"
        else:
            loss = 100 * self.lost / max(self.received + self.lost, 1)
            media = (
                f"{self.legs} | {self.received} | {self.received / max(expected, 1):.4f} "
                f"| {self.lost} ({loss:.3f} %)"
            )
        cpu = f"{self.cpu:.0f} %" if self.cpu is not None else "-"
        echo = " / ".join(f"{c:.0f} %" for c in self.echo_cpu) or "-"
        return (
            f"| {self.path} | {self.count} | {self.ok} | {self.failed} | {media} "
            f"| {cpu} | {echo} | {self.window:.0f} |"
        )


HEADER = (
    "| path | calls held | SIPp ok | SIPp failed | legs with RTP | packets received "
    "| received / (legs x 50/s x window) | lost (share) | process CPU "
    "| SIPp echo CPU (callee / caller) | window s |\n" + "|---" * 11 + "|"
)


async def held_through_engine(
    work: Path,
    count: int,
    rate: int,
    window: float,
    caller_echo: int,
    echo_pid: int,
    realtime_priority: int,
) -> Held:
    uas_port = free_udp_port()
    uas = await start_uas(work, uas_port, "-rtp_echo")
    engine, control = engine_to(uas_port, realtime_priority)
    info = await engine.start()
    placing = count / rate
    hold_ms = int(1000 * (placing + SETTLE_S + window + MARGIN_S))
    totals = functools.partial(stream_totals, max_calls=engine.settings.max_calls)
    try:
        uac = asyncio.ensure_future(
            run_uac(
                work,
                f"127.0.0.1:{info.sip_port}",
                rate,
                placing,
                hold_ms,
                rtp_port=caller_echo,
                concurrent=count + 10,
            )
        )
        await asyncio.sleep(placing + SETTLE_S)  # pacing: the window opens once all are up
        echoes = (uas.pid, echo_pid)
        first, cpu0, t0 = await engine.run(totals), process_cpu(), time.monotonic()
        echo0 = [proc_cpu(pid) for pid in echoes]
        threads0 = thread_cpus()
        await asyncio.sleep(window)
        last, cpu1, t1 = await engine.run(totals), process_cpu(), time.monotonic()
        echo1 = [proc_cpu(pid) for pid in echoes]
        busiest = sorted(
            ((cpu - threads0.get(key, 0.0), key[1]) for key, cpu in thread_cpus().items()),
            reverse=True,
        )[:4]
        print(
            "threads (CPU over the window, 100 % = one core): "
            + ", ".join(f"{name} {100 * spent / (t1 - t0):.0f} %" for spent, name in busiest),
            flush=True,
        )
        step = await uac
        held = Held("engine", count, step.ok, step.failed, window=t1 - t0)
        held.legs = min(first.legs, last.legs)
        held.received = last.received - first.received
        held.lost = last.lost - first.lost
        held.cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
        held.echo_cpu = tuple(100 * (b - a) / (t1 - t0) for a, b in zip(echo0, echo1, strict=True))
        if first.legs != last.legs or first.legs != 2 * count:
            print(f"note: {first.legs} then {last.legs} legs with media, {2 * count} expected")
        return held
    finally:
        control.close()
        await engine.stop()
        uas.kill()
        await uas.wait()


def thread_cpus() -> dict[tuple[int, str], float]:
    """utime+stime of each thread of this process, by (tid, name)."""
    found: dict[tuple[int, str], float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            found[(int(task.name), name)] = stat_cpu(task / "stat")
        except OSError:  # the thread ended
            continue
    return found


async def held_direct(work: Path, count: int, rate: int, window: float) -> Held:
    uas_port = free_udp_port()
    uas = await start_uas(work, uas_port, "-rtp_echo")
    placing = count / rate
    hold_ms = int(1000 * (placing + SETTLE_S + window + MARGIN_S))
    try:
        step = await run_uac(
            work, f"127.0.0.1:{uas_port}", rate, placing, hold_ms, concurrent=count + 10
        )
    finally:
        uas.kill()
        await uas.wait()
    return Held("direct", count, step.ok, step.failed, window=window)


async def bench(counts: list[int], rate: int, window: float, realtime_priority: int) -> None:
    print(HEADER, flush=True)
    with tempfile.TemporaryDirectory(prefix="callgate-held-") as tmp:
        work = Path(tmp)
        caller_echo = free_media_port()
        # The caller's media address: a SIPp that only echoes RTP (it gets no SIP).
        echo = await start_uas(work, free_udp_port(), "-rtp_echo", media_port=caller_echo)
        try:
            for count in counts:
                held = await held_through_engine(
                    work, count, rate, window, caller_echo, echo.pid, realtime_priority
                )
                print(held.row())
                print((await held_direct(work, count, rate, window)).row(), flush=True)
        finally:
            echo.kill()
            await echo.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--counts", default="200,400,800")
    parser.add_argument("--rate", type=int, default=80, help="calls/s while placing them")
    parser.add_argument("--window", type=float, default=60.0, help="seconds all are held")
    parser.add_argument(
        "--echo-rmem",
        type=int,
        help="net.core.rmem_default (bytes) for the run, so SIPp's one echo socket per "
        "peer does not overflow (needs root; restored afterwards)",
    )
    add_realtime_option(parser)
    args = parser.parse_args()
    configure_logging(LoggingConfig(level="warning"))
    counts = [int(c) for c in args.counts.split(",")]
    before = RMEM_DEFAULT.read_text() if args.echo_rmem else None
    if args.echo_rmem:
        RMEM_DEFAULT.write_text(str(args.echo_rmem))
    try:
        asyncio.run(bench(counts, args.rate, args.window, args.realtime_priority))
    finally:
        if before is not None:
            RMEM_DEFAULT.write_text(before)
    rmem = f"{args.echo_rmem} (for the run)" if args.echo_rmem else RMEM_DEFAULT.read_text().strip()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()}, rmem_default {rmem}")


if __name__ == "__main__":
    main()
