"""Helpers for MO delivery tests: stored MO rows and a worker whose results can be awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select

from gateway.store.database import Store
from smpp.config import SmsConfig
from smpp.mo_delivery import MoChannel
from smpp.mo_worker import MoDeliveryWorker
from smpp.schema import sms_mo, sms_mo_deliveries
from tests.smpp.sms_support import WAIT

FAST_RETRIES: dict[str, Any] = {
    "initial_backoff": 0.05,
    "max_backoff": 0.2,
    "jitter": 0.0,
    "poll_interval": 0.05,
    "max_attempts": 5,
}


async def add_mo(
    store: Store, mo_id: str, destination: str, account: str, channels: tuple[str, ...]
) -> None:
    """An MO message as SmsService stores it: the row and one pending delivery per channel."""
    now = time.time()
    async with store.engine.begin() as conn:
        await conn.execute(
            sms_mo.insert().values(
                id=mo_id,
                smsc="sim",
                source="+4915112345678",
                destination=destination,
                account=account,
                text=f"hello {mo_id} ✓",
                data_coding=8,
                esm_class=0,
                short_message_hex="",
                received_at=now,
            )
        )
        await conn.execute(
            sms_mo_deliveries.insert(),
            [
                {"mo_id": mo_id, "channel": c, "state": "pending", "attempts": 0, "updated_at": now}
                for c in channels
            ],
        )


async def delivery(store: Store, mo_id: str, channel: str) -> Mapping[str, Any]:
    async with store.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(sms_mo_deliveries).where(
                        sms_mo_deliveries.c.mo_id == mo_id, sms_mo_deliveries.c.channel == channel
                    )
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


class Results:
    """(channel, result) of every attempt, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    def __call__(self, channel: str, result: str) -> None:
        self.queue.put_nowait((channel, result))

    async def next(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.queue.get(), WAIT)

    async def take(self, count: int) -> list[str]:
        return [(await self.next())[1] for _ in range(count)]


@asynccontextmanager
async def running_worker(
    store: Store, config: SmsConfig, channels: Mapping[str, MoChannel]
) -> AsyncIterator[Results]:
    results = Results()
    worker = MoDeliveryWorker(store, config, channels, on_result=results)
    worker.start()
    try:
        yield results
    finally:
        await worker.stop()
