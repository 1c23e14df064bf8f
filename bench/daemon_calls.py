"""Calls through the whole daemon: sustained rate, CPU, setup latency, overload, RSS.

The daemon (`python -m gateway run`, a subprocess with its PJSIP engine child)
admits a SIPp trunk (tests/sipp/call_uac_overload.xml: each call is answered,
held 200 ms and hung up, or refused with 503) and routes every call to a SIPp
UAS (tests/sipp/call_uas_answer.xml) through the engine; both legs pass the
SIP edge. Every daemon step is followed by the same SIPp UAC straight to the
same UAS at the same rate: the baseline of the same run.

Phases:
1. ramp: `[calls] max_new_per_second` far above the load; offer each rate of
   `--rates` for `--seconds`, upwards, until a step is not clean (a failed or
   refused call, or a step that overran its time by more than 20 %). The last clean rate is the
   sustained limit.
2. latency: at `--latency-rate` and at the limit, a probe subprocess
   (bench/calls.py) places sequential calls beside the load and times
   INVITE -> 180 (ringing) and INVITE -> 200 (answer); the same probe against
   the UAS alone is the baseline.
3. overload: the daemon restarted with max_new_per_second = limit; the limit
   for `--confirm` seconds, then `--multipliers` times it. Failed admitted
   calls should be 0 and the excess refused with 503.
4. soak (`--soak-calls N`): RSS of the daemon and of its engine child after a
   warm-up and after N calls at `--soak-rate`.

CPU is utime+stime of the daemon and of its engine child (/proc), over the
SIPp step's wall time; 100 % is one core.

Run: python bench/daemon_calls.py [--rates 100,200,300,400,500,600] [--seconds 20]
     [--confirm 60] [--multipliers 1.5,2] [--latency-rate 100] [--json FILE]
     [--limit R: skip the ramp] [--phases ramp,latency,overload] [--soak-calls N --soak-rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.calls import (  # noqa: E402
    add_realtime_option,
    pct,
    proc_cpu,
    run_probe,
    sipp_counts,
    start_uas,
    uac_argv,
)
from tests.calls.test_call_through_edge import trunk_to  # noqa: E402
from tests.support.daemon import DaemonProcess, write_config  # noqa: E402
from tests.support.ports import free_udp_port  # noqa: E402

SCENARIO = ROOT / "tests" / "sipp" / "call_uac_overload.xml"
# Sequential probe calls are paced this far apart (each takes a few ms more).
PROBE_INTERVAL_S = 0.02
# A probe call every ~30 ms: this many per second of a step.
PROBE_PER_SECOND = 33
# Calls/s and seconds of load that a freshly started daemon gets before it is measured.
WARMUP_RATE = 50.0
WARMUP_S = 4.0
# Seconds between RSS samples during the soak.
SOAK_SAMPLE_S = 60.0
# The daemon's rate limit during the ramp and latency phases: far above any load.
UNLIMITED = 100_000.0


@dataclass
class Row:
    phase: str
    path: str  # "direct" (SIPp to SIPp) or "callgate"
    offered: float
    calls: int
    sipp_ok: int
    sipp_failed: int
    wall: float
    answered: float = 0.0
    refused: dict[str, float] = field(default_factory=dict)
    unanswered: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)
    cdr_dropped: float = 0.0
    """CDR changes the store writer dropped (it fell `[cdr] max_pending` behind)."""
    cpu_daemon: float | None = None
    cpu_engine: float | None = None
    probe_p50: float | None = None
    """INVITE -> 200 (ms), p50 and p99."""
    probe_p99: float | None = None
    probe_ringing_p50: float | None = None
    """INVITE -> 180 (ms; the callee rings first), p50 and p99."""
    probe_ringing_p99: float | None = None
    probe_calls: int = 0

    @property
    def cps(self) -> float:
        return self.sipp_ok / self.wall if self.wall else 0.0

    @property
    def failed(self) -> float:
        """Calls that were neither answered nor refused: SIPp's failures plus admitted
        calls the daemon did not answer."""
        return self.sipp_failed + sum(self.unanswered.values())

    def clean(self) -> bool:
        return (
            self.failed == 0
            and not self.cdr_dropped
            and not self.refused
            and self.sipp_ok == self.calls
            # SIPp kept the pace: the step took about as long as planned.
            and self.wall <= 1.2 * self.calls / self.offered + 2
        )

    def row(self) -> str:
        def labelled(values: dict[str, float]) -> str:
            return ", ".join(f"{v:.0f} {k}" for k, v in values.items()) or "0"

        cpu = "-"
        per_call = "-"
        if self.cpu_daemon is not None and self.cpu_engine is not None:
            total = self.cpu_daemon + self.cpu_engine
            cpu = f"{total:.0f} % ({self.cpu_daemon:.0f} + {self.cpu_engine:.0f})"
            if self.answered:
                per_call = f"{10 * total * self.wall / self.answered:.2f}"
        ringing, latency = (
            f"{p50:.2f} / {p99:.2f}" if p50 is not None and p99 is not None else "-"
            for p50, p99 in (
                (self.probe_ringing_p50, self.probe_ringing_p99),
                (self.probe_p50, self.probe_p99),
            )
        )
        answered = f"{self.answered:.0f}" if self.path == "callgate" else "-"
        return (
            f"| {self.phase} | {self.path} | {self.offered:g} | {self.calls} | {self.cps:.1f} "
            f"| {answered} | {labelled(self.refused)} | {self.failed:.0f} "
            f"| {labelled(self.dropped)} | {cpu} | {per_call} | {ringing} | {latency} "
            f"| {self.wall:.1f} |"
        )


HEADER = (
    "| phase | path | offered/s | calls | completed/s | answered | refused 503 (reason) "
    "| failed | dropped at edge | CPU daemon+engine (parent + child) | CPU ms/call "
    "| probe INVITE->180 p50 / p99 ms | probe INVITE->200 p50 / p99 ms | wall s |\n"
    + "|---" * 14
    + "|"
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def offer(workdir: Path, target: str, rate: float, calls: int) -> tuple[int, int, float]:
    """SIPp UAC: `calls` calls at `rate`/s; (successful, failed, wall seconds)."""
    for old in workdir.glob("call_uac_overload_*"):
        old.unlink()
    seconds = calls / rate
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *uac_argv(target, SCENARIO),
        "-r",
        f"{rate:g}",
        "-m",
        str(calls),
        "-l",
        str(int(rate * 4) + 100),
        "-nostdin",
        "-timeout",
        f"{seconds + 40:.0f}s",
        "-trace_stat",
        "-fd",
        "1",
        "-buff_size",
        str(4 * 1024 * 1024),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        await proc.wait()
    finally:
        if proc.returncode is None:  # the benchmark was interrupted
            proc.kill()
    ok, failed = sipp_counts(workdir, SCENARIO.stem)
    return ok, failed, time.monotonic() - started


def metrics(daemon: DaemonProcess) -> dict[str, float]:
    with urllib.request.urlopen(daemon.http_url("/metrics"), timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("callgate_calls_", "callgate_sip_dropped_total", "callgate_cdr_")):
            name, value = line.rsplit(" ", 1)
            if "_created" not in name:  # creation timestamps, not counts
                values[name] = float(value)
    return values


async def settled_metrics(daemon: DaemonProcess) -> dict[str, float]:
    """Metrics once the last call records of a step have closed (or after 10 s)."""
    after = metrics(daemon)
    for _ in range(50):
        await asyncio.sleep(0.2)
        settled, after = after, metrics(daemon)
        if settled == after:
            break
    return after


def _labelled(delta: dict[str, float], family: str, label: str) -> dict[str, float]:
    return {
        k.split(f'{label}="')[1].split('"')[0]: v
        for k, v in delta.items()
        if k.startswith(family) and v
    }


def tally(row: Row, before: dict[str, float], after: dict[str, float]) -> None:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    finished = _labelled(delta, "callgate_calls_finished_total", "disposition")
    row.answered = finished.pop("answered", 0.0)
    row.unanswered = finished
    row.refused = _labelled(delta, "callgate_calls_rejected_total", "reason")
    row.dropped = _labelled(delta, "callgate_sip_dropped_total", "reason")
    row.cdr_dropped = delta.get("callgate_cdr_dropped_total", 0.0)


class Node:
    """The daemon under test, with its engine child's pid for CPU and RSS."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.pids = (daemon.proc.pid, int(daemon.runtime()["engine"]["pid"]))
        self.target = f"127.0.0.1:{daemon.sip_port('udp')}"

    def cpu(self) -> tuple[float, float]:
        parent, child = self.pids
        return proc_cpu(parent), proc_cpu(child)

    def rss(self) -> tuple[int, int]:
        parent, child = self.pids
        return rss_kib(parent), rss_kib(child)


CALLS_SETTINGS: list[str] = []
"""Extra `[calls]` lines for every daemon the run starts (`--calls-setting`)."""
DAEMON_SETTINGS: list[str] = []
"""Extra `[daemon]` lines for every daemon the run starts (`--realtime-priority`)."""


@contextlib.asynccontextmanager
async def running_node(work: Path, uas_port: int, limit: float) -> AsyncIterator[Node]:
    data = work / f"data-{limit:g}"
    # trunk_to disables OPTIONS health checks: the SIPp UAS answers INVITEs only, so
    # probes would fail and take the trunk out of routing, failing every later call.
    settings = [f"max_new_per_second = {limit}", f"max_new_burst = {max(int(limit // 10), 1)}"]
    extra = trunk_to(uas_port, "\n".join(settings + CALLS_SETTINGS))
    config = write_config(
        work / f"c-{limit:g}.toml",
        data,
        drain_timeout=30,
        extra=extra,
        daemon="\n".join(DAEMON_SETTINGS),
    )
    # Debug logging would cost more than the calls themselves.
    config.write_text(config.read_text().replace('level = "debug"', 'level = "info"'))
    daemon = DaemonProcess(config, data)
    try:
        await asyncio.to_thread(daemon.wait_event, "ready", 60)
        node = Node(daemon)
        # Warm up (imports, first allocations) so the first step does not measure start-up.
        await offer(work, node.target, WARMUP_RATE, int(WARMUP_RATE * WARMUP_S))
        yield node
    finally:
        daemon.stop(timeout=60)


async def _with_probe(
    load: asyncio.Future[tuple[int, int, float]] | asyncio.Task[tuple[int, int, float]],
    target: str,
    seconds: float,
    probe: bool,
) -> tuple[tuple[int, int, float], list[tuple[float, float]]]:
    if not probe:
        return await load, []
    result, samples = await asyncio.gather(
        load, run_probe(target, int(seconds * PROBE_PER_SECOND), PROBE_INTERVAL_S)
    )
    return result, samples


def _set_probe(row: Row, samples: list[tuple[float, float]]) -> None:
    if samples:
        ringing = [r for r, _answer in samples]
        answer = [a for _ringing, a in samples]
        row.probe_ringing_p50, row.probe_ringing_p99 = statistics.median(ringing), pct(ringing, 99)
        row.probe_p50, row.probe_p99 = statistics.median(answer), pct(answer, 99)
        row.probe_calls = len(samples)


async def direct_step(
    work: Path, phase: str, uas: str, rate: float, seconds: float, probe: bool = False
) -> Row:
    calls = int(rate * seconds)
    load = asyncio.ensure_future(offer(work, uas, rate, calls))
    (ok, failed, wall), samples = await _with_probe(load, uas, seconds, probe)
    row = Row(phase, "direct", rate, calls, ok, failed, wall, answered=ok)
    _set_probe(row, samples)
    return row


async def node_step(
    work: Path, phase: str, node: Node, rate: float, seconds: float, probe: bool = False
) -> Row:
    calls = int(rate * seconds)
    before = metrics(node.daemon)
    parent0, child0 = node.cpu()
    load = asyncio.ensure_future(offer(work, node.target, rate, calls))
    (ok, failed, wall), samples = await _with_probe(load, node.target, seconds, probe)
    parent1, child1 = node.cpu()
    row = Row(phase, "callgate", rate, calls, ok, failed, wall)
    row.cpu_daemon = 100 * (parent1 - parent0) / wall
    row.cpu_engine = 100 * (child1 - child0) / wall
    tally(row, before, await settled_metrics(node.daemon))
    row.answered -= len(samples)  # the probe's calls are not part of the load
    _set_probe(row, samples)
    return row


def emit(row: Row, rows: list[Row]) -> None:
    rows.append(row)
    print(row.row(), flush=True)
    if row.cdr_dropped:
        print(f"warning: {row.cdr_dropped:.0f} CDR changes dropped in this step", flush=True)


async def ramp(
    work: Path, uas: str, uas_port: int, rates: list[float], seconds: float, rows: list[Row]
) -> float | None:
    limit: float | None = None
    async with running_node(work, uas_port, UNLIMITED) as node:
        for rate in rates:
            step = await node_step(work, "ramp", node, rate, seconds)
            emit(step, rows)
            emit(await direct_step(work, "ramp", uas, rate, seconds), rows)
            if not step.clean():
                break
            limit = rate
    return limit


async def latency(
    work: Path, uas: str, uas_port: int, rates: list[float], seconds: float, rows: list[Row]
) -> None:
    async with running_node(work, uas_port, UNLIMITED) as node:
        for rate in rates:
            emit(await node_step(work, "latency", node, rate, seconds, probe=True), rows)
            emit(await direct_step(work, "latency", uas, rate, seconds, probe=True), rows)


async def overload(
    work: Path,
    uas: str,
    uas_port: int,
    limit: float,
    confirm: float,
    seconds: float,
    multipliers: list[float],
    rows: list[Row],
) -> None:
    async with running_node(work, uas_port, limit) as node:
        for m in [1.0, *multipliers]:
            span = confirm if m == 1.0 else seconds
            emit(await node_step(work, f"overload x{m:g}", node, limit * m, span), rows)
            emit(await direct_step(work, f"overload x{m:g}", uas, limit * m, span), rows)


async def _rss_samples(node: Node, start: dict[str, float]) -> None:
    """RSS along the soak, so a growth curve (or an interrupted run) still says something."""
    while True:
        await asyncio.sleep(SOAK_SAMPLE_S)
        row = Row("soak", "callgate", 0, 0, 0, 0, 0)
        tally(row, start, metrics(node.daemon))
        daemon, engine = node.rss()
        print(
            f"soak: {row.answered:.0f} answered so far, RSS daemon {daemon} KiB, "
            f"engine {engine} KiB",
            flush=True,
        )


async def soak(work: Path, uas_port: int, calls: int, rate: float, warmup: int) -> dict[str, float]:
    async with running_node(work, uas_port, UNLIMITED) as node:
        await offer(work, node.target, rate, warmup)
        await settled_metrics(node.daemon)
        before = node.rss()
        before_metrics = metrics(node.daemon)
        sampler = asyncio.create_task(_rss_samples(node, before_metrics))
        try:
            row = Row("soak", "callgate", rate, calls, *await offer(work, node.target, rate, calls))
        finally:
            sampler.cancel()
        tally(row, before_metrics, await settled_metrics(node.daemon))
        after = node.rss()
    result = {
        "calls": calls,
        "rate": rate,
        "answered": row.answered,
        "failed": row.failed,
        "rss_daemon_before_kib": before[0],
        "rss_engine_before_kib": before[1],
        "rss_daemon_after_kib": after[0],
        "rss_engine_after_kib": after[1],
        "bytes_per_call": 1024 * (sum(after) - sum(before)) / max(row.answered, 1),
        "wall": row.wall,
    }
    print(
        f"soak: {calls} calls at {rate:g}/s in {row.wall:.0f} s, {row.answered:.0f} answered, "
        f"{row.failed:.0f} failed; RSS daemon {before[0]} -> {after[0]} KiB, engine "
        f"{before[1]} -> {after[1]} KiB (after a {warmup}-call warm-up, which is the "
        f"baseline); growth {result['bytes_per_call']:.1f} bytes per call",
        flush=True,
    )
    return result


async def bench(args: argparse.Namespace, rows: list[Row], out: dict[str, object]) -> None:
    phases = args.phases.split(",")
    CALLS_SETTINGS.extend(args.calls_setting)
    DAEMON_SETTINGS.append(f"realtime_priority = {args.realtime_priority}")
    with tempfile.TemporaryDirectory(prefix="callgate-daemon-bench-") as tmp:
        work = Path(tmp)
        uas_port = free_udp_port()
        uas_proc = await start_uas(work, uas_port)
        uas = f"127.0.0.1:{uas_port}"
        print(HEADER, flush=True)
        try:
            limit: float | None = args.limit
            if "ramp" in phases:
                rates = [float(r) for r in args.rates.split(",")]
                limit = await ramp(work, uas, uas_port, rates, args.seconds, rows)
                print(f"sustained limit: {limit} calls/s", flush=True)
            out["limit"] = limit
            if "latency" in phases:
                rates = [args.latency_rate] + ([limit] if limit else [])
                await latency(work, uas, uas_port, rates, args.seconds, rows)
            if "overload" in phases and limit:
                multipliers = [float(m) for m in args.multipliers.split(",")]
                await overload(
                    work, uas, uas_port, limit, args.confirm, args.seconds, multipliers, rows
                )
            if args.soak_calls:
                out["soak"] = await soak(
                    work, uas_port, args.soak_calls, args.soak_rate, args.soak_warmup
                )
        finally:
            uas_proc.kill()
            await uas_proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rates", default="100,200,300,400,500,600")
    parser.add_argument("--seconds", type=float, default=20.0, help="per ramp/latency step")
    parser.add_argument("--limit", type=float, help="the sustained rate, if not ramping")
    parser.add_argument("--confirm", type=float, default=60.0, help="seconds at the limit")
    parser.add_argument("--multipliers", default="1.5,2")
    parser.add_argument("--latency-rate", type=float, default=100.0)
    parser.add_argument("--phases", default="ramp,latency,overload")
    parser.add_argument("--soak-calls", type=int, default=0)
    parser.add_argument("--soak-rate", type=float, default=200.0)
    parser.add_argument("--soak-warmup", type=int, default=2000)
    parser.add_argument(
        "--calls-setting",
        action="append",
        default=[],
        help='a `[calls]` line for the daemon, e.g. "max_receive_delay = 60" (repeatable)',
    )
    add_realtime_option(parser)
    parser.add_argument("--json", type=Path, help="write the rows here (for bench/plot_calls.py)")
    args = parser.parse_args()
    rows: list[Row] = []
    out: dict[str, object] = {"cores": os.cpu_count(), "load_before": os.getloadavg()}
    try:
        asyncio.run(bench(args, rows, out))
    finally:  # an interrupted run still leaves the steps it measured
        out["rows"] = [
            asdict(r) | {"cps": r.cps, "answered_cps": r.answered / r.wall, "failed": r.failed}
            for r in rows
        ]
        out["load_after"] = os.getloadavg()
        print(
            f"{os.cpu_count()} cores; load average before/after {out['load_before']} / "
            f"{out['load_after']}"
        )
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
