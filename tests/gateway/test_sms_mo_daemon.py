"""MO delivery through the whole daemon: SMSC simulator deliver_sm -> store -> webhook.

The webhook is a real HTTP server in this process; the daemon runs as a subprocess.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from smpp.mo_webhook import SIGNATURE_HEADER
from tests.smsc.simulator import SmscSimulator
from tests.support.daemon import DaemonProcess, smsc_table, write_config

SECRET = "e2e-webhook-secret"
NUMBER = "4930123456"
DELIVERED = 'callgate_sms_mo_deliveries_total{channel="webhook",result="delivered"}'
WAIT = 30.0


class Webhook:
    """Records each POST (body, signature); answers 200, or holds the first `hold` requests
    until `release` is set (a delivery in flight)."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, str]] = []
        self.changed = threading.Condition()
        self.hold = 0
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hook.changed:
                    hook.requests.append((body, self.headers.get(SIGNATURE_HEADER, "")))
                    held = len(hook.requests) <= hook.hold
                    hook.changed.notify_all()
                if held:
                    hook.release.wait(WAIT)
                    return  # the client is gone by now: no answer
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_requests(self, count: int) -> list[tuple[bytes, str]]:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.requests) >= count, WAIT):
                raise AssertionError(f"{len(self.requests)} webhook requests, wanted {count}")
            return list(self.requests)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


def start(tmp_path: Path, smsc: SmscSimulator, hook: Webhook) -> DaemonProcess:
    secret = tmp_path / "smsc.pw"
    secret.write_text(smsc.password + "\n")
    hook_secret = tmp_path / "hook.key"
    hook_secret.write_text(SECRET + "\n")
    data_dir = tmp_path / "data"
    extra = f"""
[[accounts]]
name = "alice"
{smsc_table(smsc.host, smsc.smpp_port, smsc.system_id, secret)}
[sms]
default_region = "DE"

[[sms.routes]]
prefix = ""
smsc = ["sim"]

[[sms.numbers]]
account = "alice"
numbers = ["+{NUMBER}"]
channels = ["store", "webhook"]
webhook_url = "{hook.url}"
webhook_secret = {{ file = "{hook_secret}" }}

[sms.mo_delivery]
initial_backoff = 0.2
max_backoff = 1.0
poll_interval = 0.2
webhook_timeout = 60.0
"""
    process = DaemonProcess(write_config(tmp_path / "c.toml", data_dir, extra=extra), data_dir)
    process.wait_event("ready", timeout=WAIT)
    return process


def check(body: bytes, signature: str, text: str) -> str:
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
    document = json.loads(body)
    assert (document["account"], document["from"], document["to"], document["text"]) == (
        "alice",
        "+4915112345678",
        f"+{NUMBER}",
        text,
    )
    assert document["smsc"] == "sim"
    return str(document["id"])


def test_mo_reaches_the_webhook_once(tmp_path: Path, smsc: SmscSimulator, webhook: Webhook) -> None:
    daemon = start(tmp_path, smsc, webhook)
    try:
        smsc.inject_mo("4915112345678", NUMBER, short_message="hi there")
        ((body, signature),) = webhook.wait_requests(1)
        check(body, signature, "hi there")
        daemon.wait_event("sms_mo_delivery_delivered", timeout=WAIT)
        assert daemon.metric(DELIVERED) == 1.0
        # Another MO after the first one was marked: had the first been sent again,
        # it would arrive before this one.
        smsc.inject_mo("4915112345678", NUMBER, short_message="second")
        requests = webhook.wait_requests(2)
        assert [json.loads(b)["text"] for b, _ in requests] == ["hi there", "second"]
    finally:
        daemon.stop()


def test_delivery_in_flight_at_a_crash_is_sent_after_restart(
    tmp_path: Path, smsc: SmscSimulator, webhook: Webhook
) -> None:
    webhook.hold = 1
    daemon = start(tmp_path, smsc, webhook)
    try:
        smsc.inject_mo("4915112345678", NUMBER, short_message="survives")
        ((body, signature),) = webhook.wait_requests(1)  # sent, not yet answered
        first_id = check(body, signature, "survives")
        daemon.signal(signal.SIGKILL)
        assert daemon.proc.wait(WAIT) == -signal.SIGKILL
    finally:
        daemon.stop()
    webhook.release.set()
    restarted = start(tmp_path, smsc, webhook)
    try:
        restarted.wait_event("sms_mo_delivery_delivered", timeout=WAIT)
        requests = webhook.wait_requests(2)
        assert len(requests) == 2
        assert check(*requests[1], "survives") == first_id  # the same message, sent again
        assert restarted.metric(DELIVERED) == 1.0
    finally:
        restarted.stop()
