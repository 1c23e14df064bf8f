"""asyncio adapter around `SmppServerSession`: the listening socket, one session
per connection, submits handed to the SMS service.

Each connection is an `asyncio.Protocol` that feeds its session, writes what
the session wants sent and re-arms one timer at `session.next_timer()`. A bug
in one connection (an exception anywhere in its callbacks or its submits) is
logged and aborts that connection only. Connections beyond `max_connections`
or `max_connections_per_ip` are closed right after accept. While the peer does
not read, reading from it pauses, so a client cannot make the server queue
answers without bound. `stop()` stops accepting, unbinds every bound session
(answers to submits already being processed still go out) and closes what is
left after `shutdown_grace`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol, cast

from gateway.logs import get_logger
from smpp.config import SmppServerConfig
from smpp.pdu import CommandStatus
from smpp.server_session import (
    ESME_RINVEXPIRY,
    ESME_RINVSCHED,
    BindAccepted,
    BindRejected,
    ServerSessionSettings,
    SessionClosed,
    SmppServerSession,
    SmppTimeError,
    SubmitReceived,
    smpp_time,
)
from smpp.submit_result import Accepted, SubmitResult

UNKNOWN_PEER: Final = "unknown"
_NO_PASSWORD: Final = b"\0" * 9
"""Compared against when the system_id is unknown, so both cases take as long."""

_log = get_logger("smpp.server")


class SubmitService(Protocol):
    """What the server needs of `smpp.service.SmsService`."""

    async def submit(
        self,
        account: str,
        source: str,
        destination: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        scheduled_at: float | None = None,
        validity: float | None = None,
    ) -> SubmitResult: ...


class UserDirectory:
    """`BindAuthenticator` over `[[smpp.server.users]]`, passwords read once."""

    def __init__(self, users: Mapping[str, tuple[str, str]]) -> None:
        self._users = {
            system_id: (account, password.encode("utf-8"))
            for system_id, (account, password) in users.items()
        }

    @classmethod
    def from_config(cls, config: SmppServerConfig) -> UserDirectory:
        """Raises `SecretUnavailableError` when a password cannot be read."""
        return cls(
            {
                user.system_id: (user.account, user.password.reveal().get_secret_value())
                for user in config.users
            }
        )

    def authenticate(self, system_id: str, password: str) -> str | None:
        entry = self._users.get(system_id)
        expected = entry[1] if entry is not None else _NO_PASSWORD
        matches = hmac.compare_digest(password.encode("utf-8"), expected)
        return entry[0] if entry is not None and matches else None


def session_settings(config: SmppServerConfig) -> ServerSessionSettings:
    return ServerSessionSettings(
        system_id=config.system_id,
        bind_timeout=config.bind_timeout,
        inactivity_timeout=config.inactivity_timeout,
        response_timeout=config.response_timeout,
        window=config.window,
        max_pdu_rate=config.max_pdu_rate,
        pdu_burst=config.pdu_burst,
        max_pdu_bytes=config.max_pdu_bytes,
    )


def tls_context(config: SmppServerConfig) -> ssl.SSLContext | None:
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return context


@dataclass(slots=True)
class ServerStats:
    connections_accepted: int = 0
    connections_refused: int = 0
    """Closed at accept: over max_connections or max_connections_per_ip."""
    binds: int = 0
    bind_failures: int = 0
    submits: int = 0
    submit_errors: int = 0
    """Submits whose processing raised (answered ESME_RSYSERR)."""
    session_crashes: int = 0


class SmppServer:
    """Listens for ESMEs; `start()` returns the bound port."""

    def __init__(
        self,
        config: SmppServerConfig,
        service: SubmitService,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._service = service
        self._clock = clock
        self._wall_clock = wall_clock
        self._settings = session_settings(config)
        self._authenticator: UserDirectory | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._per_ip: Counter[str] = Counter()
        self._submits: set[asyncio.Task[None]] = set()
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self.stats = ServerStats()

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> int:
        self._authenticator = UserDirectory.from_config(self.config)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            self.config.host,
            self.config.port,
            ssl=tls_context(self.config),
        )
        port = int(self._server.sockets[0].getsockname()[1])
        _log.info("smpp_server_listening", host=self.config.host, port=port)
        return port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for connection in list(self._connections):
            connection.unbind()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.shutdown_grace):
                await self._all_closed.wait()
        for connection in list(self._connections):
            connection.abort("server stopped")
        if self._submits:
            await asyncio.wait(set(self._submits), timeout=self.config.shutdown_grace)
        await server.wait_closed()
        _log.info("smpp_server_stopped")

    # -------------------------------------------------------------- for connections

    def _admit(self, connection: _Connection) -> bool:
        peer = connection.peer
        if (
            len(self._connections) >= self.config.max_connections
            or self._per_ip[peer] >= self.config.max_connections_per_ip
        ):
            self.stats.connections_refused += 1
            _log.warning("smpp_connection_refused", peer=peer)
            return False
        self.stats.connections_accepted += 1
        self._connections.add(connection)
        self._per_ip[peer] += 1
        self._all_closed.clear()
        return True

    def _release(self, connection: _Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        self._per_ip[connection.peer] -= 1
        if self._per_ip[connection.peer] <= 0:
            del self._per_ip[connection.peer]
        if not self._connections:
            self._all_closed.set()

    def _new_session(self) -> SmppServerSession:
        assert self._authenticator is not None, "start() first"
        return SmppServerSession(self._settings, self._authenticator)

    def _spawn_submit(self, connection: _Connection, event: SubmitReceived) -> None:
        task = asyncio.get_running_loop().create_task(self._submit(connection, event))
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)

    async def _submit(self, connection: _Connection, event: SubmitReceived) -> None:
        self.stats.submits += 1
        try:
            status, message_id = await self._answer(event)
        except Exception:  # noqa: BLE001 - one failed submit must not end the server
            self.stats.submit_errors += 1
            _log.exception("smpp_server_submit_failed", account=event.account)
            status, message_id = CommandStatus.ESME_RSYSERR, None
        connection.answer_submit(event.sequence, status, message_id)

    async def _answer(self, event: SubmitReceived) -> tuple[int, str | None]:
        wall_now = self._wall_clock()
        try:
            scheduled_at = smpp_time(event.schedule_delivery_time, wall_now)
        except SmppTimeError:
            return ESME_RINVSCHED, None
        try:
            expires_at = smpp_time(event.validity_period, wall_now)
        except SmppTimeError:
            return ESME_RINVEXPIRY, None
        validity = None
        if expires_at is not None:
            validity = expires_at - max(wall_now, scheduled_at or wall_now)
            if validity <= 0:
                return ESME_RINVEXPIRY, None
        result = await self._service.submit(
            event.account,
            event.source,
            event.destination,
            event.text,
            scheduled_at=scheduled_at,
            validity=validity,
        )
        if isinstance(result, Accepted):
            return CommandStatus.ESME_ROK, result.message_id
        return result.command_status, None


class _Connection(asyncio.Protocol):
    """One ESME connection: the transport, its session and its timer."""

    def __init__(self, server: SmppServer) -> None:
        self._server = server
        self._session: SmppServerSession | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.peer = UNKNOWN_PEER

    # -------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check.
        self._transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and peername:
            self.peer = str(peername[0])
        if not self._server._admit(self):
            self._transport.abort()
            return
        self._guarded(self._start)

    def data_received(self, data: bytes) -> None:
        self._guarded(lambda session: session.data_received(data, self._server._clock()))

    def eof_received(self) -> bool | None:
        self._guarded(lambda session: session.connection_lost("closed by the ESME"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        session = self._session
        if session is not None and not session.finished:
            reason = "closed by the ESME" if exc is None else f"socket error: {exc!r}"
            session.connection_lost(reason)
            self._log_events(session)
        self._server._release(self)
        self._transport = None

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # -------------------------------------------------------------- from the server

    def answer_submit(self, sequence: int, status: int, message_id: str | None) -> None:
        self._guarded(lambda session: session.answer_submit(sequence, status, message_id))

    def unbind(self) -> None:
        self._guarded(lambda session: session.unbind(self._server._clock()))

    def abort(self, reason: str) -> None:
        session = self._session
        if session is not None and not session.finished:
            session.connection_lost(reason)
            self._log_events(session)
        if self._transport is not None:
            self._transport.abort()

    # -------------------------------------------------------------- internals

    def _start(self, session: SmppServerSession) -> None:
        session.connection_made(self._server._clock())

    def _guarded(self, step: Callable[[SmppServerSession], None]) -> None:
        """Run one step of the session and pump it; a bug aborts this connection only."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        try:
            if self._session is None:
                self._session = self._server._new_session()
            step(self._session)
            self._pump(self._session, transport)
        except Exception:  # noqa: BLE001 - one broken session must not affect others
            self._server.stats.session_crashes += 1
            _log.exception("smpp_server_session_crashed", peer=self.peer)
            self._cancel_timer()
            transport.abort()

    def _pump(self, session: SmppServerSession, transport: asyncio.Transport) -> None:
        data = session.data_to_send()
        if data:
            transport.write(data)
        for event in self._log_events(session):
            if isinstance(event, SubmitReceived):
                self._server._spawn_submit(self, event)
        if session.finished:
            self._cancel_timer()
            transport.close()  # flushes what was written first
        else:
            self._arm_timer(session)

    def _log_events(
        self, session: SmppServerSession
    ) -> list[BindAccepted | BindRejected | SubmitReceived | SessionClosed]:
        events = session.events()
        stats = self._server.stats
        for event in events:
            if isinstance(event, BindAccepted):
                stats.binds += 1
                _log.info(
                    "smpp_esme_bound",
                    peer=self.peer,
                    system_id=event.system_id,
                    account=event.account,
                    mode=event.mode,
                )
            elif isinstance(event, BindRejected):
                stats.bind_failures += 1
                _log.warning("smpp_esme_bind_refused", peer=self.peer, system_id=event.system_id)
            elif isinstance(event, SessionClosed):
                _log.info(
                    "smpp_esme_closed",
                    peer=self.peer,
                    reason=event.reason,
                    unanswered=len(event.unanswered),
                )
        return events

    def _arm_timer(self, session: SmppServerSession) -> None:
        self._cancel_timer()
        deadline = session.next_timer()
        if deadline is not None:
            delay = max(0.0, deadline - self._server._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._guarded(lambda session: session.timer(self._server._clock()))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
