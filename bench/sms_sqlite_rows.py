"""SQLite's own cost per SMS row write: the writer's six statements of a message's life.

The store migrated as the daemon migrates it (SQLite, WAL, synchronous=NORMAL,
foreign keys on), then each statement with plain `sqlite3.executemany` in
batches of --batch rows per transaction (about one commit's worth in
`bench/sms_service.py`), no SQLAlchemy, no aiosqlite, no event loop: what the
database thread cannot avoid. With --variant no-state-indexes the same run
alternates with a copy of the store whose two state indexes on sms_messages
are replaced by one partial index on unfinished messages (`done_at IS NULL`),
to see what the indexes cost per message.

    .venv/bin/python bench/sms_sqlite_rows.py [--messages 20000] [--rounds 3]
        [--variant no-state-indexes]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config.models import StoreConfig
from gateway.store.database import Store

NOW = 1_700_000_000.0
PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
VARIANTS = {
    "no-state-indexes": (
        "DROP INDEX ix_sms_messages_account_state",
        "DROP INDEX ix_sms_messages_state",
        "CREATE INDEX ix_sms_messages_unfinished ON sms_messages (id) WHERE done_at IS NULL",
    ),
}
Statement = tuple[str, str, Callable[[int, str], tuple[Any, ...]]]
STATEMENTS: Sequence[Statement] = (
    (
        "insert message",
        "INSERT INTO sms_messages (id, account, idempotency_key, source, destination, text,"
        " data_coding, segments, concat_method, concat_ref, state, attempts, next_attempt_at,"
        " scheduled_at, expires_at, smsc, command_status, error, created_at, updated_at,"
        " submitted_at, done_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        lambda n, mid: (
            *(mid, "bench", None, "Callgate", f"+4915112{n:06d}", f"bench message {n}"),
            *(0, 1, "udh", 0, "queued", 0, None, None, NOW + 86_400, None, None, None),
            *(NOW, NOW, None, None),
        ),
    ),
    (
        "insert segment",
        "INSERT INTO sms_segments (message_id, seq, submit_status, smsc, smsc_message_id,"
        " command_status, submitted_at, dlr_state, dlr_error, dlr_at, dlr_raw)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        lambda n, mid: (mid, 1, "pending", None, None, None, None, None, None, None, None),
    ),
    (
        "message submitted",
        "UPDATE sms_messages SET state=?, attempts=?, smsc=?, submitted_at=?,"
        " next_attempt_at=?, updated_at=? WHERE id=?",
        lambda n, mid: ("submitted", 1, "bench", NOW, None, NOW, mid),
    ),
    (
        "segment accepted",
        "UPDATE sms_segments SET submit_status=?, smsc=?, smsc_message_id=?, command_status=?,"
        " submitted_at=? WHERE message_id=? AND seq=?",
        lambda n, mid: ("accepted", "bench", str(1_000_000 + n), 0, NOW, mid, 1),
    ),
    (
        "segment receipt",
        "UPDATE sms_segments SET dlr_state=?, dlr_error=?, dlr_at=?, dlr_raw=?"
        " WHERE message_id=? AND seq=?",
        lambda n, mid: ("DELIVRD", "000", NOW, f"id:{n} sub:001 stat:DELIVRD err:000", mid, 1),
    ),
    (
        "message delivered",
        "UPDATE sms_messages SET state=?, done_at=?, next_attempt_at=?, updated_at=? WHERE id=?",
        lambda n, mid: ("delivered", NOW, None, NOW, mid),
    ),
)


def migrated_store(into: Path) -> Path:
    async def migrate() -> None:
        store = await Store.open(StoreConfig(), into)
        await store.close()

    asyncio.run(migrate())
    return next(into.glob("*.db"))


def one_run(template: Path, variant: Sequence[str], messages: int, batch: int) -> dict[str, float]:
    """Microseconds per row for each statement, on a fresh copy of the store."""
    with tempfile.TemporaryDirectory(prefix="sms-sqlite-") as scratch:
        path = Path(scratch) / template.name
        shutil.copy(template, path)
        conn = sqlite3.connect(path, isolation_level=None)
        for pragma in PRAGMAS:
            conn.execute("PRAGMA " + pragma)
        for statement in variant:
            conn.execute(statement)
        ids = [f"{1_700_000_000_000 + n:011x}{n * 7919:012x}" for n in range(messages)]
        costs: dict[str, float] = {}
        for name, sql, row in STATEMENTS:
            rows = [row(n, mid) for n, mid in enumerate(ids)]
            started = time.perf_counter()
            for first in range(0, messages, batch):
                conn.execute("BEGIN")
                conn.executemany(sql, rows[first : first + batch])
                conn.execute("COMMIT")
            costs[name] = (time.perf_counter() - started) / messages * 1e6
        conn.close()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    args = parser.parse_args()
    trees: dict[str, Sequence[str]] = {"schema as migrated": ()}
    if args.variant:
        trees[args.variant] = VARIANTS[args.variant]
    results: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    with tempfile.TemporaryDirectory(prefix="sms-sqlite-store-") as data_dir:
        template = migrated_store(Path(data_dir))
        for _ in range(args.rounds):
            for label, variant in trees.items():
                results[label].append(one_run(template, variant, args.messages, args.batch))
    print(
        f"SQLite alone, {args.messages} messages, {args.batch} rows per transaction,"
        f" {args.rounds} alternating rounds; median us per row (per round)"
    )
    for label, runs in results.items():
        print(f"-- {label}")
        for name, _, _ in STATEMENTS:
            per_round = [run[name] for run in runs]
            rounds = ", ".join(f"{cost:.1f}" for cost in per_round)
            print(f"   {name:18s} {statistics.median(per_round):5.1f}  ({rounds})")
        totals = [sum(run.values()) for run in runs]
        rounds = ", ".join(f"{total:.0f}" for total in totals)
        print(f"   {'per message':18s} {statistics.median(totals):5.1f}  ({rounds})")


if __name__ == "__main__":
    main()
