"""The PJSIP engine: the one module that touches pjsua2, and the thread boundary.

pjsua2 runs with `threadCnt = 0` in one dedicated thread that loops over
`libHandleEvents()`; media runs in PJSIP's own C threads. Every pjsua2 object
is created and used only on that thread. asyncio code talks to it through
`PjsipEngine.run()` (a command queue in, a future resolved with
`loop.call_soon_threadsafe` out); nothing else crosses threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.logs import get_logger

_log = get_logger("engine")
T = TypeVar("T")

# How long one libHandleEvents() call may block; bounds command latency.
_POLL_MSEC = 2
_IOQUEUE_LOG = re.compile(r"(\w+) I/O Queue created")


class EngineError(Exception):
    """The engine could not start or a command failed inside it."""


@dataclass(frozen=True)
class EngineSettings:
    """What the engine needs from configuration (kept free of pydantic)."""

    host: str
    port: int
    max_calls: int
    media_threads: int
    rtp_port_start: int
    rtp_port_range: int
    codecs: tuple[str, ...]
    log_level: int
    probe: bool = False
    """Boot with PJSIP logging at level 4 to learn the ioqueue backend (tests, `engine-info`)."""


@dataclass(frozen=True)
class EngineInfo:
    """Facts about the running engine, read once at start."""

    version: str
    ioqueue: str
    sip_host: str
    sip_port: int
    codecs: tuple[str, ...]
    max_conf_ports: int


Command = Callable[[Any], Any]


class PjsipEngine:
    """Owns the pjsua2 Endpoint and the thread it lives on."""

    def __init__(self, settings: EngineSettings, loop: asyncio.AbstractEventLoop) -> None:
        self.settings = settings
        self._loop = loop
        self._commands: queue.SimpleQueue[tuple[Command, asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._started: asyncio.Future[EngineInfo] = loop.create_future()
        self._stopped = threading.Event()
        self.info: EngineInfo | None = None
        self.last_heartbeat = 0.0
        self.failure: str | None = None
        self._writer: Any = None  # pjsua2 keeps a raw pointer: hold a reference

    async def start(self, timeout: float = 30.0) -> EngineInfo:
        """Start the engine thread and wait until pjsua is running."""
        self._thread = threading.Thread(target=self._main, name="pjsip-engine", daemon=True)
        self._thread.start()
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except TimeoutError:
            raise EngineError(f"PJSIP engine did not start within {timeout:.0f} s") from None
        return self.info

    def alive(self, now: float, stall_timeout: float) -> bool:
        """True while the engine thread runs and keeps beating."""
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self.failure is None
            and now - self.last_heartbeat < stall_timeout
        )

    def run(self, command: Callable[[Any], T]) -> asyncio.Future[T]:
        """Run `command(endpoint)` on the engine thread; resolve with its result."""
        future: asyncio.Future[T] = self._loop.create_future()
        if self._stopped.is_set():
            future.set_exception(EngineError("engine is stopped"))
        else:
            self._commands.put((command, future))
        return future

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to shut pjsua down and wait for it."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._commands.put(None)
        await asyncio.to_thread(thread.join, timeout)
        if thread.is_alive():
            _log.error("engine_stop_timeout", timeout=timeout)

    # --- engine thread -----------------------------------------------------

    def _resolve(
        self, future: asyncio.Future[Any], result: Any, error: BaseException | None
    ) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        self._loop.call_soon_threadsafe(settle)

    def _main(self) -> None:
        import pjsua2 as pj  # noqa: PLC0415 - imported on the engine thread only

        endpoint = pj.Endpoint()
        try:
            info = self._boot(pj, endpoint)
        except Exception as exc:  # noqa: BLE001 - pj.Error and friends: report, never raise
            self.failure = f"PJSIP engine failed to start: {_pj_reason(exc)}"
            self._resolve(self._started, None, EngineError(self.failure))
            self._stopped.set()
            _destroy(endpoint)
            return
        self._resolve(self._started, info, None)
        try:
            self._serve(endpoint)
        finally:
            self._stopped.set()
            self._fail_pending(EngineError("engine stopped"))
            _destroy(endpoint)

    def _boot(self, pj: Any, endpoint: Any) -> EngineInfo:
        s = self.settings
        # libCreate logs a few lines through pjlib's own writer (stdout) before
        # our writer exists; send them to stderr so stdout stays clean JSON.
        sys.stdout.flush()
        saved_stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            endpoint.libCreate()
        finally:
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
        writer = self._writer = _LogWriter(pj, s.log_level)
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = s.max_calls
        cfg.uaConfig.userAgent = "Callgate engine"
        cfg.medConfig.threadCnt = s.media_threads
        cfg.medConfig.noVad = True
        cfg.logConfig.writer = writer
        # Level 4 during init exposes which ioqueue pjlib picked; it costs a log
        # line per transaction afterwards, so only probes use it.
        cfg.logConfig.level = max(s.log_level, 4) if s.probe else s.log_level
        cfg.logConfig.consoleLevel = cfg.logConfig.level  # the writer sees what passes this
        cfg.logConfig.msgLogging = False
        endpoint.libInit(cfg)
        endpoint.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = s.host
        tcfg.port = s.port
        transport_id = endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        enabled = _set_codec_priorities(endpoint, s.codecs)
        endpoint.libStart()
        local = endpoint.transportGetInfo(transport_id).localName
        host, _, port = local.rpartition(":")
        ioqueue = next(
            (m.group(1) for line in writer.lines if (m := _IOQUEUE_LOG.search(line))), "unknown"
        )
        writer.collecting = False
        return EngineInfo(
            version=endpoint.libVersion().full,
            ioqueue=ioqueue,
            sip_host=host.strip("[]"),
            sip_port=int(port),
            codecs=enabled,
            max_conf_ports=endpoint.mediaMaxPorts(),
        )

    def _serve(self, endpoint: Any) -> None:
        commands = self._commands
        while True:
            self.last_heartbeat = time.monotonic()
            try:
                endpoint.libHandleEvents(_POLL_MSEC)
            except Exception as exc:  # noqa: BLE001 - one bad event must not kill the engine
                _log.error("engine_event_error", error=_pj_reason(exc))
            while True:
                try:
                    item = commands.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    return
                command, future = item
                try:
                    result = command(endpoint)
                except Exception as exc:  # noqa: BLE001 - handed back to the caller
                    self._resolve(future, None, EngineError(_pj_reason(exc)))
                else:
                    self._resolve(future, result, None)

    def _fail_pending(self, error: EngineError) -> None:
        while True:
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._resolve(item[1], None, error)


def _LogWriter(pj: Any, level: int) -> Any:
    """A pjsua2 LogWriter: collects lines during start-up, forwards the configured level."""

    class Writer(pj.LogWriter):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []
            self.collecting = True

        def write(self, entry: Any) -> None:
            if self.collecting:
                self.lines.append(entry.msg)
            if entry.level <= level:
                _log.info("pjsip", level=entry.level, message=entry.msg.strip())

    return Writer()


def _set_codec_priorities(endpoint: Any, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """Enable the configured codecs in order and disable the rest."""
    available = [c.codecId for c in endpoint.codecEnum2()]
    enabled: list[str] = []
    for codec_id in available:
        endpoint.codecSetPriority(codec_id, 0)
    for rank, codec_id in enumerate(wanted):
        if codec_id in available:
            endpoint.codecSetPriority(codec_id, 250 - rank)
            enabled.append(codec_id)
        else:
            _log.warning("codec_unavailable", codec=codec_id, available=available)
    return tuple(enabled)


def _pj_reason(exc: BaseException) -> str:
    # pj.Error carries its text in `info()`; anything else is its str().
    info = getattr(exc, "info", None)
    if callable(info):
        with contextlib.suppress(Exception):
            return str(info())
    return str(exc) or type(exc).__name__


def _destroy(endpoint: Any) -> None:
    try:
        endpoint.libDestroy()
    except Exception as exc:  # noqa: BLE001 - nothing useful left to do
        _log.warning("engine_destroy_error", error=_pj_reason(exc))
