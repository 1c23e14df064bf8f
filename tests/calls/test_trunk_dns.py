"""Trunks named by DNS (RFC 3263 without NAPTR), against a real DNS server (dnsmasq).

caller (SIPp) -> edge -> engine -> edge -> the trunk's SIPp UAS, found through
SRV (`_sip._udp.carrier.test` -> sbc.carrier.test:PORT -> 127.0.0.1) or an A
record when the trunk has a port; a name that does not resolve fails the leg
with 503 and the call fails over to the next trunk.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from tests.calls.peers import call_through
from tests.calls.test_trunk_path import DaemonFactory, daemon_factory, received
from tests.support.ports import free_udp_port

pytestmark = pytest.mark.interop

__all__ = ["daemon_factory"]  # the fixture, shared with the trunk-path tests


def _dnsmasq() -> str:
    path = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(path).exists():
        raise RuntimeError("dnsmasq is not installed (Debian: dnsmasq-base; `make setup`)")
    return path


def start_dns(port: int, records: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            _dnsmasq(),
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            "--pid-file",
            "--user=root",
            "--local=/carrier.test/",  # names we do not list: NXDOMAIN, not a forward
            *records,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 0.5
    deadline = time.monotonic() + 10
    while True:
        try:
            resolver.resolve("sbc.carrier.test", "A")
            return proc
        except dns.exception.DNSException:
            if proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # waiting for dnsmasq to bind, not for the code under test
                continue
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"dnsmasq did not answer: {err.decode(errors='replace')}")


def routed_to(trunks: str, route: str) -> str:
    return f"""
[[trunks]]
name = "test-trunk"
allow = ["127.0.0.0/8"]
{trunks}
[calls]
no_answer_timeout = 10.0

[[calls.routes]]
prefix = "1"
trunks = {route}
transit = true
"""


def _dns(port: int) -> str:
    return f'dns_servers = ["127.0.0.1:{port}"]'


def trunk(name: str, host: str, port: int | None = None) -> str:
    port_line = f"port = {port}" if port is not None else ""
    return f"""
[[trunks]]
name = "{name}"
host = "{host}"
{port_line}
options_interval = 0
"""


async def _call(daemon_port: int, tmp_path: Path, callee_port: int) -> list[str]:
    callee = await call_through(
        f"127.0.0.1:{daemon_port}",
        tmp_path,
        callee_port,
        "call_uac_hangup.xml",
        "call_uas_answer.xml",
        callee_args=("-trace_msg",),
    )
    assert callee is not None
    return received(callee, "INVITE")


DnsServer = Callable[[list[str]], int]
"""Starts dnsmasq with these records; returns its port (stopped at the end of the test)."""


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    procs: list[subprocess.Popen[bytes]] = []

    def serve(records: list[str]) -> int:
        port = free_udp_port()
        procs.append(start_dns(port, records))
        return port

    yield serve
    for proc in procs:
        proc.kill()
        proc.wait()


async def test_a_trunk_named_by_srv_gets_the_call(
    daemon_factory: DaemonFactory, tmp_path: Path, dns_server: DnsServer
) -> None:
    callee_port = free_udp_port()
    dns_port = dns_server(
        [
            "--host-record=sbc.carrier.test,127.0.0.1",
            f"--srv-host=_sip._udp.carrier.test,sbc.carrier.test,{callee_port},10,5",
        ]
    )
    daemon = daemon_factory(
        routed_to(trunk("carrier", "carrier.test"), '["carrier"]'), sip=_dns(dns_port)
    )
    [invite] = await _call(daemon.sip_port("udp"), tmp_path, callee_port)
    # The carrier sees its own domain in the Request-URI; only the edge resolved it.
    assert invite.lstrip().startswith("INVITE sip:1234@carrier.test SIP/2.0"), invite


async def test_a_trunk_named_with_a_port_uses_its_address(
    daemon_factory: DaemonFactory, tmp_path: Path, dns_server: DnsServer
) -> None:
    callee_port = free_udp_port()
    # An SRV record that would lead elsewhere: with a port given, it must not be used.
    dns_port = dns_server(
        [
            "--host-record=sbc.carrier.test,127.0.0.1",
            "--host-record=elsewhere.carrier.test,127.0.0.9",
            "--srv-host=_sip._udp.sbc.carrier.test,elsewhere.carrier.test,9,10,5",
        ]
    )
    daemon = daemon_factory(
        routed_to(trunk("carrier", "sbc.carrier.test", callee_port), '["carrier"]'),
        sip=_dns(dns_port),
    )
    [invite] = await _call(daemon.sip_port("udp"), tmp_path, callee_port)
    assert invite.lstrip().startswith(f"INVITE sip:1234@sbc.carrier.test:{callee_port} SIP/2.0"), (
        invite
    )


async def test_a_trunk_whose_name_does_not_resolve_fails_over(
    daemon_factory: DaemonFactory, tmp_path: Path, dns_server: DnsServer
) -> None:
    callee_port = free_udp_port()
    dns_port = dns_server(["--host-record=sbc.carrier.test,127.0.0.1"])
    trunks = trunk("ghost", "ghost.carrier.test") + trunk("carrier", "127.0.0.1", callee_port)
    daemon = daemon_factory(routed_to(trunks, '["ghost", "carrier"]'), sip=_dns(dns_port))
    [invite] = await _call(daemon.sip_port("udp"), tmp_path, callee_port)
    assert invite.lstrip().startswith(f"INVITE sip:1234@127.0.0.1:{callee_port} SIP/2.0"), invite
    assert 'callgate_sip_dropped_total{reason="dns_failure"}' in daemon.metrics()
