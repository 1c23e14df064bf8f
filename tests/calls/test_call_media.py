"""In-call media features with real peers: early media, transcoding, DTMF.

SIPp or a pjsua2 far end (tests/support/pjua.py) on each side of the engine.
Audio is proven by content, not by packet counts: a loud packet reaching the
caller can only be its own tone after a trip through the bridge and the
callee's echo (see tests/calls/media.py), or the far end's tone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.calls.registry import CallState, Cause, Disposition
from tests.calls.media import CallerMedia
from tests.calls.peers import (
    caller_args,
    free_udp_port,
    loopback_plan,
    pjua_call,
    running_gateway,
    sipp_call,
    start_sipp,
)
from tests.support.pjua_client import pjua_answer

pytestmark = [pytest.mark.interop, pytest.mark.engine]


async def test_early_media_reaches_caller_before_answer(tmp_path: Path) -> None:
    """Callee 183 + SDP, never answers: the caller hears the callee side, then cancels."""
    port = free_udp_port()
    media = await CallerMedia.open()
    try:
        async with running_gateway(loopback_plan(("1", (port,)))) as gw:
            record = await sipp_call(
                gw,
                tmp_path,
                "call_uac_early_media.xml",
                "call_uas_early_media.xml",
                port,
                caller_args=("-d", "1500"),
                callee_args=("-rtp_echo",),
                rtp_port=media.port,
            )
    finally:
        media.close()
    assert record.state is CallState.ENDED
    assert record.answered_at is None, "early media must not need an answer"
    assert record.disposition is Disposition.CANCELLED
    assert record.cause is Cause.CALLER_CANCEL
    assert record.ringing_at is not None
    # Tone: caller -> bridge -> callee's 183 media (SIPp echo) -> bridge -> caller, unanswered.
    assert media.engine is not None, "the engine never sent early media to the caller"
    assert media.loud >= 20, (media.received, media.loud)


async def test_codec_mismatch_transcodes_both_ways(tmp_path: Path) -> None:
    """SIPp caller offers PCMU only, the pjsua2 callee accepts PCMA only: audio both ways."""
    media = await CallerMedia.open()
    try:
        with pjua_answer(
            ["--codecs", "PCMA/8000/1", "--tone", "--ring-ms", "100", "--hold-s", "0"], timeout=30
        ) as callee:
            async with running_gateway(loopback_plan(("1", (callee.port,)))) as gw:
                caller = await start_sipp(
                    "caller",
                    "call_uac_hangup.xml",
                    tmp_path,
                    remote=gw.target,
                    args=caller_args("1234", media.port, pause_ms=2500),
                )
                await caller.finish()
                (record,) = await asyncio.wait_for(gw.control.wait_finished(1), 5)
                far = await asyncio.to_thread(callee.wait, 20)
    finally:
        media.close()
    assert far.ok, far.describe()
    assert record.disposition is Disposition.ANSWERED
    assert (record.caller_codec, record.callee_codec) == ("PCMU", "PCMA")
    # Callee's tone, PCMA -> bridge -> PCMU, reached the caller ...
    assert media.loud >= 20, (media.received, media.loud)
    # ... and the caller's PCMU tone reached the callee as PCMA.
    (heard,) = far.of("audio_rx")
    assert heard["audible_samples"] >= 10, far.describe()


@pytest.mark.parametrize(
    ("caller_codec", "callee_codec"),
    [("G722/16000/1", "opus/48000/2"), ("opus/48000/2", "PCMU/8000/1")],
)
async def test_wideband_legs_transcode_both_ways(caller_codec: str, callee_codec: str) -> None:
    """pjsua2 on both sides, each offering one codec the other lacks; both hear the other."""
    caller, far, record = await pjua_call(
        ["--codecs", callee_codec, "--tone", "--hold-s", "0"],
        ["--codecs", caller_codec, "--tone", "--hangup-after-s", "2.5"],
    )
    assert caller.ok, caller.describe()
    assert far.ok, far.describe()
    assert record.disposition is Disposition.ANSWERED
    assert (record.caller_codec, record.callee_codec) == (
        caller_codec.split("/", maxsplit=1)[0],
        callee_codec.split("/", maxsplit=1)[0],
    )
    for side in (caller, far):
        (heard,) = side.of("audio_rx")
        assert heard["audible_samples"] >= 10, side.describe()


async def test_dtmf_is_relayed_both_ways() -> None:
    """RFC 4733 digits from each pjsua2 end arrive at the other through the engine."""
    caller, far, _ = await pjua_call(
        ["--dtmf", "*7#", "--dtmf-after-s", "0.6", "--hold-s", "0"],
        ["--dtmf", "19", "--hangup-after-s", "3"],
    )
    assert caller.ok, caller.describe()
    assert far.ok, far.describe()
    assert [e["digit"] for e in far.of("dtmf_rx")] == ["1", "9"], far.describe()
    assert [e["digit"] for e in caller.of("dtmf_rx")] == ["*", "7", "#"], caller.describe()
