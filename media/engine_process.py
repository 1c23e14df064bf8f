"""The PJSIP engine in its own process, behind the same interface as `PjsipEngine`.

Why a process and not just the thread: every pjsua2 callback enters Python and
needs the GIL. In one process with the SIP edge, profiles under load showed the
engine thread spending most of its samples waiting for the GIL inside SWIG
director callbacks while the edge parsed packets; calls then stalled until
their SIP timers fired, with little CPU used. A child process has its own GIL
(and, as a bonus, a PJSIP crash cannot take the edge and the SMS service
down with it: call control sees `EngineStopped` and `/readyz` turns red).

The child runs a `PjsipEngine` on its own asyncio loop. Parent and child speak
length-prefixed pickles over a socketpair: `run()` requests in; `run()`
results, registration changes and heartbeats out. Call commands and call-event
batches, the frozen dataclasses of media/events.py, take a second socket pair
that the engine thread serves itself (media/call_channel.py), so a call's
set-up does not wait for the child's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import pickle
import signal
import socket
import struct
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import uvloop

from gateway.config.models import LoggingConfig
from gateway.logs import configure_logging, get_logger
from media.call_channel import EngineEnd, ParentEnd, channel_pair
from media.engine import (
    CallHandler,
    EngineError,
    EngineInfo,
    EngineSettings,
    PjsipEngine,
    RegistrationHandler,
)
from media.events import CallCommand, CallEvent, EngineStopped
from media.trunks import EdgeRoute, TrunkAccountSettings

_log = get_logger("engine.process")
T = TypeVar("T")

_HEADER = struct.Struct("!I")
# A frame larger than this is a bug (event batches are small); refuse it.
_MAX_FRAME = 64 * 1024 * 1024
# How often the child reports that its engine thread beats.
_BEAT_INTERVAL_S = 0.2
# How long a stop waits for the child before it is killed.
_KILL_AFTER_S = 5.0


def _frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > _MAX_FRAME:
            raise EngineError(f"engine channel frame of {size} bytes")
        return pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own child
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


class EngineProcess:
    """Runs `PjsipEngine` in a child process; same calls as `PjsipEngine` for the daemon."""

    def __init__(
        self,
        settings: EngineSettings,
        loop: asyncio.AbstractEventLoop,
        logging: LoggingConfig | None = None,
    ) -> None:
        self.settings = settings
        self._loop = loop
        self._logging = logging or LoggingConfig()
        self.info: EngineInfo | None = None
        self.failure: str | None = None
        self.last_heartbeat = 0.0
        """When the child last said its engine thread beats (parent's monotonic clock)."""
        self._process: BaseProcess | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._calls: ParentEnd | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[EngineInfo] = loop.create_future()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._call_handler: CallHandler | None = None
        self._registration_handler: RegistrationHandler | None = None
        self._stopping = False
        self._engine_stopped_seen = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def attach_calls(self, handler: CallHandler) -> None:
        """Hand incoming calls to `handler` (call control). Without one they get 503."""
        self._call_handler = handler
        self._send(("attach",))

    def attach_registrations(self, handler: RegistrationHandler) -> None:
        """Hand trunk registration changes to `handler` (logs and metrics)."""
        self._registration_handler = handler
        self._send(("attach_registrations",))

    def route_through_edge(
        self, edge: EdgeRoute, trunks: Sequence[TrunkAccountSettings]
    ) -> asyncio.Future[None]:
        """Send every outgoing request through `edge`; (re)build the trunks' accounts."""
        return self._request("route_through_edge", edge, tuple(trunks))

    def submit(self, command: CallCommand) -> None:
        """Send a call command to the engine (fire and forget; results come as events)."""
        if self._calls is not None and not self._stopping and self.failure is None:
            self._calls.submit(command)

    def run(self, command: Callable[[Any], T]) -> asyncio.Future[T]:
        """Run `command(endpoint)` in the child; it must pickle (a module-level function
        or a `functools.partial` of one), and so must its result."""
        return self._request("run", command)

    def _request(self, kind: str, *args: Any) -> asyncio.Future[Any]:
        """Send a request the child answers with a `result` message."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._writer is None or self._stopping or self.failure is not None:
            future.set_exception(EngineError("engine is stopped"))
            return future
        ident = next(self._ids)
        try:
            frame = _frame((kind, ident, *args))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            future.set_exception(EngineError(f"engine request does not pickle: {exc}"))
            return future
        self._pending[ident] = future
        self._writer.write(frame)
        return future

    async def start(self, timeout: float = 30.0) -> EngineInfo:
        """Start the child and wait until its pjsua is running."""
        parent_sock, child_sock = socket.socketpair()
        calls_parent, calls_child = channel_pair()
        context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        process = context.Process(
            target=_child_main,
            args=(self.settings, self._logging, child_sock, calls_child),
            name="callgate-engine",
            daemon=True,
        )
        process.start()
        child_sock.close()
        calls_child.close()
        self._process = process
        self._calls = ParentEnd(calls_parent, self._loop, self._deliver)
        reader, self._writer = await asyncio.open_connection(sock=parent_sock)
        self._reader_task = asyncio.create_task(self._read(reader))
        if self._call_handler is not None:
            self._send(("attach",))
        if self._registration_handler is not None:
            self._send(("attach_registrations",))
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._started), timeout)
        except TimeoutError:
            raise EngineError(f"PJSIP engine did not start within {timeout:.0f} s") from None
        self._calls.wake_engine_at(self.info.sip_host, self.info.sip_port)
        self.last_heartbeat = time.monotonic()
        return self.info

    def alive(self, now: float, stall_timeout: float) -> bool:
        """True while the child runs and reports an engine thread that keeps beating."""
        process = self._process
        return (
            process is not None
            and process.is_alive()
            and self.failure is None
            and now - self.last_heartbeat < stall_timeout
        )

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to hang up and shut pjsua down; kill it if it does not."""
        self._stopping = True
        process = self._process
        if process is not None and process.is_alive():
            self._send(("stop",))
            await asyncio.to_thread(process.join, timeout)
            if process.is_alive():
                _log.error("engine_stop_timeout", timeout=timeout)
                process.kill()
                await asyncio.to_thread(process.join, _KILL_AFTER_S)
            if process.exitcode not in (0, None):
                _log.warning("engine_process_exit", exit_code=process.exitcode)
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._reader_task, _KILL_AFTER_S)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._calls is not None:
            self._calls.close()

    # --- parent side of the channel -------------------------------------------

    def _send(self, message: object) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_frame(message))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while (message := await _read_frame(reader)) is not None:
            kind = message[0]
            if kind == "registration":
                if self._registration_handler is not None:
                    self._registration_handler(message[1])
            elif kind == "beat":
                if message[1]:
                    self.last_heartbeat = time.monotonic()
            elif kind == "result":
                _, ident, error, value = message
                future = self._pending.pop(ident, None)
                if future is not None and not future.done():
                    if error is None:
                        future.set_result(value)
                    else:
                        future.set_exception(EngineError(error))
            elif kind == "started":
                if not self._started.done():
                    self._started.set_result(message[1])
            elif kind == "failed":
                self.failure = message[1]
                if not self._started.done():
                    self._started.set_exception(EngineError(message[1]))
        await self._child_gone()

    def poll_calls(self) -> None:
        """Take the engine's call events now if some may be waiting (`ParentEnd.poll`)."""
        if self._calls is not None:
            self._calls.poll()

    def _deliver(self, batch: Sequence[CallEvent]) -> None:
        if any(isinstance(event, EngineStopped) for event in batch):
            self._engine_stopped_seen = True
        if self._call_handler is None:
            return
        try:
            self._call_handler(batch)
        except Exception as exc:  # noqa: BLE001 - call control's bug must not stop delivery
            _log.error("call_handler_error", error=str(exc), kind=type(exc).__name__)

    async def _child_gone(self) -> None:
        """The channel closed: a clean stop, or the child died and took its calls along."""
        process = self._process
        if process is not None:
            await asyncio.to_thread(process.join, _KILL_AFTER_S)  # reap it: its exit code
        code = process.exitcode if process is not None else None
        if self._calls is not None:
            self._calls.read()  # the engine's last batches, its EngineStopped among them
            self._calls.close()
        if not self._stopping and self.failure is None:
            self.failure = f"engine process exited (exit code {code})"
            _log.error("engine_process_died", exit_code=code)
        error = EngineError(self.failure or "engine stopped")
        if not self._started.done():
            self._started.set_exception(error)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if not self._engine_stopped_seen:
            reason = self.failure or "stopped"
            self._deliver([EngineStopped(time.time(), reason, crashed=not self._stopping)])


# --- child side --------------------------------------------------------------------


def _child_main(
    settings: EngineSettings,
    logging: LoggingConfig,
    sock: socket.socket,
    calls: socket.socket,
) -> None:
    # The parent owns the node's lifecycle: it drains calls on SIGTERM and then
    # tells us to stop; a signal to the whole process group must not cut in.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    configure_logging(logging)
    # The daemon's loop (uvloop, cheaper wake-ups and I/O) for the child's own traffic:
    # requests, results, heartbeats; calls take the engine thread's own channel.
    uvloop.run(_serve_child(settings, sock, calls))


async def _serve_child(settings: EngineSettings, sock: socket.socket, calls: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(sock=sock)

    def send(message: object) -> None:
        if not writer.is_closing():
            writer.write(_frame(message))

    engine = PjsipEngine(settings, loop, channel=EngineEnd(calls))
    try:
        info = await engine.start()
    except EngineError as exc:
        send(("failed", str(exc)))
        await _close(writer)
        return
    send(("started", info))
    beats = asyncio.create_task(_beat(engine, send))
    running: set[asyncio.Task[None]] = set()
    try:
        while (message := await _read_frame(reader)) is not None:
            kind = message[0]
            if kind == "attach":
                engine.attach_channel()
            elif kind == "attach_registrations":
                engine.attach_registrations(lambda event: send(("registration", event)))
            elif kind in ("run", "route_through_edge"):
                task = asyncio.create_task(_answer(engine, message, send))
                running.add(task)
                task.add_done_callback(running.discard)
            elif kind == "stop":
                break
    finally:
        # Parent gone (EOF) or asked us to stop: hang up, stop pjsua, report the end.
        beats.cancel()
        await engine.stop()
        await asyncio.sleep(0)  # let the engine's last event batch reach send()
        await _close(writer)


async def _beat(engine: PjsipEngine, send: Callable[[object], None]) -> None:
    while True:
        thread_ok = engine.failure is None and engine.alive(time.monotonic(), 2 * _BEAT_INTERVAL_S)
        send(("beat", thread_ok))
        await asyncio.sleep(_BEAT_INTERVAL_S)


async def _answer(
    engine: PjsipEngine, message: tuple[Any, ...], send: Callable[[object], None]
) -> None:
    kind, ident, *args = message
    result: Any = None
    try:
        if kind == "run":
            result = await engine.run(args[0])
        else:
            await engine.route_through_edge(args[0], args[1])
    except Exception as exc:  # noqa: BLE001 - handed back to the parent
        send(("result", ident, str(exc) or type(exc).__name__, None))
        return
    try:
        send(("result", ident, None, result))
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        send(("result", ident, f"engine result does not pickle: {exc}", None))


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
