"""Overload control: the whole daemon at 1x, 1.5x and 2x its configured call rate.

The daemon (`python -m gateway run`) admits a SIPp trunk and routes to a SIPp
UAS through the PJSIP engine, with `[calls] max_new_per_second = --limit`.
For each multiplier a SIPp UAC (tests/sipp/call_uac_overload.xml: a call is
either answered and hung up, or refused with 503) offers `limit * m` calls/s
for `--seconds`. Reported: calls answered, refused with 503 (by reason, from
the daemon's metrics), and failed (neither: SIPp's failed calls), next to the
same UAC straight to the same UAS in the same run.

Run: python bench/overload.py [--limit 200] [--seconds 15] [--multipliers 1,1.5,2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.calls import sipp, start_uas  # noqa: E402
from tests.support.daemon import DaemonProcess, write_config  # noqa: E402
from tests.support.ports import free_udp_port  # noqa: E402

SCENARIO = ROOT / "tests" / "sipp" / "call_uac_overload.xml"


@dataclass(frozen=True)
class Step:
    path: str
    offered: float
    calls: int
    sipp_ok: int
    sipp_failed: int
    answered: float
    refused: dict[str, float]
    wall: float
    unanswered: dict[str, float] | None = None


def _counts(workdir: Path) -> tuple[int, int]:
    stat = next(workdir.glob("call_uac_overload_*_.csv"), None)
    if stat is None:
        return 0, 0
    lines = stat.read_text().splitlines()
    row = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
    return int(row["SuccessfulCall(C)"]), int(row["FailedCall(C)"])


def _metrics(daemon: DaemonProcess) -> dict[str, float]:
    with urllib.request.urlopen(daemon.http_url("/metrics"), timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(
            (
                "callgate_calls_",
                "callgate_sip_requests_total",
                "callgate_sip_responses_sent_total",
                "callgate_sip_forwarded",
            )
        ):
            name, value = line.rsplit(" ", 1)
            if "_created" not in name:  # creation timestamps, not counts
                values[name] = float(value)
    return values


async def _uac(workdir: Path, target: str, rate: float, seconds: float) -> tuple[int, int, float]:
    for old in workdir.glob("call_uac_overload_*"):
        old.unlink()
    calls = int(rate * seconds)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sipp(),
        target,
        "-sf",
        str(SCENARIO),
        "-s",
        "1000",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_udp_port()),
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
    await proc.wait()
    ok, failed = _counts(workdir)
    return ok, failed, time.monotonic() - started


async def bench(limit: float, seconds: float, multipliers: list[float]) -> list[Step]:
    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        uas_port = free_udp_port()
        uas = await start_uas(work, uas_port)
        try:
            for m in multipliers:
                rate = limit * m
                ok, failed, wall = await _uac(work, f"127.0.0.1:{uas_port}", rate, seconds)
                steps.append(Step("direct", rate, int(rate * seconds), ok, failed, ok, {}, wall))
            data = work / "data"
            extra = f"""
[[trunks]]
name = "load"
allow = ["127.0.0.0/8"]

[[trunks]]
name = "uas"
host = "127.0.0.1"
port = {uas_port}

[calls]
max_new_per_second = {limit}
max_new_burst = {max(int(limit // 10), 1)}

[[calls.routes]]
prefix = "1"
trunks = ["uas"]
transit = true
"""
            config = write_config(work / "c.toml", data, drain_timeout=30, extra=extra)
            # Debug logging would cost more than the calls themselves.
            config.write_text(config.read_text().replace('level = "debug"', 'level = "info"'))
            daemon = DaemonProcess(config, data)
            try:
                await asyncio.to_thread(daemon.wait_event, "ready", 30)
                target = f"127.0.0.1:{daemon.sip_port('udp')}"
                for m in multipliers:
                    rate = limit * m
                    before = _metrics(daemon)
                    ok, failed, wall = await _uac(work, target, rate, seconds)
                    after = _metrics(daemon)
                    for _ in range(50):  # let the last call records close
                        await asyncio.sleep(0.2)
                        settled, after = after, _metrics(daemon)
                        if settled == after:
                            break
                    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
                    if "--debug" in sys.argv:
                        print({k: v for k, v in delta.items() if v})
                    answered = sum(v for k, v in delta.items() if 'disposition="answered"' in k)
                    # Calls admitted but not answered (callee leg failed): not overload 503s.
                    unanswered = {
                        k.split('disposition="')[1].rstrip('"}'): v
                        for k, v in delta.items()
                        if k.startswith("callgate_calls_finished_total")
                        and 'disposition="answered"' not in k
                        and v
                    }
                    refused = {
                        k.split('reason="')[1].rstrip('"}'): v
                        for k, v in delta.items()
                        if k.startswith("callgate_calls_rejected_total") and v
                    }
                    steps.append(
                        Step(
                            "callgate",
                            rate,
                            int(rate * seconds),
                            ok,
                            failed,
                            answered,
                            refused,
                            wall,
                            unanswered,
                        )
                    )
            finally:
                daemon.stop(timeout=60)
        finally:
            uas.kill()
            await uas.wait()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--multipliers", default="1,1.5,2")
    parser.add_argument("--debug", action="store_true", help="print every metric delta")
    args = parser.parse_args()
    multipliers = [float(m) for m in args.multipliers.split(",")]
    steps = asyncio.run(bench(args.limit, args.seconds, multipliers))
    print(f"limit {args.limit:g} new calls/s, {args.seconds:g} s per step")
    print(
        "| path | offered/s | calls | SIPp ok | answered | refused 503 (reason) | admitted, not "
        "answered | SIPp failed | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        refused = ", ".join(f"{v:.0f} {k}" for k, v in s.refused.items()) or "0"
        other = ", ".join(f"{v:.0f} {k}" for k, v in (s.unanswered or {}).items()) or "0"
        print(
            f"| {s.path} | {s.offered:g} | {s.calls} | {s.sipp_ok} | {s.answered:.0f} | "
            f"{refused} | {other} | "
            f"{s.sipp_failed} | {s.wall:.1f} |"
        )


if __name__ == "__main__":
    main()
