"""Outbound legs through the edge: SIPp caller -> edge -> engine -> edge -> SIPp trunk.

The trunk (a SIPp UAS) must see every request from the edge's public
address, never the engine's loopback port; in-dialog requests in both
directions pass the edge too. SIPp's message trace shows what it received.
"""

from __future__ import annotations

import hashlib
import queue
import re
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.calls.peers import SippRun, call_through, start_sipp
from tests.calls.test_call_through_edge import trunk_to
from tests.support.daemon import DaemonProcess, write_config
from tests.support.ports import free_udp_port

pytestmark = pytest.mark.interop

DaemonFactory = Callable[..., DaemonProcess]
"""Starts a daemon with extra config (and env); stopped at the end of the test."""


def trunk_config(callee_port: int, trunk: str = "", calls: str = "no_answer_timeout = 10.0") -> str:
    """Loopback callers come in as a trunk; numbers starting with 1 go out to `callee_port`,
    through the outbound trunk `trunk` (a `carrier()` table) when given."""
    return trunk_to(callee_port, calls, ("carrier", trunk) if trunk else None)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[DaemonFactory]:
    started: list[DaemonProcess] = []

    def start(
        extra: str, env: dict[str, str] | None = None, ready: bool = True, sip: str = ""
    ) -> DaemonProcess:
        data_dir = tmp_path / f"data{len(started)}"
        config = write_config(tmp_path / f"c{len(started)}.toml", data_dir, extra=extra, sip=sip)
        daemon = DaemonProcess(config, data_dir, env)
        started.append(daemon)
        if ready:
            daemon.wait_event("ready", timeout=30)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def wait_events(daemon: DaemonProcess, *names: str) -> dict[str, dict[str, object]]:
    """The first event of each name, in whatever order they are logged."""
    seen: dict[str, dict[str, object]] = {}
    while len(seen) < len(names):
        try:
            event = daemon.events.get(timeout=30)
        except queue.Empty:
            raise AssertionError(f"no {names} within 30 s:\n{''.join(daemon.lines)}") from None
        assert event.get("event") != "<exit>", "".join(daemon.lines)
        if event.get("event") in names:
            seen.setdefault(str(event["event"]), event)
    return seen


def received(run: SippRun, method: str) -> list[str]:
    """Requests of `method` SIPp logged as received (its -trace_msg file)."""
    text = "".join(p.read_text(errors="replace") for p in run.workdir.glob("*_messages.log"))
    blocks = re.split(r"^-+ .*$", text, flags=re.MULTILINE)
    return [
        b.split("\n", 2)[2] if b.count("\n") > 2 else b
        for b in blocks
        if re.search(r"message received", b) and re.search(rf"^{method} ", b, re.MULTILINE)
    ]


def top_via(message: str) -> str:
    match = re.search(r"^Via:\s*(.*)$", message, re.MULTILINE | re.IGNORECASE)
    assert match, message
    return match.group(1).split(",")[0].strip()


async def _call(
    daemon: DaemonProcess, tmp_path: Path, port: int, caller: str, callee: str, *args: str
) -> SippRun:
    """A call through the daemon; the callee's SIPp traces what it received."""
    remote = f"127.0.0.1:{daemon.sip_port('udp')}"
    run = await call_through(
        remote, tmp_path, port, caller, callee, callee_args=("-trace_msg", *args)
    )
    assert run is not None
    return run


def assert_from_edge(daemon: DaemonProcess, message: str) -> None:
    edge = daemon.sip_port("udp")
    engine = int(daemon.runtime()["engine"]["port"])
    via = top_via(message)
    assert f"127.0.0.1:{edge};branch=z9hG4bKcg" in via, via
    assert f":{engine}" not in via, via


async def test_b_leg_leaves_from_edge_and_caller_hangs_up(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    callee_port = free_udp_port()
    daemon = daemon_factory(trunk_config(callee_port))
    callee = await _call(
        daemon, tmp_path, callee_port, "call_uac_hangup.xml", "call_uas_answer.xml"
    )
    [invite] = received(callee, "INVITE")
    assert_from_edge(daemon, invite)
    # The callee's in-dialog requests come back through the edge's public side.
    assert re.search(
        rf"^Record-Route:\s*<sip:127\.0\.0\.1:{daemon.sip_port('udp')};lr;cg=out>",
        invite,
        re.MULTILINE | re.IGNORECASE,
    ), invite
    for method in ("ACK", "BYE"):
        [request] = received(callee, method)
        assert_from_edge(daemon, request)


async def test_b_leg_through_edge_callee_hangs_up(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    callee_port = free_udp_port()
    daemon = daemon_factory(trunk_config(callee_port))
    callee = await _call(
        daemon,
        tmp_path,
        callee_port,
        "call_uac_remote_bye.xml",
        "call_uas_hangup.xml",
        "-d",
        "200",
    )
    [invite] = received(callee, "INVITE")
    assert_from_edge(daemon, invite)


async def test_caller_and_callee_legs_take_rtp_ports_of_their_own_accounts(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    """The engine's account (caller legs) and the trunk's (callee legs) bind RTP ports
    from disjoint slices. Both used to start at the first port and step in lockstep:
    every callee leg first tried the port its caller leg held, paying a failed bind and
    a PJSIP error line."""
    callee_port = free_udp_port()
    daemon = daemon_factory(trunk_config(callee_port))
    for call in range(2):
        workdir = tmp_path / f"call{call}"
        workdir.mkdir()
        callee = await _call(
            daemon, workdir, callee_port, "call_uac_hangup.xml", "call_uas_answer.xml"
        )
        [invite] = received(callee, "INVITE")
        media = re.search(r"^m=audio (\d+) ", invite, re.MULTILINE)
        assert media, invite
        # Default [media]: 20000 ports from 20000; the one outbound trunk has the upper half.
        assert 30000 <= int(media.group(1)) < 40000, invite
        # One audio stream only: pjsua's default also offers T.140 text (another port pair).
        assert re.findall(r"^m=(\w+) ", invite, re.MULTILINE) == ["audio"], invite
    assert not [line for line in daemon.lines if "bind() at" in line], "".join(daemon.lines)


CARRIER_USER = "gw-user"
CARRIER_PASSWORD = "carrier-secret"


def carrier(port: int, options: str = "options_interval = 0", extra: str = "") -> str:
    """An outbound trunk at `port` with digest credentials (the password from the env)."""
    return f"""
[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = {port}
username = "{CARRIER_USER}"
password = {{ env = "CARRIER_PASSWORD" }}
{options}
{extra}
"""


def digest_is_valid(request: str, method: str, user: str, password: str) -> bool:
    """Check a Proxy-Authorization (MD5, qop=auth) the way the carrier would (RFC 2617)."""
    header = re.search(r"^Proxy-Authorization:\s*Digest (.*)$", request, re.MULTILINE | re.I)
    assert header, request
    p = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
    if p.get("username") != user:
        return False

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{user}:{p['realm']}:{password}")
    ha2 = md5(f"{method}:{p['uri']}")
    expected = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
    return bool(p["response"] == expected)


async def test_trunk_challenge_is_answered_with_its_credentials(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    callee_port = free_udp_port()
    daemon = daemon_factory(
        trunk_config(callee_port, trunk=carrier(callee_port)),
        {"CARRIER_PASSWORD": CARRIER_PASSWORD},
    )
    callee = await _call(
        daemon,
        tmp_path,
        callee_port,
        "call_uac_hangup.xml",
        "trunk_uas_auth.xml",
    )
    first, authenticated = received(callee, "INVITE")
    assert "Proxy-Authorization" not in first
    assert digest_is_valid(authenticated, "INVITE", CARRIER_USER, CARRIER_PASSWORD), authenticated
    assert_from_edge(daemon, authenticated)


async def start_registrar(tmp_path: Path, port: int, password: str, label: str) -> SippRun:
    return await start_sipp(
        label,
        "trunk_uas_register.xml",
        tmp_path,
        port=port,
        args=("-m", "1", "-trace_logs", "-set", "user", CARRIER_USER, "-set", "pass", password),
    )


REGISTERING = "registration = true\nregistration_expires = 600"


async def start_registering(
    daemon_factory: DaemonFactory, tmp_path: Path, password: str, registrar_port: int
) -> tuple[DaemonProcess, dict[str, object], SippRun]:
    """A daemon whose carrier trunk registers at a SIPp registrar on `registrar_port`
    expecting `password`; returns once the registration ended (its event) and the
    registrar has finished."""
    registrar = await start_registrar(tmp_path, registrar_port, password, "registrar")
    try:
        daemon = daemon_factory(
            carrier(registrar_port, extra=REGISTERING),
            {"CARRIER_PASSWORD": CARRIER_PASSWORD},
            ready=False,
        )
        event = wait_events(daemon, "trunk_registration", "ready")["trunk_registration"]
        await registrar.finish()
    finally:
        registrar.kill()
    return daemon, event, registrar


@pytest.mark.parametrize(("password", "registered"), [(CARRIER_PASSWORD, True), ("wrong", False)])
async def test_trunk_registration_with_401_then_200_or_403(
    daemon_factory: DaemonFactory, tmp_path: Path, password: str, registered: bool
) -> None:
    daemon, event, registrar = await start_registering(
        daemon_factory, tmp_path, password, free_udp_port()
    )
    assert event["trunk"] == "carrier" and event["registered"] is registered, event
    assert event["status"] == (200 if registered else 403), event
    metric = daemon.metric('callgate_trunk_registered{trunk="carrier"}')
    assert metric == (1 if registered else 0)
    # The registered contact is the edge's public address: the only one the carrier can reach.
    log = "".join(p.read_text() for p in registrar.workdir.glob("*_logs.log"))
    assert f"registered contact sip:{CARRIER_USER}@127.0.0.1:{daemon.sip_port('udp')}" in log, log


async def test_reload_adds_a_registering_trunk(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    registrar_port = free_udp_port()
    daemon = daemon_factory(carrier(registrar_port), {"CARRIER_PASSWORD": CARRIER_PASSWORD})
    registrar = await start_registrar(tmp_path, registrar_port, CARRIER_PASSWORD, "registrar")
    try:
        write_config(
            daemon.config, daemon.data_dir, extra=carrier(registrar_port, extra=REGISTERING)
        )
        daemon.signal(signal.SIGHUP)
        events = wait_events(daemon, "config_reloaded", "trunk_registration")
        event = events["trunk_registration"]
        await registrar.finish()
    finally:
        registrar.kill()
    assert event["trunk"] == "carrier" and event["registered"] is True, event


async def test_a_trunk_added_on_reload_leaves_a_registered_trunk_alone(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    """A new trunk shrinks the registered trunk's RTP port slice (media/rtp_ports.py): its
    account is modified in place, not rebuilt, so it does not register again."""
    registrar_port = free_udp_port()
    daemon, event, _registrar = await start_registering(
        daemon_factory, tmp_path, CARRIER_PASSWORD, registrar_port
    )
    assert event["registered"] is True, event
    pbx = f"""
[[trunks]]
name = "pbx"
host = "127.0.0.1"
port = {free_udp_port()}
options_interval = 0
"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as registrar_again:
        registrar_again.bind(("127.0.0.1", registrar_port))
        registrar_again.settimeout(3.0)
        write_config(
            daemon.config, daemon.data_dir, extra=carrier(registrar_port, extra=REGISTERING) + pbx
        )
        daemon.signal(signal.SIGHUP)
        wait_events(daemon, "config_reloaded")
        with pytest.raises(TimeoutError):
            registrar_again.recv(65535)


async def test_options_take_a_silent_trunk_out_and_bring_it_back(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    port = free_udp_port()
    options = "\n".join(
        (
            "options_interval = 0.5",
            "options_timeout = 1.0",
            "options_down_after = 2",
            "options_up_after = 1",
        )
    )
    answering = await start_sipp(
        "options1", "options_uas.xml", tmp_path, port=port, args=("-m", "2", "-trace_msg")
    )
    try:
        daemon = daemon_factory(
            trunk_config(port, trunk=carrier(port, options=options)),
            {"CARRIER_PASSWORD": CARRIER_PASSWORD},
        )
        await answering.finish()  # it answered two probes, and stopped
    finally:
        answering.kill()
    probes = received(answering, "OPTIONS")
    assert len(probes) == 2
    assert_from_edge(daemon, probes[0])
    assert daemon.metric('callgate_trunk_up{trunk="carrier"}') == 1
    down = daemon.wait_event("trunk_health", timeout=30)
    assert (down["trunk"], down["health"]) == ("carrier", "down")
    assert daemon.metric('callgate_trunk_up{trunk="carrier"}') == 0
    # Out of routing: its only route has no trunk left, so the caller gets 503 at once.
    remote = f"127.0.0.1:{daemon.sip_port('udp')}"
    await call_through(remote, tmp_path, port, "call_uac_unavailable.xml", None)
    back = await start_sipp("options2", "options_uas.xml", tmp_path, port=port, args=("-m", "1"))
    try:
        up = daemon.wait_event("trunk_health", timeout=30)
        await back.finish()
    finally:
        back.kill()
    assert (up["trunk"], up["health"]) == ("carrier", "up")
    assert daemon.metric('callgate_trunk_up{trunk="carrier"}') == 1


async def test_trunk_answering_garbage_fails_the_leg_with_502(
    daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    """Not a hang until a timer: the caller gets 502 (a timeout would give it 480)."""
    callee_port = free_udp_port()
    daemon = daemon_factory(trunk_config(callee_port, calls="no_answer_timeout = 60.0"))
    callee = await _call(
        daemon, tmp_path, callee_port, "call_uac_bad_gateway.xml", "trunk_uas_garbage.xml"
    )
    [ack] = received(callee, "ACK")
    assert_from_edge(daemon, ack)
    assert daemon.metric('callgate_sip_bad_messages_total{transport="udp"}') == 1
