"""The call path with real peers: SIPp caller -> PJSIP engine (B2BUA) -> SIPp callee.

The caller talks to the engine's UDP port directly (the edge in front is
wired by the daemon, not here). Each test asserts both SIPp scenarios pass
(they fail on any unexpected message, e.g. a 180 that should not exist) and
the call record call control kept.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.calls.registry import CallRecord, CallSettings, CallState, Cause, Disposition
from gateway.calls.routing import PrefixRoute
from media.engine import PjsipEngine
from media.events import Party
from tests.calls.media import CallerMedia
from tests.calls.peers import Gateway, call_through, free_udp_port, running_gateway, start_sipp

pytestmark = [pytest.mark.interop, pytest.mark.engine]


def _route(port: int, prefix: str = "1") -> PrefixRoute:
    return PrefixRoute(prefix, "127.0.0.1", port)


async def _call(
    gw: Gateway,
    tmp_path: Path,
    caller_scenario: str,
    callee_scenario: str | None,
    callee_port: int,
    *,
    dialed: str = "1234",
    caller_args: tuple[str, ...] = (),
    callee_args: tuple[str, ...] = (),
    rtp_port: int | None = None,
) -> CallRecord:
    await call_through(
        gw.target,
        tmp_path,
        callee_port,
        caller_scenario,
        callee_scenario,
        dialed=dialed,
        caller_args=caller_args,
        callee_args=callee_args,
        rtp_port=rtp_port,
    )
    records = await asyncio.wait_for(gw.control.wait_finished(1), 5)
    await asyncio.wait_for(gw.control.wait_idle(), 5)
    assert gw.control.active_calls() == 0
    (record,) = records
    assert record.state is CallState.ENDED
    assert record.dialed == dialed
    assert record.ended_at is not None and record.ended_at >= record.setup_at
    return record


async def test_basic_call_bridges_rtp_both_ways(tmp_path: Path) -> None:
    port = free_udp_port()
    media = await CallerMedia.open()
    try:
        async with running_gateway((_route(port),)) as gw:
            record = await _call(
                gw,
                tmp_path,
                "call_uac_hangup.xml",
                "call_uas_answer.xml",
                port,
                caller_args=("-d", "1500"),
                callee_args=("-rtp_echo",),
                rtp_port=media.port,
            )
    finally:
        media.close()
    assert record.disposition is Disposition.ANSWERED
    assert record.cause is Cause.CALLER_HANGUP
    assert record.ended_by is Party.CALLER
    assert record.caller_status == 200
    assert record.target == f"sip:1234@127.0.0.1:{port}"
    assert record.ringing_at is not None and record.answered_at is not None
    assert record.setup_at <= record.ringing_at <= record.answered_at <= record.ended_at
    assert (record.caller_codec, record.callee_codec) == ("PCMU", "PCMU")
    # The tone went caller -> bridge -> callee (SIPp echo) -> bridge -> caller.
    assert media.engine is not None, "the engine never sent RTP to the caller"
    assert media.loud >= 20, (media.received, media.loud)


async def test_callee_hangs_up(tmp_path: Path) -> None:
    port = free_udp_port()
    async with running_gateway((_route(port),)) as gw:
        record = await _call(
            gw,
            tmp_path,
            "call_uac_remote_bye.xml",
            "call_uas_hangup.xml",
            port,
            callee_args=("-d", "200"),
        )
    assert record.disposition is Disposition.ANSWERED
    assert record.cause is Cause.CALLEE_HANGUP
    assert record.ended_by is Party.CALLEE


async def test_caller_cancel_cancels_callee(tmp_path: Path) -> None:
    port = free_udp_port()
    async with running_gateway((_route(port),)) as gw:
        record = await _call(gw, tmp_path, "call_uac_cancel.xml", "call_uas_ring.xml", port)
    assert record.disposition is Disposition.CANCELLED
    assert record.cause is Cause.CALLER_CANCEL
    assert record.caller_status == 487
    assert record.ringing_at is not None and record.answered_at is None


async def test_callee_busy_gives_caller_486_without_ringing(tmp_path: Path) -> None:
    port = free_udp_port()
    async with running_gateway((_route(port),)) as gw:
        record = await _call(gw, tmp_path, "call_uac_busy.xml", "call_uas_busy.xml", port)
    assert record.disposition is Disposition.BUSY
    assert record.cause is Cause.CALLEE_BUSY
    assert (record.caller_status, record.callee_status) == (486, 486)
    assert record.ringing_at is None


async def test_no_answer_timeout_releases_both_legs(tmp_path: Path) -> None:
    port = free_udp_port()
    settings = CallSettings(no_answer_timeout=0.5)
    async with running_gateway((_route(port),), settings) as gw:
        record = await _call(gw, tmp_path, "call_uac_no_answer.xml", "call_uas_ring.xml", port)
    assert record.disposition is Disposition.NO_ANSWER
    assert record.cause is Cause.NO_ANSWER
    assert record.caller_status == 480
    assert record.ringing_at is not None
    assert record.ended_at is not None
    assert 0.5 <= record.ended_at - record.setup_at < 3


async def test_unknown_number_gets_404(tmp_path: Path) -> None:
    async with running_gateway((_route(free_udp_port(), prefix="1"),)) as gw:
        record = await _call(gw, tmp_path, "call_uac_unknown.xml", None, 0, dialed="999")
    assert record.disposition is Disposition.REJECTED
    assert record.cause is Cause.ROUTE_REFUSED
    assert record.caller_status == 404
    assert record.target == ""


async def test_fault_in_one_call_ends_that_call_only(tmp_path: Path) -> None:
    """A callback raising inside the engine: that caller gets 500, a parallel call goes on."""
    port = free_udp_port()
    with_fault_port = free_udp_port()  # nobody listens: the faulty call never gets further
    routes = (_route(port, "1"), _route(with_fault_port, "666"))
    async with running_gateway(routes) as gw:
        await gw.engine.run(_inject_fault_for(gw.engine, "666"))
        callee = await start_sipp(
            "callee", "call_uas_answer.xml", tmp_path, port=port, args=("-m", "1")
        )
        healthy = await start_sipp(
            "healthy",
            "call_uac_hangup.xml",
            tmp_path,
            remote=gw.target,
            args=("-s", "1234", "-m", "1", "-d", "1500", "-set", "rtp_port", str(free_udp_port())),
        )
        try:
            faulty = await start_sipp(
                "faulty",
                "call_uac_fault.xml",
                tmp_path,
                remote=gw.target,
                args=("-s", "6660", "-m", "1", "-set", "rtp_port", str(free_udp_port())),
            )
            await faulty.finish()
            assert healthy.process.returncode is None, "the healthy call ended with the fault"
            await healthy.finish()
            await callee.finish()
        finally:
            callee.kill()
            healthy.kill()
        records = await asyncio.wait_for(gw.control.wait_finished(2), 5)
    by_number = {r.dialed: r for r in records}
    assert by_number["6660"].caller_status == 500
    assert by_number["6660"].ended_by is Party.GATEWAY
    assert by_number["1234"].disposition is Disposition.ANSWERED
    assert by_number["1234"].cause is Cause.CALLER_HANGUP


def _inject_fault_for(engine: PjsipEngine, prefix: str) -> Any:
    """An engine-thread command: make the callee-leg callback raise for one number."""

    def command(_endpoint: Any) -> None:
        b2bua = engine._b2bua  # the engine's private call half: a test seam, nothing else
        assert b2bua is not None
        original = b2bua.callee_state

        def flaky(bridge: Any, callee: Any) -> None:
            if callee.getInfo().remoteUri.startswith(f"sip:{prefix}"):
                raise RuntimeError("injected fault")
            original(bridge, callee)

        b2bua.callee_state = flaky  # type: ignore[method-assign]

    return command
