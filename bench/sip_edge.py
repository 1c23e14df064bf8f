"""SIP edge throughput and added latency, each next to a SIPp-to-SIPp baseline.

Runs the real daemon (`python -m gateway run`) on ephemeral ports and drives
it with SIPp (the scenarios under tests/sipp):

1. Authenticated REGISTER/s: SIPp UAC with the MD5 digest scenario
   (401 challenge, credentials, 200) over a fixed set of accounts, at
   increasing rates; the figure is the highest rate with zero failed calls.
   Baseline: the same UAC against a SIPp UAS that answers 401 then 200
   without checking anything (register_uas.xml).
2. Forwarded OPTIONS and INVITE calls per second from a trunk address through
   the edge to a SIPp UAS upstream, with the response time (SIPp rtd, whole
   milliseconds: SIPp 3.6 cannot resolve less) p50/p99;
   baseline: the same UAC straight to the UAS. The difference is what the
   edge adds.
3. Parser messages/s (bench/sip_parser.py), with its bare-split baseline.

The daemon's CPU (utime+stime from /proc/PID/stat over the step's wall time)
is printed next to each edge figure: 100 % is one core.

Run: python bench/sip_edge.py [--seconds 5] [--rates 500,1000,...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sip_parser import INVITE, REGISTER, baseline_split, rate  # noqa: E402

from gateway.sip.directory import format_ha1  # noqa: E402
from gateway.sip.message import parse_message  # noqa: E402

SCENARIOS = ROOT / "tests" / "sipp"
TRUNK_IP = "127.0.0.2"
ACCOUNTS = 200
REALM = "callgate"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class SippRun:
    ok: bool
    successful: int
    failed: int
    wall: float
    rtt_ms: list[float]
    note: str = ""


def sipp(
    scenario: str,
    target: str,
    workdir: Path,
    *,
    calls: int,
    rate_per_s: float,
    local_ip: str = "127.0.0.1",
    extra: Sequence[str] = (),
) -> SippRun:
    for old in workdir.glob("*_rtt.csv"):
        old.unlink()
    args = [
        shutil.which("sipp") or "sipp",
        target,
        *("-sf", str(SCENARIOS / scenario), "-t", "u1", "-i", local_ip),
        *("-m", str(calls), "-r", str(rate_per_s), "-rp", "1000"),
        *("-l", str(max(1000, int(rate_per_s * 4)))),
        *("-timeout", f"{calls / rate_per_s + 30:.0f}s", "-nostdin"),
        *("-trace_rtt", "-rtt_freq", "1"),
        *extra,
    ]
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=workdir, check=False)
    wall = time.monotonic() - started
    ok_match = re.findall(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", proc.stdout)
    failed_match = re.findall(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", proc.stdout)
    rtt: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        with path.open() as handle:
            for row in csv.reader(handle, delimiter=";"):
                if len(row) >= 2 and row[1].replace(".", "", 1).isdigit():
                    rtt.append(float(row[1]))
    return SippRun(
        ok=proc.returncode == 0,
        successful=int(ok_match[-1]) if ok_match else 0,
        failed=int(failed_match[-1]) if failed_match else calls,
        wall=wall,
        rtt_ms=rtt,
    )


@contextmanager
def sipp_uas(scenario: str, workdir: Path) -> Iterator[int]:
    """A SIPp UAS in the background for the whole block; yields its port."""
    port = free_udp_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            shutil.which("sipp") or "sipp",
            *("-sf", str(SCENARIOS / scenario), "-t", "u1", "-i", "127.0.0.1"),
            *("-p", str(port), "-nostdin"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    port: int


@contextmanager
def daemon(workdir: Path, upstream: int) -> Iterator[Daemon]:
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    accounts = []
    for n in range(ACCOUNTS):
        name = f"bench{n}"
        ha1 = workdir / f"{name}.ha1"
        ha1.write_text(format_ha1(name, REALM, f"pw-{name}"))
        accounts.append(f'[[accounts]]\nname = "{name}"\nha1 = {{ file = "{ha1}" }}\n')
    config = workdir / "callgate.toml"
    config.write_text(
        f"""
[node]
data_dir = "{data_dir}"
[daemon]
drain_timeout = 2
[sip]
listen = [{{ transport = "udp", host = "127.0.0.1", port = 0 }}]
upstream = "127.0.0.1:{upstream}"
[sip.auth]
realm = "{REALM}"
algorithms = ["MD5"]
[sip.protection]
packet_rate = 1000000
packet_burst = 1000000
[http]
host = "127.0.0.1"
port = 0
[logging]
format = "json"
level = "info"
{"".join(accounts)}
[[trunks]]
name = "bench"
allow = ["{TRUNK_IP}/32"]
"""
    )
    log = (workdir / "daemon.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    runtime = data_dir / "run" / "callgate.json"
    deadline = time.monotonic() + 60
    while b'"ready"' not in (workdir / "daemon.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((workdir / "daemon.log").read_text())
        time.sleep(0.1)  # a script polling a file, not a test
    port = int(json.loads(runtime.read_text())["sip"][0]["port"])
    try:
        yield Daemon(proc, port)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def users_csv(path: Path) -> Path:
    rows = "".join(f"bench{n};pw-bench{n};3600\n" for n in range(ACCOUNTS))
    path.write_text("SEQUENTIAL\n" + rows)
    return path


def highest_clean_rate(
    run: Callable[[float], SippRun], rates: Sequence[float], label: str
) -> tuple[float, list[str]]:
    """Step the rate up; the figure is the highest step carried without a failed call."""
    best = 0.0
    lines = []
    for step in rates:
        result = run(step)
        achieved = result.successful / result.wall if result.wall else 0.0
        lines.append(
            f"  {label:<8} {step:>6.0f}/s offered: {result.successful} ok, "
            f"{result.failed} failed, {achieved:,.0f} calls/s over {result.wall:.1f}s" + result.note
        )
        print(lines[-1], flush=True)
        # Clean: no failed call, and the offered rate was actually carried
        # (SIPp slows its call creation when answers lag behind).
        if not result.ok or result.failed or achieved < 0.95 * step:
            break
        best = step
    return best, lines


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate step")
    parser.add_argument("--rates", default="500,1000,2000,3000,4000,5000")
    parser.add_argument("--forward-rate", type=float, default=1000.0, help="OPTIONS/INVITE rate")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.seconds:.0f}s per step")

    with tempfile.TemporaryDirectory(prefix="sip-edge-bench-") as tmp:
        work = Path(tmp)
        users = users_csv(work / "users.csv")

        print("\n(1) authenticated REGISTER/s (401 + 200 per call), highest rate with 0 failures")
        with sipp_uas("register_uas.xml", work / "reg-uas") as uas_port:
            base_best, _ = highest_clean_rate(
                lambda r: sipp(
                    "register.xml",
                    f"127.0.0.1:{uas_port}",
                    work,
                    calls=int(r * args.seconds),
                    rate_per_s=r,
                    extra=("-inf", str(users)),
                ),
                rates,
                "baseline",
            )
        with (
            sipp_uas("options_uas.xml", work / "opt-uas") as uas_port,
            daemon(work / "d1", uas_port) as edge,
        ):

            def edge_register(r: float) -> SippRun:
                before = cpu_seconds(edge.proc.pid)
                result = sipp(
                    "register.xml",
                    f"127.0.0.1:{edge.port}",
                    work,
                    calls=int(r * args.seconds),
                    rate_per_s=r,
                    extra=("-inf", str(users)),
                )
                cpu = (cpu_seconds(edge.proc.pid) - before) / result.wall
                result.note = f", daemon CPU {cpu:.0%}"
                return result

            edge_best, _ = highest_clean_rate(edge_register, rates, "edge")
            print(f"REGISTER/s: edge {edge_best:,.0f}  |  baseline SIPp->SIPp {base_best:,.0f}")

            print(f"\n(2) forwarded requests at {args.forward_rate:.0f}/s from a trunk address")
            calls = int(args.forward_rate * args.seconds)
            for label, uac in (("OPTIONS (rtd: OPTIONS..200)", "options_forward.xml"),):
                direct = sipp(
                    uac,
                    f"127.0.0.1:{uas_port}",
                    work,
                    calls=calls,
                    rate_per_s=args.forward_rate,
                    local_ip=TRUNK_IP,
                    extra=("-s", "callee"),
                )
                before = cpu_seconds(edge.proc.pid)
                through = sipp(
                    uac,
                    f"127.0.0.1:{edge.port}",
                    work,
                    calls=calls,
                    rate_per_s=args.forward_rate,
                    local_ip=TRUNK_IP,
                    extra=("-s", "callee"),
                )
                cpu = (cpu_seconds(edge.proc.pid) - before) / through.wall
                report_forwarding(label, direct, through, cpu)

        with (
            sipp_uas("uas_call.xml", work / "call-uas") as uas_port,
            daemon(work / "d2", uas_port) as edge,
        ):
            direct = sipp(
                "uac_call.xml",
                f"127.0.0.1:{uas_port}",
                work,
                calls=calls,
                rate_per_s=args.forward_rate,
                local_ip=TRUNK_IP,
                extra=("-s", "callee"),
            )
            before = cpu_seconds(edge.proc.pid)
            through = sipp(
                "uac_call.xml",
                f"127.0.0.1:{edge.port}",
                work,
                calls=calls,
                rate_per_s=args.forward_rate,
                local_ip=TRUNK_IP,
                extra=("-s", "callee"),
            )
            cpu = (cpu_seconds(edge.proc.pid) - before) / through.wall
            report_forwarding("INVITE call (INVITE..200 rtd)", direct, through, cpu)

    print("\n(3) parser, msgs/s on one core")
    for label, data in (("INVITE", INVITE), ("REGISTER", REGISTER)):
        base = rate(partial(baseline_split, data), 1.0)
        full = rate(partial(parse_message, data), 1.0)
        print(f"  {label:<9} parse_message {full:>10,.0f}  |  baseline bare split {base:>10,.0f}")


def report_forwarding(label: str, direct: SippRun, through: SippRun, cpu: float) -> None:
    def describe(run: SippRun) -> str:
        return (
            f"{run.successful / run.wall:,.0f}/s ({run.failed} failed), "
            f"rtt p50 {percentile(run.rtt_ms, 0.5):.3f} ms "
            f"p99 {percentile(run.rtt_ms, 0.99):.3f} ms"
        )

    print(f"  {label}")
    print(f"    edge    : {describe(through)}, daemon CPU {cpu:.0%}")
    print(f"    baseline: {describe(direct)}")
    added50 = percentile(through.rtt_ms, 0.5) - percentile(direct.rtt_ms, 0.5)
    added99 = percentile(through.rtt_ms, 0.99) - percentile(direct.rtt_ms, 0.99)
    print(f"    added by the edge: p50 {added50:.3f} ms, p99 {added99:.3f} ms")


if __name__ == "__main__":
    main()
