"""Runs an SmsService in its own process for the crash test (killed with SIGKILL).

    python -m tests.smpp.sms_runner DATA_DIR SMPP_PORT COUNT

Submits COUNT messages ("crash <n>" to destination(n)), printing
`accepted <n> <message id>` once each is stored, then waits until every one is
final and prints `done`. The SMSC password comes from CALLGATE_TEST_SMSC_PASSWORD.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import structlog

from smpp.service import SmsService
from smpp.submit_result import Accepted
from tests.smpp.sms_support import (
    PASSWORD_ENV,
    destination,
    open_store,
    sms_config,
    smsc_config,
)
from tests.smsc.simulator import SmscSimulator

CONCURRENCY = 20
ROOT = Path(__file__).resolve().parents[2]


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


def run_until_killed(
    smpp_port: int, data_dir: Path, count: int, kill_after: int, password: str
) -> tuple[list[str], int]:
    """Start the runner, SIGKILL it after `kill_after` accepted lines.

    Returns the message ids it reported and its exit code (-SIGKILL when the
    kill, not an earlier end, stopped it).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.smpp.sms_runner", str(data_dir), str(smpp_port), str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, PASSWORD_ENV: password},
    )
    ids: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("accepted "):
                ids.append(line.split()[2])
                if len(ids) >= kill_after:
                    break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    return ids, process.returncode


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    asyncio.run(run(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))


if __name__ == "__main__":
    main()
