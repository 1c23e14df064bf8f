"""Baseline for the SMS benchmark: Kannel (Debian's `kannel`) against the same SMSC simulator.

bearerbox + smsbox with a file store, submitting over HTTP `sendsms` with a
DLR URL; the figure is messages per second from the first submit to the
last DLR received. Run alone: `python bench/kannel_baseline.py --messages 5000`.
Needs Debian's `kannel` package (`apt-get install kannel`); nothing in
`make test` depends on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.smsc.simulator import SmscSimulator  # noqa: E402
from tests.support.ports import free_tcp_port  # noqa: E402

CONFIG = """
group = core
admin-port = {admin_port}
admin-password = bench
smsbox-port = {smsbox_port}
log-file = "{dir}/bearerbox.log"
log-level = 2
store-type = file
store-location = "{dir}/kannel.store"
dlr-storage = internal
box-allow-ip = "127.0.0.1"

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smpp_port}
transceiver-mode = true
smsc-username = "{system_id}"
smsc-password = "{password}"
system-type = ""
max-pending-submits = {window}
msg-id-type = 0x00
enquire-link-interval = 30

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {http_port}
log-file = "{dir}/smsbox.log"
log-level = 2

group = sendsms-user
username = bench
password = bench
max-messages = 10
concatenation = true
"""


@dataclass(frozen=True)
class KannelResult:
    messages: int
    accepted: int
    dlrs: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.dlrs / self.seconds if self.seconds else 0.0


async def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise TimeoutError(f"nothing listens on {port} after {timeout} s")


async def _run(messages: int, concurrency: int, window: int, timeout: float) -> KannelResult:
    bearerbox = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
    smsbox = shutil.which("smsbox") or "/usr/sbin/smsbox"
    if not Path(bearerbox).exists():
        raise SystemExit("kannel is not installed: apt-get install kannel")
    dlrs_done = asyncio.Event()
    dlr_count = 0

    async def on_dlr(_request: web.Request) -> web.Response:
        nonlocal dlr_count
        dlr_count += 1
        if dlr_count >= messages:
            dlrs_done.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/dlr", on_dlr)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    dlr_port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", dlr_port).start()

    with tempfile.TemporaryDirectory() as tmp, SmscSimulator().start(dlr_delay_ms=10) as sim:
        ports = {
            "admin_port": free_tcp_port(),
            "smsbox_port": free_tcp_port(),
            "http_port": free_tcp_port(),
        }
        conf = Path(tmp) / "kannel.conf"
        conf.write_text(
            CONFIG.format(
                dir=tmp,
                smpp_port=sim.smpp_port,
                system_id=sim.system_id,
                password=sim.password,
                window=window,
                **ports,
            )
        )
        boxes = [
            subprocess.Popen(
                [bearerbox, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        ]
        try:
            await _wait_port(ports["smsbox_port"], 15)
            boxes.append(
                subprocess.Popen(
                    [smsbox, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            await _wait_port(ports["http_port"], 15)
            await asyncio.to_thread(sim.wait_for, lambda s: s.stats()["binds"] >= 1, 15, 0.1)
            accepted = 0
            base = f"http://127.0.0.1:{ports['http_port']}/cgi-bin/sendsms"
            dlr_url = f"http://127.0.0.1:{dlr_port}/dlr?s=%d"
            queue: asyncio.Queue[int] = asyncio.Queue()
            for number in range(messages):
                queue.put_nowait(number)
            started = time.monotonic()
            async with ClientSession(
                connector=TCPConnector(limit=concurrency), timeout=ClientTimeout(total=30)
            ) as http:

                async def worker() -> None:
                    nonlocal accepted
                    while not queue.empty():
                        number = queue.get_nowait()
                        params = {
                            "username": "bench",
                            "password": "bench",
                            "from": "1000",
                            "to": f"4930{number:07d}",
                            "text": f"bench {number}",
                            "dlr-mask": "1",
                            "dlr-url": dlr_url,
                        }
                        async with http.get(base, params=params) as response:
                            if response.status in (200, 202):
                                accepted += 1

                await asyncio.gather(*(worker() for _ in range(concurrency)))
            # A shortfall is reported as fewer DLRs, not as an error.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dlrs_done.wait(), timeout)
            seconds = time.monotonic() - started
        finally:
            for box in reversed(boxes):
                box.terminate()
            for box in boxes:
                try:
                    box.wait(10)
                except subprocess.TimeoutExpired:
                    box.kill()
            await runner.cleanup()
    return KannelResult(messages, accepted, dlr_count, seconds)


def measure(
    messages: int = 5000, concurrency: int = 50, window: int = 100, timeout: float = 120.0
) -> KannelResult:
    """Run Kannel end to end against a fresh simulator; bounded by `timeout`."""
    return asyncio.run(_run(messages, concurrency, window, timeout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    result = measure(args.messages, args.concurrency, args.window)
    print(
        f"kannel 1.4.5: {result.accepted}/{result.messages} accepted, {result.dlrs} DLRs "
        f"in {result.seconds:.2f} s = {result.rate:,.0f} msg/s end to end with DLRs"
    )


if __name__ == "__main__":
    main()
