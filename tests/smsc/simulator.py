"""Python handle on the Node SMSC simulator (``simulator.js``), stdlib only.

The simulator is the independent SMPP peer the gateway is tested against; this
wrapper starts it on ephemeral ports, talks to its JSON control API and makes
sure the process never outlives the test (it also exits on stdin EOF).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

SIMULATOR_DIR = Path(__file__).resolve().parent
SIMULATOR_JS = SIMULATOR_DIR / "simulator.js"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_SYSTEM_ID = "test"
DEFAULT_PASSWORD = "secret"
DEFAULT_START_TIMEOUT = 15.0
DEFAULT_HTTP_TIMEOUT = 30.0  # the control API of a simulator starved on a loaded machine
DEFAULT_STOP_TIMEOUT = 5.0
DEFAULT_POLL_INTERVAL = 0.01

JsonObject = dict[str, Any]
FlagValue = int | str | bool
T = TypeVar("T")


class SimulatorError(RuntimeError):
    """The simulator failed to start, answered with an error, or is not running."""


def _flag_arguments(flags: Mapping[str, FlagValue]) -> list[str]:
    """``throttle_every=3`` -> ``--throttle-every 3``; ``True`` booleans become bare flags."""
    arguments: list[str] = []
    for name, value in flags.items():
        option = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                arguments.append(option)
        else:
            arguments.extend([option, str(value)])
    return arguments


class SmscSimulator:
    """One simulator process.

    ``start(**flags)`` takes the scenario flags of ``simulator.js`` with ``_``
    instead of ``-`` (``dlr_delay_ms=0``, ``throttle_every=3``, ``duplicate_dlrs=True``).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        system_id: str = DEFAULT_SYSTEM_ID,
        password: str = DEFAULT_PASSWORD,
        node: str | None = None,
    ) -> None:
        self.host = host
        self.system_id = system_id
        self.password = password
        self._node = node or shutil.which("node") or "node"
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._smpp_port: int | None = None
        self._control_port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(
        self, *, start_timeout: float = DEFAULT_START_TIMEOUT, **flags: FlagValue
    ) -> SmscSimulator:
        """Launch the simulator and wait for its ``{"smpp_port", "control_port"}`` line."""
        if self._process is not None:
            raise SimulatorError("simulator already started")
        if not (SIMULATOR_DIR / "node_modules" / "smpp").is_dir():
            raise SimulatorError(f"npm packages missing: run `npm ci` in {SIMULATOR_DIR}")
        command = [
            self._node,
            str(SIMULATOR_JS),
            "--host",
            self.host,
            "--port",
            "0",
            "--control-port",
            "0",
            "--system-id",
            self.system_id,
            "--password",
            self.password,
            *_flag_arguments(flags),
        ]
        # stderr goes to a file: an unread pipe would fill up and stall the simulator.
        # It lives as long as the simulator and is closed in __exit__.
        self._log = tempfile.TemporaryFile(  # noqa: SIM115
            mode="w+", encoding="utf-8", prefix="smsc-sim-"
        )
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=SIMULATOR_DIR,
        )
        self._process = process
        try:
            line = self._read_ready_line(process, start_timeout)
            ports = json.loads(line)
            self._smpp_port = int(ports["smpp_port"])
            self._control_port = int(ports["control_port"])
        except (SimulatorError, ValueError, KeyError) as error:
            self.stop()
            raise SimulatorError(f"simulator did not start: {error}") from error
        return self

    @staticmethod
    def _read_ready_line(process: subprocess.Popen[str], timeout: float) -> str:
        """Read the first stdout line without blocking past ``timeout``."""
        assert process.stdout is not None
        fd = process.stdout.fileno()
        os.set_blocking(fd, False)
        deadline = time.monotonic() + timeout
        received = b""
        while b"\n" not in received:
            if time.monotonic() > deadline:
                raise SimulatorError(f"no ready line within {timeout} s")
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                chunk = None
            if chunk:
                received += chunk
                continue
            if chunk == b"" or process.poll() is not None:
                raise SimulatorError(f"simulator exited with {process.wait()}")
            time.sleep(DEFAULT_POLL_INTERVAL)
        return received.split(b"\n", 1)[0].decode()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and release its pipes."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        self._process = None
        self._smpp_port = None
        self._control_port = None

    def __enter__(self) -> SmscSimulator:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------ where it listens

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def smpp_port(self) -> int:
        if self._smpp_port is None:
            raise SimulatorError("simulator not running")
        return self._smpp_port

    @property
    def control_port(self) -> int:
        if self._control_port is None:
            raise SimulatorError("simulator not running")
        return self._control_port

    @property
    def smpp_address(self) -> tuple[str, int]:
        return (self.host, self.smpp_port)

    def log_text(self) -> str:
        """Everything the simulator logged to stderr so far (for failure messages)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read()
        self._log.seek(0, os.SEEK_END)
        return text

    # ------------------------------------------------------------------ control API

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        url = f"http://{self.host}:{self.control_port}{path}"
        data = None if body is None else json.dumps(dict(body)).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=DEFAULT_HTTP_TIMEOUT) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise SimulatorError(f"{method} {path}: HTTP {error.code}: {detail}") from error

    def messages(self) -> list[JsonObject]:
        """Every submit_sm received, in order (see simulator.js for the fields)."""
        result: list[JsonObject] = self._request("GET", "/messages")
        return result

    def deliveries(self) -> list[JsonObject]:
        """Every deliver_sm sent (DLRs and MOs) with the ESME's response status."""
        result: list[JsonObject] = self._request("GET", "/deliveries")
        return result

    def stats(self) -> JsonObject:
        result: JsonObject = self._request("GET", "/stats")
        return result

    def scenario(self) -> JsonObject:
        result: JsonObject = self._request("GET", "/scenario")
        return result

    def set_scenario(self, **flags: FlagValue) -> JsonObject:
        """Change behaviour live; counted flags count submits from now on."""
        result: JsonObject = self._request("POST", "/scenario", flags)
        return result

    def inject_mo(
        self,
        source_addr: str,
        destination_addr: str,
        short_message: str | None = None,
        data_coding: int | None = None,
        *,
        short_message_hex: str | None = None,
        system_id: str | None = None,
        esm_class: int | None = None,
        tlvs: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """Send a mobile-originated deliver_sm to a bound receiver (queued if none is bound)."""
        body: JsonObject = {"source_addr": source_addr, "destination_addr": destination_addr}
        optional: JsonObject = {
            "short_message": short_message,
            "short_message_hex": short_message_hex,
            "data_coding": data_coding,
            "system_id": system_id,
            "esm_class": esm_class,
            "tlvs": dict(tlvs) if tlvs is not None else None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        result: JsonObject = self._request("POST", "/mo", body)
        return result

    def reset(self) -> None:
        """Clear recorded messages, deliveries, stats and queued deliveries."""
        self._request("POST", "/reset", {})

    def restart(self, down_ms: int, mode: str = "bindfail") -> None:
        """Drop every connection and refuse binds (or, ``mode="close"``, connections)."""
        self._request("POST", "/restart", {"down_ms": down_ms, "mode": mode})

    # ------------------------------------------------------------------ waiting

    def wait_for(
        self,
        probe: Callable[[SmscSimulator], T | None],
        timeout: float = DEFAULT_START_TIMEOUT,
        interval: float = DEFAULT_POLL_INTERVAL,
    ) -> T:
        """Poll ``probe(self)`` until it returns something truthy, or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe(self)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    def wait_for_messages(
        self, count: int, timeout: float = DEFAULT_START_TIMEOUT
    ) -> list[JsonObject]:
        """Poll until at least ``count`` submit_sm have been recorded."""
        return self.wait_for(
            lambda sim: msgs if len(msgs := sim.messages()) >= count else None, timeout
        )
