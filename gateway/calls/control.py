"""The asyncio adapter around `CallRegistry`: engine events in, commands out, one timer.

Runs on the event loop only. The engine calls `on_events` (through
`loop.call_soon_threadsafe`) with a batch of events; each is applied to the
registry, the resulting commands go back with `engine.submit`, and the single
timer is re-armed to the registry's next deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.calls.registry import CallRecord, CallRegistry, CallSettings, CallState
from gateway.calls.routing import Router
from gateway.calls.transfer import TransferPermission
from gateway.logs import get_logger
from gateway.sip.refer import TransferRequest, TransferVerdict
from media.events import CallCommand, CallEvent, EngineStopped

_log = get_logger("calls")


class CallEngine(Protocol):
    """The part of `media.engine.PjsipEngine` call control uses."""

    def attach_calls(self, handler: Callable[[Sequence[CallEvent]], None]) -> None: ...

    def submit(self, command: CallCommand) -> None: ...


RecordSink = Callable[[CallRecord], None]
"""Receives a call record: each finished one (`on_record`), or each change (`on_change`)."""


class CallControl:
    """Owns the registry for one engine; `active_calls()` feeds the daemon's drain."""

    def __init__(
        self,
        engine: CallEngine,
        router: Router,
        settings: CallSettings | None = None,
        *,
        on_record: RecordSink | None = None,
        on_change: RecordSink | None = None,
        may_transfer: TransferPermission | None = None,
    ) -> None:
        self.registry = CallRegistry(router, settings, may_transfer)
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._on_record = on_record
        self._on_change = on_change
        self._idle = asyncio.Event()
        self._idle.set()
        self._changed = asyncio.Event()
        engine.attach_calls(self.on_events)

    def active_calls(self) -> int:
        return self.registry.active_calls()

    async def wait_idle(self) -> None:
        """Return once no call is live (drain; tests)."""
        await self._idle.wait()

    async def wait_finished(self, count: int) -> list[CallRecord]:
        """Return the finished records once at least `count` calls have ended."""
        while len(self.registry.finished) < count:
            self._changed.clear()
            await self._changed.wait()
        return list(self.registry.finished)

    def on_events(self, events: Sequence[CallEvent]) -> None:
        registry = self.registry
        now = self._loop.time()
        submit = self._engine.submit
        for event in events:
            if isinstance(event, EngineStopped) and event.crashed:
                _log.error("engine_crashed", reason=event.reason, calls=registry.active_calls())
            for command in registry.handle(event, now):
                submit(command)
        self._after_change()

    def transfer(self, request: TransferRequest) -> TransferVerdict | None:
        """A caller's REFER, from the SIP edge (`TransferHandler`): the answer it sends."""
        verdict, commands = self.registry.transfer(request, self._loop.time())
        for command in commands:
            self._engine.submit(command)
        if verdict is not None:
            _log.info(
                "transfer_requested",
                sip_call_id=request.call_id,
                refer_to=request.refer_to,
                status=verdict.status,
            )
        self._after_change()
        return verdict

    def _expire(self) -> None:
        self._timer = self._timer_due = None
        for command in self.registry.expire(self._loop.time()):
            self._engine.submit(command)
        self._after_change()

    def _after_change(self) -> None:
        on_record, on_change = self._on_record, self._on_change
        for record in self.registry.take_changed():
            if on_change is not None:
                on_change(record)  # offered, ringing, answered or finished: the CDR writer
            if record.state is CallState.ENDED:
                _log.debug(
                    "call_finished",
                    call=record.call,
                    disposition=str(record.disposition),
                    caller_status=record.caller_status,
                    callee_status=record.callee_status,
                    trunk=record.trunk,
                    caller_e164=record.caller_e164,
                    callee_e164=record.callee_e164,
                )
                if on_record is not None:
                    on_record(record)
        due = self.registry.next_deadline()
        if due != self._timer_due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(due, self._expire) if due is not None else None
            self._timer_due = due
        if self.registry.active_calls():
            self._idle.clear()
        else:
            self._idle.set()
        self._changed.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_due = None
