"""The PJSIP engine: the one module that touches pjsua2, and the thread boundary.

pjsua2 runs with `threadCnt = 0` in one dedicated thread that loops over
`libHandleEvents()`; media runs in PJSIP's own C threads. Every pjsua2 object
is created and used only on that thread. asyncio code talks to it through
`PjsipEngine.run()` (a command queue in, a future resolved with
`loop.call_soon_threadsafe` out) and, for calls, `submit()` (a call command
in, no reply) and the handler given to `attach_calls()` (call events out,
delivered on the loop in batches, one per engine loop turn, and a call's offer
at once: call control's route is what its set-up waits for).
In the daemon's engine process, calls skip that loop: `attach_channel()` makes
the engine thread itself write event batches to, and read commands from, the
socket pair of media/call_channel.py. Nothing else crosses threads. The calls
themselves live in media/b2bua.py, the trunks' accounts in media/trunks.py,
both on this thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from gateway.logs import get_logger
from gateway.realtime import RealtimeRefused, enter_realtime
from gateway.sip.transport import SO_RCVBUFFORCE
from media.b2bua import B2bua
from media.call_channel import EngineEnd, EngineWaker
from media.events import CallCommand, CallEvent, CallOffered, EngineStopped
from media.rtp_ports import plan_ports
from media.session_timer import SessionTimer
from media.trunks import (
    EdgeRoute,
    TrunkAccounts,
    TrunkAccountSettings,
    TrunkRegistration,
    route_through_edge,
    use_ports,
)

_log = get_logger("engine")
T = TypeVar("T")

# How long one libHandleEvents() call may block; bounds command latency.
_POLL_MSEC = 2
_IOQUEUE_LOG = re.compile(r"(\w+) I/O Queue created")


_DEFAULT_SESSION_TIMER = SessionTimer()


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
    receive_buffer: int | None = None
    """Bytes asked for the SIP socket's receive buffer (None: the system default, ~208 KB,
    which dropped datagrams in bursts at a few hundred calls/s)."""
    probe: bool = False
    """Boot with PJSIP logging at level 4 to learn the ioqueue backend (tests, `engine-info`)."""
    session_timer: SessionTimer = _DEFAULT_SESSION_TIMER
    realtime_priority: int = 0
    """`SCHED_RR` priority of the engine thread and the PJSIP threads it starts (0: off)."""


@dataclass(frozen=True)
class EngineInfo:
    """Facts about the running engine, read once at start."""

    version: str
    ioqueue: str
    sip_host: str
    sip_port: int
    codecs: tuple[str, ...]
    max_conf_ports: int
    realtime_refused: str | None = None
    """Why the kernel did not grant `realtime_priority` (None: granted, or not asked)."""


Command = Callable[[Any], Any]
CallHandler = Callable[[Sequence[CallEvent]], None]
"""Receives call events on the asyncio loop, in the order the engine produced them."""
RegistrationHandler = Callable[[TrunkRegistration], None]
"""Receives trunk registration changes on the asyncio loop."""
_QueueItem = tuple[Command, "asyncio.Future[Any]"] | CallCommand | None
# How long shutdown waits for hung-up calls to finish their transactions.
_SHUTDOWN_DRAIN_S = 1.0


class PjsipEngine:
    """Owns the pjsua2 Endpoint and the thread it lives on."""

    def __init__(
        self,
        settings: EngineSettings,
        loop: asyncio.AbstractEventLoop,
        channel: EngineEnd | None = None,
    ) -> None:
        self.settings = settings
        self._loop = loop
        self._channel = channel
        """The calls' channel to the parent process (media/call_channel.py), if any."""
        self._channel_attached = False
        self._commands: queue.SimpleQueue[_QueueItem] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._started: asyncio.Future[EngineInfo] = loop.create_future()
        self._stopped = threading.Event()
        self.info: EngineInfo | None = None
        self.last_heartbeat = 0.0
        self.failure: str | None = None
        self._writer: Any = None  # pjsua2 keeps a raw pointer: hold a reference
        self._call_handler: CallHandler | None = None
        self._registration_handler: RegistrationHandler | None = None
        self._pj: Any = None  # the pjsua2 module, imported on the engine thread
        self._b2bua: B2bua | None = None
        self._events: list[CallEvent] = []  # engine thread only
        self._waker: EngineWaker | None = None
        self._wake_pending = threading.Event()

    def attach_calls(self, handler: CallHandler) -> None:
        """Hand incoming calls to `handler` (call control). Without one they get 503."""
        self._call_handler = handler

    def attach_channel(self) -> None:
        """Hand incoming calls to call control in the parent process: event batches leave
        through the channel from the engine thread itself, commands arrive the same way."""
        if self._channel is None:
            raise EngineError("this engine has no call channel")
        self._channel_attached = True

    def attach_registrations(self, handler: RegistrationHandler) -> None:
        """Hand trunk registration changes to `handler` (logs and metrics)."""
        self._registration_handler = handler

    def route_through_edge(
        self, edge: EdgeRoute, trunks: Sequence[TrunkAccountSettings]
    ) -> asyncio.Future[None]:
        """Send every outgoing request through `edge`; (re)build the trunks' accounts.

        Called once the edge is listening and again on reload; accounts whose
        settings did not change are kept (with their registration).
        """
        wanted = tuple(trunks)
        return self.run(lambda _endpoint: self._apply_trunks(edge, wanted))

    def submit(self, command: CallCommand) -> None:
        """Queue a call command for the engine thread (fire and forget; results come as events)."""
        if not self._stopped.is_set():
            self._commands.put(command)
            self._wake()

    def _wake(self) -> None:
        """End the engine's current poll early, so a command waits microseconds, not a poll."""
        if self._waker is None:
            return
        if self._wake_pending.is_set():
            return  # a wake-up is already on its way; the engine drains the whole queue
        self._wake_pending.set()
        self._waker.wake()

    async def start(self, timeout: float = 30.0) -> EngineInfo:
        """Start the engine thread and wait until pjsua is running."""
        self._thread = threading.Thread(target=self._main, name="pjsip-engine", daemon=True)
        self._thread.start()
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except TimeoutError:
            raise EngineError(f"PJSIP engine did not start within {timeout:.0f} s") from None
        self._waker = EngineWaker(self.info.sip_host, self.info.sip_port)
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
            self._wake()
        return future

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to shut pjsua down and wait for it."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._commands.put(None)
            self._wake()
            await asyncio.to_thread(thread.join, timeout)
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        if thread is not None and thread.is_alive():
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
        try:
            import pjsua2 as pj  # noqa: PLC0415 - imported on the engine thread only
        except ImportError as exc:
            self.failure = (
                f"pjsua2 is not installed ({exc}); run `make setup` to build PJSIP "
                "(the PyPI pjsua2 wheels are not usable: 32 calls at most)"
            )
            self._resolve(self._started, None, EngineError(self.failure))
            self._stopped.set()
            return
        self._pj = pj
        refused = None
        try:
            # Before libInit(): PJSIP's media and clock threads inherit it.
            enter_realtime(self.settings.realtime_priority, threads_inherit=True)
        except RealtimeRefused as exc:
            refused = str(exc)
        endpoint = pj.Endpoint()
        try:
            info = replace(self._boot(pj, endpoint), realtime_refused=refused)
        except Exception as exc:  # noqa: BLE001 - pj.Error and friends: report, never raise
            self.failure = f"PJSIP engine failed to start: {_pj_reason(exc)}"
            self._stopped.set()
            # Down before start() reports the failure: libDestroy() takes a moment, and a
            # new Endpoint created meanwhile would find the old one (PJ_EEXISTS, abort).
            _destroy(endpoint)
            self._resolve(self._started, None, EngineError(self.failure))
            return
        self.last_heartbeat = time.monotonic()  # alive() from the moment start() returns
        self._resolve(self._started, info, None)
        reason = "stopped"
        try:
            self._serve(endpoint)
        except BaseException as exc:  # noqa: BLE001 - the thread ends here either way
            # Make the death visible: alive() false, EngineStopped ends every call.
            reason = f"engine thread died: {_pj_reason(exc)}"
            self.failure = reason
            _log.error("engine_thread_died", error=reason, kind=type(exc).__name__)
        finally:
            self._stopped.set()
            self._fail_pending(EngineError("engine stopped"))
            self._close_calls(endpoint)
            self._events.append(EngineStopped(time.time(), reason, self.failure is not None))
            self._flush_events()
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
        # libDestroy() deletes the writer (pjsua2 owns it once configured): without this,
        # Python deletes it a second time when the engine object goes, and a later
        # libDestroy() of another engine in the process aborts.
        writer.__disown__()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.maxCalls = s.max_calls
        cfg.uaConfig.userAgent = "Callgate engine"
        cfg.medConfig.threadCnt = s.media_threads
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0  # no sound device, nothing to cancel
        # Narrowband bridge: PCMU/PCMA legs need no resampling (wideband legs are resampled).
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
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
        if s.receive_buffer is not None:
            tcfg.sockOptParams = _receive_buffer_options(pj, s.receive_buffer)
        transport_id = endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        enabled = _set_codec_priorities(endpoint, s.codecs)
        endpoint.libStart()
        local = endpoint.transportGetInfo(transport_id).localName
        host, _, port = local.rpartition(":")
        self._b2bua = B2bua(
            pj,
            transport_id=transport_id,
            contact_host=host.strip("[]"),
            contact_port=int(port),
            rtp_port_start=s.rtp_port_start,
            rtp_port_range=s.rtp_port_range,
            session_timer=s.session_timer,
            emit=self._emit,
            has_call_control=lambda: self._call_handler is not None or self._channel_attached,
        )
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
        b2bua = self._b2bua
        assert b2bua is not None
        while True:
            self.last_heartbeat = time.monotonic()
            try:
                endpoint.libHandleEvents(_POLL_MSEC)
            except Exception as exc:  # noqa: BLE001 - one bad event must not kill the engine
                _log.error("engine_event_error", error=_pj_reason(exc))
            self._wake_pending.clear()  # before draining: a later submit wakes us again
            while True:
                try:
                    item = commands.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    return
                if not isinstance(item, tuple):
                    b2bua.execute(item)
                    continue
                command, future = item
                try:
                    result = command(endpoint)
                except Exception as exc:  # noqa: BLE001 - handed back to the caller
                    self._resolve(future, None, EngineError(_pj_reason(exc)))
                except BaseException as exc:
                    self._resolve(future, None, EngineError(f"engine died: {_pj_reason(exc)}"))
                    raise
                else:
                    self._resolve(future, result, None)
            if self._channel is not None:
                for call_command in self._channel.commands():
                    b2bua.execute(call_command)
            b2bua.reap()
            self._flush_events()

    def _apply_trunks(self, edge: EdgeRoute, trunks: tuple[TrunkAccountSettings, ...]) -> None:
        b2bua = self._b2bua
        if b2bua is None:
            raise EngineError("engine is not running")
        s = self.settings
        plan = plan_ports(s.rtp_port_start, s.rtp_port_range, [t.name for t in trunks])
        cfg = b2bua.base_config()
        route_through_edge(cfg, edge)
        use_ports(cfg, plan.engine)
        b2bua.account.modify(cfg)
        if b2bua.trunks is None:
            b2bua.trunks = TrunkAccounts(
                self._pj, b2bua.account_class, b2bua.base_config, self._report_registration
            )
        b2bua.trunks.apply(edge, trunks, plan.trunks)

    def _report_registration(self, event: TrunkRegistration) -> None:
        handler = self._registration_handler
        if handler is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                self._loop.call_soon_threadsafe(handler, event)

    def _emit(self, event: CallEvent) -> None:
        self._events.append(event)
        if isinstance(event, CallOffered):
            # The route is the one answer a call's set-up waits on call control for: ask
            # now, not at the end of this libHandleEvents() turn, which may hold a dozen
            # more messages (p99 2.2 ms at 300 calls/s).
            self._flush_events()

    def _flush_events(self) -> None:
        """Hand this loop turn's call events to asyncio in one wake-up (or one message)."""
        channel = self._channel if self._channel_attached else None
        if channel is not None:
            channel.retry()
        handler = self._call_handler
        if not self._events:
            return
        batch, self._events[:] = list(self._events), []
        if channel is not None:
            channel.send_events(batch)
            return
        if handler is None:
            return

        def deliver() -> None:
            try:
                handler(batch)
            except Exception as exc:  # noqa: BLE001 - call control's bug must not stop delivery
                _log.error("call_handler_error", error=str(exc), kind=type(exc).__name__)

        # A closed loop means nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(deliver)

    def _close_calls(self, endpoint: Any) -> None:
        """Hang up what is left and let the transactions finish, within a bound."""
        b2bua = self._b2bua
        if b2bua is None:
            return
        try:
            b2bua.hang_up_all()
            deadline = time.monotonic() + _SHUTDOWN_DRAIN_S
            while b2bua.bridges and time.monotonic() < deadline:
                endpoint.libHandleEvents(_POLL_MSEC)
            b2bua.reap()
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            _log.warning("engine_close_calls_error", error=_pj_reason(exc))
        b2bua.close()
        self._b2bua = None

    def _fail_pending(self, error: EngineError) -> None:
        while True:
            try:
                item = self._commands.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple):
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


def _receive_buffer_options(pj: Any, size: int) -> Any:
    """Socket options for a receive buffer of `size` bytes: SO_RCVBUF (capped at
    net.core.rmem_max), then SO_RCVBUFFORCE, which goes past the cap where the process
    may (CAP_NET_ADMIN); where it may not, PJSIP's UDP transport logs the failure at
    level 4 and keeps the first."""
    params = pj.SockOptParams()
    options = pj.SockOptVector()
    for name in (socket.SO_RCVBUF, SO_RCVBUFFORCE):
        option = pj.SockOpt(socket.SOL_SOCKET, name, size)
        options.append(option)
    params.sockOpts = options
    return params


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
