"""kill -9 the SMS service mid-stream, start it again: nothing accepted is lost.

The service runs in a subprocess (`sms_runner.py`) against the simulator; the
test reads its `accepted` lines, kills it with SIGKILL while submits and
receipts are in flight, then starts a service on the same store in-process
and waits until every stored message is final.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from smpp.encoding import encode_gsm7
from smpp.schema import sms_messages
from smpp.service import SmsService
from tests.smpp import sms_runner
from tests.smpp.sms_support import (
    PASSWORD_ENV,
    WAIT,
    accepted_payloads,
    destination,
    open_store,
    sms_config,
    smsc_config,
)
from tests.smsc.fixture import smsc  # noqa: F401 - the fixture
from tests.smsc.simulator import SmscSimulator

pytestmark = pytest.mark.interop
ROOT = Path(__file__).resolve().parents[2]
COUNT = 1000
KILL_AFTER = 400


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch, smsc: SmscSimulator) -> Iterator[None]:  # noqa: F811
    monkeypatch.setenv(PASSWORD_ENV, smsc.password)
    yield


def run_until_killed(sim: SmscSimulator, data_dir: Path) -> list[str]:
    """Start the runner, SIGKILL it after KILL_AFTER accepted lines; the ids it reported."""
    ids, returncode = sms_runner.run_until_killed(
        sim.smpp_port, data_dir, COUNT, KILL_AFTER, sim.password
    )
    assert returncode == -signal.SIGKILL
    return ids


async def test_kill_9_mid_stream_loses_nothing(smsc: SmscSimulator, tmp_path: Path) -> None:  # noqa: F811
    await asyncio.to_thread(smsc.set_scenario, slow_resp_ms=5, dlr_delay_ms=30)
    reported = await asyncio.to_thread(run_until_killed, smsc, tmp_path)
    assert len(reported) >= KILL_AFTER

    store = await open_store(tmp_path)
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(sms_messages.c.id, sms_messages.c.destination, sms_messages.c.state)
            )
        ).all()
    stored = {str(row[0]): str(row[1]) for row in rows}
    # Recorded as taken by the SMSC before the kill: must never be sent again.
    sent_before = {str(row[1]) for row in rows if row[2] in ("submitted", "delivered")}
    assert sent_before, "the kill should come after some submits were answered"
    service = SmsService(sms_config(), (smsc_config(smsc),), store)
    try:
        await service.start()
        assert set(reported) <= set(stored)  # every id handed out was durable
        assert await service.wait_final(list(stored), WAIT)
        for message_id in stored:
            status = await service.status("alice", message_id)
            assert status is not None and status.state == "delivered", status
    finally:
        await service.stop()
        await store.close()
    payloads = await asyncio.to_thread(accepted_payloads, smsc)
    numbers = {int(number[-6:]) for number in stored.values()}
    for n in numbers:  # at least once at the SMSC
        seen = payloads[(destination(n)[1:], encode_gsm7(f"crash {n}").hex())]
        assert seen >= 1
        if destination(n) in sent_before:
            assert seen == 1  # de-duplicated: a recorded submit is not repeated
