"""SmsService's batched writes on both stores: SQLite (WAL, the default) and a real
PostgreSQL. The writer binds plain tuples to SQL compiled once per statement shape,
so each dialect's parameter style must be right end to end: messages with
several segments, receipts matched after a hex/decimal id change, quota
counters, and a restart on the same store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.config.models import StoreConfig
from gateway.store.database import Store
from smpp.encoding import choose_coding, split_message
from smpp.schema import sms_daily_counters, sms_dlr_events, sms_segments
from smpp.service import SmsService
from smpp.submit_result import Accepted
from tests.smpp.sms_support import PASSWORD_ENV, WAIT, destination, sms_config, smsc_config
from tests.smsc.fixture import smsc  # noqa: F401 - the fixture
from tests.smsc.simulator import SmscSimulator

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch, smsc: SmscSimulator) -> Iterator[None]:  # noqa: F811
    monkeypatch.setenv(PASSWORD_ENV, smsc.password)
    yield


async def _run(
    sim: SmscSimulator, config: StoreConfig, data_dir: Path, texts: list[str]
) -> list[str]:
    store = await Store.open(config, data_dir)
    service = SmsService(sms_config(), (smsc_config(sim),), store)
    await service.start()
    try:
        results = await asyncio.gather(
            *(
                service.submit("alice", "Callgate", destination(n), text)
                for n, text in enumerate(texts)
            )
        )
        ids = []
        for result in results:
            assert isinstance(result, Accepted), result
            ids.append(result.message_id)
        assert await service.wait_final(ids, WAIT)
        for message_id in ids:
            status = await service.status("alice", message_id)
            assert status is not None and status.state == "delivered", status
            assert all(s.dlr_state == "DELIVRD" for s in status.segments)
    finally:
        await service.stop()
        await store.close()
    return ids


async def test_receipts_counters_and_restart_on_each_store(
    smsc: SmscSimulator,  # noqa: F811
    store_config: StoreConfig,
    tmp_path: Path,
) -> None:
    await asyncio.to_thread(smsc.set_scenario, id_format="hex", dlr_id_format="dec")
    texts = [f"store {n}" for n in range(40)] + ["long " + "x" * 400, "€ [escaped] " * 20]
    first = await _run(smsc, store_config, tmp_path, texts)
    second = await _run(smsc, store_config, tmp_path, ["after restart 1", "after restart 2"])

    store = await Store.open(store_config, tmp_path)
    try:
        async with store.engine.connect() as conn:
            segments = (
                await conn.execute(
                    select(sms_segments.c.message_id, func.count()).group_by(
                        sms_segments.c.message_id
                    )
                )
            ).all()
            counted = (await conn.execute(select(func.sum(sms_daily_counters.c.messages)))).scalar()
            unmatched = (
                await conn.execute(
                    select(func.count()).where(sms_dlr_events.c.message_id.is_(None))
                )
            ).scalar()
            matched = (
                await conn.execute(
                    select(func.count()).where(sms_dlr_events.c.message_id.is_not(None))
                )
            ).scalar()
            receipts_in_segments = (
                await conn.execute(
                    select(func.count()).where(
                        sms_segments.c.dlr_state == "DELIVRD",
                        sms_segments.c.dlr_raw.like("id:% stat:DELIVRD %"),
                    )
                )
            ).scalar()
    finally:
        await store.close()
    per_message = dict(segments)
    assert set(per_message) == set(first) | set(second)
    method = smsc_config(smsc).concatenation
    assert [per_message[m] for m in first] == [
        len(split_message(text, choose_coding(text, False), method, 0)) for text in texts
    ]
    assert per_message[first[-2]] > 1 and per_message[first[-1]] > 1
    assert counted == len(first) + len(second)
    # Every receipt matched on arrival: stored in its segment's row, not as an event.
    assert receipts_in_segments == sum(per_message.values())
    assert matched == 0
    assert unmatched == 0
