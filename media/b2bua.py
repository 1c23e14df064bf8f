"""Back-to-back calls inside the engine: a caller leg, a callee leg, one conference bridge.

Runs on the engine thread only (media/engine.py creates it there and calls
it from its loop); nothing here is thread-safe and nothing needs to be.

What the engine decides on its own (signalling mechanics, no round trip):
relaying 180/183 to the caller once the callee rings, answering the caller
when the callee answers, connecting both audio ports once both have media,
tearing the other leg down when one side hangs up or cancels. What it asks
call control for (events out, commands in): where the callee leg goes, and
what the caller hears when the callee leg fails or a timer expires.

pjsua2 rules kept here (see DESIGN.md): every `Call` is referenced from a
`Bridge` until both legs are disconnected and is dropped by `reap()` from
the engine loop, never inside its own callback; every callback is wrapped,
and an exception tears down that call only; callbacks read as little as
possible (`getInfo()` only on the callee leg's state changes and once when
the caller leg ends).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.logs import get_logger
from media.events import (
    CallAnswered,
    CallCommand,
    CalleeFailed,
    CalleeRinging,
    CallEnded,
    CallEvent,
    CallOffered,
    Party,
    PlaceCallee,
    ReleaseCall,
)
from media.trunks import TrunkAccounts, UnknownTrunk

_log = get_logger("engine.b2bua")

_FROM = re.compile(r"^(?:From|f)[ \t]*:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_CALL_ID = re.compile(r"^(?:Call-ID|i)[ \t]*:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_ORIGIN = re.compile(
    r"^X-Callgate-Origin[ \t]*:[ \t]*(account|trunk)=(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
_RINGING = (180, 183)
_NO_CALL_CONTROL = (503, "No call control")
_INTERNAL_ERROR = (500, "Internal error")


@dataclass(slots=True, eq=False)
class Bridge:
    """One bridged call: the caller's leg, the callee's leg once placed, and their media."""

    call: int
    caller: Any = None
    callee: Any = None
    caller_media: Any = None
    callee_media: Any = None
    caller_codec: str = ""
    callee_codec: str = ""
    relayed: set[int] = field(default_factory=set)
    placed: bool = False
    answered: bool = False
    connected: bool = False
    caller_gone: bool = False
    callee_gone: bool = True
    callee_released: bool = False
    ended_by: Party | None = None
    end_status: int = 0
    end_reason: str = ""


class B2bua:
    """The engine's call half: its own account, the live bridges, and the legs' callbacks.

    Callee legs to a named trunk use that trunk's account (`trunks`, media/trunks.py).
    """

    def __init__(
        self,
        pj: Any,
        *,
        transport_id: int,
        contact_host: str,
        contact_port: int,
        rtp_port_start: int,
        rtp_port_range: int,
        emit: Callable[[CallEvent], None],
        has_call_control: Callable[[], bool],
    ) -> None:
        self._pj = pj
        self._emit = emit
        self._has_call_control = has_call_control
        self.bridges: dict[int, Bridge] = {}
        self._graveyard: list[Any] = []  # disconnected legs, destroyed by reap()
        self._next_call = 1
        self._caller_leg, self._callee_leg, self.account_class = _classes(pj, self)

        def base_config() -> Any:
            cfg = pj.AccountConfig()
            cfg.idUri = f"sip:engine@{contact_host}:{contact_port}"
            cfg.sipConfig.transportId = transport_id
            cfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
            cfg.mediaConfig.transportConfig.port = rtp_port_start
            cfg.mediaConfig.transportConfig.portRange = rtp_port_range
            cfg.mediaConfig.transportConfig.boundAddress = contact_host
            return cfg

        self.base_config = base_config
        """A fresh AccountConfig with the engine's transport and media settings."""
        self.account = self.account_class()
        self.account.create(base_config(), True)
        self.trunks: TrunkAccounts | None = None  # outbound trunks, once the edge is known

    # --- commands from call control ---------------------------------------------

    def execute(self, command: CallCommand) -> None:
        bridge = self.bridges.get(command.call)
        if bridge is None or bridge.caller_gone:
            return  # the caller left meanwhile; its CallEnded is on its way
        try:
            if isinstance(command, PlaceCallee):
                self._place_callee(bridge, command)
            elif isinstance(command, ReleaseCall):
                self._release(bridge, command.status, command.reason, Party.GATEWAY)
        except Exception as exc:  # noqa: BLE001 - pj.Error: this call only
            self.fault(bridge, exc)

    def _place_callee(self, bridge: Bridge, command: PlaceCallee) -> None:
        pj = self._pj
        if bridge.placed:
            return
        bridge.placed = True
        prm = pj.CallOpParam(True)
        prm.opt.audioCount = 1
        prm.opt.videoCount = 0
        prm.txOption.localUri = command.caller_uri
        try:
            account = self._callee_account(command.trunk)
        except UnknownTrunk as exc:
            self._emit(CalleeFailed(bridge.call, time.time(), exc.status, exc.reason))
            return
        callee = self._callee_leg(account, bridge)
        bridge.callee = callee
        bridge.callee_gone = False
        try:
            callee.makeCall(command.target, prm)
        except Exception as exc:  # noqa: BLE001 - e.g. an unusable target URI
            self._leg_gone(bridge, Party.CALLEE)
            self._emit(CalleeFailed(bridge.call, time.time(), 502, _reason(exc)))

    def _callee_account(self, trunk: str) -> Any:
        """The trunk's account (its credentials answer challenges); no trunk: the engine's."""
        if not trunk:
            return self.account
        if self.trunks is None:
            raise UnknownTrunk(trunk)
        return self.trunks.account_for(trunk)

    def _release(self, bridge: Bridge, status: int, reason: str, by: Party) -> None:
        if bridge.ended_by is None:
            bridge.ended_by, bridge.end_status, bridge.end_reason = by, status, reason
        self._release_callee(bridge)
        if not bridge.caller_gone:
            prm = self._pj.CallOpParam()
            if not bridge.answered:
                prm.statusCode = status
                prm.reason = reason
            bridge.caller.hangup(prm)

    def _release_callee(self, bridge: Bridge) -> None:
        if bridge.callee is None or bridge.callee_gone or bridge.callee_released:
            return
        bridge.callee_released = True
        try:
            bridge.callee.hangup(self._pj.CallOpParam())
        except Exception as exc:  # noqa: BLE001 - already ending: nothing else to do
            _log.debug("callee_hangup_failed", call=bridge.call, error=_reason(exc))

    # --- callbacks (entered through the wrappers in _classes) --------------------

    def incoming(self, prm: Any) -> None:
        call = self._next_call
        self._next_call += 1
        bridge = Bridge(call)
        bridge.caller = self._caller_leg(self.account, prm.callId, bridge)
        self.bridges[call] = bridge
        try:
            self._offer(bridge, prm)
        except Exception as exc:  # noqa: BLE001 - this call only
            self.fault(bridge, exc)

    def _offer(self, bridge: Bridge, prm: Any) -> None:
        if not self._has_call_control():
            self._release(bridge, *_NO_CALL_CONTROL, Party.GATEWAY)
            return
        message: str = prm.rdata.wholeMsg
        line_end = message.find("\r\n")
        parts = message[: line_end if line_end >= 0 else None].split(" ")
        request_uri = parts[1] if len(parts) > 1 else ""
        from_match = _FROM.search(message)
        call_id_match = _CALL_ID.search(message)
        # Set by the edge only (it strips copies from peers): who the caller was admitted as.
        origin = _ORIGIN.search(message)
        kind, name = (origin.group(1).lower(), origin.group(2)) if origin else ("", "")
        self._emit(
            CallOffered(
                bridge.call,
                time.time(),
                request_uri,
                _uri_of(from_match.group(1)) if from_match else "",
                call_id_match.group(1) if call_id_match else "",
                account=name if kind == "account" else "",
                trunk=name if kind == "trunk" else "",
            )
        )

    def caller_state(self, bridge: Bridge) -> None:
        if bridge.caller_gone or bridge.caller.isActive():
            return
        # Not active: disconnected, or hangup() already under way (which we did).
        info = bridge.caller.getInfo()
        self._leg_gone(bridge, Party.CALLER)
        if bridge.ended_by is None:
            bridge.ended_by = Party.CALLER
            bridge.end_status = int(info.lastStatusCode)
            bridge.end_reason = str(info.lastReason)
        self._release_callee(bridge)
        self._emit(
            CallEnded(
                bridge.call,
                time.time(),
                bridge.ended_by,
                bridge.end_status,
                bridge.end_reason,
                bridge.caller_codec,
                bridge.callee_codec,
            )
        )

    def callee_state(self, bridge: Bridge, callee: Any) -> None:
        pj = self._pj
        info = callee.getInfo()
        state = info.state
        if state == pj.PJSIP_INV_STATE_EARLY:
            status = int(info.lastStatusCode)
            if status in _RINGING and status not in bridge.relayed and not bridge.caller_gone:
                bridge.relayed.add(status)
                prm = pj.CallOpParam()
                prm.statusCode = status
                bridge.caller.answer(prm)
                self._emit(CalleeRinging(bridge.call, time.time(), status))
        elif state == pj.PJSIP_INV_STATE_CONFIRMED:
            if bridge.caller_gone or bridge.ended_by is not None:
                self._release_callee(bridge)
            elif not bridge.answered:
                bridge.answered = True
                prm = pj.CallOpParam()
                prm.statusCode = 200
                bridge.caller.answer(prm)
                self._emit(CallAnswered(bridge.call, time.time()))
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._leg_gone(bridge, Party.CALLEE)
            status, reason = int(info.lastStatusCode), str(info.lastReason)
            if bridge.ended_by is None and not bridge.caller_gone:
                if bridge.answered:
                    self._release(bridge, status, reason, Party.CALLEE)
                else:
                    # Call control decides what the caller hears (and, later, failover).
                    self._emit(CalleeFailed(bridge.call, time.time(), status, reason))

    def caller_media(self, bridge: Bridge) -> None:
        bridge.caller_media = bridge.caller.getAudioMedia(-1)
        if not bridge.caller_codec:
            bridge.caller_codec = _codec(bridge.caller)
        self._connect(bridge)

    def callee_media(self, bridge: Bridge, callee: Any) -> None:
        bridge.callee_media = callee.getAudioMedia(-1)
        if not bridge.callee_codec:
            bridge.callee_codec = _codec(callee)
        self._connect(bridge)

    def _connect(self, bridge: Bridge) -> None:
        a, b = bridge.caller_media, bridge.callee_media
        if a is None or b is None or bridge.connected:
            return
        a.startTransmit(b)
        b.startTransmit(a)
        bridge.connected = True

    def fault(self, bridge: Bridge, exc: BaseException) -> None:
        """An unexpected error in one call: log it and end that call, nothing else."""
        _log.error("call_fault", call=bridge.call, error=_reason(exc), kind=type(exc).__name__)
        try:
            self._release(bridge, *_INTERNAL_ERROR, Party.GATEWAY)
        except Exception as again:  # noqa: BLE001 - best effort; the legs may be half gone
            _log.error("call_fault_release_failed", call=bridge.call, error=_reason(again))
            for party, gone in (
                (Party.CALLER, bridge.caller_gone),
                (Party.CALLEE, bridge.callee_gone),
            ):
                if not gone:
                    self._leg_gone(bridge, party)

    # --- housekeeping (engine loop, outside callbacks) ----------------------------

    def _leg_gone(self, bridge: Bridge, party: Party) -> None:
        """One leg is disconnected: its Call object leaves the bridge for `reap()`."""
        if party is Party.CALLER:
            bridge.caller_gone = True
            leg, bridge.caller, bridge.caller_media = bridge.caller, None, None
        else:
            bridge.callee_gone = True
            leg, bridge.callee, bridge.callee_media = bridge.callee, None, None
        if leg is not None:
            self._graveyard.append(leg)
        if bridge.caller_gone and bridge.callee_gone:
            self.bridges.pop(bridge.call, None)

    def reap(self) -> None:
        """Destroy disconnected legs' Call objects, outside their callbacks, when it is safe.

        A pjsua2 `Call` destructor acts on the pjsua call slot it had: it
        clears the slot's user data and hangs up whatever is active there.
        pjsua may give a freed slot to a new call at once, so a leg is only
        destroyed while its slot is empty (no owner, nothing active);
        otherwise it waits for a later turn. References are cut so it dies
        now, by reference count, not in a later cyclic-GC pass.
        """
        if not self._graveyard:
            return
        lookup = self._pj.Call.lookup
        waiting = []
        for leg in self._graveyard:
            slot = leg.getId()
            if slot >= 0 and (lookup(slot) is not None or leg.isActive()):
                waiting.append(leg)  # the slot already serves another call
            else:
                leg.bridge = None
        self._graveyard = waiting

    def hang_up_all(self) -> None:
        for bridge in list(self.bridges.values()):
            try:
                self._release(bridge, 503, "Shutting down", Party.GATEWAY)
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                _log.debug("shutdown_hangup_failed", call=bridge.call, error=_reason(exc))

    def close(self) -> None:
        """Destroy every call and the account now, before libDestroy, on the engine thread.

        pjsua2 destructors act on pjsua ids: run later (a GC pass after a new
        library instance started) they would hang up or delete that instance's
        calls and account.
        """
        for bridge in self.bridges.values():
            for leg in (bridge.caller, bridge.callee):
                if leg is not None:
                    leg.bridge = None
            bridge.caller = bridge.callee = bridge.caller_media = bridge.callee_media = None
        for leg in self._graveyard:
            leg.bridge = None
        self.bridges.clear()
        self._graveyard.clear()
        if self.trunks is not None:
            self.trunks.close()
            self.trunks = None
        try:
            self.account.shutdown()
        except Exception as exc:  # noqa: BLE001 - shutting down anyway
            _log.debug("account_shutdown_failed", error=_reason(exc))
        self.account = None


def _classes(pj: Any, b2bua: B2bua) -> tuple[Any, Any, Any]:
    """pjsua2 subclasses whose callbacks only forward, wrapped, to `b2bua`.

    `bridge` is None once the call was reaped (see `reap`).
    """

    class CallerLeg(pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, call_id: int, bridge: Bridge) -> None:
            super().__init__(account, call_id)
            self.bridge = bridge

        def onCallState(self, prm: Any) -> None:
            if self.bridge is None:  # already reaped
                return
            try:
                b2bua.caller_state(self.bridge)
            except Exception as exc:  # noqa: BLE001 - this call only
                b2bua.fault(self.bridge, exc)

        def onCallMediaState(self, prm: Any) -> None:
            if self.bridge is None:  # already reaped
                return
            try:
                b2bua.caller_media(self.bridge)
            except Exception as exc:  # noqa: BLE001 - this call only
                b2bua.fault(self.bridge, exc)

    class CalleeLeg(pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, bridge: Bridge) -> None:
            super().__init__(account)
            self.bridge = bridge

        def onCallState(self, prm: Any) -> None:
            if self.bridge is None:  # already reaped
                return
            try:
                b2bua.callee_state(self.bridge, self)
            except Exception as exc:  # noqa: BLE001 - this call only
                b2bua.fault(self.bridge, exc)

        def onCallMediaState(self, prm: Any) -> None:
            if self.bridge is None:  # already reaped
                return
            try:
                b2bua.callee_media(self.bridge, self)
            except Exception as exc:  # noqa: BLE001 - this call only
                b2bua.fault(self.bridge, exc)

    class EngineAccount(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            try:
                b2bua.incoming(prm)
            except Exception as exc:  # noqa: BLE001 - no Call owns it: the caller times out
                _log.error("incoming_call_fault", error=_reason(exc))

    return CallerLeg, CalleeLeg, EngineAccount


def _codec(call: Any) -> str:
    try:
        return str(call.getStreamInfo(0).codecName)
    except Exception:  # noqa: BLE001 - informational only
        return ""


def _uri_of(name_addr: str) -> str:
    start = name_addr.find("<")
    if start >= 0:
        end = name_addr.find(">", start)
        return name_addr[start + 1 : end if end > 0 else None]
    return name_addr.split(";", 1)[0].strip()


def _reason(exc: BaseException) -> str:
    info = getattr(exc, "info", None)
    if callable(info):
        with contextlib.suppress(Exception):
            return str(info())
    return str(exc) or type(exc).__name__
