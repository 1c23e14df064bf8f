"""SmscClient against the Node SMSC simulator (an independent SMPP implementation).

Each test gets its own simulator on ephemeral ports (`smsc` fixture). Waiting is
event-driven (the handler wakes waiters) under `asyncio.timeout`; the
simulator's control API is queried only once the client has seen the outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config.secrets import SecretRef
from smpp.client import SmscClient
from smpp.config import SmscConfig
from smpp.pdu import CommandStatus
from smpp.session import (
    Bound,
    ConnectionLost,
    DeliverSm,
    ResponseTimeout,
    SubmitResponse,
    Throttled,
)
from tests.smsc.simulator import SmscSimulator
from tests.support.tls import self_signed

pytestmark = pytest.mark.interop

PASSWORD_ENV = "CALLGATE_TEST_SMSC_PASSWORD"
WAIT = 30.0


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch, smsc: SmscSimulator) -> Iterator[None]:
    monkeypatch.setenv(PASSWORD_ENV, smsc.password)
    yield


def config_for(sim: SmscSimulator, **overrides: Any) -> SmscConfig:
    values: dict[str, Any] = {
        "name": "sim",
        "host": sim.host,
        "port": sim.smpp_port,
        "system_id": sim.system_id,
        "password": SecretRef(env=PASSWORD_ENV),
        "window": 50,
        "response_timeout": 5.0,
        "bind_timeout": 5.0,
        "reconnect_initial": 0.05,
        "reconnect_max": 0.5,
        "reconnect_jitter": 0.0,
        "throttle_backoff_initial": 0.02,
        "throttle_backoff_max": 0.2,
    }
    values.update(overrides)
    return SmscConfig(**values)


def message(ref: int) -> dict[str, Any]:
    return {
        "source_addr": "1000",
        "destination_addr": f"49151{ref:08d}",
        "short_message": f"msg-{ref}".encode(),
    }


class Recorder:
    """Handler that records everything; a failed or throttled submit is re-offered
    on `retry` (the durable queue's job later)."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.bound: list[Bound] = []
        self.responses: list[SubmitResponse] = []
        self.delivers: list[DeliverSm] = []
        self.throttled: list[Throttled] = []
        self.timeouts: list[ResponseTimeout] = []
        self.lost: list[tuple[float, ConnectionLost]] = []
        self.retry: asyncio.Queue[Hashable] = asyncio.Queue()
        self.fail_on = fail_on
        self._changed = asyncio.Event()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                if predicate():
                    return
                await changed.wait()

    def accepted(self) -> dict[Hashable, str | None]:
        return {r.message_ref: r.message_id for r in self.responses if r.status == 0}

    async def on_bound(self, smsc_name: str, event: Bound) -> None:
        self.bound.append(event)
        self._poke()

    async def on_submit_response(self, smsc_name: str, event: SubmitResponse) -> None:
        self.responses.append(event)
        if event.status != 0:
            self.retry.put_nowait(event.message_ref)
        self._poke()

    async def on_deliver(self, smsc_name: str, event: DeliverSm) -> int:
        self.delivers.append(event)
        self._poke()
        if self.fail_on is not None and event.pdu.octets("short_message") == self.fail_on:
            raise RuntimeError("storage failed")
        return CommandStatus.ESME_ROK

    async def on_throttled(self, smsc_name: str, event: Throttled) -> None:
        self.throttled.append(event)
        self.retry.put_nowait(event.message_ref)
        self._poke()

    async def on_response_timeout(self, smsc_name: str, event: ResponseTimeout) -> None:
        self.timeouts.append(event)
        self.retry.put_nowait(event.message_ref)
        self._poke()

    async def on_connection_lost(self, smsc_name: str, event: ConnectionLost) -> None:
        self.lost.append((time.monotonic(), event))
        for ref in event.unacked:
            self.retry.put_nowait(ref)
        self._poke()


async def submit_all(
    client: SmscClient, recorder: Recorder, count: int, workers: int = 100
) -> None:
    """Offer messages 0..count-1 (and every re-offer) until each was accepted."""
    for ref in range(count):
        recorder.retry.put_nowait(ref)

    async def worker() -> None:
        while True:
            ref = await recorder.retry.get()
            await client.submit(ref, message(int(str(ref))))

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await recorder.wait_for(lambda: len(recorder.accepted()) >= count)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def accepted_texts(sim: SmscSimulator) -> Counter[str]:
    return Counter(
        bytes.fromhex(m["short_message_hex"]).decode()
        for m in sim.messages()
        if m["command_status"] == 0
    )


async def test_200_submits_with_window_50_exactly_once_with_dlrs(
    smsc: SmscSimulator,
) -> None:
    smsc.set_scenario(window_check=50, dlr_delay_ms=20)
    recorder = Recorder()
    client = SmscClient(config_for(smsc, window=50), recorder)
    client.start()
    await asyncio.wait_for(client.wait_bound(), WAIT)
    assert recorder.bound or client.is_bound

    sequences = await asyncio.wait_for(
        asyncio.gather(*(client.submit(ref, message(ref)) for ref in range(200))), WAIT
    )
    assert len(set(sequences)) == 200
    await recorder.wait_for(lambda: len(recorder.responses) >= 200)
    assert len(recorder.responses) == 200
    assert all(r.status == 0 for r in recorder.responses)
    accepted = recorder.accepted()
    assert set(accepted) == set(range(200))  # every submit_sm_resp, once each
    assert len(set(accepted.values())) == 200

    # Delivery receipts for all of them, correlated by receipted_message_id.
    await recorder.wait_for(lambda: len(recorder.delivers) >= 200)
    receipts = {d.pdu.text("receipted_message_id") for d in recorder.delivers if d.is_receipt}
    assert receipts == set(accepted.values())

    await asyncio.wait_for(client.close(), WAIT)

    texts = await asyncio.to_thread(accepted_texts, smsc)
    assert texts == Counter({f"msg-{ref}": 1 for ref in range(200)})
    stats = await asyncio.to_thread(smsc.stats)
    assert stats["window_violations"] == 0
    assert 1 < stats["max_outstanding"] <= 50
    assert stats["unbinds"] == 1  # graceful unbind on close
    deliveries = await asyncio.to_thread(smsc.deliveries)
    assert [d["resp_status"] for d in deliveries] == [0] * 200
    assert recorder.lost[-1][1].reason == "unbound"
    assert recorder.lost[-1][1].unacked == ()


async def test_throttling_recovers(smsc: SmscSimulator) -> None:
    smsc.set_scenario(throttle_every=7, msgqful_every=11, dlr_delay_ms=0)
    recorder = Recorder()
    async with SmscClient(config_for(smsc), recorder) as client:
        await asyncio.wait_for(submit_all(client, recorder, 100), WAIT)
    assert len(recorder.throttled) >= 10
    statuses = {t.status for t in recorder.throttled}
    assert statuses == {CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL}
    texts = await asyncio.to_thread(accepted_texts, smsc)
    assert texts == Counter({f"msg-{ref}": 1 for ref in range(100)})


async def test_dropped_connection_reconnects_and_reports_unacked(
    smsc: SmscSimulator,
) -> None:
    smsc.set_scenario(drop_after=60, dlr_delay_ms=0, slow_resp_ms=20)
    recorder = Recorder()
    async with SmscClient(config_for(smsc, window=50), recorder) as client:
        await asyncio.wait_for(submit_all(client, recorder, 200), WAIT)
        assert len(recorder.bound) >= 2
    dropped = [lost for _, lost in recorder.lost if lost.unacked]
    assert dropped, "the drop must leave submits without an answer"
    assert "closed by the SMSC" in dropped[0].reason or "socket error" in dropped[0].reason
    texts = await asyncio.to_thread(accepted_texts, smsc)
    # Every message got through; a re-offered one may have reached the SMSC twice
    # (accepted, answer lost in the drop): at-least-once, deduplicated downstream.
    assert set(texts) == {f"msg-{ref}" for ref in range(200)}
    duplicated = sum(n - 1 for n in texts.values())
    assert duplicated <= len(dropped[0].unacked)


async def test_refused_bind_backs_off_and_recovers(smsc: SmscSimulator) -> None:
    smsc.set_scenario(refuse_bind=True)
    recorder = Recorder()
    config = config_for(smsc, reconnect_initial=0.05, reconnect_max=0.4)
    async with SmscClient(config, recorder) as client:
        await recorder.wait_for(lambda: len(recorder.lost) >= 4)
        assert not client.is_bound
        assert all("bind refused with status 0x0d" in lost.reason for _, lost in recorder.lost)
        times = [at for at, _ in recorder.lost[:4]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # doubling backoff
        await asyncio.to_thread(smsc.set_scenario, refuse_bind=False)
        await asyncio.wait_for(client.wait_bound(), WAIT)
        assert client.stats.bind_failures >= 4
        await asyncio.wait_for(submit_all(client, recorder, 5), WAIT)


async def test_malformed_pdu_nacks_closes_and_recovers(smsc: SmscSimulator) -> None:
    smsc.set_scenario(malformed_after=5, dlr_delay_ms=0)
    recorder = Recorder()
    async with SmscClient(config_for(smsc, window=1), recorder) as client:
        await asyncio.wait_for(submit_all(client, recorder, 20, workers=1), WAIT)
        assert len(recorder.bound) == 2
    reasons = [lost.reason for _, lost in recorder.lost]
    assert reasons[0].startswith("framing error")
    stats = await asyncio.to_thread(smsc.stats)
    assert stats["malformed_sent"] == 1
    texts = await asyncio.to_thread(accepted_texts, smsc)
    # A submit sent just before the garbage may have been accepted without our
    # seeing the answer: it is reported unacked, offered again, and then counted twice.
    assert set(texts) == {f"msg-{ref}" for ref in range(20)}
    unacked = sum(len(lost.unacked) for _, lost in recorder.lost)
    assert sum(texts.values()) - 20 <= unacked


async def test_generic_nack_and_smsc_unbind(smsc: SmscSimulator) -> None:
    smsc.set_scenario(generic_nack_every=9, unbind_after=30, dlr_delay_ms=0)
    recorder = Recorder()
    async with SmscClient(config_for(smsc), recorder) as client:
        await asyncio.wait_for(submit_all(client, recorder, 60), WAIT)
    nacked = [r for r in recorder.responses if r.nacked]
    assert nacked and all(r.status == CommandStatus.ESME_RSYSERR for r in nacked)
    assert any(lost.reason == "unbound by the SMSC" for _, lost in recorder.lost)
    assert len(recorder.bound) >= 2
    texts = await asyncio.to_thread(accepted_texts, smsc)
    assert set(texts) == {f"msg-{ref}" for ref in range(60)}


async def test_mo_delivery_and_failing_handler(smsc: SmscSimulator) -> None:
    recorder = Recorder(fail_on=b"boom")
    async with SmscClient(config_for(smsc), recorder) as client:
        await asyncio.wait_for(client.wait_bound(), WAIT)
        await asyncio.to_thread(smsc.inject_mo, "4915112345678", "1000", "boom", 0)
        await asyncio.to_thread(smsc.inject_mo, "4915112345678", "1000", "hello", 0)
        await recorder.wait_for(lambda: len(recorder.delivers) >= 2)
        assert [d.pdu.octets("short_message") for d in recorder.delivers] == [b"boom", b"hello"]
        assert client.stats.handler_errors == 1
        assert client.is_bound
    deliveries = await asyncio.to_thread(smsc.deliveries)
    assert [d["resp_status"] for d in deliveries] == [CommandStatus.ESME_RX_T_APPN, 0]


async def test_enquire_link_keeps_the_session_alive(smsc: SmscSimulator) -> None:
    recorder = Recorder()
    async with SmscClient(config_for(smsc, enquire_link_interval=0.05), recorder) as client:
        await asyncio.wait_for(client.wait_bound(), WAIT)
        await asyncio.wait_for(submit_all(client, recorder, 1), WAIT)
        stats = await asyncio.to_thread(
            smsc.wait_for, lambda sim: s if (s := sim.stats())["enquire_links"] >= 3 else None
        )
        assert stats["enquire_links"] >= 3
        assert client.is_bound
        assert recorder.lost == []


async def test_slow_answers_time_out_and_late_answers_are_ignored(
    smsc: SmscSimulator,
) -> None:
    smsc.set_scenario(slow_resp_ms=1300, dlr_delay_ms=0)
    recorder = Recorder()
    config = config_for(smsc, window=3, response_timeout=1.0)
    async with SmscClient(config, recorder) as client:
        await asyncio.wait_for(client.wait_bound(), WAIT)
        for ref in range(3):
            await asyncio.wait_for(client.submit(ref, message(ref)), WAIT)
        await recorder.wait_for(lambda: len(recorder.timeouts) >= 3)
        assert sorted(int(str(t.message_ref)) for t in recorder.timeouts) == [0, 1, 2]
        # The window is free again although the SMSC has not answered yet. This
        # answer comes 0.7 s later, after the three late ones (due 0.3 s from now).
        await asyncio.to_thread(smsc.set_scenario, slow_resp_ms=700)
        await asyncio.wait_for(client.submit(3, message(3)), 1.0)
        await recorder.wait_for(lambda: len(recorder.responses) >= 1)
        assert [r.message_ref for r in recorder.responses] == [3]  # late answers dropped
        assert len(recorder.timeouts) == 3
        assert client.is_bound
    stats = await asyncio.to_thread(smsc.stats)
    assert stats["accepted"] == 4


async def test_tls_through_a_terminating_proxy(
    smsc: SmscSimulator,
    tmp_path: Path,
) -> None:
    """The simulator speaks plain TCP; a local TLS terminator sits in front of it."""
    cert_path, key_path = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def terminate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*smsc.smpp_address)
        for task in (pipe(reader, upstream_writer), pipe(upstream_reader, writer)):
            tasks.add(asyncio.create_task(task))

    proxy = await asyncio.start_server(terminate, "127.0.0.1", 0, ssl=server_context)
    port = proxy.sockets[0].getsockname()[1]
    recorder = Recorder()
    config = config_for(smsc, port=port, tls=True, tls_ca_file=cert_path)
    try:
        async with SmscClient(config, recorder) as client:
            await asyncio.wait_for(submit_all(client, recorder, 10), WAIT)
        assert recorder.lost[-1][1].reason == "unbound"
    finally:
        proxy.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    texts = await asyncio.to_thread(accepted_texts, smsc)
    assert texts == Counter({f"msg-{ref}": 1 for ref in range(10)})


class OneAnswerPerCommit(Recorder):
    """Answers every deliver_sm with the same future, as SmsService does for the
    deliver_sm stored by one group commit."""

    def __init__(self) -> None:
        super().__init__()
        self.commit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_deliver(self, smsc_name: str, event: DeliverSm) -> asyncio.Future[int]:  # type: ignore[override]
        self.delivers.append(event)
        self._poke()
        return self.commit


@pytest.mark.parametrize("outcome", ["stored", "failed"])
async def test_deliver_sm_sharing_one_answer_are_all_answered_with_it(
    smsc: SmscSimulator, outcome: str
) -> None:
    recorder = OneAnswerPerCommit()
    async with SmscClient(config_for(smsc), recorder) as client:
        await asyncio.wait_for(client.wait_bound(), WAIT)
        for text in ("one", "two", "three"):
            await asyncio.to_thread(smsc.inject_mo, "4915112345678", "1000", text, 0)
        await recorder.wait_for(lambda: len(recorder.delivers) == 3)
        assert all(d["resp_status"] is None for d in await asyncio.to_thread(smsc.deliveries))
        if outcome == "stored":
            recorder.commit.set_result(CommandStatus.ESME_ROK)
        else:
            recorder.commit.set_exception(OSError("disk full"))
        deliveries = await asyncio.to_thread(smsc.wait_for, _all_answered)
    expected = CommandStatus.ESME_ROK if outcome == "stored" else CommandStatus.ESME_RX_T_APPN
    assert [d["resp_status"] for d in deliveries] == [expected] * 3
    assert client.stats.handler_errors == (0 if outcome == "stored" else 1)


def _all_answered(sim: SmscSimulator) -> list[dict[str, Any]] | None:
    deliveries = sim.deliveries()
    return deliveries if all(d["resp_status"] is not None for d in deliveries) else None
