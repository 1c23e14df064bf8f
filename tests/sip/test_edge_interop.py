"""The SIP edge against real peers: SIPp and a pjsua2 UA drive the running daemon.

One daemon (module scope) serves most tests; its upstream is a small UDP
peer in this process that records what the edge forwards and answers
INVITEs with 486, so "forwarded" and "absorbed" are observed directly.
Full calls, TLS/SHA-256 and the restart each get their own daemon.
Every port is ephemeral; nothing sleeps to wait.
"""

from __future__ import annotations

import hashlib
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.sip.digest import NonceService
from gateway.sip.directory import format_ha1
from tests.support.daemon import DaemonProcess
from tests.support.pjua_client import run_pjua
from tests.support.ports import free_udp_port
from tests.support.sipp import SCENARIOS, SippResult, run_sipp, sipp_binary
from tests.support.tls import self_signed

pytestmark = pytest.mark.interop

REALM = "callgate"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}
NONCE_SECRET = "edge-interop-nonce-secret-0123456789"
TRUNK_IP = "127.0.0.2"
LOCKOUT_FAILURES = 3
MIN_EXPIRES = 60
MAX_MESSAGE_BYTES = 4096
PACKET_RATE = 50
PACKET_BURST = 100
TIMEOUT = 5.0


# --- configuration -----------------------------------------------------------


def edge_config(
    directory: Path,
    data_dir: Path,
    *,
    listeners: str = '{ transport = "udp", host = "127.0.0.1", port = 0 },\n'
    '    { transport = "tcp", host = "127.0.0.1", port = 0 },',
    sip: str = "",
    auth: str = 'algorithms = ["MD5"]',
    protection: str = "",
    trunks: tuple[str, ...] = (),
) -> Path:
    """A daemon config with the accounts of PASSWORDS (HA1 files next to it)."""
    accounts = []
    for name, password in PASSWORDS.items():
        ha1 = directory / f"{name}.ha1"
        ha1.write_text(format_ha1(name, REALM, password), encoding="utf-8")
        accounts.append(f'[[accounts]]\nname = "{name}"\nha1 = {{ file = "{ha1}" }}\n')
    trunk_tables = [
        f'[[trunks]]\nname = "trunk{i}"\nallow = ["{net}"]\n' for i, net in enumerate(trunks)
    ]
    text = f"""
[node]
name = "edge-interop"
data_dir = "{data_dir}"

[daemon]
drain_timeout = 2

[sip]
listen = [
    {listeners}
]
{sip}

[sip.auth]
realm = "{REALM}"
{auth}

[sip.registrar]
min_expires = {MIN_EXPIRES}

[sip.protection]
{protection}

[http]
host = "127.0.0.1"
port = 0

[logging]
format = "json"
level = "debug"

{"".join(accounts)}
{"".join(trunk_tables)}
"""
    path = directory / "callgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def start_daemon(config: Path, data_dir: Path) -> DaemonProcess:
    daemon = DaemonProcess(config, data_dir)
    try:
        daemon.wait_event("ready", timeout=30)
    except AssertionError:
        daemon.stop()
        raise
    return daemon


def users_file(directory: Path, *rows: tuple[str, ...]) -> Path:
    """A SIPp injection file (-inf), one call per row."""
    path = directory / f"users-{time.monotonic_ns()}.csv"
    path.write_text("SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sipp(
    scenario: str, target: str, workdir: Path, *, transport: str = "u1", extra: tuple[str, ...] = ()
) -> SippResult:
    workdir.mkdir(parents=True, exist_ok=True)
    return run_sipp(scenario, target, transport=transport, timeout=10, extra=extra, workdir=workdir)


# --- raw SIP over sockets ----------------------------------------------------


@dataclass
class Message:
    first_line: str
    headers: list[tuple[str, str]]
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> Message:
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        lines = head.split("\r\n")
        headers = [
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        return cls(lines[0], headers, data)

    def get(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def status(self) -> int:
        return int(self.first_line.split(" ", 2)[1])

    @property
    def method(self) -> str:
        return self.first_line.split(" ", 1)[0]


def request(
    method: str,
    uri: str,
    local: tuple[str, int],
    *,
    user: str = "probe",
    call_id: str | None = None,
    cseq: int = 1,
    headers: tuple[str, ...] = (),
    omit: tuple[str, ...] = (),
    via_transport: str = "UDP",
) -> bytes:
    fields = {
        "Via": f"SIP/2.0/{via_transport} {local[0]}:{local[1]}"
        f";branch=z9hG4bK-{time.monotonic_ns()}",
        "From": f"<sip:{user}@example.test>;tag=f{time.monotonic_ns()}",
        "To": f"<sip:{user}@example.test>",
        "Call-ID": call_id or f"edge-{time.monotonic_ns()}@test",
        "CSeq": f"{cseq} {method}",
        "Max-Forwards": "70",
    }
    lines = [f"{method} {uri} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in fields.items() if name not in omit]
    lines += list(headers)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


class UdpPeer:
    """A UDP socket on one local address that sends requests and reads answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((host, 0))
        self.sock.settimeout(TIMEOUT)
        self.local: tuple[str, int] = self.sock.getsockname()[:2]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, ("127.0.0.1", port))

    def receive(self) -> Message:
        data, _ = self.sock.recvfrom(65535)
        return Message.parse(data)

    def exchange(self, data: bytes, port: int) -> Message:
        """Send and return the final answer (provisional ones are skipped)."""
        self.send(data, port)
        while True:
            answer = self.receive()
            if answer.first_line.startswith("SIP/2.0") and answer.status >= 200:
                return answer

    def pending(self) -> list[Message]:
        """Everything already queued on the socket, without waiting."""
        self.sock.setblocking(False)
        try:
            out: list[Message] = []
            while True:
                try:
                    data, _ = self.sock.recvfrom(65535)
                except BlockingIOError:
                    return out
                out.append(Message.parse(data))
        finally:
            self.sock.settimeout(TIMEOUT)

    def close(self) -> None:
        self.sock.close()


def digest_authorization(
    challenge: str, *, user: str, password: str, method: str, uri: str, nonce: str | None = None
) -> str:
    """An MD5 qop=auth Authorization value answering `challenge` (computed independently)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
    nonce = nonce or params["nonce"]
    ha1 = hashlib.md5(f"{user}:{REALM}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    cnonce, nc = "0a4f113b", "00000001"
    response = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


class UpstreamRecorder:
    """Stands in for the engine: records every request the edge forwards, answers INVITE 486."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.received: queue.Queue[Message] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data, source = self.sock.recvfrom(65535)
            except OSError:
                return  # closed
            message = Message.parse(data)
            self.received.put(message)
            if message.method == "INVITE":
                self.sock.sendto(self._busy(message), source)

    @staticmethod
    def _busy(invite: Message) -> bytes:
        lines = ["SIP/2.0 486 Busy Here"]
        lines += [f"Via: {via}" for via in invite.get_all("Via")]
        for name in ("From", "Call-ID", "CSeq"):
            lines.append(f"{name}: {invite.get(name)}")
        lines += [f"To: {invite.get('To')};tag=upstream", "Content-Length: 0", "", ""]
        return "\r\n".join(lines).encode()

    def next(self) -> Message:
        return self.received.get(timeout=TIMEOUT)

    def drain(self) -> list[Message]:
        out = []
        while True:
            try:
                out.append(self.received.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.sock.close()


# --- the shared daemon -------------------------------------------------------


@dataclass
class Edge:
    daemon: DaemonProcess
    upstream: UpstreamRecorder
    workdir: Path

    @property
    def udp(self) -> int:
        return self.daemon.sip_port("udp")

    @property
    def tcp(self) -> int:
        return self.daemon.sip_port("tcp")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    directory = tmp_path_factory.mktemp("edge")
    secret = directory / "nonce.secret"
    secret.write_text(NONCE_SECRET, encoding="utf-8")
    upstream = UpstreamRecorder()
    data_dir = directory / "data"
    config = edge_config(
        directory,
        data_dir,
        sip=f'upstream = "127.0.0.1:{upstream.port}"\nmax_message_bytes = {MAX_MESSAGE_BYTES}',
        auth=f'algorithms = ["MD5"]\nnonce_secret = {{ file = "{secret}" }}',
        protection=(
            f"lockout_failures = {LOCKOUT_FAILURES}\n"
            f"packet_rate = {PACKET_RATE}\npacket_burst = {PACKET_BURST}"
        ),
        trunks=(f"{TRUNK_IP}/32",),
    )
    daemon = start_daemon(config, data_dir)
    try:
        yield Edge(daemon, upstream, directory)
    finally:
        daemon.stop()
        upstream.close()


# --- REGISTER ----------------------------------------------------------------


@pytest.mark.parametrize("transport", ["u1", "t1"])
def test_register_md5_digest_succeeds(edge: Edge, transport: str) -> None:
    port = edge.udp if transport == "u1" else edge.tcp
    users = users_file(edge.workdir, ("alice", PASSWORDS["alice"], "3600"))
    result = sipp(
        "register.xml",
        f"127.0.0.1:{port}",
        edge.workdir / f"register-{transport}",
        transport=transport,
        extra=("-inf", str(users)),
    )
    assert result.ok, result.output


def test_refreshes_reuse_the_nonce_without_a_new_challenge(edge: Edge) -> None:
    """Phones refresh with the nonce they hold (nc 1, 2, ...): one 401, then 200s."""
    users = users_file(edge.workdir, ("alice", PASSWORDS["alice"], "3600"))
    failures = edge.daemon.metric("callgate_sip_auth_failures_total")
    result = sipp(
        "register_refresh.xml",
        f"127.0.0.1:{edge.udp}",
        edge.workdir / "refresh",
        extra=("-inf", str(users)),
    )
    assert result.ok, result.output
    assert edge.daemon.metric("callgate_sip_auth_failures_total") == failures


def test_a_retransmitted_register_gets_the_same_200(edge: Edge) -> None:
    """The 200 was lost: the phone's retransmission (same nonce-count, same CSeq) must
    not be taken for a replay (401) or an out-of-order request (500)."""
    peer = UdpPeer("127.0.0.1")
    uri = "sip:example.test"
    call = f"retrans-{time.monotonic_ns()}@test"
    try:
        challenge = peer.exchange(
            request("REGISTER", uri, peer.local, user="bob", call_id=call), edge.udp
        )
        assert challenge.status == 401, challenge.raw
        authorization = digest_authorization(
            challenge.get("WWW-Authenticate") or "",
            user="bob", password=PASSWORDS["bob"], method="REGISTER", uri=uri,
        )  # fmt: skip
        contact = f"Contact: <sip:bob@{peer.local[0]}:{peer.local[1]}>"
        register = request(
            "REGISTER", uri, peer.local, user="bob", call_id=call, cseq=2,
            headers=(f"Authorization: {authorization}", contact),
        )  # fmt: skip
        before = edge.daemon.metric("callgate_sip_retransmissions_answered_total")
        first = peer.exchange(register, edge.udp)
        assert first.status == 200, first.raw
        again = peer.exchange(register, edge.udp)
        assert again.raw == first.raw
        assert edge.daemon.metric("callgate_sip_retransmissions_answered_total") == before + 1
    finally:
        peer.close()


def test_wrong_password_rechallenges_then_locks_out(edge: Edge) -> None:
    users = users_file(edge.workdir, ("carol", PASSWORDS["carol"], "not-her-password"))
    before = edge.daemon.metric("callgate_sip_lockouts_total")
    # From its own source address: the lockout is per source and must not hit other tests.
    result = sipp(
        "register_lockout.xml",
        f"127.0.0.1:{edge.udp}",
        edge.workdir / "lockout",
        extra=("-inf", str(users), "-i", "127.0.0.3"),
    )
    assert result.ok, result.output
    locked = edge.daemon.wait_event("sip_source_locked_out")
    assert locked["source"] == "127.0.0.3" and locked["user"] == "carol"
    assert edge.daemon.metric("callgate_sip_lockouts_total") == before + 1
    assert edge.daemon.metric("callgate_sip_auth_failures_total") >= LOCKOUT_FAILURES
    # Another source is not affected.
    peer = UdpPeer("127.0.0.1")
    try:
        answer = peer.exchange(request("REGISTER", "sip:example.test", peer.local), edge.udp)
        assert answer.status == 401
    finally:
        peer.close()


def test_stale_nonce_is_rechallenged_with_stale_true(edge: Edge) -> None:
    """A nonce the edge signed (same nonce_secret) but older than nonce_lifetime."""
    nonces = NonceService(NONCE_SECRET.encode(), lifetime=300)
    peer = UdpPeer("127.0.0.1")
    uri = "sip:example.test"

    def register(nonce: str) -> Message:
        authorization = digest_authorization(
            "Digest x=y", user="bob", password=PASSWORDS["bob"], method="REGISTER", uri=uri,
            nonce=nonce,
        )  # fmt: skip
        return peer.exchange(
            request(
                "REGISTER",
                uri,
                peer.local,
                user="bob",
                headers=(f"Authorization: {authorization}", "Expires: 0"),
            ),
            edge.udp,
        )

    try:
        old = nonces.issue(time.time() - 3600, REALM, peer.local[0])
        stale = register(old)
        assert stale.status == 401, stale.raw
        challenge = stale.get("WWW-Authenticate") or ""
        assert "stale=true" in challenge, challenge
        # The same request with a fresh nonce from the same secret is accepted:
        # only the nonce's age made the difference.
        fresh = register(nonces.issue(time.time(), REALM, peer.local[0]))
        assert fresh.status == 200, fresh.raw
        # And the nonce the edge just issued with stale=true works as well.
        fresh_from_edge = re.search(r'nonce="([^"]+)"', challenge)
        assert fresh_from_edge is not None
        assert register(fresh_from_edge.group(1)).status == 200
    finally:
        peer.close()


def test_expiry_removal_min_expires_and_wildcard(edge: Edge) -> None:
    users = users_file(edge.workdir, ("bob", PASSWORDS["bob"]))
    result = sipp(
        "register_expiry.xml",
        f"127.0.0.1:{edge.udp}",
        edge.workdir / "expiry",
        extra=("-inf", str(users)),
    )
    assert result.ok, result.output


# --- OPTIONS and INVITE admission ----------------------------------------------


def test_options_answered_by_the_edge(edge: Edge) -> None:
    result = sipp("options.xml", f"127.0.0.1:{edge.udp}", edge.workdir / "options")
    assert result.ok, result.output


def test_invite_challenged_407_then_forwarded_with_credentials(edge: Edge) -> None:
    edge.upstream.drain()
    users = users_file(edge.workdir, ("alice", PASSWORDS["alice"]))
    result = sipp(
        "invite_auth.xml",
        f"127.0.0.1:{edge.udp}",
        edge.workdir / "invite-auth",
        # SIPp's digest uri defaults to sip:host:port; ours carries a user part.
        extra=("-inf", str(users), "-s", "callee", "-auth_uri", f"callee@127.0.0.1:{edge.udp}"),
    )
    assert result.ok, result.output
    forwarded = edge.upstream.next()
    assert forwarded.method == "INVITE", forwarded.raw
    assert "Proxy-Authorization" in {n for n, _ in forwarded.headers}
    assert (forwarded.get("CSeq") or "").startswith("2 ")  # not the challenged INVITE
    top_via = forwarded.get_all("Via")[0]
    assert ";branch=z9hG4bKcg" in top_via  # the edge's own Via on top
    assert any("cg=in" in rr for rr in forwarded.get_all("Record-Route"))
    # Next comes the ACK of the 486 (CSeq 2): the ACK of the 407 (CSeq 1) ended at the edge.
    ack = edge.upstream.next()
    assert ack.method == "ACK" and (ack.get("CSeq") or "").startswith("2 "), ack.raw
    assert edge.upstream.drain() == []


def test_invite_from_trunk_forwarded_without_auth(edge: Edge) -> None:
    edge.upstream.drain()
    peer = UdpPeer(TRUNK_IP)
    try:
        invite = request("INVITE", "sip:callee@127.0.0.1", peer.local, user="trunk")
        answer = peer.exchange(invite, edge.udp)
        assert answer.status == 486, answer.raw  # the upstream's answer, relayed
        forwarded = edge.upstream.next()
        assert forwarded.method == "INVITE" and forwarded.get("Proxy-Authorization") is None
    finally:
        peer.close()


# --- bad input -------------------------------------------------------------------


def test_malformed_requests_get_400_naming_the_header(edge: Edge) -> None:
    peer = UdpPeer()
    try:
        uri = f"sip:127.0.0.1:{edge.udp}"
        bad_cseq = request("OPTIONS", uri, peer.local).replace(b"CSeq: 1 OPTIONS", b"CSeq: x y")
        answer = peer.exchange(bad_cseq, edge.udp)
        assert answer.first_line == "SIP/2.0 400 Bad Header: CSeq", answer.raw
        no_call_id = request("OPTIONS", uri, peer.local, omit=("Call-ID",))
        answer = peer.exchange(no_call_id, edge.udp)
        assert answer.first_line == "SIP/2.0 400 Missing Header: Call-ID", answer.raw
        assert peer.exchange(request("OPTIONS", uri, peer.local), edge.udp).status == 200
    finally:
        peer.close()
    assert edge.daemon.metric('callgate_sip_bad_messages_total{transport="udp"}') >= 2


def test_oversized_udp_message_gets_413(edge: Edge) -> None:
    peer = UdpPeer()
    try:
        padding = "X-Padding: " + "a" * (MAX_MESSAGE_BYTES + 100)
        big = request("OPTIONS", f"sip:127.0.0.1:{edge.udp}", peer.local, headers=(padding,))
        answer = peer.exchange(big, edge.udp)
        assert answer.status == 413, answer.raw
    finally:
        peer.close()


def _tcp_options(conn: socket.socket, port: int) -> Message:
    local = conn.getsockname()[:2]
    conn.sendall(request("OPTIONS", f"sip:127.0.0.1:{port}", local, via_transport="TCP"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65535)
        assert chunk, "connection closed"
        data += chunk
    return Message.parse(data)


def test_tcp_framing_error_closes_only_that_connection(edge: Edge) -> None:
    with (
        socket.create_connection(("127.0.0.1", edge.tcp), timeout=TIMEOUT) as good,
        socket.create_connection(("127.0.0.1", edge.tcp), timeout=TIMEOUT) as bad,
    ):
        assert _tcp_options(good, edge.tcp).status == 200
        local = bad.getsockname()[:2]
        broken = request("OPTIONS", f"sip:127.0.0.1:{edge.tcp}", local, via_transport="TCP")
        bad.sendall(broken.replace(b"Content-Length: 0", b"Content-Length: zero"))
        assert bad.recv(65535) == b""  # closed by the edge, without an answer
        assert _tcp_options(good, edge.tcp).status == 200


def test_scanner_user_agent_is_dropped_and_counted(edge: Edge) -> None:
    before = edge.daemon.metric('callgate_sip_dropped_total{reason="user_agent"}')
    peer = UdpPeer()
    try:
        uri = f"sip:127.0.0.1:{edge.udp}"
        scanner = request("OPTIONS", uri, peer.local, headers=("User-Agent: friendly-scanner",))
        peer.send(scanner, edge.udp)
        probe = request("OPTIONS", uri, peer.local, call_id="after-scanner@test")
        # Handled in order: the first answer on this socket is the probe's.
        answer = peer.exchange(probe, edge.udp)
        assert answer.get("Call-ID") == "after-scanner@test", answer.raw
        assert peer.pending() == []
    finally:
        peer.close()
    assert edge.daemon.metric('callgate_sip_dropped_total{reason="user_agent"}') == before + 1


def test_flood_from_one_source_is_dropped_others_served(edge: Edge) -> None:
    flood_count = 3 * PACKET_BURST
    before = edge.daemon.metric('callgate_sip_dropped_total{reason="flood"}')
    flooder, other = UdpPeer("127.0.0.5"), UdpPeer("127.0.0.6")
    try:
        uri = f"sip:127.0.0.1:{edge.udp}"
        started = time.monotonic()
        for _ in range(flood_count):
            flooder.send(request("OPTIONS", uri, flooder.local), edge.udp)
        elapsed = time.monotonic() - started
        # The edge handles datagrams in order: once the other source's answer is
        # back, every flood packet has been answered or dropped.
        assert other.exchange(request("OPTIONS", uri, other.local), edge.udp).status == 200
        answered = len(flooder.pending())
    finally:
        flooder.close()
        other.close()
    dropped = edge.daemon.metric('callgate_sip_dropped_total{reason="flood"}') - before
    allowance = PACKET_BURST + PACKET_RATE * (elapsed + 1.0)
    assert 0 < answered <= allowance, (answered, allowance)
    # The kernel may drop some datagrams under load before the edge sees them,
    # so the counter is bounded, not exact.
    assert dropped > 0 and answered + dropped <= flood_count, (answered, dropped)


def test_trunk_source_is_not_held_to_the_per_source_packet_limit(edge: Edge) -> None:
    """A carrier sends far more than one phone: its configured network is exempt."""
    count = 3 * PACKET_BURST
    before = edge.daemon.metric('callgate_sip_dropped_total{reason="flood"}')
    trunk = UdpPeer(TRUNK_IP)
    try:
        uri = f"sip:127.0.0.1:{edge.udp}"
        answered = 0
        for _ in range(count):  # one at a time: the kernel drops nothing
            answered += trunk.exchange(request("OPTIONS", uri, trunk.local), edge.udp).status == 200
    finally:
        trunk.close()
    assert answered == count
    assert edge.daemon.metric('callgate_sip_dropped_total{reason="flood"}') == before


# --- a full call through the edge -----------------------------------------------


def test_full_call_from_trunk_through_the_edge(tmp_path: Path) -> None:
    """SIPp UAC (trunk address) -> edge -> SIPp UAS as upstream: INVITE..BYE, both exit 0."""
    uas_port = free_udp_port()
    uas_dir = tmp_path / "uas"
    uas_dir.mkdir()
    uas = subprocess.Popen(
        [
            sipp_binary(),
            *("-sf", str(SCENARIOS / "uas_call.xml")),
            *("-i", "127.0.0.1", "-p", str(uas_port), "-m", "1"),
            *("-timeout", "20s", "-timeout_error", "-nostdin", "-trace_err"),
        ],
        cwd=uas_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    data_dir = tmp_path / "data"
    config = edge_config(
        tmp_path, data_dir, sip=f'upstream = "127.0.0.1:{uas_port}"', trunks=(f"{TRUNK_IP}/32",)
    )
    daemon = start_daemon(config, data_dir)
    try:
        uac = sipp(
            "uac_call.xml",
            f"127.0.0.1:{daemon.sip_port('udp')}",
            tmp_path / "uac",
            extra=("-i", TRUNK_IP, "-s", "callee"),
        )
        assert uac.ok, uac.output
        output, _ = uas.communicate(timeout=20)
        errors = "".join(p.read_text(errors="replace") for p in uas_dir.glob("*_errors.log"))
        assert uas.returncode == 0, output[-3000:] + errors
        assert daemon.metric('callgate_sip_forwarded_total{direction="in"}') == 3  # INVITE ACK BYE
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()
        daemon.stop()


# --- TLS and SHA-256 with the pjsua2 UA ------------------------------------------


def test_pjsua2_registers_over_tls_and_udp_with_sha256(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    data_dir = tmp_path / "data"
    config = edge_config(
        tmp_path,
        data_dir,
        listeners=(
            '{ transport = "udp", host = "127.0.0.1", port = 0 },\n'
            f'    {{ transport = "tls", host = "127.0.0.1", port = 0, '
            f'tls_cert = "{cert}", tls_key = "{key}" }},'
        ),
        auth="",  # the default: SHA-256 first, then MD5 (RFC 8760)
    )
    daemon = start_daemon(config, data_dir)
    try:
        for transport, extra in (("tls", ["--tls-no-verify"]), ("udp", [])):
            result = run_pjua(
                [
                    "register",
                    *("--registrar", f"127.0.0.1:{daemon.sip_port(transport)}"),
                    *("--transport", transport, "--user", "alice", "--domain", "example.test"),
                    *("--password", PASSWORDS["alice"], *extra),
                ],
                timeout=15,
            )
            assert result.ok, result.describe()
            assert [e["code"] for e in result.of("reg_state")][-1] == 200, result.describe()
            sent = [e for e in result.of("auth_header") if e["direction"] == "tx"]
            assert sent and {e["algorithm"] for e in sent} == {"SHA-256"}, result.describe()
    finally:
        daemon.stop()


# --- registrations survive a restart ---------------------------------------------


def test_restart_keeps_registrations(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = edge_config(tmp_path, data_dir)
    users = users_file(tmp_path, ("alice", PASSWORDS["alice"], "3600"))
    daemon = start_daemon(config, data_dir)
    try:
        target = f"127.0.0.1:{daemon.sip_port('udp')}"
        result = sipp("register.xml", target, tmp_path / "before", extra=("-inf", str(users)))
        assert result.ok, result.output
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(config, data_dir)
    try:
        restored = [line for line in daemon.lines if '"registrations_restored"' in line]
        assert len(restored) == 1 and '"bindings": 1' in restored[0], daemon.lines
        target = f"127.0.0.1:{daemon.sip_port('udp')}"
        # A REGISTER without Contact is a query: the 200 lists the restored binding.
        result = sipp("register_query.xml", target, tmp_path / "after", extra=("-inf", str(users)))
        assert result.ok, result.output
    finally:
        daemon.stop()
