"""The webhook MO channel and the delivery worker against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.store.database import Store
from smpp.mo_delivery import Delivered, Refused, TryAgain
from smpp.mo_webhook import SIGNATURE_HEADER, WebhookChannel, http_outcome, retry_after_seconds
from tests.smpp.mo_support import FAST_RETRIES, add_mo, delivery, running_worker
from tests.smpp.sms_support import open_store, sms_config

SECRET_ENV = "CALLGATE_TEST_WEBHOOK_SECRET"
SECRET = "s3cret-for-tests"
ALICE = "+4930123456"
BOB = "+4930999999"


class Receiver:
    """A webhook endpoint that answers from a script: a status, or "hang" (never answers)."""

    def __init__(self) -> None:
        self.script: dict[str, list[int | str]] = {}
        self.received: list[tuple[str, bytes, str]] = []
        self.release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.path, body, request.headers.get(SIGNATURE_HEADER, "")))
        steps = self.script.get(request.path, [])
        step = steps.pop(0) if steps else 200
        if step == "hang":
            await self.release.wait()
            return web.Response(status=200)
        if step == 429:
            return web.Response(status=429, headers={"Retry-After": "1"})
        assert isinstance(step, int)
        return web.Response(status=step)

    def bodies(self, path: str = "/alice") -> list[dict[str, Any]]:
        return [json.loads(body) for p, body, _ in self.received if p == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/{account}", hook.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    hook.url = f"http://{host}:{port}"
    yield hook
    hook.release.set()
    await runner.cleanup()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    yield


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path)
    yield opened
    await opened.close()


def config(receiver: Receiver, timeout: float = 30.0, **delivery: Any) -> Any:
    owners = [("alice", ALICE), ("bob", BOB)]
    return sms_config(
        numbers=[
            {
                "account": account,
                "numbers": [number],
                "channels": ["store", "webhook"],
                "webhook_url": f"{receiver.url}/{account}",
                "webhook_secret": {"env": SECRET_ENV},
            }
            for account, number in owners
        ],
        mo_delivery={**FAST_RETRIES, "webhook_timeout": timeout, **delivery},
    )


async def deliver_one(
    store: Store, receiver: Receiver, script: list[int | str], timeout: float = 30.0
) -> tuple[list[str], dict[str, Any]]:
    receiver.script["/alice"] = script
    channel = WebhookChannel(timeout)
    try:
        async with running_worker(store, config(receiver, timeout), {"webhook": channel}) as res:
            await add_mo(store, "mo1", ALICE, "alice", ("store", "webhook"))
            results = [(await res.next())[1]]
            while results[-1] == "retry":
                results.append((await res.next())[1])
    finally:
        await channel.close()
    return results, dict(await delivery(store, "mo1", "webhook"))


async def test_200_delivers_a_signed_json_body(store: Store, receiver: Receiver) -> None:
    results, row = await deliver_one(store, receiver, [200])
    assert results == ["delivered"]
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 1, None)
    ((_path, body, sig),) = receiver.received
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sig == f"sha256={expected}"
    document = json.loads(body)
    assert document["received_at"].endswith("Z")
    del document["received_at"]
    assert document == {
        "id": "mo1",
        "account": "alice",
        "from": "+4915112345678",
        "to": ALICE,
        "text": "hello mo1 ✓",
        "smsc": "sim",
    }


async def test_500_is_retried_until_200(store: Store, receiver: Receiver) -> None:
    results, row = await deliver_one(store, receiver, [500, 200])
    assert results == ["retry", "delivered"]
    assert (row["state"], row["attempts"]) == ("delivered", 2)
    first, second = receiver.bodies()
    assert first == second  # the same message, re-sent


async def test_400_fails_without_retry(store: Store, receiver: Receiver) -> None:
    results, row = await deliver_one(store, receiver, [400, 200])
    assert results == ["failed"]
    assert (row["state"], row["attempts"], row["last_error"]) == ("failed", 1, "HTTP 400")
    assert len(receiver.received) == 1


async def test_slow_server_times_out_and_is_retried(store: Store, receiver: Receiver) -> None:
    results, row = await deliver_one(store, receiver, ["hang", 200], timeout=0.5)
    assert results == ["retry", "delivered"]
    assert (row["state"], row["attempts"]) == ("delivered", 2)
    assert len(receiver.bodies()) == 2


async def test_retry_after_is_honoured(store: Store, receiver: Receiver) -> None:
    receiver.script["/alice"] = [429]
    channel = WebhookChannel(30.0)
    try:
        async with running_worker(store, config(receiver), {"webhook": channel}) as results:
            await add_mo(store, "mo1", ALICE, "alice", ("store", "webhook"))
            assert (await results.next())[1] == "retry"
            row = await delivery(store, "mo1", "webhook")
            # The backoff is 0.05 s; the server asked for 1 s.
            assert row["next_attempt_at"] - row["updated_at"] >= 0.9
            assert row["last_error"] == "HTTP 429"
            assert (await results.next())[1] == "delivered"
    finally:
        await channel.close()


async def test_retries_run_out(store: Store, receiver: Receiver) -> None:
    results, row = await deliver_one(store, receiver, [503] * 10)
    assert results == ["retry"] * 4 + ["failed"]
    assert (row["state"], row["attempts"], row["last_error"]) == ("failed", 5, "HTTP 503")


async def test_a_hanging_destination_does_not_block_others(
    store: Store, receiver: Receiver
) -> None:
    receiver.script["/bob"] = ["hang"] * 10
    channel = WebhookChannel(60.0)
    # bob's backlog alone fills a batch: his rows must not hide alice's.
    cfg = config(receiver, 60.0, concurrency=3, per_account_concurrency=1, batch=2)
    try:
        async with running_worker(store, cfg, {"webhook": channel}) as results:
            for n in range(3):
                await add_mo(store, f"bob{n}", BOB, "bob", ("webhook",))
            for n in range(5):
                await add_mo(store, f"alice{n}", ALICE, "alice", ("webhook",))
            assert await results.take(5) == ["delivered"] * 5
            assert sorted(b["id"] for b in receiver.bodies()) == [f"alice{n}" for n in range(5)]
            assert len(receiver.bodies("/bob")) == 1  # one slot at a time for bob
    finally:
        await channel.close()


def test_http_answers_classified() -> None:
    assert http_outcome(204, None, 0.0) == Delivered()
    assert http_outcome(404, None, 0.0) == Refused("HTTP 404")
    assert http_outcome(408, None, 0.0) == TryAgain("HTTP 408")
    assert http_outcome(429, "7", 0.0) == TryAgain("HTTP 429", 7.0)
    assert http_outcome(503, None, 0.0) == TryAgain("HTTP 503")
    assert http_outcome(302, None, 0.0) == TryAgain("HTTP 302")


def test_retry_after_as_date() -> None:
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 GMT", now) == 60.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
