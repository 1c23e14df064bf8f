"""Calls to accounts on the wire: SIPp phones register (digest) and receive calls; forwarding.

caller (SIPp, loopback = a trunk) -> daemon (edge + engine) -> the account's
registered SIPp contact, or its forward target when that one is busy or
does not answer. Each SIPp scenario fails on any unexpected message.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.sip.directory import format_ha1
from tests.calls.peers import SippRun, start_sipp
from tests.support.daemon import DaemonProcess, write_config
from tests.support.pjua_client import PjuaProcess
from tests.support.ports import free_udp_port
from tests.support.tls import self_signed

pytestmark = [pytest.mark.interop, pytest.mark.engine]

REALM = "callgate"
PASSWORDS = {"bob": "bob-secret", "carol": "carol-secret"}


def accounts_config(directory: Path) -> str:
    tables = []
    for name, password in PASSWORDS.items():
        ha1 = directory / f"{name}.ha1"
        ha1.write_text(format_ha1(name, REALM, password), encoding="utf-8")
        tables.append(f'[[accounts]]\nname = "{name}"\nha1 = {{ file = "{ha1}" }}\n')
    return f"""
[sip.auth]
realm = "{REALM}"
algorithms = ["MD5"]

[[trunks]]
name = "caller"
allow = ["127.0.0.0/8"]

[calls]
no_answer_timeout = 20.0

[calls.forward]
busy = "carol"
no_answer = "carol"
no_answer_after = 1.5

{"".join(tables)}
"""


@dataclass
class Node:
    daemon: DaemonProcess
    workdir: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.daemon.sip_port('udp')}"

    async def register(self, account: str, port: int, scenario: str = "register.xml") -> None:
        users = self.workdir / f"users-{account}-{port}.csv"
        users.write_text(f"SEQUENTIAL\n{account};{PASSWORDS[account]};3600\n", encoding="utf-8")
        run = await start_sipp(
            f"register-{account}-{port}",
            scenario,
            self.workdir,
            remote=self.target,
            port=port,
            args=("-m", "1", "-inf", str(users)),
        )
        await run.finish()

    async def call(self, dialed: str, scenario: str = "call_uac_hangup.xml") -> None:
        """One call from the loopback trunk to `dialed`; `scenario` says what must happen."""
        caller = await start_sipp(
            f"caller-{scenario}",
            scenario,
            self.workdir,
            remote=self.target,
            args=("-s", dialed, "-m", "1", "-set", "rtp_port", str(free_udp_port())),
        )
        await caller.finish(timeout=60)

    async def finished(self) -> dict[str, object]:
        return await asyncio.to_thread(self.daemon.wait_event, "call_finished", 20)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    cert, key = self_signed(tmp_path)
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "c.toml",
        data_dir,
        extra=accounts_config(tmp_path),
        listen=f'\n    {{ transport = "tls", host = "127.0.0.1", port = 0, '
        f'tls_cert = "{cert}", tls_key = "{key}" }},',
    )
    daemon = DaemonProcess(config, data_dir)
    try:
        daemon.wait_event("ready", timeout=30)
        yield Node(daemon, tmp_path)
    finally:
        daemon.stop()


async def _phones(node: Node, *scenarios: tuple[str, int, str]) -> list[SippRun]:
    """Register each (account, port) and leave a SIPp UAS with `scenario` on its port."""
    phones = []
    for account, port, scenario in scenarios:
        await node.register(account, port)
        phones.append(
            await start_sipp(
                f"phone-{account}-{port}", scenario, node.workdir, port=port, args=("-m", "1")
            )
        )
    return phones


async def _expect(phones: list[SippRun]) -> None:
    try:
        for phone in phones:
            await phone.finish(timeout=60)
    finally:
        for phone in phones:
            phone.kill()


async def test_registered_phone_receives_a_call_to_its_account(node: Node) -> None:
    phones = await _phones(node, ("bob", free_udp_port(), "call_uas_answer.xml"))
    await node.call("bob")
    await _expect(phones)
    record = await node.finished()
    assert record["disposition"] == "answered"


async def test_unregistered_account_without_forward_target_gets_480(node: Node) -> None:
    await node.call("carol", "call_uac_refused.xml")
    record = await node.finished()
    assert (record["disposition"], record["caller_status"]) == ("rejected", 480)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # bob's phone is busy: the call is forwarded to carol.
        (("bob", "call_uas_busy.xml"), ("carol", "call_uas_answer.xml")),
        # bob's phone rings past no_answer_after, gets CANCEL; carol takes the call.
        (("bob", "call_uas_ring.xml"), ("carol", "call_uas_answer.xml")),
        # bob has two phones: both ring, the second answers, the first gets CANCEL.
        (("bob", "call_uas_ring.xml"), ("bob", "call_uas_answer.xml")),
    ],
    ids=["forward-on-busy", "forward-on-no-answer", "fork-first-answer-wins"],
)
async def test_a_call_to_bob_is_answered_by_the_right_phone(
    node: Node, first: tuple[str, str], second: tuple[str, str]
) -> None:
    phones = await _phones(
        node, (first[0], free_udp_port(), first[1]), (second[0], free_udp_port(), second[1])
    )
    await node.call("bob")
    await _expect(phones)
    assert (await node.finished())["disposition"] == "answered"


async def test_an_account_added_by_reload_can_be_called(tmp_path: Path) -> None:
    """SIGHUP adds `bob`: he registers at the edge and the dial plan rings him."""
    data_dir = tmp_path / "data"
    full = accounts_config(tmp_path)
    without_bob = full.replace(full[full.index('[[accounts]]\nname = "bob"') :], "")
    config = write_config(tmp_path / "c.toml", data_dir, extra=without_bob)
    daemon = DaemonProcess(config, data_dir)
    try:
        daemon.wait_event("ready", timeout=30)
        write_config(config, data_dir, extra=full)
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("config_reloaded", timeout=20)
        node = Node(daemon, tmp_path)
        phones = await _phones(node, ("bob", free_udp_port(), "call_uas_answer.xml"))
        await node.call("bob")
        await _expect(phones)
        assert (await node.finished())["disposition"] == "answered"
    finally:
        daemon.stop()


async def test_a_phone_behind_nat_is_called_where_it_registered_from(node: Node) -> None:
    """Its Contact (10.0.0.99:5099) is unreachable: the INVITE goes to the REGISTER's source,
    and its 200's Contact is fixed so the BYE gets there too (the UAS waits for it)."""
    port = free_udp_port()
    await node.register("bob", port, "register_nat.xml")
    phone = await start_sipp(
        "phone-nat", "call_uas_nat.xml", node.workdir, port=port, args=("-m", "1")
    )
    await node.call("bob")
    await _expect([phone])
    assert (await node.finished())["disposition"] == "answered"


def _phone_behind_nat(node: Node, transport: str, contact_port: int = 5099) -> PjuaProcess:
    """pjua registers bob over `transport` with a private Contact, then answers one call
    and waits for the caller's BYE."""
    return PjuaProcess(
        [
            "phone",
            *("--registrar", f"127.0.0.1:{node.daemon.sip_port(transport)}"),
            *("--transport", transport, "--user", "bob", "--domain", "example.test"),
            *("--password", PASSWORDS["bob"], "--hold-s", "0", "--ring-ms", "100"),
            "--tls-no-verify",
            *("--contact", f"<sip:bob@10.0.0.99:{contact_port};transport={transport}>"),
        ],
        timeout=40,
    )


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_phone_behind_nat_is_called_on_its_own_connection(
    node: Node, transport: str
) -> None:
    """Over TCP/TLS nothing reaches a NATed phone but the connection it registered on:
    the INVITE goes out on it, and the BYE too (its 200's Contact, 10.0.0.99, is fixed)."""
    phone = _phone_behind_nat(node, transport)
    try:
        registered = await asyncio.to_thread(phone.wait_for, "registered", 20)
        assert registered is not None, phone.stop().describe()
        await node.call("bob")
        result = await asyncio.to_thread(phone.wait, 40)
        assert result.ok, result.describe()
        assert "CONFIRMED" in result.call_states(), result.describe()
    finally:
        phone.stop()
    assert (await node.finished())["disposition"] == "answered"


async def test_a_call_to_a_closed_flow_fails_at_once_with_430(node: Node) -> None:
    """The phone's connection is gone (it quit without unregistering): the edge cannot
    reach it through its NAT, so the leg fails with 430 instead of dialling 10.0.0.99."""
    phone = _phone_behind_nat(node, "tcp")
    try:
        assert await asyncio.to_thread(phone.wait_for, "registered", 20) is not None
    finally:
        phone.stop()  # closes its TCP connection; the binding stays
    await node.call("bob", "call_uac_refused.xml")
    record = await node.finished()
    assert (record["disposition"], record["caller_status"]) == ("failed", 480), record
    assert 'callgate_sip_dropped_total{reason="flow_failed"} 1.0' in node.daemon.metrics()
