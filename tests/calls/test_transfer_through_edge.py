"""Blind transfer on the wire: SIPp caller (A) -> daemon (edge + engine) -> SIPp callee (B),
then A's REFER, routed by the dial plan to a SIPp target (C).

Each SIPp scenario fails on any unexpected message, so passing scenarios
prove the order: A gets 202 and NOTIFYs (100, then the final status), B keeps
its call and ends up talking to C (B gets its BYE only when C hangs up), and
nothing reaches the host named in the Refer-To (a trap): only the user part
is dialled, through the routes. The CDR row tells the same story.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.calls.peers import SippRun, start_sipp, udp_trap
from tests.calls.test_cdr_through_edge import wait_rows
from tests.calls.test_routing_through_edge import running_daemon
from tests.support.daemon import DaemonProcess
from tests.support.ports import free_udp_port

pytestmark = [pytest.mark.interop, pytest.mark.engine]


def _config(callee: int, target: int) -> str:
    """Loopback is the caller's trunk (transfers allowed); 1... goes to B, 2... to C."""
    return f"""
[[trunks]]
name = "caller"
allow = ["127.0.0.0/8"]
allow_transfer = true

[[trunks]]
name = "callee"
host = "127.0.0.1"
port = {callee}
options_interval = 0  # SIPp peers run call scenarios: no OPTIONS probes

[[trunks]]
name = "target"
host = "127.0.0.1"
port = {target}
options_interval = 0

[calls]
no_answer_timeout = 20.0

[[calls.routes]]
prefix = "1"
trunks = ["callee"]
transit = true

[[calls.routes]]
prefix = "2"
trunks = ["target"]
transit = true

[cdr]
write_delay = 0.2
"""


async def _transfer_call(
    daemon: DaemonProcess,
    tmp_path: Path,
    caller_scenario: str,
    refer_to: str,
    peers: list[tuple[str, str, int, tuple[str, ...]]],
    talk_ms: int = 500,
) -> None:
    """Peers (label, scenario, port, args) wait; A calls 1234 and refers; all must pass."""
    runs: list[SippRun] = []
    try:
        for label, scenario, port, args in peers:
            runs.append(
                await start_sipp(label, scenario, tmp_path, port=port, args=("-m", "1", *args))
            )
        caller = await start_sipp(
            "caller",
            caller_scenario,
            tmp_path,
            remote=f"127.0.0.1:{daemon.sip_port('udp')}",
            args=(
                "-s",
                "1234",
                "-m",
                "1",
                "-cid_str",
                "transfer-%u@%s",
                "-d",
                str(talk_ms),
                "-set",
                "rtp_port",
                str(free_udp_port()),
                "-set",
                "refer_to",
                refer_to,
            ),
            timeout=40,
        )
        await caller.finish(timeout=60)
        for run in runs:
            await run.finish(timeout=60)
    finally:
        for run in runs:
            run.kill()


async def _cdr(data_dir: Path) -> dict[str, Any]:
    """The call's CDR row once finished (the writer commits within `write_delay`)."""
    rows = await wait_rows(data_dir, lambda rows: any(_finished(r) for r in rows.values()))
    (row,) = rows.values()
    return row


def _finished(row: dict[str, Any]) -> bool:
    return bool(row["state"] == "finished")


async def test_blind_transfer_connects_the_callee_to_the_routed_target(tmp_path: Path) -> None:
    callee, target = free_udp_port(), free_udp_port()
    config = _config(callee, target)
    async with udp_trap() as (trap, trap_port), running_daemon(tmp_path, config) as daemon:
        await _transfer_call(
            daemon,
            tmp_path,
            "call_uac_transfer.xml",
            f"sip:2345@127.0.0.1:{trap_port}",  # the host is a trap: only "2345" is routed
            [
                ("callee", "call_uas_answer.xml", callee, ()),  # gets its BYE when C leaves
                ("target", "call_uas_hangup.xml", target, ("-d", "1500")),
            ],
        )
        row = await _cdr(daemon.data_dir)
    assert trap.received == []
    assert (row["disposition"], row["cause"], row["ended_by"]) == (
        "answered",
        "target_hangup",
        "target",
    )
    assert (row["trunk"], row["transfer_dialed"], row["transfer_trunk"]) == (
        "callee",
        "2345",
        "target",
    )
    assert row["transfer_target"].startswith("sip:2345@127.0.0.1:")
    assert row["transfer_status"] == 200
    assert row["answered_at"] < row["transferred_at"] < row["ended_at"]
    # C talked 1.5 s before hanging up: at least two started seconds of B<->C.
    assert row["transfer_billable_seconds"] >= 2
    assert row["billable_seconds"] >= row["transfer_billable_seconds"]


async def test_a_caller_that_leaves_after_referring_does_not_end_the_callee(
    tmp_path: Path,
) -> None:
    """A hangs up right after NOTIFY 100; C answers seconds later and talks to B."""
    callee, target = free_udp_port(), free_udp_port()
    async with running_daemon(tmp_path, _config(callee, target)) as daemon:
        await _transfer_call(
            daemon,
            tmp_path,
            "call_uac_transfer_leave.xml",
            "sip:2345@127.0.0.1",
            [
                ("callee", "call_uas_answer.xml", callee, ()),
                ("target", "call_uas_late_answer.xml", target, ("-d", "3000")),
            ],
        )
        row = await _cdr(daemon.data_dir)
    assert (row["cause"], row["transfer_status"]) == ("target_hangup", 200)
    assert row["transfer_billable_seconds"] >= 1


async def test_unroutable_and_malformed_transfers_leave_the_call_as_it_was(
    tmp_path: Path,
) -> None:
    """NOTIFY 404 for a number nothing routes (never dialled: the trap stays silent), one
    routing for a retransmitted REFER, 400 without Refer-To, 603 for Replaces."""
    callee, target = free_udp_port(), free_udp_port()
    config = _config(callee, target)
    async with udp_trap() as (trap, trap_port), running_daemon(tmp_path, config) as daemon:
        await _transfer_call(
            daemon,
            tmp_path,
            "call_uac_refer_refused.xml",
            f"sip:9999@127.0.0.1:{trap_port}",
            [("callee", "call_uas_answer.xml", callee, ())],  # the caller's BYE reaches B
        )
        row = await _cdr(daemon.data_dir)
        requested = [
            line for line in daemon.lines if '"transfer_requested"' in line and "9999" in line
        ]
    assert trap.received == []
    assert len(requested) == 1, requested  # the retransmission got the cached 202
    assert (row["disposition"], row["cause"], row["ended_by"]) == (
        "answered",
        "caller_hangup",
        "caller",
    )
    assert (row["transfer_dialed"], row["transfer_status"], row["transferred_at"]) == (
        "9999",
        404,
        None,
    )
    assert row["transfer_billable_seconds"] == 0
