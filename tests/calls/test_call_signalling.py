"""In-call signalling with real peers: Q.850 Reason passed through, re-INVITEs, bad SDP.

pjsua2 far ends (tests/support/pjua.py) on both sides of the engine; each
reports the SIP messages it received, so a test sees the headers on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.calls.registry import Cause, Disposition
from media.engine import PjsipEngine
from media.events import Party
from tests.calls.peers import (
    caller_args,
    free_udp_port,
    loopback_plan,
    pjua_call,
    running_gateway,
    start_sipp,
)
from tests.support.pjua_client import PjuaResult

pytestmark = [pytest.mark.interop, pytest.mark.engine]


def _received_reasons(result: PjuaResult, first_line: str) -> list[Any]:
    return [
        e["value"]
        for e in result.of("reason_header")
        if e["direction"] == "rx" and e["first_line"].startswith(first_line)
    ]


async def test_callee_rejection_reason_reaches_caller() -> None:
    caller, callee, record = await pjua_call(
        ["--code", "480", "--reason-cause", "20"], ["--expect-code", "480"]
    )
    assert caller.ok, caller.describe()
    assert callee.ok, callee.describe()
    # 480 alone maps to 18; the callee's own cause (20, subscriber absent) is passed on.
    assert _received_reasons(caller, "SIP/2.0 480") == ['Q.850;cause=20;text="Subscriber absent"']
    assert record.q850_cause == 20
    assert record.caller_status == 480


async def test_rejection_without_reason_gets_the_rfc_3398_cause() -> None:
    caller, callee, record = await pjua_call(["--code", "486"], ["--expect-code", "486"])
    assert caller.ok, caller.describe()
    assert callee.ok, callee.describe()
    assert _received_reasons(caller, "SIP/2.0 486") == ['Q.850;cause=17;text="User busy"']
    assert (record.disposition, record.q850_cause) == (Disposition.BUSY, 17)


async def test_callee_bye_reason_reaches_caller() -> None:
    caller, callee, record = await pjua_call(
        ["--hold-s", "0.5", "--reason-cause", "41"], ["--hangup-after-s", "20"]
    )
    assert caller.ok, caller.describe()
    assert callee.ok, callee.describe()
    assert _received_reasons(caller, "BYE ") == ['Q.850;cause=41;text="Temporary failure"']
    assert record.q850_cause == 41


async def test_caller_bye_reason_reaches_callee() -> None:
    caller, callee, record = await pjua_call(
        ["--hold-s", "0"], ["--hangup-after-s", "0.5", "--reason-cause", "31"]
    )
    assert caller.ok, caller.describe()
    assert callee.ok, callee.describe()
    assert _received_reasons(callee, "BYE ") == ['Q.850;cause=31;text="Normal, unspecified"']
    assert record.q850_cause == 31


@pytest.mark.parametrize(
    ("media_line", "status"),
    [
        # Unparseable: PJSIP answers 400 Bad SDP before any callback (RFC 3261: a bad body
        # is a bad request); 488 is for an offer that parses but cannot be accepted.
        ("m=audio notaport RTP/AVP 0", 400),
        ("m=audio 4000 RTP/AVP", 400),  # no formats at all
        ("m=audio 4000 RTP/AVP 18", 488),  # G.729 only: nothing the engine can bridge
        ("m=video 4000 RTP/AVP 31", 488),  # no audio
    ],
)
async def test_unusable_sdp_is_refused_and_creates_no_leg(
    tmp_path: Path, media_line: str, status: int
) -> None:
    port = free_udp_port()  # nobody listens: a callee leg would hang, not answer
    async with running_gateway(loopback_plan(("1", (port,)))) as gw:
        seen: list[object] = []
        gw.engine.attach_calls(seen.extend)  # replaces call control: any event means a leg
        caller = await start_sipp(
            "caller",
            "call_uac_bad_sdp.xml",
            tmp_path,
            remote=gw.target,
            args=("-s", "1234", "-m", "1", "-set", "media_line", media_line, "-trace_msg"),
        )
        await caller.finish()
        legs = await gw.engine.run(_live_bridges(gw.engine))
        assert seen == [] and legs == 0
    log = "".join(p.read_text(errors="replace") for p in caller.workdir.glob("*_messages.log"))
    answers = [line for line in log.splitlines() if line.startswith("SIP/2.0 ")]
    assert [a.split(" ")[1] for a in answers if not a.startswith("SIP/2.0 100")] == [str(status)]


def _live_bridges(engine: PjsipEngine) -> Callable[[Any], int]:
    def count(_endpoint: Any) -> int:
        b2bua = engine._b2bua  # the engine's private call half: a test seam, nothing else
        assert b2bua is not None
        return len(b2bua.bridges)

    return count


def _audio_statuses(result: PjuaResult) -> list[str]:
    return [str(e["status"]) for e in result.of("media_state")]


@pytest.mark.parametrize("holder", ["caller", "callee"])
async def test_hold_and_resume_are_reflected_to_the_other_leg(holder: str) -> None:
    plan = ["--tone", "--hold-at-s", "1", "--unhold-at-s", "2.5"]
    callee_opts = ["--tone", "--hold-s", "0", *(plan if holder == "callee" else [])]
    caller_opts = ["--tone", "--hangup-after-s", "4.5", *(plan if holder == "caller" else [])]
    caller, callee, record = await pjua_call(callee_opts, caller_opts)
    assert caller.ok, caller.describe()
    assert callee.ok, callee.describe()
    held, other = (caller, callee) if holder == "caller" else (callee, caller)
    assert _audio_statuses(held) == ["ACTIVE", "LOCAL_HOLD", "ACTIVE"], held.describe()
    assert _audio_statuses(other) == ["ACTIVE", "REMOTE_HOLD", "ACTIVE"], other.describe()
    assert record.disposition is Disposition.ANSWERED
    # Audio flows again after the resume, both ways.
    for side in (caller, callee):
        resumed = side.of("media_state")[-1]["audible_samples"]
        (final,) = side.of("audio_rx")
        assert final["audible_samples"] - resumed >= 10, side.describe()


async def test_session_refresh_keeps_a_call_and_a_missing_one_ends_it(tmp_path: Path) -> None:
    """RFC 4028, Session-Expires 90 (the RFC floor), caller is refresher: two calls at once.

    The one whose caller refreshes at 40 s outlives the first expiry (60 s)
    and ends with the caller's BYE; the silent one is ended by the engine.
    """
    port = free_udp_port()
    async with running_gateway(loopback_plan(("1", (port,)))) as gw:
        callee = await start_sipp(
            "callee", "call_uas_answer.xml", tmp_path, port=port, args=("-m", "2"), timeout=150
        )
        callers = [
            await start_sipp(
                label,
                scenario,
                tmp_path,
                remote=gw.target,
                args=caller_args(number, free_udp_port(), pause_ms=40000),
                timeout=150,
            )
            for label, scenario, number in (
                ("refreshing", "call_uac_session_refresh.xml", "1001"),
                ("silent", "call_uac_session_silent.xml", "1002"),
            )
        ]
        try:
            for caller in callers:
                await caller.finish(timeout=160)
            await callee.finish(timeout=30)
        finally:
            callee.kill()
        records = await asyncio.wait_for(gw.control.wait_finished(2), 10)
    by_number = {r.dialed: r for r in records}
    refreshed, silent = by_number["1001"], by_number["1002"]
    assert (refreshed.ended_by, refreshed.cause) == (Party.CALLER, Cause.CALLER_HANGUP)
    assert refreshed.ended_at is not None and refreshed.answered_at is not None
    assert refreshed.ended_at - refreshed.answered_at > 70  # past the unrefreshed expiry
    assert silent.ended_by is Party.GATEWAY
    assert silent.disposition is Disposition.ANSWERED
    assert silent.q850_cause == 102  # recovery on timer expiry
    assert silent.ended_at is not None and silent.answered_at is not None
    assert 50 < silent.ended_at - silent.answered_at < 90
