"""SmsWriter's own bookkeeping with a fake repository and a fake clock: commits,
rows, and the time spent in transactions."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from smpp.repository import SmsWriter, WriteBatch


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowRepository:
    """Each transaction takes `cost` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.clock = clock
        self.cost = cost
        self.batches: list[int] = []

    async def apply(self, batch: WriteBatch) -> None:
        self.clock.now += self.cost
        self.batches.append(batch.row_count())


async def test_busy_seconds_add_up_the_transactions() -> None:
    clock = FakeClock()
    repository = SlowRepository(clock, cost=0.25)
    writer = SmsWriter(repository, max_batch=100, clock=clock)  # type: ignore[arg-type]
    writer.start()
    try:
        stored = [
            writer.insert_message({"id": f"m{n}"}, [{"message_id": f"m{n}", "seq": 1}], None)
            for n in range(3)
        ]
        await writer.flush()
        assert all(f.result() for f in stored)
        assert repository.batches == [6]
        assert (writer.batches, writer.rows, writer.busy_seconds) == (1, 6, 0.25)
    finally:
        await writer.close()


class FailingRepository:
    """The first transaction fails as a lost database would; the rest commit."""

    def __init__(self) -> None:
        self.batches: list[WriteBatch] = []

    async def apply(self, batch: WriteBatch) -> None:
        self.batches.append(batch)
        if len(self.batches) == 1:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))


async def test_one_durable_future_per_commit_and_a_failed_commit_fails_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("smpp.repository.WRITE_RETRY_DELAY", 0.0)
    repository = FailingRepository()
    writer = SmsWriter(repository, max_batch=100)  # type: ignore[arg-type]
    writer.start()
    try:
        receipt = writer.durable(dlr_event={"id": "e1"})
        change = writer.durable()  # a receipt stored as a queue change: same commit
        assert change is receipt
        with pytest.raises(OperationalError):
            await receipt
        again = writer.durable()  # the deliver_sm came again: the next commit
        assert again is not receipt
        await again
        assert [len(b.dlr_events) for b in repository.batches] == [1, 0]
    finally:
        await writer.close()
