"""SmsService end to end against the SMSC simulator, next to the plain client in the same run.

Baseline: `SmscClient` alone (bench/smpp_client.py's `smsc_client_rate`, window
100, no receipts, nothing stored). The figures: SmsService with SQLite (WAL) in
a temporary directory, receipts on --

- accepted: submit() calls answered (each one committed first) per second;
- submit_sm_resp: messages accepted, stored, sent and answered per second,
  measured from the first submit to the last submit_sm_resp;
- end to end: the same until every message is final from its receipt
  (receipt stored before deliver_sm_resp); receipts/s is the receipt phase alone.

Runs on uvloop, the loop the daemon runs on, and with the garbage collector
settled once the service is started, as `callgate run` does after start-up
(`gateway.collector`, `[daemon] gc_thresholds`); from then on for the whole
process. `bench/sms_revisions.py --collector` compares that with Python's defaults.

    .venv/bin/python bench/sms_service.py [--messages 20000] [--window 100]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import structlog
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from smpp_client import (
    PASSWORD_ENV,
    Counting,
    params,
    smsc_client_rate,
)

from gateway.collector import settle_collector
from gateway.config.models import DaemonConfig, StoreConfig
from gateway.config.secrets import SecretRef
from gateway.store.database import Store
from smpp.client import SmscClient
from smpp.config import SmscConfig, SmsConfig, SmsRouteConfig
from smpp.service import SmsService
from smpp.session import DeliverSm, SubmitResponse
from smpp.submit_result import Accepted
from tests.smsc.simulator import SmscSimulator

SUBMITTERS = 500


class CountingReceipts(Counting):
    """The plain client's handler, also counting receipts (acked at once, not stored)."""

    def __init__(self, expected: int) -> None:
        super().__init__(expected)
        self.receipts = 0
        self.all_receipts = asyncio.Event()

    async def on_deliver(self, smsc_name: str, event: DeliverSm) -> int:
        self.receipts += 1
        if self.receipts >= self.expected:
            self.all_receipts.set()
        return 0


async def client_with_receipts_rate(sim: SmscSimulator, messages: int, window: int) -> float:
    """SmscClient alone with receipts: the codec-bound ceiling for 4 PDUs per message."""
    config = SmscConfig(
        name="bench",
        host=sim.host,
        port=sim.smpp_port,
        system_id=sim.system_id,
        password=SecretRef(env=PASSWORD_ENV),
        window=window,
        registered_delivery=1,
    )
    handler = CountingReceipts(messages)
    async with SmscClient(config, handler) as client:
        await asyncio.wait_for(client.wait_bound(), 10)
        started = time.perf_counter()

        async def feed(refs: range) -> None:
            for ref in refs:
                fields = params(ref)
                fields["registered_delivery"] = 1
                await client.submit(ref, fields)

        feeders = min(window, 64)
        await asyncio.gather(*(feed(range(i, messages, feeders)) for i in range(feeders)))
        await asyncio.wait_for(handler.all_receipts.wait(), 300)
        elapsed = time.perf_counter() - started
    return messages / elapsed


class TimedService(SmsService):
    """Notes when the last submit_sm_resp and the first receipt arrived."""

    expected = 0
    answered = 0
    last_answer = 0.0
    first_receipt = 0.0
    all_answered: asyncio.Event

    async def on_submit_response(self, smsc: str, event: SubmitResponse) -> None:
        await super().on_submit_response(smsc, event)
        self.answered += 1
        if self.answered >= self.expected:
            self.last_answer = time.perf_counter()
            self.all_answered.set()

    async def on_deliver(self, smsc: str, event: DeliverSm) -> int | asyncio.Future[int]:
        if not self.first_receipt:
            self.first_receipt = time.perf_counter()
        return await super().on_deliver(smsc, event)


async def service_run(
    sim: SmscSimulator, messages: int, window: int, *, settle: bool = True
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="sms-bench-") as data_dir:
        store = await Store.open(StoreConfig(), Path(data_dir))
        smsc = SmscConfig(
            name="bench",
            host=sim.host,
            port=sim.smpp_port,
            system_id=sim.system_id,
            password=SecretRef(env=PASSWORD_ENV),
            window=window,
            registered_delivery=1,
        )
        service = TimedService(
            SmsConfig(routes=(SmsRouteConfig(prefix="", smsc=("bench",)),)), (smsc,), store
        )
        service.expected = messages
        service.all_answered = asyncio.Event()
        await service.start()
        await asyncio.wait_for(service.clients["bench"].wait_bound(), 10)
        if settle:  # as `callgate run` does after start-up
            settle_collector(DaemonConfig().gc_thresholds)
        ids: list[str] = []
        started = time.perf_counter()

        async def feed(numbers: range) -> None:
            for n in numbers:
                result = await service.submit(
                    "bench", "Callgate", f"+4915112{n:06d}", f"bench message {n}"
                )
                assert isinstance(result, Accepted), result
                ids.append(result.message_id)

        await asyncio.gather(*(feed(range(i, messages, SUBMITTERS)) for i in range(SUBMITTERS)))
        accepted = time.perf_counter()
        await asyncio.wait_for(service.all_answered.wait(), 300)
        assert await service.wait_final(ids, 300)
        final = time.perf_counter()
        stats = await service.stats("bench")
        await service.stop()
        commits, rows, writer_busy = service.store_writes
        await store.close()
    assert stats.delivered == messages, stats
    return {
        "accepted": messages / (accepted - started),
        "submitted": messages / (service.last_answer - started),
        "end_to_end": messages / (final - started),
        "receipts": messages / (final - service.first_receipt),
        "commits": commits,
        "rows": rows,
        "writer_busy": writer_busy,
        "seconds": final - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with SmscSimulator() as sim:
        os.environ[PASSWORD_ENV] = sim.password
        sim.set_scenario(dlr_delay_ms=0)
        uvloop.run(smsc_client_rate(sim, min(500, args.messages), args.window))  # warm-up
        sim.reset()
        baseline = uvloop.run(smsc_client_rate(sim, args.messages, args.window))
        sim.reset()
        sim.set_scenario(dlr_delay_ms=50)
        with_receipts = uvloop.run(client_with_receipts_rate(sim, args.messages, args.window))
        sim.reset()
        figures = uvloop.run(service_run(sim, args.messages, args.window))
        stats = sim.stats()
    print(f"messages per run: {args.messages} (simulator on loopback, window {args.window})")
    print(f"SmscClient alone, no DLRs, no store:     {baseline:8.0f} submit_sm/s  (baseline)")
    print(
        f"SmscClient alone, DLRs acked, no store:  {with_receipts:8.0f} msg/s        "
        f"({with_receipts / baseline:.2f}x)"
    )
    for label, key in (
        ("SmsService accepted (committed):        ", "accepted"),
        ("SmsService accepted->stored->resp:      ", "submitted"),
        ("SmsService end to end incl. DLRs:       ", "end_to_end"),
        ("SmsService DLR processing:              ", "receipts"),
    ):
        unit = "DLR/s" if key == "receipts" else "msg/s"
        print(f"{label}{figures[key]:8.0f} {unit:<11}  ({figures[key] / baseline:.2f}x)")
    print(
        f"simulator: accepted {stats['accepted']}, receipts sent {stats['dlrs_sent']}, "
        f"deliver_sm_resp {stats['deliver_resps']}"
    )


if __name__ == "__main__":
    main()
