"""submit_sm/s of SmscClient against the SMSC simulator, next to baselines from the same run.

Baselines: smpplib's own blocking client (send, then read the answer: stop and
wait, what a naive gateway does) and SmscClient with window 1. The figure is
SmscClient with a window of 100 (change with --window). Delivery receipts are
off so that only the submit path is measured.

    .venv/bin/python bench/smpp_client.py [--messages 5000] [--window 100]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Hashable
from pathlib import Path

import smpplib.client
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config.secrets import SecretRef
from smpp.client import SmscClient
from smpp.config import SmscConfig
from smpp.session import (
    Bound,
    ConnectionLost,
    DeliverSm,
    ResponseTimeout,
    SubmitResponse,
    Throttled,
)
from tests.smsc.simulator import SmscSimulator

PASSWORD_ENV = "CALLGATE_BENCH_SMSC_PASSWORD"


class Counting:
    """Handler that counts answers and wakes the bench when all arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ok = 0
        self.failed = 0
        self.done = asyncio.Event()

    def _count(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1
        if self.ok + self.failed >= self.expected:
            self.done.set()

    async def on_bound(self, smsc_name: str, event: Bound) -> None:
        return None

    async def on_submit_response(self, smsc_name: str, event: SubmitResponse) -> None:
        self._count(event.status == 0)

    async def on_deliver(self, smsc_name: str, event: DeliverSm) -> int:
        return 0

    async def on_throttled(self, smsc_name: str, event: Throttled) -> None:
        self._count(False)

    async def on_response_timeout(self, smsc_name: str, event: ResponseTimeout) -> None:
        self._count(False)

    async def on_connection_lost(self, smsc_name: str, event: ConnectionLost) -> None:
        for _ in event.unacked:
            self._count(False)


def params(ref: int) -> dict[str, str | bytes | int]:
    return {
        "source_addr": "1000",
        "destination_addr": f"49151{ref:08d}",
        "short_message": f"bench message {ref}".encode(),
        "registered_delivery": 0,
    }


async def smsc_client_rate(sim: SmscSimulator, messages: int, window: int) -> float:
    config = SmscConfig(
        name="bench",
        host=sim.host,
        port=sim.smpp_port,
        system_id=sim.system_id,
        password=SecretRef(env=PASSWORD_ENV),
        window=window,
        registered_delivery=0,
    )
    handler = Counting(messages)
    async with SmscClient(config, handler) as client:
        await asyncio.wait_for(client.wait_bound(), 10)
        started = time.perf_counter()

        async def feed(refs: range) -> None:
            for ref in refs:
                ref_key: Hashable = ref
                await client.submit(ref_key, params(ref))

        feeders = min(window, 64)
        await asyncio.gather(*(feed(range(i, messages, feeders)) for i in range(feeders)))
        await asyncio.wait_for(handler.done.wait(), 120)
        elapsed = time.perf_counter() - started
    if handler.failed:
        print(f"  warning: {handler.failed} submits not accepted", file=sys.stderr)
    return messages / elapsed


def smpplib_blocking_rate(sim: SmscSimulator, messages: int) -> float:
    client = smpplib.client.Client(sim.host, sim.smpp_port, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: None)
    client.connect()
    try:
        client.bind_transceiver(system_id=sim.system_id, password=sim.password)
        started = time.perf_counter()
        for ref in range(messages):
            fields = params(ref)
            client.send_message(
                source_addr=str(fields["source_addr"]),
                destination_addr=str(fields["destination_addr"]),
                short_message=fields["short_message"],
                registered_delivery=0,
            )
            client.read_once()  # the submit_sm_resp
        elapsed = time.perf_counter() - started
        client.unbind()
    finally:
        client.disconnect()
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with SmscSimulator() as sim:
        os.environ[PASSWORD_ENV] = sim.password
        sim.set_scenario(dlr_delay_ms=0)
        asyncio.run(smsc_client_rate(sim, min(500, args.messages), args.window))  # warm-up
        sim.reset()
        baseline = smpplib_blocking_rate(sim, args.messages)
        sim.reset()
        window_one = asyncio.run(smsc_client_rate(sim, args.messages, 1))
        sim.reset()
        windowed = asyncio.run(smsc_client_rate(sim, args.messages, args.window))
        stats = sim.stats()
    print(f"messages per run: {args.messages} (submit_sm, no DLRs, simulator on loopback)")
    print(f"smpplib blocking client (stop and wait): {baseline:8.0f} submit_sm/s  (baseline)")
    print(
        f"SmscClient window 1:                     {window_one:8.0f} submit_sm/s  "
        f"({window_one / baseline:.2f}x)"
    )
    print(
        f"SmscClient window {args.window:<3}:                   {windowed:8.0f} submit_sm/s  "
        f"({windowed / baseline:.2f}x)"
    )
    print(f"simulator: accepted {stats['accepted']}, max outstanding {stats['max_outstanding']}")


if __name__ == "__main__":
    main()
