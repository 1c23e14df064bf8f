"""The calls' own channel between the daemon and the engine thread in its child process.

Call commands and call events are the hot path of every call set-up: the
CallOffered event goes out, the PlaceCallee command comes back. Through the
child's asyncio loop each of them took two extra wake-ups (engine thread ->
child loop -> parent, parent -> child loop -> engine thread), and the child's
main thread competed with the engine thread for the child's GIL. Here the
engine thread itself reads commands and writes events on an AF_UNIX
SOCK_SEQPACKET socket pair: one message per batch, boundaries kept by the
kernel, no framing, and end of stream when either side goes.

The parent wakes the engine the way an in-process submit does: a datagram of
bare CRLF to the engine's SIP port ends its poll (PJSIP drops it unparsed).
The rest of the child's traffic (requests, results, heartbeats, registration
changes) stays on the child's stream channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence

from gateway.logs import get_logger
from media.events import CallCommand, CallEvent

_log = get_logger("engine.channel")

# A message is one pickled batch; larger batches are split so the receive buffer fits any.
# The engine hears SIP over UDP (<= 64 KB a message), so no event comes near this; and a
# socket buffer capped by a stock net.core.wmem_max (208 KB, doubled) still takes it.
MAX_MESSAGE = 128 * 1024
# Socket buffers: a parent busy for a moment must not make the engine thread wait
# (the kernel caps them at net.core.wmem_max/rmem_max; the outboxes take the rest).
_BUFFER = 4 * 1024 * 1024
# While the SIP edge works through a burst of datagrams, a route request from the engine
# waited for the whole burst (p99 ~2 ms at 300 calls/s). The edge looks in between its
# datagrams, at most this often: each look is a recv that usually finds nothing.
POLL_EVERY_S = 0.0002
# Ends an engine's libHandleEvents() wait; PJSIP drops a bare-CRLF datagram (keep-alive).
WAKE = b"\r\n\r\n"


class EngineWaker:
    """Ends an engine's libHandleEvents() wait early: a WAKE datagram to its SIP socket,
    so a queued command waits microseconds, not a poll."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._address = (host, port)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # then the commands wait for the next poll
            self._sock.sendto(WAKE, self._address)

    def close(self) -> None:
        self._sock.close()


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, child end), both with buffers sized for bursts."""
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in pair:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
    return pair


def encode(items: Sequence[object]) -> list[bytes]:
    """`items` as one pickled message, or several when one would exceed MAX_MESSAGE.

    An item too large for a message on its own is logged and left out: it cannot come
    from a SIP message the edge accepted, and raising here would end the engine thread.
    """
    data = pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) <= MAX_MESSAGE:
        return [data]
    if len(items) == 1:
        _log.error("call_channel_item_too_large", kind=type(items[0]).__name__, size=len(data))
        return []
    half = len(items) // 2
    return encode(items[:half]) + encode(items[half:])


def decode(message: bytes | memoryview) -> list[object]:
    items = pickle.loads(message)  # noqa: S301 - our own peer on a private socket pair
    if not isinstance(items, list):
        raise TypeError(f"call channel message is a {type(items).__name__}, not a list")
    return items


def _decoded(message: bytes | memoryview) -> list[object]:
    """`decode`, or nothing (logged) for a message that does not decode: one bad message
    must not end the engine thread or the daemon's reader."""
    try:
        return decode(message)
    except Exception as exc:  # noqa: BLE001 - unpickling raises nearly anything
        _log.error("call_channel_bad_message", error=str(exc), kind=type(exc).__name__)
        return []


class _Channel:
    """One end: a non-blocking SOCK_SEQPACKET socket. Messages it cannot take yet wait
    here and go, in order, on a later `flush`."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.waiting: deque[bytes] = deque()
        self._buffer = bytearray(MAX_MESSAGE)  # reused: no allocation per message read

    def send(self, messages: list[bytes]) -> None:
        self.waiting.extend(messages)
        self.flush()

    def flush(self) -> None:
        """Send what the socket takes now; raises OSError other than a full buffer."""
        while self.waiting:
            try:
                self.sock.send(self.waiting[0])
            except BlockingIOError:
                return
            self.waiting.popleft()

    def receive(self) -> tuple[list[object], bool]:
        """The items of every message waiting now, and whether the peer is gone."""
        items: list[object] = []
        view = memoryview(self._buffer)
        while True:
            try:
                size = self.sock.recv_into(view)
            except BlockingIOError:
                return items, False
            except OSError:
                return items, True
            if not size:
                return items, True
            items.extend(_decoded(view[:size]))


class EngineEnd:
    """The child's end, used only on the engine thread."""

    def __init__(self, sock: socket.socket) -> None:
        self._channel = _Channel(sock)
        self.closed = False

    def commands(self) -> list[CallCommand]:
        """Every command that arrived since the last call (no waiting)."""
        if self.closed:
            return []
        received, gone = self._channel.receive()
        if gone:
            self.closed = True  # the parent went; the stream channel ends the child
        return received  # type: ignore[return-value]

    def send_events(self, batch: Sequence[CallEvent]) -> None:
        """Queue `batch` for the parent; what the socket cannot take now goes on the next turn."""
        self._send(encode(batch))

    def retry(self) -> None:
        """Send events a full buffer held back (called every engine loop turn)."""
        if self._channel.waiting:
            self._send([])

    def _send(self, messages: list[bytes]) -> None:
        if self.closed:
            return
        try:
            self._channel.send(messages)
        except OSError as exc:
            self.closed = True
            _log.warning("call_channel_closed", error=str(exc))

    def close(self) -> None:
        self.closed = True
        self._channel.sock.close()


class ParentEnd:
    """The daemon's end, on its asyncio loop."""

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[list[CallEvent]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel = _Channel(sock)
        self._loop = loop
        self._deliver = deliver
        self._clock = clock
        self._read_at = clock()
        self._pending: list[CallCommand] = []
        self._waker: EngineWaker | None = None
        self._writing = False
        self.closed = False
        loop.add_reader(sock.fileno(), self.read)

    def wake_engine_at(self, host: str, port: int) -> None:
        """Where the engine's SIP socket listens (known once it started)."""
        self._waker = EngineWaker(host, port)

    def submit(self, command: CallCommand) -> None:
        """Send `command` at the end of this loop turn, with the turn's others in one message
        (or, submitted while `read` delivers events, as soon as they are handled)."""
        if self.closed:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(command)

    def _flush(self) -> None:
        commands, self._pending = self._pending, []
        if self.closed or not commands:
            return
        try:
            self._channel.send(encode(commands))
        except OSError as exc:
            _log.warning("call_channel_closed", error=str(exc))
            self.close()
            return
        if self._channel.waiting and not self._writing:
            self._writing = True
            self._loop.add_writer(self._channel.sock.fileno(), self._drain)
        self._wake()

    def _drain(self) -> None:
        try:
            self._channel.flush()
        except OSError:
            self.close()
            return
        if not self._channel.waiting:
            self._writing = False
            self._loop.remove_writer(self._channel.sock.fileno())
        self._wake()

    def _wake(self) -> None:
        if self._waker is not None:
            self._waker.wake()

    def poll(self) -> None:
        """`read` now unless it ran within POLL_EVERY_S: for a busy loop to call between
        other work, so the engine's events need not wait for the loop's next turn."""
        if self._clock() - self._read_at >= POLL_EVERY_S:
            self.read()

    def read(self) -> None:
        """Deliver every event batch waiting on the socket, then send the commands that
        answered them (also called once the child ended)."""
        if self.closed:
            return
        self._read_at = self._clock()
        batch, gone = self._channel.receive()
        if batch:
            self._deliver(batch)  # type: ignore[arg-type]
            # The commands answering these events (a route) go now, not after whatever
            # else this loop turn runs: the engine waits for them to place the callee.
            self._flush()
        if gone:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        sock = self._channel.sock
        self._loop.remove_reader(sock.fileno())
        if self._writing:
            self._loop.remove_writer(sock.fileno())
        sock.close()
        if self._waker is not None:
            self._waker.close()
