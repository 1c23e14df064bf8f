"""SMPP / SMS in one run: plain client, Kannel and SmsService side by side, and a kill -9.

Against the Node SMSC simulator on loopback (it shares the machine's cores
with whatever is measured), in this order:

(a) `SmscClient` alone (bench/smpp_client.py, bench/sms_service.py): submit_sm/s
    without receipts, and msg/s with receipts acked at once, nothing stored;
(b) Kannel 1.4.5 (bench/kannel_baseline.py `measure()`): HTTP sendsms with a
    DLR URL to the same simulator, first submit to last DLR;
(c) `SmsService` end to end with SQLite (WAL), receipts on (bench/sms_service.py
    `service_run`): accepted (committed) -> submit_sm_resp -> receipt stored
    and acknowledged, and the receipt phase alone as DLR/s; from here on the
    process runs with the garbage collector settled as `callgate run` does;
(d) zero loss across a restart: tests/smpp/sms_runner.py in a subprocess is
    killed with SIGKILL after --kill-after accepted messages, a new service on
    the same store finishes the job; every accepted message must end delivered.

CPU is utime+stime of the measured process(es) over the phase's wall time
(100 % = one core): this process for (a) and (c) (the simulator excluded),
bearerbox + smsbox for (b). (a) and (c) run on uvloop, the loop the daemon runs
on (`--loop asyncio` for the standard library's).

    .venv/bin/python bench/smpp.py [--messages 20000] [--kannel-messages 5000]
                                   [--crash-messages 3000] [--kill-after 1500]
                                   [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# This file is bench/smpp.py: keep bench/ from shadowing the `smpp` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
import uvloop  # noqa: E402
from sqlalchemy import select  # noqa: E402

import smpp.pdu  # noqa: E402
from smpp.schema import sms_messages  # noqa: E402
from smpp.service import SmsService  # noqa: E402
from tests.smpp.sms_runner import run_until_killed  # noqa: E402
from tests.smpp.sms_support import (  # noqa: E402
    PASSWORD_ENV as RUNNER_PASSWORD_ENV,
)
from tests.smpp.sms_support import open_store, sms_config, smsc_config  # noqa: E402
from tests.smsc.simulator import SmscSimulator  # noqa: E402

sys.path.append(str(BENCH))  # after the package is imported: the sibling scripts
import kannel_baseline  # noqa: E402
import smpp_client  # noqa: E402
import sms_service  # noqa: E402

T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LOOPS: dict[str, Callable[[Coroutine[object, object, Any]], Any]] = {
    "uvloop": uvloop.run,
    "asyncio": asyncio.run,
}


def measured_here(run: Callable[[], T]) -> tuple[T, float, float]:
    """run(); its wall time and this process's CPU seconds (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = run()
    return value, time.perf_counter() - wall, time.process_time() - cpu


@contextmanager
def smpplib_codec_only() -> Iterator[None]:
    """The codec as it was before the fast path: every PDU through smpplib."""
    decoders = dict(smpp.pdu._FAST_DECODERS)
    encoders = dict(smpp.pdu._FAST_ENCODERS)
    smpp.pdu._FAST_DECODERS.clear()
    smpp.pdu._FAST_ENCODERS.clear()
    try:
        yield
    finally:
        smpp.pdu._FAST_DECODERS.update(decoders)
        smpp.pdu._FAST_ENCODERS.update(encoders)


# ---------------------------------------------------------------- Kannel's CPU


def _children_cpu(names: tuple[str, ...]) -> dict[int, float]:
    """CPU seconds of this process's descendants whose command is in `names`."""
    found: dict[int, float] = {}
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        head, _, rest = raw.rpartition(")")
        fields = rest.split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        stats[pid] = [head.partition("(")[2], *fields]
    me = os.getpid()
    for pid, fields in stats.items():
        if fields[0] not in names:
            continue
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != me:
            ancestor = parents.get(ancestor, 0)
        if ancestor == me:
            found[pid] = (int(fields[12]) + int(fields[13])) / CLOCK_TICKS
    return found


def _simulator_cpu() -> float:
    """CPU seconds the Node simulator (a child of this process) used so far."""
    return sum(_children_cpu(("node",)).values())


@contextmanager
def sampled_cpu(names: tuple[str, ...], interval: float = 0.2) -> Iterator[dict[int, float]]:
    """Polls the CPU of the named child processes while the block runs (the last
    `interval` before each exits is not seen)."""
    seen: dict[int, float] = {}
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval):
            seen.update(_children_cpu(names))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


# ---------------------------------------------------------------- (d) kill -9


@dataclass
class CrashResult:
    reported: int
    stored: int
    delivered: int
    lost: int
    resubmitted: int
    recovery_seconds: float


def _run_until_killed(sim: SmscSimulator, data_dir: Path, count: int, kill_after: int) -> list[str]:
    ids, returncode = run_until_killed(sim.smpp_port, data_dir, count, kill_after, sim.password)
    if returncode != -signal.SIGKILL:
        raise RuntimeError(f"the runner ended with {returncode} before the kill")
    return ids


async def _restart(sim: SmscSimulator, data_dir: Path, reported: list[str]) -> CrashResult:
    os.environ[RUNNER_PASSWORD_ENV] = sim.password
    store = await open_store(data_dir)
    async with store.engine.connect() as conn:
        stored = [str(row[0]) for row in (await conn.execute(select(sms_messages.c.id))).all()]
    service = SmsService(sms_config(), (smsc_config(sim),), store)
    started = time.perf_counter()
    try:
        await service.start()
        await service.wait_final(stored, 300)
        recovery = time.perf_counter() - started
        delivered = set()
        for message_id in stored:
            status = await service.status("alice", message_id)
            if status is not None and status.state == "delivered":
                delivered.add(message_id)
    finally:
        await service.stop()
        await store.close()
    return CrashResult(
        reported=len(reported),
        stored=len(stored),
        delivered=len(delivered),
        lost=len(set(reported) - delivered),
        resubmitted=service.possible_duplicates,
        recovery_seconds=recovery,
    )


def crash_run(count: int, kill_after: int) -> CrashResult:
    with tempfile.TemporaryDirectory(prefix="sms-crash-") as data_dir, SmscSimulator() as sim:
        sim.set_scenario(slow_resp_ms=2, dlr_delay_ms=30)
        reported = _run_until_killed(sim, Path(data_dir), count, kill_after)
        return asyncio.run(_restart(sim, Path(data_dir), reported))


# ---------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--kannel-messages", type=int, default=5000)
    parser.add_argument("--crash-messages", type=int, default=3000)
    parser.add_argument("--kill-after", type=int, default=1500)
    parser.add_argument("--skip-kannel", action="store_true", help="no Kannel baseline")
    parser.add_argument("--loop", choices=sorted(LOOPS), default="uvloop")
    args = parser.parse_args()
    run = LOOPS[args.loop]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    logging.disable(logging.WARNING)
    n, window = args.messages, args.window

    with SmscSimulator() as sim:
        os.environ[smpp_client.PASSWORD_ENV] = sim.password
        sim.set_scenario(dlr_delay_ms=0)
        run(smpp_client.smsc_client_rate(sim, min(500, n), window))  # warm-up
        sim.reset()
        plain, plain_wall, plain_cpu = measured_here(
            lambda: run(smpp_client.smsc_client_rate(sim, n, window))
        )
        sim.reset()
        sim.set_scenario(dlr_delay_ms=50)
        client_dlr, client_wall, client_cpu = measured_here(
            lambda: run(sms_service.client_with_receipts_rate(sim, n, window))
        )
        sim.reset()
        simulator_before = _simulator_cpu()
        service, service_wall, service_cpu = measured_here(
            lambda: run(sms_service.service_run(sim, n, window))
        )
        simulator_cpu = _simulator_cpu() - simulator_before
        sim_stats = sim.stats()
        sim.reset()
        with smpplib_codec_only():
            before, before_wall, before_cpu = measured_here(
                lambda: run(sms_service.service_run(sim, n, window))
            )

    kannel_rate = kannel_cpu = kannel_wall = 0.0
    kannel_note = "skipped"
    if not args.skip_kannel:
        with sampled_cpu(("bearerbox", "smsbox")) as kannel_seen:
            result, kannel_wall, _ = measured_here(
                lambda: kannel_baseline.measure(args.kannel_messages, window=window)
            )
        kannel_rate = result.rate
        kannel_cpu = sum(kannel_seen.values())
        kannel_note = f"{result.accepted}/{result.messages} accepted, {result.dlrs} DLRs"

    crash, crash_wall, _ = measured_here(lambda: crash_run(args.crash_messages, args.kill_after))

    def pct(cpu: float, wall: float) -> str:
        return f"{100.0 * cpu / wall:4.0f} %" if wall else "   - "

    print(
        f"SMPP / SMS, {n} messages per run, window {window}, simulator on loopback, "
        f"{args.loop} event loop"
    )
    print(f"{'measurement':<52} {'rate':>8}  {'unit':<12} {'CPU':>6}")
    rows = [
        (
            "(a) SmscClient alone, no DLRs, nothing stored",
            plain,
            "submit_sm/s",
            pct(plain_cpu, plain_wall),
        ),
        (
            "(a) SmscClient alone, DLRs acked, nothing stored",
            client_dlr,
            "msg/s",
            pct(client_cpu, client_wall),
        ),
        (
            "(b) Kannel 1.4.5 end to end, sendsms + DLR URL",
            kannel_rate,
            "msg/s",
            pct(kannel_cpu, kannel_wall),
        ),
        ("(c) SmsService accepted (committed)", service["accepted"], "msg/s", ""),
        ("(c) SmsService accepted->stored->submit_sm_resp", service["submitted"], "msg/s", ""),
        (
            "(c) SmsService end to end incl. DLRs",
            service["end_to_end"],
            "msg/s",
            pct(service_cpu, service_wall),
        ),
        ("(c) SmsService DLR processing", service["receipts"], "DLR/s", ""),
    ]
    for label, rate, unit, cpu in rows:
        print(f"{label:<52} {rate:8.0f}  {unit:<12} {cpu:>6}")
    print(
        f"{'(c) same, smpplib codec for every PDU (before)':<52} "
        f"{before['end_to_end']:8.0f}  {'msg/s':<12} {pct(before_cpu, before_wall):>6}"
    )
    print(
        f"{'(c) same, smpplib codec: DLR processing':<52} {before['receipts']:8.0f}  {'DLR/s':<12}"
    )
    print(
        f"    SmsService CPU per message end to end: {1e6 * service_cpu / n:.0f} us "
        f"(smpplib codec: {1e6 * before_cpu / n:.0f} us; plain client with DLRs: "
        f"{1e6 * client_cpu / n:.0f} us; this process, all threads, incl. start/stop)"
    )
    print(
        f"    writer (c): {service['commits']:.0f} commits, {service['rows']:.0f} rows "
        f"({service['rows'] / n:.1f} per message, {service['rows'] / service['commits']:.0f} "
        f"per commit), one commit every {1e3 * service['seconds'] / service['commits']:.0f} ms, "
        f"busy {service['writer_busy']:.1f} s of {service['seconds']:.1f} s"
    )
    print(
        f"    simulator (Node) CPU during (c): {1e6 * simulator_cpu / n:.0f} us per message, "
        f"{pct(simulator_cpu, service_wall).strip()} of a core"
    )
    print(f"    Kannel: {kannel_note} (bearerbox + smsbox CPU)")
    if kannel_rate:
        print(
            f"    SmsService / Kannel end to end: {service['end_to_end'] / kannel_rate:.2f}x; "
            f"/ plain client with DLRs: {service['end_to_end'] / client_dlr:.2f}x"
        )
    print(
        f"    simulator (c): accepted {sim_stats['accepted']}, receipts sent "
        f"{sim_stats['dlrs_sent']}, deliver_sm_resp {sim_stats['deliver_resps']}"
    )
    print(
        f"(d) kill -9 after {crash.reported} accepted of {args.crash_messages}: "
        f"{crash.stored} stored, {crash.delivered} delivered after restart, "
        f"lost {crash.lost}, segments re-offered (unknown outcome) {crash.resubmitted}, "
        f"recovery {crash.recovery_seconds:.1f} s ({crash_wall:.1f} s with the killed run)"
    )
    if crash.lost:
        raise SystemExit("messages were lost across the restart")


if __name__ == "__main__":
    main()
