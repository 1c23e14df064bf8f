"""The product's core path: SIPp caller -> edge (trunk) -> engine B2BUA -> SIPp callee."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.calls.peers import SippRun, call_through, start_sipp
from tests.support.daemon import DaemonProcess, write_config
from tests.support.pjua_client import pjua_answer, run_pjua
from tests.support.ports import free_udp_port


def trunk_to(callee_port: int, calls: str, outbound: tuple[str, str] | None = None) -> str:
    """Config: loopback is a trunk; numbers starting with 1 go to the callee port, through
    the outbound trunk `outbound` = (name, its [[trunks]] table) when given."""
    name, table = outbound or (
        "callee",
        f"""
[[trunks]]
name = "callee"
host = "127.0.0.1"
port = {callee_port}
options_interval = 0  # the SIPp callee runs a call scenario: no OPTIONS probes
""",
    )
    return f"""
[[trunks]]
name = "test-trunk"
allow = ["127.0.0.0/8"]
{table}
[calls]
{calls}

[[calls.routes]]
prefix = "1"
trunks = ["{name}"]
transit = true
"""


@pytest.fixture
def daemon_with_route(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int]]:
    callee_port = free_udp_port()
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "c.toml", data_dir, extra=trunk_to(callee_port, "no_answer_timeout = 5.0")
    )
    daemon = DaemonProcess(config, data_dir)
    try:
        daemon.wait_event("ready", timeout=30)
        yield daemon, callee_port
    finally:
        daemon.stop()


async def test_call_from_trunk_through_edge_and_engine(
    daemon_with_route: tuple[DaemonProcess, int], tmp_path: Path
) -> None:
    daemon, callee_port = daemon_with_route
    await call_through(
        f"127.0.0.1:{daemon.sip_port('udp')}",
        tmp_path,
        callee_port,
        "call_uac_hangup.xml",
        "call_uas_answer.xml",
    )


async def test_an_invite_the_engine_refuses_does_not_hold_up_the_next_call(
    daemon_with_route: tuple[DaemonProcess, int], tmp_path: Path
) -> None:
    """PJSIP answers an unusable SDP itself (488) and never offers the call: the edge's
    record of that INVITE waiting for the engine must end with the engine's answer, or
    overload control reads it as an engine 0.5 s behind and refuses every call for 32 s."""
    daemon, callee_port = daemon_with_route
    remote = f"127.0.0.1:{daemon.sip_port('udp')}"
    caller = await start_sipp(
        "caller-488",
        "call_uac_bad_sdp.xml",
        tmp_path,
        remote=remote,
        args=("-s", "1234", "-m", "1", "-set", "media_line", "m=audio 4000 RTP/AVP 18"),
    )
    await caller.finish()
    await asyncio.sleep(1.0)  # past [calls] max_engine_delay (0.5 s): a stale record would bite
    await call_through(
        remote, tmp_path / "next", callee_port, "call_uac_hangup.xml", "call_uas_answer.xml"
    )
    assert daemon.metric_total("callgate_calls_rejected_total") == 0


async def test_unknown_number_through_edge_gets_404(
    daemon_with_route: tuple[DaemonProcess, int], tmp_path: Path
) -> None:
    daemon, _callee_port = daemon_with_route
    caller = await start_sipp(
        "caller",
        "call_uac_unknown.xml",
        tmp_path,
        remote=f"127.0.0.1:{daemon.sip_port('udp')}",
        args=("-s", "999", "-m", "1", "-set", "rtp_port", str(free_udp_port())),
    )
    await caller.finish()


async def test_twice_the_call_limit_gets_503s_and_no_failed_admitted_call(
    tmp_path: Path,
) -> None:
    """At 2x the configured rate the excess is refused with 503; admitted calls complete."""
    callee_port = free_udp_port()
    data_dir = tmp_path / "data"
    extra = trunk_to(callee_port, "max_new_per_second = 10.0\nmax_new_burst = 5")
    daemon = DaemonProcess(write_config(tmp_path / "c.toml", data_dir, extra=extra), data_dir)
    callee = None
    try:
        daemon.wait_event("ready", timeout=30)
        callee = await start_sipp(
            "callee", "call_uas_answer.xml", tmp_path, port=callee_port, timeout=60
        )
        total = 60  # 3 s at 20 calls/s: twice the limit
        caller = await start_sipp(
            "caller",
            "call_uac_overload.xml",
            tmp_path,
            remote=f"127.0.0.1:{daemon.sip_port('udp')}",
            args=("-s", "1234", "-r", "20", "-m", str(total)),
            timeout=40,
        )
        await caller.finish(timeout=50)  # exit 0: every call answered or refused with 503
        # Mostly the rate limit; on a loaded machine engine-delay shedding may add some.
        refused = daemon.metric_total("callgate_calls_rejected_total")  # final: counted first
        answered = await asyncio.to_thread(
            daemon.settled_metric,
            'callgate_calls_finished_total{disposition="answered"}',
            total - refused,
        )
        assert answered + refused == total, (answered, refused)
        assert daemon.metric('callgate_calls_rejected_total{reason="rate"}') > 0
        assert answered >= 5
        # Burst plus 10/s over ~3 s, with a little slack for timing.
        assert answered <= 5 + 10 * 4, answered
        assert daemon.metric_total("callgate_calls_finished_total") == answered  # none failed
    finally:
        if callee is not None:
            callee.kill()
        daemon.stop()


def _queued_bytes(port: int) -> int:
    """Bytes waiting in the receive queue of the UDP socket bound to `port`."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no UDP socket on port {port}")


async def test_invites_that_waited_in_the_edge_queue_get_503_and_later_calls_complete(
    tmp_path: Path,
) -> None:
    """A node behind on its socket (here: stopped while INVITEs arrive) sheds the INVITEs
    that waited too long with 503, whatever the rate limit says, and takes calls again
    once it reads in time."""
    callee_port = free_udp_port()
    data_dir = tmp_path / "data"
    # Lag shedding out of the way: after SIGCONT the lag probe reads the stop as lag.
    calls = "max_new_per_second = 1000.0\nmax_receive_delay = 0.1\nmax_loop_lag = 60.0"
    extra = trunk_to(callee_port, calls)
    daemon = DaemonProcess(write_config(tmp_path / "c.toml", data_dir, extra=extra), data_dir)
    callee = None
    try:
        daemon.wait_event("ready", timeout=30)
        port = daemon.sip_port("udp")
        callee = await start_sipp(
            "callee", "call_uas_answer.xml", tmp_path, port=callee_port, timeout=60
        )

        async def caller(label: str, rate: int, calls: int) -> SippRun:
            remote = f"127.0.0.1:{port}"
            args = ("-s", "1234", "-r", str(rate), "-m", str(calls))
            return await start_sipp(
                label, "call_uac_overload.xml", tmp_path, remote=remote, args=args, timeout=30
            )

        daemon.signal(signal.SIGSTOP)
        try:
            late = await caller("late", 100, 4)
            for _ in range(500):
                if _queued_bytes(port):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.25)  # the INVITEs wait in the kernel, less than SIP's T1
        finally:
            daemon.signal(signal.SIGCONT)
        await late.finish(timeout=30)  # exit 0: every call answered or refused with 503
        assert daemon.metric('callgate_calls_rejected_total{reason="queue"}') == 4
        await (await caller("timely", 10, 2)).finish(timeout=30)
        answered = 'callgate_calls_finished_total{disposition="answered"}'
        assert await asyncio.to_thread(daemon.settled_metric, answered, 2) == 2
        assert daemon.metric_total("callgate_calls_rejected_total") == 4
        assert daemon.metric_total("callgate_calls_finished_total") == 2  # none failed
    finally:
        if callee is not None:
            callee.kill()
        daemon.stop()


async def test_in_call_signalling_through_edge(tmp_path: Path) -> None:
    """pjsua2 caller -> edge -> engine -> pjsua2 callee: hold, resume and a BYE's Reason pass."""
    with pjua_answer(["--ring-ms", "100", "--hold-s", "0"], timeout=40) as callee:
        data_dir = tmp_path / "data"
        config = write_config(
            tmp_path / "c.toml", data_dir, extra=trunk_to(callee.port, "no_answer_timeout = 5.0")
        )
        daemon = DaemonProcess(config, data_dir)
        try:
            daemon.wait_event("ready", timeout=30)
            caller = await asyncio.to_thread(
                run_pjua,
                [
                    "call",
                    "--target",
                    f"sip:1234@127.0.0.1:{daemon.sip_port('udp')}",
                    "--hold-at-s",
                    "0.5",
                    "--unhold-at-s",
                    "1.5",
                    "--hangup-after-s",
                    "2.5",
                    "--reason-cause",
                    "31",
                ],
                30,
            )
            far = await asyncio.to_thread(callee.wait, 20)
        finally:
            daemon.stop()
    assert caller.ok, caller.describe()
    assert far.ok, far.describe()
    assert [e["status"] for e in far.of("media_state")] == ["ACTIVE", "REMOTE_HOLD", "ACTIVE"]
    reasons = [e["value"] for e in far.of("reason_header") if e["first_line"].startswith("BYE ")]
    assert reasons == ['Q.850;cause=31;text="Normal, unspecified"'], far.describe()
