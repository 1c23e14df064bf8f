"""Run the real daemon as a subprocess on ephemeral ports and follow its JSON log."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

BASE_CONFIG = """
[node]
name = "test"
data_dir = "{data_dir}"

[daemon]
drain_timeout = {drain_timeout}
{daemon}

[sip]
server_header = "{server_header}"
{sip}
listen = [
    {{ transport = "udp", host = "127.0.0.1", port = 0 }},
    {{ transport = "tcp", host = "127.0.0.1", port = 0 }},{listen}
]

[http]
host = "127.0.0.1"
port = 0

[logging]
format = "json"
level = "debug"
"""


def write_config(
    path: Path,
    data_dir: Path,
    *,
    server_header: str = "Callgate",
    drain_timeout: float = 5.0,
    extra: str = "",
    listen: str = "",
    sip: str = "",
    daemon: str = "",
) -> Path:
    """`listen`: more listener tables (TOML inline tables, comma-first) after UDP and TCP;
    `sip`, `daemon`: more `key = value` lines for the [sip] and [daemon] tables."""
    path.write_text(
        BASE_CONFIG.format(
            data_dir=data_dir,
            server_header=server_header,
            drain_timeout=drain_timeout,
            listen=listen,
            sip=sip,
            daemon=daemon,
        )
        + extra,
        encoding="utf-8",
    )
    return path


def smsc_table(host: str, port: int, system_id: str, password_file: Path) -> str:
    """An `[[smpp.smsc]]` table named "sim" for the SMSC simulator."""
    return f"""
[[smpp.smsc]]
name = "sim"
host = "{host}"
port = {port}
system_id = "{system_id}"
password = {{ file = "{password_file}" }}
"""


class DaemonProcess:
    """`python -m gateway run --config FILE`, with its log events in a queue."""

    def __init__(self, config: Path, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.put(event)
        self.events.put({"event": "<exit>"})

    def wait_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """Block until the daemon logs `name` (or fail with its output)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no {name!r} within {timeout}s; output:\n{''.join(self.lines)}"
                ) from None
            if event.get("event") == name:
                return event
            if event.get("event") == "<exit>":
                raise AssertionError(
                    f"daemon exited ({self.proc.wait()}) before {name!r}:\n{''.join(self.lines)}"
                )

    def runtime(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            (self.data_dir / "run" / "callgate.json").read_text(encoding="utf-8")
        )
        return state

    def sip_port(self, transport: str = "udp") -> int:
        return next(int(s["port"]) for s in self.runtime()["sip"] if s["transport"] == transport)

    def http_url(self, path: str) -> str:
        http = self.runtime()["http"]
        return f"http://{http['host']}:{http['port']}{path}"

    def metrics(self) -> str:
        """The Prometheus page of the admin listener."""
        with urllib.request.urlopen(self.http_url("/metrics"), timeout=5) as response:
            return str(response.read().decode())

    def metric(self, sample: str) -> float:
        """One sample, e.g. `callgate_sip_dropped_total{reason="flood"}` (0 if absent)."""
        for line in self.metrics().splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return 0.0

    def settled_metric(self, sample: str, expected: float, timeout: float = 5.0) -> float:
        """`metric(sample)` once it equals `expected`, or its value when `timeout` runs out:
        a call's end reaches the counters an instant after its last datagram."""
        deadline = time.monotonic() + timeout
        value = self.metric(sample)
        while value != expected and time.monotonic() < deadline:
            time.sleep(0.05)
            value = self.metric(sample)
        return value

    def metric_total(self, family: str) -> float:
        """The sum of a counter over all its labels, e.g. `callgate_calls_finished_total`."""
        return sum(
            float(line.rpartition(" ")[2])
            for line in self.metrics().splitlines()
            if line == family or line.startswith((family + " ", family + "{"))
        )

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode
