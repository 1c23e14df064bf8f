"""SmsService against the Node SMSC simulator: encodings, receipts, faults.

Each scenario ends with every message delivered exactly once as the simulator
saw it after de-duplication by (destination, payload) -- the texts are unique
per message -- and with the right state in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store.database import Store
from smpp.encoding import Coding, encode_gsm7, split_message
from smpp.service import SmsService
from smpp.submit_result import Accepted, Rejected, RejectReason
from tests.smpp.sms_support import (
    PASSWORD_ENV,
    WAIT,
    accepted_payloads,
    destination,
    open_store,
    sms_config,
    smsc_config,
    submit_many,
)
from tests.smsc.fixture import smsc  # noqa: F401 - the fixture
from tests.smsc.simulator import SmscSimulator

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch, smsc: SmscSimulator) -> Iterator[None]:  # noqa: F811
    monkeypatch.setenv(PASSWORD_ENV, smsc.password)
    yield


class Harness:
    def __init__(self, sim: SmscSimulator, data_dir: Path) -> None:
        self.sim = sim
        self.data_dir = data_dir
        self.services: list[SmsService] = []
        self.stores: list[Store] = []

    async def service(
        self, smsc_overrides: dict[str, Any] | None = None, **sms_overrides: Any
    ) -> SmsService:
        store = await open_store(self.data_dir)
        self.stores.append(store)
        service = SmsService(
            sms_config(**sms_overrides),
            (smsc_config(self.sim, **(smsc_overrides or {})),),
            store,
        )
        self.services.append(service)
        await service.start()
        return service

    async def close(self) -> None:
        for service in self.services:
            await service.stop()
        for store in self.stores:
            await store.close()


@pytest.fixture
async def harness(smsc: SmscSimulator, tmp_path: Path) -> AsyncIterator[Harness]:  # noqa: F811
    h = Harness(smsc, tmp_path)
    yield h
    await h.close()


async def all_delivered(
    service: SmsService, ids: list[str], sim: SmscSimulator, prefix: str = "msg"
) -> None:
    assert await service.wait_final(ids, WAIT)
    for message_id in ids:
        status = await service.status("alice", message_id)
        assert status is not None and status.state == "delivered", status
    payloads = await asyncio.to_thread(accepted_payloads, sim)
    expected = {(destination(n)[1:], encode_gsm7(f"{prefix} {n}").hex()) for n in range(len(ids))}
    assert set(payloads) == expected  # every message reached the SMSC, nothing else did
    stats = await service.stats("alice")
    assert (stats.delivered, stats.pending, stats.failed) == (len(ids), 0, 0)
    assert stats.success_rate == 1.0


# ---------------------------------------------------------------------- encodings


async def test_payloads_byte_exact(harness: Harness) -> None:
    service = await harness.service()
    gsm = "Price: 5€ [promo] ~ ok"
    ucs2 = "Привет, 世界 😀"
    long_text = "".join(f"{n:03d}{'{' if n % 7 == 0 else ''}" for n in range(120))
    texts = [
        (gsm, destination(1)),
        (ucs2, destination(2)),
        (long_text, destination(3)),
        (long_text, destination(3)),
    ]
    ids = []
    for text, number in texts:
        result = await service.submit("alice", "Callgate", number, text)
        assert isinstance(result, Accepted)
        ids.append(result.message_id)
    assert await service.wait_final(ids, WAIT)
    messages = [
        m for m in await asyncio.to_thread(harness.sim.messages) if m["command_status"] == 0
    ]
    by_dest: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        by_dest.setdefault(m["destination_addr"], []).append(m)
    (one,) = by_dest[destination(1)[1:]]
    assert one["data_coding"] == 0 and bytes.fromhex(one["short_message_hex"]) == encode_gsm7(gsm)
    (two,) = by_dest[destination(2)[1:]]
    assert two["data_coding"] == 8
    assert bytes.fromhex(two["short_message_hex"]) == ucs2.encode("utf-16-be")
    parts = by_dest[destination(3)[1:]]
    total = len(split_message(long_text, Coding.GSM7, "udh8", 0))
    assert len(parts) == 2 * total and total > 1
    refs = sorted({bytes.fromhex(p["short_message_hex"])[3] for p in parts})
    assert len(refs) == 2  # consecutive long messages to one destination: new reference
    for ref in refs:
        expected = [s.short_message for s in split_message(long_text, Coding.GSM7, "udh8", ref)]
        got = [
            bytes.fromhex(p["short_message_hex"])
            for p in parts
            if bytes.fromhex(p["short_message_hex"])[3] == ref
        ]
        assert sorted(got) == sorted(expected)
        assert all(p["esm_class"] & 0x40 for p in parts)
    for message_id in ids:
        status = await service.status("alice", message_id)
        assert status is not None and status.state == "delivered"
    long_status = await service.status("alice", ids[2])
    assert long_status is not None and len(long_status.segments) == total
    assert all(s.dlr_state == "DELIVRD" for s in long_status.segments)


async def test_sar_concatenation(harness: Harness) -> None:
    service = await harness.service({"concatenation": "sar"})
    text = "x" * 200
    result = await service.submit("alice", "+4930123456", destination(5), text)
    assert isinstance(result, Accepted) and result.segments == 2
    assert await service.wait_final([result.message_id], WAIT)
    parts = [m for m in await asyncio.to_thread(harness.sim.messages) if m["command_status"] == 0]
    assert sorted(p["sar_segment_seqnum"] for p in parts) == [1, 2]
    assert {p["sar_total_segments"] for p in parts} == {2}
    assert (
        b"".join(
            bytes.fromhex(p["short_message_hex"])
            for p in sorted(parts, key=lambda p: p["sar_segment_seqnum"])
        )
        == text.encode()
    )
    assert {(p["source_addr_ton"], p["source_addr"]) for p in parts} == {(1, "4930123456")}


# ---------------------------------------------------------------------- receipts and faults

SCENARIOS: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    # name: (simulator flags, SMSC config overrides, messages)
    "hex_ids": ({"id_format": "hex"}, {}, 200),
    "hex_ids_text_only": ({"id_format": "hex", "dlr_id_format": "dec"}, {}, 100),
    "duplicate_out_of_order_dlrs": ({"duplicate_dlrs": True, "out_of_order_dlrs": True}, {}, 200),
    "throttle_burst": ({"throttle_burst": 100, "dlr_delay_ms": 20}, {}, 300),
    "throttle_every": ({"throttle_every": 5, "msgqful_every": 7}, {}, 200),
    "generic_nack_every": ({"generic_nack_every": 9}, {}, 200),
    "drop_after": ({"drop_after": 60, "slow_resp_ms": 20}, {}, 200),
    "slow_resp": ({"slow_resp_ms": 150}, {}, 200),
    "unbind_after": ({"unbind_after": 50}, {}, 200),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_fault_scenario_delivers_everything_once(harness: Harness, name: str) -> None:
    flags, overrides, count = SCENARIOS[name]
    await asyncio.to_thread(harness.sim.set_scenario, **flags)
    service = await harness.service(overrides)
    ids = await submit_many(service, count)
    await all_delivered(service, ids, harness.sim)
    if name == "drop_after":
        assert service.possible_duplicates > 0  # the dropped window was offered again


async def test_receipt_text_without_tlvs_matches_across_bases(harness: Harness) -> None:
    """A receipt whose only id is the text's decimal `id:` while submit_sm_resp was hex."""
    await asyncio.to_thread(harness.sim.set_scenario, id_format="hex", dlr_delay_ms=0)
    service = await harness.service()
    result = await service.submit("alice", "Callgate", destination(1), "hello")
    assert isinstance(result, Accepted)
    await service.drain(WAIT)
    (record,) = await asyncio.to_thread(harness.sim.messages)
    smsc_id = record["message_id"]
    number = int(smsc_id, 16)
    await asyncio.to_thread(
        harness.sim.inject_mo,
        destination(1)[1:],
        "Callgate",
        short_message=f"id:{number:010d} sub:001 dlvrd:001 stat:DELIVRD err:000 text:hello",
        esm_class=0x04,
    )
    assert await service.wait_final([result.message_id], WAIT)
    status = await service.status("alice", result.message_id)
    assert status is not None and status.state == "delivered"
    assert status.segments[0].smsc_message_id == smsc_id


async def test_undeliverable_receipts_fail_the_message(harness: Harness) -> None:
    await asyncio.to_thread(harness.sim.set_scenario, dlr_stat="UNDELIV", dlr_err=11)
    service = await harness.service()
    ids = await submit_many(service, 10)
    assert await service.wait_final(ids, WAIT)
    status = await service.status("alice", ids[0])
    assert status is not None and status.state == "undeliverable"
    assert status.segments[0].dlr_error == "011"
    stats = await service.stats("alice")
    assert (stats.failed, stats.delivered, stats.success_rate) == (10, 0, 0.0)


async def test_smsc_restart_mid_window(harness: Harness) -> None:
    await asyncio.to_thread(harness.sim.set_scenario, slow_resp_ms=30)
    service = await harness.service()
    submitting = asyncio.create_task(submit_many(service, 300))
    await asyncio.to_thread(harness.sim.wait_for_messages, 60)
    await asyncio.to_thread(harness.sim.restart, 300)
    ids = await submitting
    await all_delivered(service, ids, harness.sim)


async def test_refused_bind_then_allowed(harness: Harness) -> None:
    await asyncio.to_thread(harness.sim.set_scenario, refuse_bind=True)
    service = await harness.service()
    ids = await submit_many(service, 50)  # accepted and stored while no SMSC is bound
    await asyncio.to_thread(harness.sim.wait_for, lambda s: s.stats()["bind_failures"] >= 2)
    assert not await service.wait_final(ids, 0.05)
    await asyncio.to_thread(harness.sim.set_scenario, refuse_bind=False)
    await all_delivered(service, ids, harness.sim)


# ---------------------------------------------------------------------- policy


async def test_content_filter_rejection_is_recorded(harness: Harness) -> None:
    service = await harness.service(filter={"keywords": ["casino"]})
    result = await service.submit("alice", "Callgate", destination(1), "Best CASINO in town")
    assert isinstance(result, Rejected) and result.reason is RejectReason.FILTER
    assert result.message_id is not None
    status = await service.status("alice", result.message_id)
    assert status is not None and status.state == "rejected"
    assert "casino" in (status.error or "").lower()
    ok = await service.submit("alice", "Callgate", destination(2), "fine")
    assert isinstance(ok, Accepted)
    assert await service.wait_final([ok.message_id], WAIT)
    assert len(await asyncio.to_thread(harness.sim.messages)) == 1


async def test_quota_and_rate_are_enforced_and_survive_a_restart(harness: Harness) -> None:
    limits = {
        "accounts": [
            {"account": "alice", "daily_quota": 5},
            {"account": "bob", "rate": 0.001, "burst": 2},
        ]
    }
    service = await harness.service(**limits)
    results = [
        await service.submit("alice", "Callgate", destination(n), f"q {n}") for n in range(7)
    ]
    assert [type(r).__name__ for r in results] == ["Accepted"] * 5 + ["Rejected"] * 2
    assert isinstance(results[5], Rejected) and results[5].reason is RejectReason.QUOTA
    assert results[5].command_status == 0x58
    bob = [await service.submit("bob", "Callgate", destination(n), f"b {n}") for n in range(3)]
    assert isinstance(bob[2], Rejected) and bob[2].reason is RejectReason.THROTTLED
    await service.stop()
    again = await harness.service(**limits)
    late = await again.submit("alice", "Callgate", destination(9), "late")
    assert isinstance(late, Rejected) and late.reason is RejectReason.QUOTA


async def test_idempotency_key(harness: Harness) -> None:
    service = await harness.service()
    first, second = await asyncio.gather(
        service.submit("alice", "Callgate", destination(1), "once", idempotency_key="k1"),
        service.submit("alice", "Callgate", destination(1), "once", idempotency_key="k1"),
    )
    assert isinstance(first, Accepted) and isinstance(second, Accepted)
    assert first.message_id == second.message_id and second.duplicate
    third = await service.submit("alice", "Callgate", destination(1), "once", idempotency_key="k1")
    assert isinstance(third, Accepted) and third.message_id == first.message_id
    other = await service.submit("bob", "Callgate", destination(1), "once", idempotency_key="k1")
    assert isinstance(other, Accepted) and other.message_id != first.message_id
    assert await service.wait_final([first.message_id, other.message_id], WAIT)
    assert len(await asyncio.to_thread(harness.sim.messages)) == 2


async def test_bad_number_and_no_route(harness: Harness) -> None:
    service = await harness.service(routes=[{"prefix": "+49", "smsc": ["sim"]}])
    bad = await service.submit("alice", "Callgate", "12", "x")
    assert isinstance(bad, Rejected) and bad.reason is RejectReason.BAD_NUMBER
    nowhere = await service.submit("alice", "Callgate", "+14155550100", "x")
    assert isinstance(nowhere, Rejected) and nowhere.reason is RejectReason.NO_ROUTE


async def test_mo_stored_and_routed_to_its_account(harness: Harness) -> None:
    from sqlalchemy import select

    from smpp.schema import sms_mo, sms_mo_deliveries

    await harness.service(
        numbers=[
            {"account": "alice", "numbers": ["+4930123456"], "channels": ["store", "mqtt"]},
        ]
    )
    await asyncio.to_thread(
        harness.sim.inject_mo,
        "4915112345678",
        "4930123456",
        short_message="Grüße {ok}",
        data_coding=8,
    )
    await asyncio.to_thread(
        harness.sim.inject_mo, "4915112345678", "4940999999", short_message="nobody's"
    )
    deliveries = await asyncio.to_thread(
        harness.sim.wait_for,
        lambda s: (
            d
            if len(d := s.deliveries()) == 2 and all(x["resp_status"] is not None for x in d)
            else None
        ),
    )
    assert [d["resp_status"] for d in deliveries] == [0, 0]  # acked only once stored
    engine = harness.stores[-1].engine
    async with engine.connect() as conn:
        rows = (await conn.execute(select(sms_mo).order_by(sms_mo.c.received_at))).mappings().all()
        channels = (await conn.execute(select(sms_mo_deliveries))).mappings().all()
    assert [(r["account"], r["destination"], r["text"]) for r in rows] == [
        ("alice", "+4930123456", "Grüße {ok}"),
        (None, "+4940999999", "nobody's"),
    ]
    assert rows[0]["source"] == "+4915112345678"
    assert sorted((c["channel"], c["state"]) for c in channels) == [
        ("mqtt", "pending"),
        ("store", "delivered"),
    ]


async def test_an_unmatched_receipt_has_its_own_row_and_survives_a_restart(
    harness: Harness,
) -> None:
    """A receipt that matches no segment is stored as an event (acked only then) and
    kept again after a restart; a matched one lives in its segment's row only."""
    from sqlalchemy import select

    from smpp.schema import sms_dlr_events, sms_segments

    service = await harness.service()
    sent = await service.submit("alice", "Callgate", destination(1), "matched")
    assert isinstance(sent, Accepted)
    assert await service.wait_final([sent.message_id], WAIT)
    stray = "id:9999999999 sub:001 dlvrd:001 stat:DELIVRD err:000 text:nobody"
    await asyncio.to_thread(
        harness.sim.inject_mo, destination(2)[1:], "Callgate", short_message=stray, esm_class=0x04
    )
    deliveries = await asyncio.to_thread(
        harness.sim.wait_for,
        lambda s: d if len(d := s.deliveries()) == 2 and d[-1]["resp_status"] is not None else None,
    )
    assert [d["resp_status"] for d in deliveries] == [0, 0]
    engine = harness.stores[-1].engine
    async with engine.connect() as conn:
        events = (await conn.execute(select(sms_dlr_events))).mappings().all()
        (segment,) = (await conn.execute(select(sms_segments))).mappings().all()
    assert [(e["receipted_id"], e["raw"], e["message_id"]) for e in events] == [
        ("9999999999", stray, None)
    ]
    assert segment["dlr_state"] == "DELIVRD"
    assert segment["dlr_raw"].startswith(f"id:{segment['smsc_message_id']} ")
    await service.stop()
    again = await harness.service()
    assert again.orphan_receipts == 1
