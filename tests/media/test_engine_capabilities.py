"""The project's own PJSIP build has what the gateway needs (not the 32-call PyPI wheels)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import socket
import sys
from typing import Any

import pytest

from media.engine import EngineInfo, EngineSettings, PjsipEngine

REQUIRED_CODECS = {"PCMU/8000/1", "PCMA/8000/1", "G722/16000/1", "opus/48000/2"}


def _settings(**overrides: Any) -> EngineSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_calls": 4096,
        "media_threads": 1,
        "rtp_port_start": 40000,
        "rtp_port_range": 2000,
        "codecs": tuple(sorted(REQUIRED_CODECS)),
        "log_level": 0,
        "probe": True,
    }
    return EngineSettings(**{**base, **overrides})


def test_pypi_wheels_are_not_installed() -> None:
    for name in ("pjsua2-python", "pjsua2-pybind11"):
        with pytest.raises(importlib.metadata.PackageNotFoundError):
            importlib.metadata.distribution(name)


async def test_engine_build_capabilities() -> None:
    engine = PjsipEngine(_settings(receive_buffer=3 << 20), asyncio.get_running_loop())
    info: EngineInfo = await engine.start()
    try:
        major, minor = (int(x) for x in info.version.split(".")[:2])
        assert (major, minor) >= (2, 14), info.version
        assert info.ioqueue == "epoll", info
        assert set(info.codecs) == REQUIRED_CODECS, info.codecs
        assert info.max_conf_ports >= 3 * 4096, info.max_conf_ports
        assert info.sip_port > 0
        # The kernel reports twice the size asked for (its bookkeeping share).
        assert _receive_buffer(info.sip_port) == 2 * (3 << 20)
        # More calls than the stock PJSUA_MAX_CALLS (32) can exist at once.
        placed = await engine.run(_place_calls(100))
        assert placed == 100
        await engine.run(lambda ep: ep.hangupAllCalls())
        # Destroy the pjsua2 objects on the engine thread while the library lives:
        # their destructors act on pjsua ids and must not run after libDestroy.
        await engine.run(lambda ep: _keepalive.clear())
    finally:
        await engine.stop()
    assert not engine.alive(0.0, 1.0)


def _receive_buffer(port: int) -> int:
    """SO_RCVBUF of this process's UDP socket bound to `port` (the engine's, here)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket
        with sock:
            inet = sock.family in (socket.AF_INET, socket.AF_INET6)
            if inet and sock.type == socket.SOCK_DGRAM and sock.getsockname()[1] == port:
                return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    raise AssertionError(f"no UDP socket on port {port}")


def _place_calls(count: int) -> Any:
    """A command for the engine thread: place `count` calls to a silent UDP sink."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    target = f"sip:sink@127.0.0.1:{sink.getsockname()[1]}"

    def command(ep: Any) -> int:
        import pjsua2 as pj

        account = pj.Account()
        cfg = pj.AccountConfig()
        cfg.idUri = "sip:capability@127.0.0.1"
        account.create(cfg)
        calls = []
        try:
            for _ in range(count):
                call = pj.Call(account)
                call.makeCall(target, pj.CallOpParam(True))
                calls.append(call)
        finally:
            ep.hangupAllCalls()
            sink.close()
            # pjsua2 keeps raw pointers: keep the objects alive until the test clears them.
            _keepalive.extend([account, *calls])
        return len(calls)

    return command


_keepalive: list[Any] = []


async def test_engine_start_failure_is_reported() -> None:
    # The port is taken: libStart/transportCreate fails and start() says why.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        engine = PjsipEngine(_settings(port=busy.getsockname()[1]), asyncio.get_running_loop())
        with pytest.raises(Exception, match="PJSIP engine failed to start"):
            await engine.start()


async def test_missing_pjsua2_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setitem(sys.modules, "pjsua2", None)  # import now raises ImportError
    engine = PjsipEngine(_settings(), asyncio.get_running_loop())
    with pytest.raises(Exception, match=r"pjsua2 is not installed.*make setup"):
        await engine.start(timeout=10)
