"""SmsWriter's own bookkeeping with a fake repository and a fake clock: commits,
rows, and the time spent in transactions."""

from __future__ import annotations

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
