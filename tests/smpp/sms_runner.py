"""Runs an SmsService in its own process for the crash test (killed with SIGKILL).

    python -m tests.smpp.sms_runner DATA_DIR SMPP_PORT COUNT

Submits COUNT messages ("crash <n>" to destination(n)), printing
`accepted <n> <message id>` once each is stored, then waits until every one is
final and prints `done`. The SMSC password comes from CALLGATE_TEST_SMSC_PASSWORD.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import structlog

from smpp.service import SmsService
from smpp.submit_result import Accepted
from tests.smpp.sms_support import destination, open_store, sms_config, smsc_config
from tests.smsc.simulator import SmscSimulator

CONCURRENCY = 20


async def run(data_dir: Path, port: int, count: int) -> None:
    sim = SmscSimulator()
    sim._smpp_port = port
    store = await open_store(data_dir)
    service = SmsService(sms_config(), (smsc_config(sim),), store)
    await service.start()
    ids: list[str] = []

    async def one(n: int) -> None:
        result = await service.submit("alice", "Callgate", destination(n), f"crash {n}")
        assert isinstance(result, Accepted), result
        ids.append(result.message_id)
        print(f"accepted {n} {result.message_id}", flush=True)

    for start in range(0, count, CONCURRENCY):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + CONCURRENCY))))
    await service.wait_final(ids, 120)
    print("done", flush=True)
    await service.stop()
    await store.close()


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    asyncio.run(run(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))


if __name__ == "__main__":
    main()
