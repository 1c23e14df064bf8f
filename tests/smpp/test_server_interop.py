"""The SMPP server against a real, independent ESME (smpplib's blocking client,
run in a thread) with the real SmsService behind it, sending to the Node SMSC
simulator: a customer's submit travels ESME -> Callgate -> SMSC.

Hostile connections (oversized command_length, slowloris, unknown commands)
are raw asyncio sockets; each test checks that a well-behaved ESME keeps working
next to them.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import smpplib.exceptions

from gateway.config.secrets import SecretRef
from gateway.store.database import Store
from smpp.config import SmppServerConfig, SmppServerUserConfig
from smpp.pdu import PduFramer, decode_pdu
from smpp.server import SmppServer
from smpp.service import SmsService
from tests.smpp.sms_support import PASSWORD_ENV, open_store, sms_config, smsc_config
from tests.smsc.blocking_esme import BlockingEsme
from tests.smsc.fixture import smsc  # noqa: F401 - the fixture
from tests.smsc.simulator import SmscSimulator

pytestmark = pytest.mark.interop

ESME_PASSWORD_ENV = "CALLGATE_TEST_ESME_PASSWORD"
ESME_PASSWORD = "pw1234"
BIND_TIMEOUT = 0.5
WAIT = 10.0


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch, smsc: SmscSimulator) -> Iterator[None]:  # noqa: F811
    monkeypatch.setenv(PASSWORD_ENV, smsc.password)
    monkeypatch.setenv(ESME_PASSWORD_ENV, ESME_PASSWORD)
    yield


@dataclass
class Gateway:
    port: int
    server: SmppServer
    service: SmsService
    sim: SmscSimulator

    def esme(self) -> BlockingEsme:
        return BlockingEsme("127.0.0.1", self.port)


@pytest.fixture
async def gateway(smsc: SmscSimulator, tmp_path: Path) -> AsyncIterator[Gateway]:  # noqa: F811
    store: Store = await open_store(tmp_path)
    service = SmsService(sms_config(), (smsc_config(smsc),), store)
    await service.start()
    config = SmppServerConfig(
        host="127.0.0.1",
        port=0,
        bind_timeout=BIND_TIMEOUT,
        shutdown_grace=1.0,
        users=(
            SmppServerUserConfig(
                system_id="esme1", account="alice", password=SecretRef(env=ESME_PASSWORD_ENV)
            ),
        ),
    )
    server = SmppServer(config, service)
    port = await server.start()
    try:
        yield Gateway(port, server, service, smsc)
    finally:
        await server.stop()
        await service.stop()
        await store.close()


def bind_and_submit(esme: BlockingEsme, destination: str, text: bytes) -> Any:
    esme.bind("transceiver", system_id="esme1", password=ESME_PASSWORD)
    esme.submit(destination_addr=destination, short_message=text)
    return esme.expect("submit_sm_resp")


def submit(esme: BlockingEsme, destination: str, text: bytes) -> Any:
    esme.submit(destination_addr=destination, short_message=text)
    return esme.expect("submit_sm_resp")


async def read_until_eof(reader: asyncio.StreamReader, timeout: float = WAIT) -> list[Any]:
    async with asyncio.timeout(timeout):
        data = await reader.read()
    return [decode_pdu(frame) for frame in PduFramer().feed(data)]


async def test_bad_credentials_are_refused(gateway: Gateway) -> None:
    def bind_wrong() -> int:
        with gateway.esme() as esme:
            try:
                esme.bind("transmitter", system_id="esme1", password="wrong")
            except smpplib.exceptions.PDUError as error:
                return int(error.args[1])
            return 0

    assert await asyncio.to_thread(bind_wrong) == 0x0D
    assert gateway.server.stats.bind_failures == 1


async def test_submit_reaches_the_smsc(gateway: Gateway) -> None:
    def run() -> Any:
        with gateway.esme() as esme:
            return bind_and_submit(esme, "+4915112000001", b"hello via server")

    resp = await asyncio.to_thread(run)
    assert resp.status == 0
    assert resp.message_id
    messages = await asyncio.to_thread(gateway.sim.wait_for_messages, 1, WAIT)
    assert messages[0]["destination_addr"].endswith("4915112000001")
    assert bytes.fromhex(messages[0]["short_message_hex"]) == b"hello via server"


async def test_rejection_status_reaches_the_esme(gateway: Gateway) -> None:
    def run() -> Any:
        with gateway.esme() as esme:
            return bind_and_submit(esme, "not-a-number", b"x")

    resp = await asyncio.to_thread(run)
    assert resp.status == 0x0B  # ESME_RINVDSTADR from the service's BAD_NUMBER


async def test_oversized_length_closes_only_that_connection(gateway: Gateway) -> None:
    with gateway.esme() as good:
        await asyncio.to_thread(bind_and_submit, good, "+4915112000002", b"before")
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(struct.pack(">LLLL", 70_000, 0x00000004, 0, 5) + b"\0" * 100)
        answers = await read_until_eof(reader)
        writer.close()
        assert [(a.command, a.status) for a in answers] == [("generic_nack", 0x02)]
        resp = await asyncio.to_thread(submit, good, "+4915112000003", b"after")
        assert resp.status == 0
    await asyncio.to_thread(gateway.sim.wait_for_messages, 2, WAIT)


async def test_slowloris_is_closed_after_bind_timeout(gateway: Gateway) -> None:
    with gateway.esme() as good:
        await asyncio.to_thread(good.bind, "transceiver", system_id="esme1", password=ESME_PASSWORD)
        started = time.monotonic()
        silent = await asyncio.open_connection("127.0.0.1", gateway.port)
        partial = await asyncio.open_connection("127.0.0.1", gateway.port)
        partial[1].write(b"\x00\x00\x00\x2f\x00\x00")
        results = await asyncio.gather(read_until_eof(silent[0]), read_until_eof(partial[0]))
        elapsed = time.monotonic() - started
        assert list(results) == [[], []]
        assert BIND_TIMEOUT * 0.9 <= elapsed < WAIT
        for _, writer in (silent, partial):
            writer.close()
        resp = await asyncio.to_thread(submit, good, "+4915112000004", b"still here")
        assert resp.status == 0


async def test_unknown_command_gets_generic_nack(gateway: Gateway) -> None:
    with gateway.esme() as esme:
        await asyncio.to_thread(esme.bind, "transceiver", system_id="esme1", password=ESME_PASSWORD)
        esme.send_raw(struct.pack(">LLLL", 16, 0x00000999, 0, 4242))
        nack = await asyncio.to_thread(esme.expect, "generic_nack")
        assert (nack.sequence, nack.status) == (4242, 0x03)
        resp = await asyncio.to_thread(submit, esme, "+4915112000005", b"after nack")
        assert resp.status == 0
