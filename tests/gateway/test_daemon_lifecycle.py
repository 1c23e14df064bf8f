"""The daemon as a subprocess: SIP OPTIONS via SIPp, health, SIGHUP reload, SIGTERM drain."""

from __future__ import annotations

import json
import signal
import socket
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.daemon import DaemonProcess, write_config
from tests.support.sipp import run_sipp


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _options_server_header(port: int) -> str:
    """Send one OPTIONS over UDP and return the Server header of the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{time.monotonic_ns()}\r\n"
            f"From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: reload-{time.monotonic_ns()}\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", port))
        data, _ = sock.recvfrom(65535)
    for line in data.decode().split("\r\n"):
        if line.lower().startswith("server:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Server header in {data!r}")


def test_daemon_serves_reloads_and_drains(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "callgate.toml", data_dir, server_header="First", drain_timeout=5
    )
    daemon = DaemonProcess(config, data_dir)
    try:
        settled = daemon.wait_event("collector_settled", timeout=30)
        assert settled["thresholds"] == [50_000, 20, 100]  # [daemon] gc_thresholds default
        assert settled["frozen_objects"] > 10_000  # what start-up built
        daemon.wait_event("ready", timeout=30)
        udp = daemon.sip_port("udp")
        tcp = daemon.sip_port("tcp")

        # SIP OPTIONS answered 200 by a real peer over UDP and TCP.
        result = run_sipp("options.xml", f"127.0.0.1:{udp}", workdir=tmp_path)
        assert result.ok, result.output
        result = run_sipp("options.xml", f"127.0.0.1:{tcp}", transport="t1", workdir=tmp_path)
        assert result.ok, result.output

        # Health, readiness and metrics.
        assert _get(daemon.http_url("/healthz"))[0] == 200
        status, body = _get(daemon.http_url("/readyz"))
        assert status == 200, body
        assert json.loads(body)["checks"] == {"engine": True, "store": True}
        status, body = _get(daemon.http_url("/metrics"))
        assert status == 200 and b'callgate_sip_requests_total{method="OPTIONS"}' in body

        # SIGHUP with a broken file: rejected with the reason, still serving the old config.
        good = config.read_text()
        config.write_text(good + "\n[sip.bogus]\n")
        daemon.signal(signal.SIGHUP)
        rejected = daemon.wait_event("config_reload_rejected")
        assert any("unknown key" in p for p in rejected["problems"]), rejected
        assert _options_server_header(udp) == "First"

        # SIGHUP with a valid change: applied.
        write_config(config, data_dir, server_header="Second", drain_timeout=5)
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("config_reloaded")
        assert _options_server_header(udp) == "Second"

        # SIGTERM: drains and exits 0 within the drain timeout.
        started = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.proc.wait(timeout=5 + 5) == 0
        assert time.monotonic() - started < 5 + 2
        daemon.wait_event("stopped")
    finally:
        daemon.stop()


def test_occupied_port_stops_startup_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        data_dir = tmp_path / "data"
        config = write_config(tmp_path / "c.toml", data_dir)
        config.write_text(
            config.read_text().replace(
                '{ transport = "udp", host = "127.0.0.1", port = 0 }',
                f'{{ transport = "udp", host = "127.0.0.1", port = {port} }}',
            )
        )
        daemon = DaemonProcess(config, data_dir)
        code = daemon.proc.wait(timeout=30)
        daemon._reader.join(5)
    assert code == 1
    output = "".join(daemon.lines)
    assert "cannot open SIP listener" in output and "[sip] listen" in output, output


def test_missing_config_file_is_one_clear_line(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "absent.toml", tmp_path)
    assert daemon.proc.wait(timeout=30) == 1
    daemon._reader.join(5)
    assert "absent.toml: file not found" in "".join(daemon.lines)


def test_systemd_notify_protocol(tmp_path: Path) -> None:
    """READY, WATCHDOG, RELOADING and STOPPING reach NOTIFY_SOCKET as systemd expects."""
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)  # start-up on a loaded CI machine
        data_dir = tmp_path / "data"
        config = write_config(tmp_path / "c.toml", data_dir, drain_timeout=2)
        daemon = DaemonProcess(
            config,
            data_dir,
            env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "200000"},
        )
        try:
            seen: list[str] = []

            def expect(field: str) -> None:
                while not any(field in message for message in seen):
                    seen.append(notify.recv(4096).decode())

            expect("READY=1")
            expect("WATCHDOG=1")
            daemon.signal(signal.SIGHUP)
            expect("RELOADING=1")
            daemon.signal(signal.SIGTERM)
            expect("STOPPING=1")
            assert daemon.proc.wait(timeout=10) == 0
        finally:
            daemon.stop()
    reloading = next(m for m in seen if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in reloading


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """The shipped unit passes `systemd-analyze verify` (ExecStart pointed at this venv)."""
    import shutil
    import subprocess
    import sys

    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze missing: `make test` installs systemd"
    root = Path(__file__).resolve().parents[2]
    unit = (root / "systemd" / "callgate.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    # The unit lets the production example's real-time priority through.
    production = tomllib.loads((root / "config" / "examples" / "production.toml").read_text())
    limit = next(line for line in unit.splitlines() if line.startswith("LimitRTPRIO="))
    assert int(limit.partition("=")[2]) >= production["daemon"]["realtime_priority"] > 0
    assert "RestrictRealtime=yes" not in unit
    callgate = Path(sys.executable).parent / "callgate"
    local = tmp_path / "callgate.service"
    local.write_text(unit.replace("/opt/callgate/.venv/bin/callgate", str(callgate)))
    result = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_ipv6_listeners_answer_options(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data_dir)
    config.write_text(
        config.read_text().replace('host = "127.0.0.1", port = 0 }', 'host = "::1", port = 0 }')
    )
    daemon = DaemonProcess(config, data_dir)
    try:
        daemon.wait_event("ready", timeout=30)
        for transport, mode in (("udp", "u1"), ("tcp", "t1")):
            port = daemon.sip_port(transport)
            result = run_sipp(
                "options.xml", f"[::1]:{port}", transport=mode, workdir=tmp_path, local_ip="::1"
            )
            assert result.ok, result.output
    finally:
        daemon.stop()


def _thread_policies(pid: int) -> dict[int, tuple[int, int]]:
    """Thread id -> (scheduling policy, real-time priority), from /proc."""
    policies = {}
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # field 3 onwards
        policies[int(task.name)] = (int(fields[38]), int(fields[37]))  # fields 41 and 40
    return policies


def test_realtime_priority_schedules_the_call_threads_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data_dir, daemon="realtime_priority = 3")
    daemon = DaemonProcess(config, data_dir)
    try:
        assert daemon.wait_event("realtime_scheduling", timeout=30)["priority"] == 3
        daemon.wait_event("ready", timeout=30)
        pid = daemon.proc.pid
        rr, other = 2, 0  # SCHED_RR, SCHED_OTHER
        # The loop thread (SIP edge, call control) only; writers and workers stay fair.
        threads = _thread_policies(pid)
        assert threads.pop(pid) == (rr, 3)
        assert threads and all(policy == other for policy, _ in threads.values()), threads
        # The engine process: its engine thread and PJSIP's threads, not its main thread.
        children = (Path("/proc") / str(pid) / "task" / str(pid) / "children").read_text()
        engine = next(
            int(child)
            for child in children.split()
            if any(policy == rr for policy, _ in _thread_policies(int(child)).values())
        )
        threads = _thread_policies(engine)
        assert threads.pop(engine)[0] == other
        assert sum(policy == rr for policy, _ in threads.values()) >= 3, threads
        result = run_sipp("options.xml", f"127.0.0.1:{daemon.sip_port()}", workdir=tmp_path)
        assert result.ok, result.output
    finally:
        daemon.stop()
