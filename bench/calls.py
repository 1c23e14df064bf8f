"""Bridged calls per second and setup latency through the PJSIP engine (B2BUA).

For each rate: SIPp UAC (tests/sipp/call_uac_hangup.xml: INVITE, 180, 200,
ACK, hold, BYE) -> engine (this process: PjsipEngine + CallControl +
DialPlan) -> SIPp UAS (tests/sipp/call_uas_answer.xml), for `--seconds`
at `-r rate`, `-m rate*seconds`. The baseline, in the same run and at the
same rates: the same UAC straight to the same kind of UAS (no engine).

With `--paths`, the engine also runs behind the SIP edge (in this process,
as the daemon wires them): `edge-in` is the edge in front of the caller's
leg only, the callee leg going straight from the engine to the UAS (the
daemon before B-legs were routed through the edge); `edge-both` is today's
daemon, where the callee leg also leaves through the edge (Route to its
internal side, sent from its public side). `edge-both` minus `edge-in` is
what routing B-legs through the edge costs.

Reported per step: calls/s completed (successful / wall time of the step),
failed calls, setup latency INVITE -> 200 at the caller (SIPp response-time
trace, p50/p99), and CPU of this process (engine thread + asyncio call
control) and of the engine thread alone, 100 % = one core.

Run: python bench/calls.py [--seconds 20] [--rates 100,300,600] [--hold-ms 0]
     [--paths direct,engine,edge-in,edge-both]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.calls.control import CallControl
from gateway.calls.dialplan import DialPlan, PrefixRoute, RouteChoice, TrunkTarget
from gateway.calls.registry import CallSettings, Disposition
from gateway.calls.trunk_accounts import edge_route
from gateway.config.accounts import TrunkConfig
from gateway.config.models import LoggingConfig
from gateway.config.sip import SipConfig
from gateway.logs import configure_logging
from gateway.metrics import Metrics
from gateway.sip.admission import AuthenticatedOnly
from gateway.sip.directory import Directory
from gateway.sip.edge import SipEdge
from media.engine import EngineSettings, PjsipEngine
from tests.support.ports import free_media_port, free_udp_port

SCENARIOS = Path(__file__).resolve().parents[1] / "tests" / "sipp"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SO_TIMESTAMPNS = 35  # linux/socket.h; the socket module does not name it
PRODUCTION_EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "examples" / "production.toml"


def stat_cpu(stat: Path) -> float:
    """utime+stime in seconds from a /proc stat file (a process or a thread)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu(pid: int) -> float:
    return stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu(tid: int) -> float:
    return stat_cpu(Path(f"/proc/self/task/{tid}/stat"))


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Step:
    path: str
    rate: int
    ok: int
    failed: int
    wall: float
    p50_ms: float
    p99_ms: float
    cpu: float | None = None
    engine_cpu: float | None = None
    probe_p50: float = float("nan")
    probe_p99: float = float("nan")

    def row(self) -> str:
        cps = self.ok / self.wall if self.wall else 0.0
        cpu = f"{self.cpu:5.0f} %" if self.cpu is not None else "    -  "
        eng = f"{self.engine_cpu:5.0f} %" if self.engine_cpu is not None else "    -  "
        return (
            f"| {self.path:<8} | {self.rate:5d} | {cps:7.1f} | {self.ok:6d} | {self.failed:5d} "
            f"| {self.p50_ms:4.0f} | {self.p99_ms:4.0f} | {self.probe_p50:6.3f} "
            f"| {self.probe_p99:6.3f} | {cpu} | {eng} |"
        )


async def start_uas(
    workdir: Path, port: int, *extra: str, media_port: int | None = None
) -> asyncio.subprocess.Process:
    """SIPp answering calls on `port` (with `-rtp_echo` in `extra`: echoing RTP on
    `media_port`)."""
    return await asyncio.create_subprocess_exec(
        sipp(),
        "-sf",
        str(SCENARIOS / "call_uas_answer.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(media_port or free_media_port()),
        "-nostdin",
        "-trace_err",
        *extra,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,
    )


async def run_uac(
    workdir: Path,
    target: str,
    rate: int,
    seconds: float,
    hold_ms: int,
    *,
    rtp_port: int = 9,  # discard: RTP towards the caller goes nowhere by default
    concurrent: int | None = None,
) -> Step:
    calls = int(rate * seconds)
    argv = [
        *uac_argv(target, SCENARIOS / "call_uac_hangup.xml"),
        "-mp",
        str(free_media_port()),
        "-set",
        "rtp_port",
        str(rtp_port),
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-l",
        str(concurrent or max(rate * 4, 100)),
        "-d",
        str(hold_ms),
        "-nostdin",
        "-timeout",
        f"{seconds + hold_ms / 1000 + 30:.0f}s",
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-trace_stat",
        "-fd",
        "1",
    ]
    for old in workdir.glob("call_uac_hangup_*"):
        old.unlink()
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=workdir
    )
    await proc.wait()
    wall = time.monotonic() - start
    ok, failed = sipp_counts(workdir, "call_uac_hangup")
    rtts = _rtts(workdir)
    p50 = statistics.median(rtts) if rtts else float("nan")
    p99 = statistics.quantiles(rtts, n=100)[98] if len(rtts) >= 100 else float("nan")
    return Step("", rate, ok, failed, wall, p50, p99)


def uac_argv(target: str, scenario: Path) -> list[str]:
    """SIPp as a caller to `target`, dialling 1000, from an ephemeral port."""
    return [
        sipp(),
        target,
        "-sf",
        str(scenario),
        "-s",
        "1000",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
    ]


def sipp_counts(workdir: Path, scenario: str) -> tuple[int, int]:
    """(successful, failed) calls from the last line of SIPp's `-trace_stat` file."""
    stat = next(workdir.glob(f"{scenario}_*_.csv"), None)
    if stat is None:
        return 0, 0
    lines = stat.read_text().splitlines()
    header, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(header, last, strict=False))
    return int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"])


def _rtts(workdir: Path) -> list[float]:
    values: list[float] = []
    for path in workdir.glob("call_uac_hangup_*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    values.append(float(parts[1]))
                except ValueError:
                    continue
    return values


def sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise SystemExit("sipp is not installed (Debian: sip-tester)")
    return path


async def measured(
    work: Path, target: str, rate: int, seconds: float, hold_ms: int, latency_rate: int
) -> Step:
    """One load step; at the latency rate a probe runs sequential calls alongside."""
    if rate != latency_rate:
        return await run_uac(work, target, rate, seconds, hold_ms)
    count = int(seconds / 0.03)
    step, samples = await asyncio.gather(
        run_uac(work, target, rate, seconds, hold_ms), run_probe(target, count, 0.02)
    )
    answers = [answer for _ringing, answer in samples]
    step.probe_p50, step.probe_p99 = statistics.median(answers), pct(answers, 99)
    return step


async def bench(
    rates: list[int], seconds: float, hold_ms: int, latency_rate: int, paths: list[str]
) -> list[Step]:
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="callgate-bench-") as tmp:
        work = Path(tmp)
        if "direct" in paths:
            # Baseline: UAC straight to a UAS.
            port = free_udp_port()
            uas = await start_uas(work, port)
            try:
                for rate in rates:
                    step = await measured(
                        work, f"127.0.0.1:{port}", rate, seconds, hold_ms, latency_rate
                    )
                    step.path = "direct"
                    steps.append(step)
            finally:
                uas.kill()
                await uas.wait()
        for path in ("engine", "edge-in", "edge-both"):
            if path in paths:
                steps += await through_engine(work, path, rates, seconds, hold_ms, latency_rate)
    return steps


async def start_edge(engine: PjsipEngine, route_b_legs: bool) -> SipEdge:
    """The edge as the daemon wires it: loopback is a trunk; no flood limit for the load."""
    assert engine.info is not None
    config = SipConfig.model_validate(
        {
            "listen": [{"transport": "udp", "host": "127.0.0.1", "port": 0}],
            "protection": {"packet_rate": 1e9, "packet_burst": 10**9},
        }
    )
    directory = Directory.from_config((), (TrunkConfig(name="bench", allow=("127.0.0.0/8",)),))
    edge = SipEdge(
        config,
        Metrics(),
        (engine.info.sip_host, engine.info.sip_port),
        directory,
        AuthenticatedOnly(),
    )
    await edge.start()
    if route_b_legs:
        await engine.route_through_edge(edge_route(edge), ())
    return edge


def add_realtime_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--realtime-priority",
        type=int,
        default=int(tomllib.loads(PRODUCTION_EXAMPLE.read_text())["daemon"]["realtime_priority"]),
        help="[daemon] realtime_priority of the node it starts (0: the fair scheduler; "
        "default: the production example's)",
    )


def engine_to(uas_port: int, realtime_priority: int = 0) -> tuple[PjsipEngine, CallControl]:
    """The engine in this process (not started) and call control routing every
    number starting with 1 to the UAS on `uas_port`."""
    engine = PjsipEngine(
        EngineSettings(
            host="127.0.0.1",
            port=0,
            max_calls=4096,
            media_threads=1,
            rtp_port_start=20000,
            rtp_port_range=20000,
            codecs=("PCMU/8000/1", "PCMA/8000/1"),
            log_level=0,
            realtime_priority=realtime_priority,
        ),
        asyncio.get_running_loop(),
    )
    control = CallControl(
        engine,
        DialPlan(
            [PrefixRoute("1", (RouteChoice("uas"),), transit=True)],
            {"uas": TrunkTarget("uas", "127.0.0.1", uas_port)},
        ),
        CallSettings(records_kept=1_000_000),
    )
    return engine, control


async def through_engine(
    work: Path, path: str, rates: list[int], seconds: float, hold_ms: int, latency_rate: int
) -> list[Step]:
    steps: list[Step] = []
    port = free_udp_port()
    uas = await start_uas(work, port)
    engine, control = engine_to(port)
    info = await engine.start()
    edge = None if path == "engine" else await start_edge(engine, path == "edge-both")
    assert engine._thread is not None and engine._thread.native_id is not None
    tid = engine._thread.native_id
    try:
        for rate in rates:
            before = len(control.registry.finished)
            cpu0, eng0, t0 = process_cpu(), thread_cpu(tid), time.monotonic()
            entry = edge.bound[0].port if edge is not None else info.sip_port
            target = f"127.0.0.1:{entry}"
            step = await measured(work, target, rate, seconds, hold_ms, latency_rate)
            try:
                await asyncio.wait_for(control.wait_idle(), 10)
            except TimeoutError:
                print(f"note: {control.active_calls()} calls still live after rate {rate}")
            elapsed = time.monotonic() - t0
            step.cpu = 100 * (process_cpu() - cpu0) / elapsed
            step.engine_cpu = 100 * (thread_cpu(tid) - eng0) / elapsed
            step.path = path
            records = list(control.registry.finished)[before:]
            answered = sum(r.disposition is Disposition.ANSWERED for r in records)
            probe_calls = int(seconds / 0.03) if rate == latency_rate else 0
            if answered != step.ok + probe_calls:
                print(f"note: {answered} answered records vs {step.ok} SIPp successes")
            steps.append(step)
    finally:
        control.close()
        await engine.stop()
        if edge is not None:
            await edge.stop()
        uas.kill()
        await uas.wait()
    return steps


# --- latency probe (a subprocess: its own interpreter, its own clock reads) ----------

_INVITE = (
    "INVITE sip:{number}@{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe-{n}\r\n"
    "From: <sip:probe@127.0.0.1:{lport}>;tag=probe{n}\r\n"
    "To: <sip:{number}@{host}:{port}>\r\n"
    "Call-ID: probe-{n}-{pid}\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:probe@127.0.0.1:{lport}>\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n{sdp}"
)
_SDP = (
    "v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _in_dialog(method: str, cseq: int, n: int, lport: int, to: str, uri: str) -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe-{n}-{method.lower()}\r\n"
        f"From: <sip:probe@127.0.0.1:{lport}>;tag=probe{n}\r\n"
        f"To: {to}\r\nCall-ID: probe-{n}-{os.getpid()}\r\nCSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _header(message: str, name: str) -> str:
    for line in message.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return ""


def probe(target: str, count: int, interval: float) -> list[tuple[float, float]]:
    """Sequential calls: (INVITE -> first 180/183/200, INVITE -> 200) in ms.

    A response's time is the kernel's receive timestamp, so the figure is the node's
    latency on the wire and leaves out how long the probe itself waited for a core."""
    host, _, port_text = target.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    lport = sock.getsockname()[1]
    dest = (host, int(port_text))
    samples: list[tuple[float, float]] = []
    lost = 0
    refused: list[str] = []
    for n in range(count):
        try:
            samples.append(_probe_call(sock, dest, host, port_text, lport, n))
        except TimeoutError:
            lost += 1  # UDP loss under load: the probe does not retransmit
        except ProbeRefused as exc:
            refused.append(str(exc))  # e.g. 503 from overload control: not a latency sample
        time.sleep(interval)  # pacing between probe calls, not a wait for anything
    first = f" (first: {refused[0]})" if refused else ""
    print(f"probe: {lost} of {count} calls lost, {len(refused)} refused{first}", file=sys.stderr)
    return samples


def _received(sock: socket.socket) -> tuple[str, float]:
    """One datagram's text and its kernel receive time (`time.time()`'s clock)."""
    data, ancillary, _flags, _address = sock.recvmsg(65535, 64)
    timestamp = (socket.SOL_SOCKET, SO_TIMESTAMPNS)
    stamps = [value for level, kind, value in ancillary if (level, kind) == timestamp]
    if not stamps:
        raise SystemExit("probe: the kernel gave no receive timestamp")
    seconds, nanoseconds = struct.unpack("qq", stamps[0][:16])
    return data.decode(errors="replace"), seconds + nanoseconds / 1e9


class ProbeRefused(Exception):
    """A probe call got a final error response (its status line)."""


def _probe_call(
    sock: socket.socket, dest: tuple[str, int], host: str, port_text: str, lport: int, n: int
) -> tuple[float, float]:
    invite = _INVITE.format(
        number="1000",
        host=host,
        port=port_text,
        lport=lport,
        n=n,
        pid=os.getpid(),
        length=len(_SDP),
        sdp=_SDP,
    ).encode()
    call_id = f"probe-{n}-{os.getpid()}"
    ringing: float | None = None
    start = time.time()  # the clock of the kernel's receive timestamps
    sock.sendto(invite, dest)
    while True:
        text, at = _received(sock)
        status = text.split(" ", 2)[1] if text.startswith("SIP/2.0") else ""
        if _header(text, "call-id") != call_id:
            continue
        if ringing is None and status in ("180", "183", "200"):
            ringing = (at - start) * 1000
        if status == "200" and "INVITE" in _header(text, "cseq"):
            break
        if status.isdigit() and int(status) >= 300:
            raise ProbeRefused(text.splitlines()[0])
    elapsed = (at - start) * 1000
    to = _header(text, "to")
    contact = _header(text, "contact").strip("<>").split(">")[0]
    uri = contact or f"sip:1000@{host}:{port_text}"
    sock.sendto(_in_dialog("ACK", 1, n, lport, to, uri), dest)
    sock.sendto(_in_dialog("BYE", 2, n, lport, to, uri), dest)
    while True:  # the BYE's 200 (skip retransmitted 200s of the INVITE)
        text = sock.recv(65535).decode(errors="replace")
        if text.startswith("SIP/2.0 200") and "BYE" in _header(text, "cseq"):
            assert ringing is not None  # set by the INVITE's 200 at the latest
            return ringing, elapsed


async def run_probe(target: str, count: int, interval: float) -> list[tuple[float, float]]:
    """`probe` in a subprocess: (INVITE -> 180/183/200, INVITE -> 200) ms per answered call."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--probe",
        target,
        "--probe-count",
        str(count),
        "--probe-interval",
        str(interval),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit("latency probe failed")
    return [
        (float(ringing), float(answer)) for ringing, answer in map(bytes.split, out.splitlines())
    ]


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 100 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rates", default="100,300,600")
    parser.add_argument("--hold-ms", type=int, default=0, help="talk time before the BYE")
    parser.add_argument("--latency-rate", type=int, default=100)
    parser.add_argument("--paths", default="direct,engine", help="direct,engine,edge-in,edge-both")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--probe-count", type=int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--probe-interval", type=float, default=0.02, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        times = probe(args.probe, args.probe_count, args.probe_interval)
        print("\n".join(f"{ringing:.4f} {answer:.4f}" for ringing, answer in times))
        return
    configure_logging(LoggingConfig(level="warning"))
    rates = [int(r) for r in args.rates.split(",")]
    paths = args.paths.split(",")
    steps = asyncio.run(bench(rates, args.seconds, args.hold_ms, args.latency_rate, paths))
    print(
        f"calls: {args.seconds:.0f} s per step, hold {args.hold_ms} ms, {os.cpu_count()} cores; "
        f"probe latency at {args.latency_rate} calls/s"
    )
    print(
        "| path | rate | calls/s | ok | failed | SIPp p50 ms | SIPp p99 ms "
        "| probe p50 ms | probe p99 ms | process CPU | engine thread CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for step in steps:
        print(step.row())
    for path, base in (("engine", "direct"), ("edge-both", "edge-in")):
        baseline = {s.rate: s for s in steps if s.path == base}
        for s in steps:
            if s.path == path and s.rate == args.latency_rate and s.rate in baseline:
                d = baseline[s.rate]
                print(
                    f"added setup latency, {path} vs {base}, at {s.rate} calls/s (probe): "
                    f"p50 {s.probe_p50 - d.probe_p50:+.3f} ms, "
                    f"p99 {s.probe_p99 - d.probe_p99:+.3f} ms"
                )


if __name__ == "__main__":
    main()
