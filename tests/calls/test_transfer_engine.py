"""Blind transfer in the engine with call control, no edge: the orders the edge cannot force.

The caller's BYE may reach the engine before call control's transfer command
(a blind-transfer phone hangs up right after the 202). The edge marks that
BYE; here SIPp sends the marked BYE itself and the transfer is asked for
only once the caller is gone, so the command surely comes second.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.calls.registry import Cause, Disposition
from gateway.sip.refer import TransferRequest, TransferVerdict
from media.events import Party
from tests.calls.peers import (
    caller_args,
    loopback_plan,
    running_gateway,
    sipp_call,
    start_sipp,
    udp_trap,
)
from tests.support.ports import free_udp_port

pytestmark = [pytest.mark.interop, pytest.mark.engine]


def everyone(_account: str, _trunk: str) -> bool:
    return True


async def test_a_refer_that_reaches_the_engine_is_declined_and_never_dialled(
    tmp_path: Path,
) -> None:
    """Without the edge (or from the callee's side) a REFER reaches pjsua: 603, because
    pjsua would dial the Refer-To itself, a target that routing never saw."""
    port = free_udp_port()
    plan = loopback_plan(("1", (port,)))
    async with udp_trap() as (trap, trap_port), running_gateway(plan, may_transfer=everyone) as gw:
        record = await sipp_call(
            gw,
            tmp_path,
            "call_uac_refer.xml",
            "call_uas_answer.xml",
            port,
            caller_args=("-d", "1000", "-set", "refer_to", f"sip:9999@127.0.0.1:{trap_port}"),
        )
    assert trap.received == []
    assert (record.disposition, record.cause, record.transfer) == (
        Disposition.ANSWERED,
        Cause.CALLER_HANGUP,
        None,
    )


async def test_a_marked_bye_before_the_transfer_command_keeps_the_callee(tmp_path: Path) -> None:
    callee, target = free_udp_port(), free_udp_port()
    plan = loopback_plan(("1", (callee,)), ("2", (target,)))
    async with running_gateway(plan, may_transfer=everyone) as gw:
        b = await start_sipp(
            "callee", "call_uas_answer.xml", tmp_path, port=callee, args=("-m", "1")
        )
        c = await start_sipp(
            "target", "call_uas_hangup.xml", tmp_path, port=target, args=("-m", "1", "-d", "1000")
        )
        try:
            a = await start_sipp(
                "caller",
                "call_uac_transfer_bye.xml",
                tmp_path,
                remote=gw.target,
                args=caller_args("1234", free_udp_port(), pause_ms=300),
            )
            await a.finish()
            (record,) = gw.control.registry.live.values()  # the caller left, the call did not
            verdict = gw.control.transfer(TransferRequest(record.sip_call_id, "sip:2345@x"))
            assert verdict == TransferVerdict(202, "Accepted", 1)
            await b.finish(timeout=60)  # its BYE comes once the target hangs up
            await c.finish(timeout=60)
        finally:
            b.kill()
            c.kill()
        (record,) = await asyncio.wait_for(gw.control.wait_finished(1), 20)
    assert (record.disposition, record.cause, record.ended_by) == (
        Disposition.ANSWERED,
        Cause.TARGET_HANGUP,
        Party.TARGET,
    )
    assert record.transfer is not None and record.transfer.status == 200
    assert record.transfer.trunk == f"t{target}"
