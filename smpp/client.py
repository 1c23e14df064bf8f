"""asyncio adapter around `SmppSession`: the socket, the timer, reconnects.

`SmscClient` owns one connection to one SMSC at a time. It writes what the
session wants sent, re-arms a single timer at `session.next_timer()`, hands
events to the application's `SmscHandler` (in order, one at a time, on a
dispatcher task) and reconnects with exponential backoff and jitter. A handler
that raises is logged and never stops the client; a deliver_sm whose handler
raised is answered with ESME_RX_T_APPN so the SMSC delivers it again later.

Contract for submits: once `submit()` returned, exactly one of
`on_submit_response`, `on_throttled`, `on_response_timeout` or (listed in
`ConnectionLost.unacked`) `on_connection_lost` reports what became of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol

from gateway.config.secrets import SecretUnavailableError
from gateway.logs import get_logger
from smpp.config import SmscConfig
from smpp.pdu import CommandStatus, ParamValue
from smpp.session import (
    CAN_SUBMIT,
    Accepted,
    BindFailed,
    Bound,
    ConnectionLost,
    DeliverSm,
    Event,
    MessageRef,
    NotBound,
    RateLimited,
    ResponseTimeout,
    SessionSettings,
    SmppSession,
    SubmitResponse,
    Throttled,
    Unbound,
    WindowFull,
)

READ_CHUNK_BYTES: Final = 65_536
HANDLER_FAILURE_STATUS: Final = CommandStatus.ESME_RX_T_APPN
"""deliver_sm answer when the handler raised: a temporary error, so the SMSC retries."""

_log = get_logger("smpp.client")


class SmscHandler(Protocol):
    """What the application does with a session's events; all calls are awaited
    one at a time, in the order the events happened."""

    async def on_bound(self, smsc: str, event: Bound) -> None: ...

    async def on_submit_response(self, smsc: str, event: SubmitResponse) -> None: ...

    async def on_deliver(self, smsc: str, event: DeliverSm) -> int | asyncio.Future[int]:
        """Store the MO or receipt, then return the command_status to answer with
        (ESME_ROK once it is stored durably). A future instead defers the answer
        until it resolves (e.g. the next group commit) without holding up the
        following events; a future that fails is answered with ESME_RX_T_APPN."""
        ...

    async def on_throttled(self, smsc: str, event: Throttled) -> None: ...

    async def on_response_timeout(self, smsc: str, event: ResponseTimeout) -> None: ...

    async def on_connection_lost(self, smsc: str, event: ConnectionLost) -> None: ...


class SmscClientClosedError(RuntimeError):
    """`submit()` on a client that is closing or closed."""


@dataclass(slots=True)
class ClientStats:
    """Counters for metrics and tests."""

    connect_attempts: int = 0
    connect_failures: int = 0
    binds: int = 0
    bind_failures: int = 0
    connections_lost: int = 0
    handler_errors: int = 0


def session_settings(config: SmscConfig) -> SessionSettings:
    """The session's view of `config`; reads the password now (it may rotate)."""
    return SessionSettings(
        system_id=config.system_id,
        password=config.password.reveal().get_secret_value(),
        system_type=config.system_type,
        bind_mode=config.bind_mode,
        address_range=config.address_range,
        window=config.window,
        response_timeout=config.response_timeout,
        bind_timeout=config.bind_timeout,
        enquire_link_interval=config.enquire_link_interval,
        max_submit_rate=config.max_submit_rate,
        submit_burst=config.submit_burst,
        throttle_backoff_initial=config.throttle_backoff_initial,
        throttle_backoff_max=config.throttle_backoff_max,
        max_pdu_bytes=config.max_pdu_bytes,
        registered_delivery=config.registered_delivery,
    )


def tls_context(config: SmscConfig) -> ssl.SSLContext | None:
    if not config.tls:
        return None
    context = ssl.create_default_context(
        cafile=str(config.tls_ca_file) if config.tls_ca_file is not None else None
    )
    if not config.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def reconnect_delay(config: SmscConfig, failures: int, unit_random: float) -> float:
    """Wait before the next attempt: initial * 2**(failures-1), capped, +- jitter."""
    base = min(config.reconnect_max, config.reconnect_initial * 2.0 ** max(0, failures - 1))
    return max(0.0, base * (1.0 + config.reconnect_jitter * (2.0 * unit_random - 1.0)))


class SmscClient:
    """A self-healing ESME connection to one SMSC."""

    def __init__(
        self,
        config: SmscConfig,
        handler: SmscHandler,
        clock: Callable[[], float] = time.monotonic,
        unit_random: Callable[[], float] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.stats = ClientStats()
        self._handler = handler
        self._clock = clock
        self._random = unit_random or random.Random().random  # noqa: S311 - jitter, not crypto
        self._ssl = ssl_context if ssl_context is not None else tls_context(config)
        self._session: SmppSession | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._pump_scheduled = False
        self._changed = asyncio.Event()
        self._bound = asyncio.Event()
        self._closing = asyncio.Event()
        self._events: asyncio.Queue[tuple[SmppSession, Event]] = asyncio.Queue()
        self._deferred_acks: dict[asyncio.Future[int], list[tuple[SmppSession, int]]] = {}
        """Answer future -> the deliver_sm (session, sequence) it answers: a handler
        may answer every deliver_sm of one group commit with one future."""
        self._run_task: asyncio.Task[None] | None = None
        self._dispatch_task: asyncio.Task[None] | None = None

    # -------------------------------------------------------------- lifecycle

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def is_bound(self) -> bool:
        return self._bound.is_set()

    def start(self) -> None:
        """Start connecting in the background (idempotent)."""
        if self._run_task is None:
            self._dispatch_task = asyncio.create_task(
                self._dispatch(), name=f"smsc-{self.name}-events"
            )
            self._run_task = asyncio.create_task(self._run(), name=f"smsc-{self.name}")

    async def wait_bound(self) -> None:
        """Return once a session is bound (use with asyncio.wait_for)."""
        await self._bound.wait()

    async def close(self, grace: float | None = None) -> None:
        """Stop submitting, let answers for in-flight submits arrive, unbind, disconnect.

        `grace` bounds the unbind and the event drain (default: twice
        response_timeout); whatever is still in flight then is reported through
        `on_connection_lost`.
        """
        limit = 2 * self.config.response_timeout if grace is None else grace
        self._closing.set()
        self._notify()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._unbind_gracefully()
        session = self._session
        if session is not None and not session.closed:
            session.connection_lost(self._clock(), "closed locally")
            self._pump(session)
        if self._run_task is not None:
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                await self._events.join()
        if self._dispatch_task is not None:
            self._dispatch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatch_task

    async def __aenter__(self) -> SmscClient:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _unbind_gracefully(self) -> None:
        while (session := self._session) is not None and not session.closed:
            if session.state in CAN_SUBMIT and session.submits_in_flight:
                await self._wait_change()
                continue
            # Let the handler finish what arrived, so deliver_sm acks go out first.
            await self._events.join()
            if self._deferred_acks:
                await asyncio.wait(set(self._deferred_acks))
            if session.closed or session.submits_in_flight:
                continue
            session.unbind(self._clock())
            self._pump(session)
            while not session.closed:
                await self._wait_change()
            return

    # -------------------------------------------------------------- submitting

    async def submit(self, message_ref: MessageRef, params: Mapping[str, ParamValue]) -> int:
        """Send a submit_sm once bound and the window, throttle pause and rate allow;
        returns its sequence number. Raises `PduEncodeError` for bad parameters and
        `SmscClientClosedError` once `close()` began."""
        while True:
            if self._closing.is_set():
                raise SmscClientClosedError(f"SMSC client {self.name} is closing")
            session = self._session
            if session is None:
                await self._wait_change()
                continue
            outcome = session.submit(message_ref, params, self._clock())
            if isinstance(outcome, Accepted):
                self._schedule_pump()
                return outcome.sequence
            if isinstance(outcome, RateLimited):
                await self._wait_change(until=outcome.retry_at)
            else:
                assert isinstance(outcome, WindowFull | NotBound)
                await self._wait_change()

    def _notify(self) -> None:
        """Wake everything waiting for the window, the state or closing."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, until: float | None = None) -> None:
        """Wait for `_notify()`, or at most until `until` on our clock."""
        changed = self._changed
        if until is None:
            await changed.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, until - self._clock())):
                await changed.wait()

    # -------------------------------------------------------------- the connection loop

    async def _run(self) -> None:
        failures = 0
        while not self._closing.is_set():
            try:
                was_bound = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bug in one connection must not end the client
                _log.exception("smsc_connection_crashed", smsc=self.name)
                was_bound = False
            if self._closing.is_set():
                return
            failures = 0 if was_bound else failures + 1
            delay = reconnect_delay(self.config, max(1, failures), self._random())
            _log.info("smsc_reconnect_wait", smsc=self.name, seconds=round(delay, 3))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()

    async def _connect_once(self) -> bool:
        """One connection, from connect to close; True if it got bound."""
        self.stats.connect_attempts += 1
        try:
            settings = session_settings(self.config)
        except SecretUnavailableError as exc:
            self.stats.connect_failures += 1
            _log.error("smsc_password_unavailable", smsc=self.name, error=str(exc))
            return False
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.config.host,
                    self.config.port,
                    ssl=self._ssl,
                    server_hostname=self.config.host if self._ssl is not None else None,
                    limit=READ_CHUNK_BYTES,
                )
        except (OSError, TimeoutError) as exc:
            self.stats.connect_failures += 1
            _log.warning("smsc_connect_failed", smsc=self.name, error=repr(exc))
            return False
        session = SmppSession(settings)
        self._session = session
        self._writer = writer
        bound_before = self.stats.binds
        try:
            session.connection_made(self._clock())
            self._pump(session)
            while not session.closed:
                data = await reader.read(READ_CHUNK_BYTES)
                if not data:
                    session.connection_lost(self._clock(), "closed by the SMSC")
                else:
                    session.data_received(data, self._clock())
                self._pump(session)
        except OSError as exc:
            session.connection_lost(self._clock(), f"socket error: {exc!r}")
            self._pump(session)
        finally:
            if not session.closed:  # cancelled: close() reports what was in flight
                session.connection_lost(self._clock(), "client stopped")
                self._pump(session)
            self._disconnect(session, writer)
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return self.stats.binds > bound_before

    def _disconnect(self, session: SmppSession, writer: asyncio.StreamWriter) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer.close()
        if self._session is session:
            self._session = None
            self._writer = None
        self._notify()

    def _schedule_pump(self) -> None:
        """Pump once the submitters woken in this loop iteration have all submitted:
        one write (one syscall) for the lot instead of one per submit_sm."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        if self._session is not None:
            self._pump(self._session)

    def _pump(self, session: SmppSession) -> None:
        """Send what the session wants sent, queue its events, re-arm its timer."""
        data = session.data_to_send()
        writer = self._writer if self._session is session else None
        if data and writer is not None and not writer.is_closing():
            writer.write(data)
        events = session.events()
        for event in events:
            if isinstance(event, Bound):
                self.stats.binds += 1
                self._bound.set()
            elif isinstance(event, BindFailed):
                self.stats.bind_failures += 1
            elif isinstance(event, ConnectionLost):
                self.stats.connections_lost += 1
                self._bound.clear()
            self._events.put_nowait((session, event))
        if session.closed:
            if writer is not None:
                writer.close()  # flushes what was written first
        elif self._session is session:
            self._arm_timer(session)
        if events:
            self._notify()

    def _arm_timer(self, session: SmppSession) -> None:
        deadline = session.next_timer()
        if self._timer is not None:
            if deadline == self._timer_deadline:
                return  # the usual case: a new submit does not move the oldest deadline
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer, session)

    def _on_timer(self, session: SmppSession) -> None:
        self._timer = None
        if self._session is not session:
            return
        session.timer(self._clock())
        self._pump(session)

    # -------------------------------------------------------------- events to the handler

    async def _dispatch(self) -> None:
        while True:
            session, event = await self._events.get()
            try:
                await self._deliver_event(session, event)
            finally:
                self._events.task_done()

    async def _deliver_event(self, session: SmppSession, event: Event) -> None:
        handler = self._handler
        smsc = self.name
        try:
            if isinstance(event, DeliverSm):
                answer = await self._call_on_deliver(event)
                if isinstance(answer, asyncio.Future):
                    waiting = self._deferred_acks.get(answer)
                    if waiting is None:
                        waiting = self._deferred_acks[answer] = []
                        answer.add_done_callback(self._deferred_ack)
                    waiting.append((session, event.sequence))
                else:
                    session.ack_deliver(event.sequence, answer)
                    self._pump(session)
            elif isinstance(event, SubmitResponse):
                await handler.on_submit_response(smsc, event)
            elif isinstance(event, Throttled):
                await handler.on_throttled(smsc, event)
            elif isinstance(event, ResponseTimeout):
                await handler.on_response_timeout(smsc, event)
            elif isinstance(event, Bound):
                _log.info("smsc_bound", smsc=smsc, smsc_system_id=event.smsc_system_id)
                await handler.on_bound(smsc, event)
            elif isinstance(event, ConnectionLost):
                _log.info(
                    "smsc_connection_lost",
                    smsc=smsc,
                    reason=event.reason,
                    unacked=len(event.unacked),
                )
                await handler.on_connection_lost(smsc, event)
            elif isinstance(event, BindFailed):
                _log.warning("smsc_bind_failed", smsc=smsc, status=event.status)
            elif isinstance(event, Unbound):
                _log.info("smsc_unbound", smsc=smsc, by_peer=event.by_peer)
        except Exception:  # noqa: BLE001 - the application's bug must not stop the client
            self.stats.handler_errors += 1
            _log.exception("smsc_handler_failed", smsc=smsc, smpp_event=type(event).__name__)

    def _deferred_ack(self, answer: asyncio.Future[int]) -> None:
        waiting = self._deferred_acks.pop(answer, [])
        if answer.cancelled() or answer.exception() is not None:
            self.stats.handler_errors += 1
            _log.error(
                "smsc_deliver_handler_failed",
                smsc=self.name,
                seqs=[sequence for _, sequence in waiting],
                error=repr(None if answer.cancelled() else answer.exception()),
            )
            status = int(HANDLER_FAILURE_STATUS)
        else:
            status = int(answer.result())
        for session, sequence in waiting:
            session.ack_deliver(sequence, status)
        self._schedule_pump()  # one write for the acks of a whole commit

    async def _call_on_deliver(self, event: DeliverSm) -> int | asyncio.Future[int]:
        try:
            answer = await self._handler.on_deliver(self.name, event)
            return answer if isinstance(answer, asyncio.Future) else int(answer)
        except Exception:  # noqa: BLE001 - answered with a temporary error instead
            self.stats.handler_errors += 1
            _log.exception("smsc_deliver_handler_failed", smsc=self.name, seq=event.sequence)
            return HANDLER_FAILURE_STATUS
