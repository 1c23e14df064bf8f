"""In-call signalling with real peers: Q.850 Reason passed through, re-INVITEs, bad SDP.

pjsua2 far ends (tests/support/pjua.py) on both sides of the engine; each
reports the SIP messages it received, so a test sees the headers on the wire.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.calls.registry import Cause, Disposition
from gateway.sip.message import (
    SipMessage,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
    serialize,
    start_line,
)
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


def _sdp(rtp_port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def _request(head: list[str], body: str = "") -> bytes:
    kind = ["Content-Type: application/sdp"] if body else []
    lines = [*head, *kind, f"Content-Length: {len(body)}", "", body]
    return "\r\n".join(lines).encode()


def _ok(request: SipMessage, contact: str, body: str = "") -> bytes:
    """200 OK to `request` from a UA whose Contact is `contact`, with an SDP `body`."""
    assert isinstance(request, SipRequest)
    headers = [("Contact", f"<{contact}>")]
    if body:
        headers.append(("Content-Type", "application/sdp"))
    response = make_response(
        request, 200, "OK", to_tag="callee", headers=headers, body=body.encode()
    )
    return serialize(response)


async def test_caller_hears_the_200_before_the_callee_gets_its_ack() -> None:
    """The caller's 200 leaves when the callee's 200 arrives, ahead of the ACK PJSIP sends
    the callee: the ACK is not on the set-up path. Caller and callee are one raw UDP
    socket here, so the order in which it receives the two is the order they were sent."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        me = f"sip:peer@127.0.0.1:{port}"

        async def receive() -> SipMessage:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
            return parse_message(data)

        async with running_gateway(loopback_plan(("1", (port,)))) as gw:
            engine = ("127.0.0.1", gw.info.sip_port)
            invite = _request(
                [
                    f"INVITE sip:1234@{gw.target} SIP/2.0",
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-order-1;rport",
                    "Max-Forwards: 70",
                    f"From: <{me}>;tag=caller",
                    f"To: <sip:1234@{gw.target}>",
                    "Call-ID: order-caller@test",
                    "CSeq: 1 INVITE",
                    f"Contact: <{me}>",
                ],
                _sdp(free_udp_port()),
            )
            sock.sendto(invite, engine)
            callee_invite = await receive()
            while start_line(callee_invite).split(" ", 1)[0] != "INVITE":
                callee_invite = await receive()
            sock.sendto(_ok(callee_invite, me, _sdp(free_udp_port())), engine)
            after = [await receive()]
            while isinstance(after[-1], SipResponse):
                after.append(await receive())
            firsts = [start_line(m) for m in after]
            assert firsts[0] == "SIP/2.0 200 OK", firsts
            assert firsts[-1].startswith("ACK "), firsts
            answer = after[0]
            assert answer.headers.get("Call-ID") == "order-caller@test"

            # Tear down: the caller ACKs its 200 and hangs up; the callee answers the BYE.
            to, contact = answer.headers.get("To"), answer.headers.get("Contact")
            assert to is not None and contact is not None
            dialog = [f"From: <{me}>;tag=caller", f"To: {to}", "Call-ID: order-caller@test"]
            target = contact.split("<", 1)[1].split(">", 1)[0]
            for n, (method, cseq) in enumerate((("ACK", 1), ("BYE", 2))):
                via = f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-order-{n + 2};rport"
                request = [f"{method} {target} SIP/2.0", via, "Max-Forwards: 70", *dialog]
                sock.sendto(_request([*request, f"CSeq: {cseq} {method}"]), engine)
            while start_line(message := await receive()).split(" ", 1)[0] != "BYE":
                pass
            sock.sendto(_ok(message, me), engine)
            (record,) = await asyncio.wait_for(gw.control.wait_finished(1), 5)
            assert record.disposition is Disposition.ANSWERED
