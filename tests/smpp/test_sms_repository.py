"""SmsRepository's batched row updates on a real SQLite store: the values of an
update are bound by the statement's own parameter order (SQLAlchemy writes SET
in the table's column order, the queue sets columns in the order things happen)."""

from __future__ import annotations

from pathlib import Path

from gateway.config.models import StoreConfig
from gateway.store.database import Store
from smpp.repository import SmsRepository, WriteBatch

NOW = 1_700_000_000.0


def _message(message_id: str) -> dict[str, object]:
    return {
        "id": message_id,
        "account": "alice",
        "idempotency_key": None,
        "source": "Callgate",
        "destination": "+491511234567",
        "text": "hello",
        "data_coding": 0,
        "segments": 1,
        "concat_method": "udh",
        "concat_ref": 0,
        "state": "queued",
        "attempts": 0,
        "expires_at": NOW + 3600,
        "created_at": NOW,
        "updated_at": NOW,
    }


async def test_updates_land_in_their_columns_whatever_order_they_were_set_in(
    tmp_path: Path,
) -> None:
    store = await Store.open(StoreConfig(), tmp_path)
    try:
        repository = SmsRepository(store)
        await repository.apply(
            WriteBatch(
                messages=[_message("m1"), _message("m2")],
                segments=[
                    {"message_id": mid, "seq": 1, "submit_status": "pending"}
                    for mid in ("m1", "m2")
                ],
            )
        )
        # Set in an order unlike the table's (updated_at is the last column but one,
        # state the 11th); one message with fewer columns than the other.
        batch = WriteBatch()
        batch.message_updates["m1"] = {
            "updated_at": NOW + 2,
            "state": "submitted",
            "smsc": "sim",
            "attempts": 1,
            "submitted_at": NOW + 1,
        }
        batch.message_updates["m2"] = {"error": "throttled", "state": "queued", "attempts": 2}
        batch.segment_updates[("m1", 1)] = {
            "submitted_at": NOW + 1,
            "smsc_message_id": "77",
            "submit_status": "accepted",
            "smsc": "sim",
        }
        await repository.apply(batch)
        first = await repository.message_status("alice", "m1")
        second = await repository.message_status("alice", "m2")
    finally:
        await store.close()
    assert first is not None and second is not None
    assert (first.state, first.attempts, first.smsc, first.submitted_at) == (
        "submitted",
        1,
        "sim",
        NOW + 1,
    )
    assert [(s.submit_status, s.smsc, s.smsc_message_id) for s in first.segments] == [
        ("accepted", "sim", "77")
    ]
    assert (second.state, second.attempts, second.error, second.smsc) == (
        "queued",
        2,
        "throttled",
        None,
    )
    assert [s.submit_status for s in second.segments] == ["pending"]
