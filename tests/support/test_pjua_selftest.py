"""Self-test of the pjsua2 far-end agent: two pjua processes call each other on loopback.

Also pins what PJSIP 2.17 does with digest challenges (which algorithm it
answers), against a few-line UDP challenger, since the daemon's SHA-256
tests rely on the `auth_header` event.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.pjua_client import PjuaResult, pjua_answer, run_pjua

pytestmark = pytest.mark.engine
pytest.importorskip("pjsua2", reason="needs the project's pjsua2 build (make test)")


def _ended_cleanly(result: PjuaResult, ended_by: str) -> None:
    assert result.ok, result.describe()
    states = result.call_states()
    assert "CONFIRMED" in states, result.describe()
    assert states[-1] == "DISCONNECTED", result.describe()
    assert states.index("CONFIRMED") < len(states) - 1, result.describe()
    end = [e for e in result.of("call_state") if e["state"] == "DISCONNECTED"][-1]
    assert end["ended_by"] == ended_by, result.describe()
    assert any(m["status"] == "ACTIVE" for m in result.of("media_state")), result.describe()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_call_is_confirmed_and_ends_cleanly(transport: str) -> None:
    with pjua_answer(["--listen-transport", transport, "--hold-s", "10"]) as answerer:
        caller = run_pjua(
            [
                "call",
                "--target",
                f"sip:answer@127.0.0.1:{answerer.port}",
                "--transport",
                transport,
                "--hangup-after-s",
                "0.5",
            ]
        )
        callee = answerer.wait()
    _ended_cleanly(caller, ended_by="local")
    _ended_cleanly(callee, ended_by="remote")
    assert caller.of("sip_message")[0]["first_line"].startswith("INVITE sip:answer@127.0.0.1")
    call_ids = {e["call_id"] for e in caller.of("call_state") + callee.of("call_state")}
    assert len(call_ids) == 1


def test_ringing_then_answer_and_the_callee_hangs_up() -> None:
    with pjua_answer(["--ring-ms", "300", "--hold-s", "0.3"]) as answerer:
        caller = run_pjua(
            ["call", "--target", answerer.uri, "--hangup-after-s", "10"],
        )
        callee = answerer.wait()
    _ended_cleanly(caller, ended_by="remote")
    _ended_cleanly(callee, ended_by="local")
    early = [e for e in caller.of("call_state") if e["state"] == "EARLY"]
    assert early and early[0]["code"] == 180, caller.describe()


def test_rejected_call_reports_the_code() -> None:
    with pjua_answer(["--code", "486"]) as answerer:
        caller = run_pjua(["call", "--target", answerer.uri])
        callee = answerer.wait()
    assert caller.returncode == 1, caller.describe()
    assert "CONFIRMED" not in caller.call_states()
    assert caller.of("call_state")[-1]["code"] == 486, caller.describe()
    assert callee.ok, callee.describe()

    with pjua_answer(["--code", "486"]) as answerer:
        expected = run_pjua(["call", "--target", answerer.uri, "--expect-code", "486"])
    assert expected.ok, expected.describe()


def test_nobody_answers_within_the_timeout() -> None:
    with pjua_answer(timeout=1.5) as answerer:
        result = answerer.wait()
    assert result.returncode == 2, result.describe()
    assert result.of("timeout") and result.exit_reason == "no call arrived"


# --- register: failures without a registrar ------------------------------------


@pytest.fixture
def silent_udp_port() -> Iterator[int]:
    """A bound UDP port that never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def refusing_tcp_port() -> Iterator[int]:
    """A bound TCP port that does not listen: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _register(port: int, transport: str, *extra: str, timeout: float = 15.0) -> PjuaResult:
    return run_pjua(
        [
            "register",
            "--registrar",
            f"127.0.0.1:{port}",
            "--transport",
            transport,
            "--user",
            "alice",
            "--domain",
            "example.test",
            "--password",
            "secret",
            *extra,
        ],
        timeout=timeout,
    )


def test_register_refused_over_tcp_fails_with_503(refusing_tcp_port: int) -> None:
    result = _register(refusing_tcp_port, "tcp")
    assert result.returncode == 1, result.describe()
    states = result.of("reg_state")
    assert states[0]["code"] == 503 and states[0]["active"] is False, result.describe()
    assert "503" in result.exit_reason


def test_register_without_answer_over_udp_times_out(silent_udp_port: int) -> None:
    result = _register(silent_udp_port, "udp", timeout=2)
    assert result.returncode == 2, result.describe()
    assert result.of("timeout"), result.describe()
    # Anything PJSIP reports while tearing down is marked as such.
    assert all(e.get("shutdown") for e in result.of("reg_state")), result.describe()


# --- register: which digest algorithm PJSIP answers ------------------------------


class Challenger:
    """A UDP registrar stand-in: 401 with the given challenges to any REGISTER
    without credentials, 200 to any with; records the Authorization headers."""

    def __init__(self, challenges: list[str], stale_rechallenge: bool = False) -> None:
        self.challenges = challenges
        self.stale_rechallenge = stale_rechallenge
        self.authorizations: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Challenger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            request = data.decode()
            auth = re.findall(r"(?im)^Authorization:\s*(.*?)\r$", request)
            self.authorizations.extend(auth)
            if not auth:
                self.sock.sendto(self._response(request, 401, self.challenges), peer)
            elif self.stale_rechallenge and len(self.authorizations) == 1:
                stale = [f"{c}, stale=true" for c in self.challenges]
                self.sock.sendto(self._response(request, 401, stale), peer)
            else:
                self.sock.sendto(self._response(request, 200, []), peer)

    @staticmethod
    def _response(request: str, code: int, challenges: list[str]) -> bytes:
        copied = re.findall(r"(?im)^((?:Via|From|To|Call-ID|CSeq):.*?)\r$", request)
        lines = [f"SIP/2.0 {code} {'OK' if code == 200 else 'Unauthorized'}"]
        lines += [h + ";tag=c1" if h.lower().startswith("to:") else h for h in copied]
        if code == 200:
            contact = re.search(r"(?im)^Contact:\s*(.*?)\r$", request)
            assert contact is not None
            lines.append(f"Contact: {contact.group(1)};expires=60")
        lines += [f"WWW-Authenticate: {c}" for c in challenges]
        return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def _digest(algorithm: str, nonce: str = "n1") -> str:
    return f'Digest realm="example.test", nonce="{nonce}", qop="auth", algorithm={algorithm}'


@pytest.mark.parametrize(
    ("challenges", "answered"),
    [
        pytest.param([_digest("SHA-256")], "SHA-256", id="sha256-only"),
        pytest.param([_digest("SHA-256"), _digest("MD5")], "SHA-256", id="sha256-first"),
        pytest.param([_digest("MD5"), _digest("SHA-256")], "MD5", id="md5-first"),
        # PJSIP quirk: a later header for the same realm with a different nonce
        # is taken as a stale re-challenge and replaces the first answer.
        pytest.param([_digest("SHA-256", "n1"), _digest("MD5", "n2")], "MD5", id="distinct-nonces"),
    ],
)
def test_pjsip_answers_the_digest_algorithm(challenges: list[str], answered: str) -> None:
    with Challenger(challenges) as challenger:
        result = _register(challenger.port, "udp", timeout=5)
    assert result.ok, result.describe()
    offered = [e["algorithm"] for e in result.of("challenge")]
    assert offered == [c.rpartition("=")[2] for c in challenges]
    sent = result.of("auth_header")
    assert [e["algorithm"] for e in sent] == [answered], result.describe()
    assert challenger.authorizations == [sent[0]["value"]]
    assert f"algorithm={answered}," in challenger.authorizations[0]


def test_stale_rechallenge_with_sha256_first_is_answered_with_md5() -> None:
    """PJSIP quirk: on a stale=true re-challenge every header counts as stale,
    so the last one (MD5) replaces the SHA-256 answer."""
    with Challenger([_digest("SHA-256"), _digest("MD5")], stale_rechallenge=True) as challenger:
        result = _register(challenger.port, "udp", timeout=5)
    assert result.ok, result.describe()
    assert [e["algorithm"] for e in result.of("auth_header")] == ["SHA-256", "MD5"]
    assert len(challenger.authorizations) == 2
