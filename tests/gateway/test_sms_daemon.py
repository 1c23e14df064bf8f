"""SMS through the whole daemon: `callgate sms` CLI -> admin API -> queue -> SMSC simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smsc.blocking_esme import BlockingEsme
from tests.smsc.simulator import SmscSimulator
from tests.support.daemon import DaemonProcess, smsc_table, write_config


def _wait(probe: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)  # polling a separate process; nothing to wait on


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "sms", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def daemon(tmp_path: Path, smsc: SmscSimulator) -> Iterator[tuple[DaemonProcess, Path]]:
    secret = tmp_path / "smsc.pw"
    secret.write_text(smsc.password + "\n")
    esme_secret = tmp_path / "esme.pw"
    esme_secret.write_text("esme-pw\n")
    data_dir = tmp_path / "data"
    extra = f"""
[[accounts]]
name = "alice"

[[accounts]]
name = "bob"
{smsc_table(smsc.host, smsc.smpp_port, smsc.system_id, secret)}window = 20

[[sms.routes]]
prefix = ""
smsc = ["sim"]

[sms.filter]
keywords = ["casino"]

[smpp.server]
host = "127.0.0.1"
port = 0

[[smpp.server.users]]
system_id = "shop"
account = "bob"
password = {{ file = "{esme_secret}" }}
"""
    config = write_config(tmp_path / "c.toml", data_dir, extra=extra)
    process = DaemonProcess(config, data_dir)
    try:
        process.wait_event("ready", timeout=30)
        yield process, config
    finally:
        process.stop()


def _status(config: Path, account: str, message_id: str) -> dict[str, Any]:
    result = _cli("status", message_id, "--account", account, "--config", str(config))
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def test_send_status_stats_through_the_daemon(
    daemon: tuple[DaemonProcess, Path], smsc: SmscSimulator, tmp_path: Path
) -> None:
    _process, config = daemon
    sent = _cli(
        "send",
        "--account",
        "alice",
        "--from",
        "1000",
        "--to",
        "+4930123456",
        "--text",
        "hello from callgate",
        "--config",
        str(config),
    )
    assert sent.returncode == 0, sent.stderr
    destination, message_id = sent.stdout.split()
    assert destination == "+4930123456"

    _wait(lambda: len(smsc.messages()) == 1)
    received = smsc.messages()[0]
    assert received["destination_addr"].endswith("4930123456")
    assert bytes.fromhex(received["short_message_hex"]).decode() == "hello from callgate"
    _wait(lambda: _status(config, "alice", message_id)["state"] == "delivered")

    # Bulk from a file, with a progress bar on stderr.
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("# campaign\n+4930100001\n+4930100002\n+4930100003\n")
    bulk = _cli(
        "send",
        "--account",
        "alice",
        "--from",
        "1000",
        "--file",
        str(numbers),
        "--text",
        "bulk",
        "--config",
        str(config),
    )
    assert bulk.returncode == 0, bulk.stderr
    assert len(bulk.stdout.split("\n")) - 1 == 3 and "3 accepted, 0 rejected" in bulk.stderr
    _wait(lambda: len(smsc.messages()) == 4)

    # The content filter rejects, records the rejection, and says why.
    blocked = _cli(
        "send",
        "--account",
        "alice",
        "--from",
        "1000",
        "--to",
        "+4930100009",
        "--text",
        "win at the casino",
        "--config",
        str(config),
    )
    assert blocked.returncode == 1
    assert "rejected (filter)" in blocked.stderr

    _wait(
        lambda: "delivered 4" in _cli("stats", "--account", "alice", "--config", str(config)).stdout
    )
    stats = _cli("stats", "--account", "alice", "--config", str(config)).stdout
    assert "failed 1" in stats  # the filtered one

    # Accounts see only their own messages.
    other = _cli("status", message_id, "--account", "bob", "--config", str(config))
    assert other.returncode == 1 and "no such message" in other.stderr
    assert len(smsc.messages()) == 4


def test_admin_api_rejects_bad_input(daemon: tuple[DaemonProcess, Path]) -> None:
    process, _config = daemon
    base = process.http_url("/api/v1/accounts")

    def post(path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            base + path, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert post("/alice/sms", b"{not json")[0] == 400
    code, body = post(
        "/alice/sms",
        json.dumps({"source": "1", "destination": "+49301", "text": "x", "colour": "red"}).encode(),
    )
    assert code == 400 and "colour" in body["detail"]
    code, body = post(
        "/mallory/sms", json.dumps({"source": "1", "destination": "+49301", "text": "x"}).encode()
    )
    assert code == 404 and body["error"] == "unknown_account"
    code, body = post(
        "/alice/sms",
        json.dumps({"source": "1", "destination": "not a number", "text": "x"}).encode(),
    )
    assert code == 400 and body["error"] == "bad_number"
    code, _ = post("/alice/sms", b"x" * (70 * 1024))
    assert code == 413


def test_customer_esme_submits_through_the_daemon(
    daemon: tuple[DaemonProcess, Path], smsc: SmscSimulator
) -> None:
    process, _config = daemon
    port = int(process.runtime()["smpp"]["port"])
    with BlockingEsme("127.0.0.1", port) as esme:
        esme.bind("transceiver", system_id="shop", password="esme-pw")
        esme.submit(destination_addr="+4930555000", short_message=b"via smpp")
        response = esme.expect("submit_sm_resp")
    assert response.status == 0 and response.message_id
    _wait(lambda: len(smsc.messages()) == 1)
    assert bytes.fromhex(smsc.messages()[0]["short_message_hex"]) == b"via smpp"
    with BlockingEsme("127.0.0.1", port) as intruder, pytest.raises(Exception) as refused:
        intruder.bind("transceiver", system_id="shop", password="wrong")
    assert "0xd" in str(refused.value).lower() or "13" in str(refused.value)
