"""The engine runs in its own process: its death is seen, and the rest of the node lives on."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.calls.test_call_through_edge import trunk_to
from tests.support.daemon import DaemonProcess, write_config
from tests.support.sipp import run_sipp

_TRUNK = trunk_to(9, "")  # the callee is never reached: the engine is dead by then


def _readyz(daemon: DaemonProcess) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(daemon.http_url("/readyz"), timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_engine_process_death_turns_readyz_red_and_calls_get_503(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data_dir, extra=_TRUNK)
    daemon = DaemonProcess(config, data_dir)
    try:
        daemon.wait_event("ready", timeout=30)
        engine_pid = daemon.runtime()["engine"]["pid"]
        assert engine_pid not in (None, daemon.proc.pid)
        assert _readyz(daemon)[0] == 200

        os.kill(engine_pid, signal.SIGKILL)
        died = daemon.wait_event("engine_process_died", timeout=10)
        assert died["exit_code"] == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while (ready := _readyz(daemon))[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready == (503, ready[1]) and ready[1]["checks"] == {"engine": False, "store": True}

        # The edge still answers, and refuses new calls at once instead of losing them.
        udp = f"127.0.0.1:{daemon.sip_port('udp')}"
        assert run_sipp("options.xml", udp, workdir=tmp_path).ok
        refused = run_sipp("call_uac_overload.xml", udp, extra=("-s", "1000"), workdir=tmp_path)
        assert refused.ok, refused.output
        assert daemon.metric('callgate_calls_rejected_total{reason="engine_down"}') == 1
    finally:
        assert daemon.stop() == 0
