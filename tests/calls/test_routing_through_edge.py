"""The dial plan on the wire: SIPp caller -> daemon (edge + engine) -> SIPp trunks.

Each SIPp scenario fails on any unexpected message, so a passing set proves
the order of events: the first trunk got the INVITE and gave up (503, or no
ringing before the attempt timeout and then a CANCEL), the next trunk got
the call and the caller was connected; a trusted trunk saw the identity the
caller withheld, in P-Asserted-Identity only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.calls.peers import SippRun, start_sipp
from tests.support.daemon import DaemonProcess, write_config
from tests.support.ports import free_udp_port

pytestmark = [pytest.mark.interop, pytest.mark.engine]


@asynccontextmanager
async def running_daemon(tmp_path: Path, extra: str) -> AsyncIterator[DaemonProcess]:
    data_dir = tmp_path / "data"
    daemon = DaemonProcess(write_config(tmp_path / "c.toml", data_dir, extra=extra), data_dir)
    try:
        await asyncio.to_thread(daemon.wait_event, "ready", 30)
        yield daemon
    finally:
        daemon.stop()


async def call_through(
    daemon: DaemonProcess,
    tmp_path: Path,
    callees: list[tuple[str, str, int]],
    caller_scenario: str,
    dialed: str,
) -> dict[str, Any]:
    """Callees (label, scenario, port) wait; the caller dials; all must pass. The record."""
    peers: list[SippRun] = []
    try:
        for label, scenario, port in callees:
            peers.append(await start_sipp(label, scenario, tmp_path, port=port, args=("-m", "1")))
        caller = await start_sipp(
            "caller",
            caller_scenario,
            tmp_path,
            remote=f"127.0.0.1:{daemon.sip_port('udp')}",
            args=("-s", dialed, "-m", "1", "-set", "rtp_port", str(free_udp_port())),
        )
        await caller.finish(timeout=60)
        for peer in peers:
            await peer.finish(timeout=60)
        return await asyncio.to_thread(daemon.wait_event, "call_finished", 20)
    finally:
        for peer in peers:
            peer.kill()


def two_trunk_config(first: int, second: int, calls: str = "") -> str:
    """Loopback is an inbound trunk; numbers starting with 1 try trunk `first`, then `second`."""
    return f"""
[[trunks]]
name = "caller"
allow = ["127.0.0.0/8"]

[[trunks]]
name = "first"
host = "127.0.0.1"
port = {first}
options_interval = 0  # SIPp callees run call scenarios: no OPTIONS probes

[[trunks]]
name = "second"
host = "127.0.0.1"
port = {second}
options_interval = 0

[calls]
no_answer_timeout = 20.0
{calls}

[[calls.routes]]
prefix = "1"
trunks = [{{ trunk = "first", priority = 0 }}, {{ trunk = "second", priority = 1 }}]
transit = true
"""


@pytest.mark.parametrize(
    ("first_scenario", "calls"),
    [
        ("call_uas_unavailable.xml", ""),  # 503: the next trunk
        ("call_uas_trying.xml", "attempt_timeout = 1.0"),  # never rings: CANCEL, next trunk
    ],
    ids=["503", "attempt-timeout"],
)
async def test_a_failing_trunk_passes_the_call_to_the_next(
    tmp_path: Path, first_scenario: str, calls: str
) -> None:
    first, second = free_udp_port(), free_udp_port()
    async with running_daemon(tmp_path, two_trunk_config(first, second, calls)) as daemon:
        record = await call_through(
            daemon,
            tmp_path,
            [("first", first_scenario, first), ("second", "call_uas_answer.xml", second)],
            "call_uac_hangup.xml",
            "12025550123",
        )
    assert (record["disposition"], record["trunk"]) == ("answered", "second")
    assert record["callee_e164"] == "+12025550123"


async def test_withheld_caller_id_is_asserted_to_a_trusted_trunk_only(tmp_path: Path) -> None:
    """The caller (a trusted trunk) sends Privacy: id and P-Asserted-Identity; the
    trusted outbound trunk gets an anonymous From and the asserted identity."""
    callee_port = free_udp_port()
    extra = f"""
[[trunks]]
name = "caller"
allow = ["127.0.0.0/8"]
trusted = true

[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = {callee_port}
trusted = true

[[calls.routes]]
prefix = "+1"
trunks = ["carrier"]
transit = true
"""
    async with running_daemon(tmp_path, extra) as daemon:
        record = await call_through(
            daemon,
            tmp_path,
            [("carrier", "call_uas_asserted.xml", callee_port)],
            "call_uac_private.xml",
            "2025550199",
        )
    assert (record["trunk"], record["callee_e164"]) == ("carrier", "+12025550199")


@pytest.mark.parametrize(
    ("dialed", "status"),
    [
        ("12025550123", 403),  # the route has no transit and the caller is a trunk
        ("+4930", 484),  # a started international number, too short
    ],
)
async def test_refusals_on_the_wire(tmp_path: Path, dialed: str, status: int) -> None:
    extra = """
[[trunks]]
name = "caller"
allow = ["127.0.0.0/8"]

[[trunks]]
name = "out"
host = "127.0.0.1"
port = 9

[[calls.routes]]
prefix = "1"
trunks = ["out"]
"""
    async with running_daemon(tmp_path, extra) as daemon:
        record = await call_through(daemon, tmp_path, [], "call_uac_refused.xml", dialed)
    assert (record["disposition"], record["caller_status"]) == ("rejected", status)
