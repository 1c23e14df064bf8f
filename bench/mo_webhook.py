"""MO webhook deliveries per second through the delivery worker, against a baseline.

`--messages` MO rows (channel `webhook`) are stored in a fresh SQLite store,
then the worker (smpp.mo_worker + smpp.mo_webhook, `--concurrency` per channel)
delivers them to an aiohttp server on loopback in this process that answers 200.
The baseline, in the same run: the same number of signed POSTs of the same
bodies, sent straight from one aiohttp session with the same concurrency (no
store, no worker). The ratio is what reading and marking rows costs.

Run: python bench/mo_webhook.py [--messages 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.config.models import StoreConfig
from gateway.store.database import Store
from smpp.config import SmsConfig
from smpp.mo_delivery import MoMessage
from smpp.mo_webhook import SIGNATURE_HEADER, WebhookChannel, signature, webhook_body
from smpp.mo_worker import MoDeliveryWorker
from smpp.schema import sms_mo, sms_mo_deliveries

NUMBER = "+4930123456"
SECRET_ENV = "CALLGATE_BENCH_WEBHOOK_SECRET"


async def serve() -> tuple[web.AppRunner, str, list[int]]:
    count = [0]

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        count[0] += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}/hook", count


def message(n: int) -> MoMessage:
    return MoMessage(f"mo{n:08d}", "alice", "+4915112345678", NUMBER, f"text {n}", time.time(), "s")


async def baseline(url: str, messages: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:

        async def post(n: int) -> None:
            body = webhook_body(message(n))
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature("k", body)}
            async with gate, session.post(url, data=body, headers=headers) as response:
                assert response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(post(n) for n in range(messages)))
        return time.perf_counter() - started


async def worker(url: str, messages: int, concurrency: int) -> float:
    os.environ[SECRET_ENV] = "k"
    config = SmsConfig.model_validate(
        {
            "numbers": [
                {
                    "account": "alice",
                    "numbers": [NUMBER],
                    "channels": ["webhook"],
                    "webhook_url": url,
                    "webhook_secret": {"env": SECRET_ENV},
                }
            ],
            "mo_delivery": {
                "concurrency": concurrency,
                "per_account_concurrency": concurrency,
                "poll_interval": 0.05,
            },
        }
    )
    with tempfile.TemporaryDirectory() as data:
        store = await Store.open(StoreConfig(), Path(data))
        now = time.time()
        async with store.engine.begin() as conn:
            await conn.execute(
                sms_mo.insert(),
                [
                    {
                        "id": m.id,
                        "smsc": m.smsc,
                        "source": m.source,
                        "destination": m.destination,
                        "account": m.account,
                        "text": m.text,
                        "data_coding": 0,
                        "esm_class": 0,
                        "short_message_hex": "",
                        "received_at": now,
                    }
                    for m in map(message, range(messages))
                ],
            )
            await conn.execute(
                sms_mo_deliveries.insert(),
                [
                    {
                        "mo_id": f"mo{n:08d}",
                        "channel": "webhook",
                        "state": "pending",
                        "attempts": 0,
                        "updated_at": now,
                    }
                    for n in range(messages)
                ],
            )
        done = asyncio.Event()
        delivered = [0]

        def on_result(_channel: str, result: str) -> None:
            delivered[0] += result == "delivered"
            if delivered[0] == messages:
                done.set()

        channel = WebhookChannel(30.0)
        run = MoDeliveryWorker(store, config, {"webhook": channel}, on_result=on_result)
        started = time.perf_counter()
        run.start()
        await done.wait()
        elapsed = time.perf_counter() - started
        await run.stop()
        await channel.close()
        await store.close()
        return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    runner, url, count = await serve()
    try:
        base = await baseline(url, args.messages, args.concurrency)
        work = await worker(url, args.messages, args.concurrency)
    finally:
        await runner.cleanup()
    assert count[0] == 2 * args.messages, count
    print(f"messages {args.messages}, concurrency {args.concurrency}")
    print(f"baseline (POSTs only):     {args.messages / base:8.0f} /s")
    print(f"worker (store + webhook):  {args.messages / work:8.0f} /s")
    print(f"worker / baseline:         {work / base:8.2f}x the time")


if __name__ == "__main__":
    asyncio.run(main())
