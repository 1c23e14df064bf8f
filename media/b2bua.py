"""Back-to-back calls inside the engine: a caller leg, a callee leg, one conference bridge.

Runs on the engine thread only (media/engine.py creates it there and calls
it from its loop); nothing here is thread-safe and nothing needs to be.

What the engine decides on its own (signalling mechanics, no round trip):
relaying 180/183 to the caller once the callee rings, answering the caller
when the callee answers, connecting both audio ports once both have media
(early media included; the bridge transcodes), tearing the other leg down
when one side hangs up or cancels, passing a peer's Q.850 Reason to the
other leg, relaying DTMF, reflecting hold/resume re-INVITEs, declining
the REFERs that reach it. What it asks call control for (events out,
commands in): where the callee leg goes, what the caller hears when the
callee leg fails or a timer expires, and where a caller's blind transfer
goes (the edge answers the caller's REFER, see gateway/sip/refer.py; the
engine places the transfer leg, tells the caller by NOTIFY, connects the
callee to the target once it answers and releases the caller).

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

from gateway.calls.q850 import RECOVERY_ON_TIMER_EXPIRY, reason_in_message, reason_value
from gateway.logs import get_logger
from gateway.sip.refer import TRANSFER_HEADER
from media.events import (
    CallAnswered,
    CallCommand,
    CalleeFailed,
    CalleeRinging,
    CallEnded,
    CallEvent,
    CallOffered,
    EndTransfer,
    Party,
    PlaceCallee,
    PlaceTransfer,
    ReleaseCall,
    TransferAnswered,
    TransferFailed,
)
from media.hold import hold_requested
from media.session_timer import EXPIRED_STATUS, SessionTimer, apply_session_timer
from media.trunks import TrunkAccounts, UnknownTrunk

_log = get_logger("engine.b2bua")

_FROM = re.compile(r"^(?:From|f)[ \t]*:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_CALL_ID = re.compile(r"^(?:Call-ID|i)[ \t]*:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_MAX_FORWARDS = re.compile(r"^Max-Forwards[ \t]*:[ \t]*([0-9]{1,3})[ \t]*\r?$", re.I | re.M)
_PAI = re.compile(r"^P-Asserted-Identity[ \t]*:[ \t]*(.*?)\r?$", re.I | re.M)
_PRIVACY = re.compile(r"^Privacy[ \t]*:[ \t]*(.*?)\r?$", re.I | re.M)
_ORIGIN = re.compile(
    r"^X-Callgate-Origin[ \t]*:[ \t]*(account|trunk)=(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
_TRANSFER_MARK = re.compile(
    rf"^{TRANSFER_HEADER}[ \t]*:[ \t]*([0-9]{{1,9}})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)
_RINGING = (180, 183)
_NO_CALL_CONTROL = (503, "No call control")
_INTERNAL_ERROR = (500, "Internal error")
# pjsua answers an accepted REFER by dialling its Refer-To itself: a target that
# routing, limits and records never saw (and a Call pjsua2 creates on its own,
# which crashed libDestroy). The edge answers a caller's REFER and call control
# routes it; a REFER that still reaches pjsua (the callee's, or no edge) is declined.
TRANSFER_DECLINED = 603
# Subscription-State expiry of the implicit REFER subscription (RFC 3515 §2.4.4): the
# final NOTIFY ends it; this only bounds it if that NOTIFY is lost.
_REFER_SUBSCRIPTION_S = 600


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
    held_by: set[Party] = field(default_factory=set)
    """Legs whose peer put the call on hold (reflected to the other leg until resumed)."""
    placed: bool = False
    callee_leg: int = 0
    """`PlaceCallee.leg` of the current callee leg, echoed in its events."""
    rang_leg: int = -1
    """The last callee leg that reported ringing."""
    forks: dict[int, Any] = field(default_factory=dict)
    """Parallel callee legs (forking) other than `callee`, by leg number; the first to
    answer becomes `callee`."""
    answered: bool = False
    connected: bool = False
    caller_gone: bool = False
    callee_gone: bool = True
    callee_released: bool = False
    ended_by: Party | None = None
    end_status: int = 0
    end_reason: str = ""
    q850: int | None = None
    """Release cause: the first Reason a leg's peer sent, or call control's."""
    ended: bool = False
    """CallEnded was emitted: the call is over for call control."""
    caller_released: bool = False
    """The caller leg is being hung up by us after a transfer."""
    transfer: Any = None
    """The transfer leg under way or answered (the target, C)."""
    transfer_media: Any = None
    transfer_leg: int = -1
    """`PlaceTransfer.place.leg` of the last transfer leg placed."""
    transfer_pending: bool = False
    """The caller asked for a transfer that has not answered or ended yet: its leaving
    does not end the call."""
    transfer_notified: int = 0
    """The transfer (number) the caller got NOTIFY 100 Trying for."""
    transfer_heard: int = 0
    """The last transfer (number) call control sent a command about."""
    transferred: bool = False
    """The callee talks to the transfer target; the caller left or is leaving."""


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
        session_timer: SessionTimer,
        emit: Callable[[CallEvent], None],
        has_call_control: Callable[[], bool],
    ) -> None:
        self._pj = pj
        self._emit = emit
        self._has_call_control = has_call_control
        self.bridges: dict[int, Bridge] = {}
        self._graveyard: list[Any] = []  # disconnected legs, destroyed by reap()
        self._next_call = 1
        self._caller_leg, self._callee_leg, self._transfer_leg, self.account_class = _classes(
            pj, self
        )

        def base_config() -> Any:
            cfg = pj.AccountConfig()
            cfg.idUri = f"sip:engine@{contact_host}:{contact_port}"
            cfg.sipConfig.transportId = transport_id
            apply_session_timer(pj, cfg.callConfig, session_timer)
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
        if bridge is None or not self._live(bridge):
            return  # the call ended meanwhile; its CallEnded is on its way
        try:
            if isinstance(command, PlaceCallee):
                self._place_callee(bridge, command)
            elif isinstance(command, PlaceTransfer):
                bridge.transfer_heard = max(bridge.transfer_heard, command.transfer)
                self._place_transfer(bridge, command)
            elif isinstance(command, EndTransfer):
                bridge.transfer_heard = max(bridge.transfer_heard, command.transfer)
                self._end_transfer(bridge, command)
            elif isinstance(command, ReleaseCall):
                if bridge.q850 is None:
                    bridge.q850 = command.q850
                self._release(bridge, command.status, command.reason, Party.GATEWAY)
        except Exception as exc:  # noqa: BLE001 - pj.Error: this call only
            self.fault(bridge, exc)

    def _place_callee(self, bridge: Bridge, command: PlaceCallee) -> None:
        if bridge.answered or (bridge.placed and command.leg <= bridge.callee_leg):
            return
        if bridge.placed and command.fork:
            self._place_fork(bridge, command)
            return
        if bridge.placed:
            self._drop_callee(bridge)
            self._drop_forks(bridge)
        bridge.placed = True
        bridge.callee_leg = command.leg
        bridge.callee_released = False

        def failed(status: int, reason: str) -> CalleeFailed:
            return CalleeFailed(bridge.call, time.time(), status, reason, command.leg)

        callee = self._new_leg(self._callee_leg, bridge, command, failed)
        if callee is None:
            return
        bridge.callee = callee
        bridge.callee_gone = False
        try:
            callee.makeCall(command.target, self._invite_param(command))
        except Exception as exc:  # noqa: BLE001 - e.g. an unusable target URI
            self._leg_gone(bridge, Party.CALLEE)
            self._emit(failed(502, _reason(exc)))

    def _invite_param(self, command: PlaceCallee) -> Any:
        prm = _audio_only(self._pj.CallOpParam(True))
        prm.txOption.localUri = command.caller_uri
        for name, value in command.headers:
            header = self._pj.SipHeader()
            header.hName, header.hValue = name, value
            prm.txOption.headers.append(header)
        return prm

    def _place_fork(self, bridge: Bridge, command: PlaceCallee) -> None:
        """One more parallel callee leg (an account's further contact)."""
        leg = self._callee_leg(self.account, bridge)
        leg.leg = command.leg
        bridge.forks[command.leg] = leg
        try:
            leg.makeCall(command.target, self._invite_param(command))
        except Exception as exc:  # noqa: BLE001 - e.g. an unusable contact URI
            del bridge.forks[command.leg]
            self._discard(bridge, leg, None)
            self._emit(CalleeFailed(bridge.call, time.time(), 502, _reason(exc), command.leg))

    def _fork_state(self, bridge: Bridge, leg: Any) -> None:
        """A parallel leg's progress: ringing is relayed once, its 200 wins, a failure
        is reported (call control waits for the others)."""
        pj = self._pj
        info = leg.getInfo()
        state = info.state
        if state == pj.PJSIP_INV_STATE_EARLY:
            status = int(info.lastStatusCode)
            if self._relay_ringing(bridge, status):
                self._emit(CalleeRinging(bridge.call, time.time(), status, leg.leg))
        elif state == pj.PJSIP_INV_STATE_CONFIRMED:
            if bridge.answered or bridge.caller_gone or bridge.ended_by is not None:
                self._drop_fork(bridge, leg.leg)
                return
            # This contact answered first: it becomes the callee, the others are dropped.
            bridge.forks.pop(leg.leg, None)
            self._drop_callee(bridge)
            self._drop_forks(bridge)
            bridge.callee, bridge.callee_gone, bridge.callee_leg = leg, False, leg.leg
            bridge.callee_released = False
            with contextlib.suppress(Exception):  # media may only be reported later
                self.callee_media(bridge, leg)
            self.callee_state(bridge, leg)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            bridge.forks.pop(leg.leg, None)
            self._discard(bridge, leg, None)
            if bridge.ended_by is None and not bridge.caller_gone and not bridge.answered:
                status, reason = int(info.lastStatusCode), str(info.lastReason)
                self._emit(CalleeFailed(bridge.call, time.time(), status, reason, leg.leg))

    def _relay_ringing(self, bridge: Bridge, status: int) -> bool:
        """Send the caller 180/183 once per status; True when this one was sent now."""
        if status not in _RINGING or status in bridge.relayed or bridge.caller_gone:
            return False
        bridge.relayed.add(status)
        prm = self._pj.CallOpParam()
        prm.statusCode = status
        bridge.caller.answer(prm)
        return True

    def _drop_fork(self, bridge: Bridge, number: int) -> None:
        leg = bridge.forks.pop(number, None)
        if leg is not None:
            self._discard(bridge, leg, self._pj.CallOpParam())

    def _discard(self, bridge: Bridge, leg: Any, hangup: Any | None) -> None:
        """A leg leaves its bridge for the graveyard, hung up with `hangup` (None: no need)."""
        leg.bridge = None  # before hangup: a callback it triggers must not see the bridge
        self._graveyard.append(leg)
        if hangup is None:
            return
        try:
            leg.hangup(hangup)
        except Exception as exc:  # noqa: BLE001 - already ending: nothing else to do
            _log.debug("leg_hangup_failed", call=bridge.call, error=_reason(exc))

    def _drop_forks(self, bridge: Bridge) -> None:
        for number in list(bridge.forks):
            self._drop_fork(bridge, number)

    def _drop_callee(self, bridge: Bridge) -> None:
        """End the callee leg still under way, silently (failover, forwarding, or another
        fork answered first).

        The leg leaves the bridge at once (its callbacks see no bridge and do
        nothing) and waits in the graveyard until pjsua has finished it: a
        CANCEL that pjsua sends once the leg got a provisional, or a BYE
        after a late 200.
        """
        leg = bridge.callee
        if leg is None or bridge.callee_gone:
            return
        leg.bridge = None  # before hangup: a callback it triggers must not see the bridge
        self._release_callee(bridge)
        bridge.callee, bridge.callee_media, bridge.connected = None, None, False
        bridge.callee_gone = True
        self._graveyard.append(leg)

    def _new_leg(
        self,
        leg_class: Any,
        bridge: Bridge,
        place: PlaceCallee,
        failed: Callable[[int, str], CallEvent],
    ) -> Any:
        """A leg of `leg_class` for `place` on its trunk's account; None (and `failed`
        emitted) when the trunk is unknown."""
        try:
            account = self._callee_account(place.trunk)
        except UnknownTrunk as exc:
            self._emit(failed(exc.status, exc.reason))
            return None
        leg = leg_class(account, bridge)
        leg.leg = place.leg
        return leg

    def _callee_account(self, trunk: str) -> Any:
        """The trunk's account (its credentials answer challenges); no trunk: the engine's."""
        if not trunk:
            return self.account
        if self.trunks is None:
            return self.account  # engine without an edge (tests, benches): no trunk accounts
        return self.trunks.account_for(trunk)

    @staticmethod
    def _live(bridge: Bridge) -> bool:
        """Nobody ended the call yet (a caller gone for a transfer leaves it live)."""
        if bridge.ended or bridge.ended_by is not None:
            return False
        return not bridge.caller_gone or bridge.transfer_pending or bridge.transferred

    def _release(self, bridge: Bridge, status: int, reason: str, by: Party) -> None:
        if bridge.ended_by is None:
            bridge.ended_by, bridge.end_status, bridge.end_reason = by, status, reason
        self._release_callee(bridge)
        self._drop_transfer(bridge)
        if bridge.caller_gone:
            self._call_ended(bridge)  # it left for a transfer: nobody else reports the end
        elif not bridge.caller_released:
            prm = self._with_reason(self._pj.CallOpParam(), bridge.q850)
            if not bridge.answered:
                prm.statusCode = status
                prm.reason = reason
            bridge.caller.hangup(prm)  # caller_state reports the end

    def _call_ended(self, bridge: Bridge) -> None:
        if bridge.ended:
            return
        bridge.ended = True
        self._emit(
            CallEnded(
                bridge.call,
                time.time(),
                bridge.ended_by or Party.GATEWAY,
                bridge.end_status,
                bridge.end_reason,
                bridge.caller_codec,
                bridge.callee_codec,
                bridge.q850,
            )
        )

    def _release_callee(self, bridge: Bridge) -> None:
        self._drop_forks(bridge)
        if bridge.callee is None or bridge.callee_gone or bridge.callee_released:
            return
        bridge.callee_released = True
        try:
            bridge.callee.hangup(self._with_reason(self._pj.CallOpParam(), bridge.q850))
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
        self._emit(offered_call(bridge.call, time.time(), prm.rdata.wholeMsg))

    def caller_state(self, bridge: Bridge, prm: Any) -> None:
        if bridge.caller_gone or bridge.caller.isActive():
            return
        # Not active: disconnected, or hangup() already under way (which we did).
        info = bridge.caller.getInfo()
        self._note_transfer(bridge, prm)
        self._leg_gone(bridge, Party.CALLER)
        if bridge.ended_by is None and (bridge.transfer_pending or bridge.transferred):
            return  # it left a transfer it asked for: the callee stays, for the target
        if bridge.ended_by is None:
            bridge.ended_by = Party.CALLER
            bridge.end_status = int(info.lastStatusCode)
            bridge.end_reason = str(info.lastReason)
            if self._note_expiry(bridge, bridge.end_status):
                bridge.ended_by = Party.GATEWAY
        self._release_callee(bridge)
        self._drop_transfer(bridge)
        self._call_ended(bridge)

    def callee_state(self, bridge: Bridge, callee: Any) -> None:
        pj = self._pj
        if callee is not bridge.callee:
            self._fork_state(bridge, callee)
            return
        info = callee.getInfo()
        state = info.state
        if state == pj.PJSIP_INV_STATE_EARLY:
            status = int(info.lastStatusCode)
            if status in _RINGING and not bridge.caller_gone:
                first = self._relay_ringing(bridge, status)
                # A failover leg that rings is news to call control, not to the caller.
                if first or bridge.callee_leg > bridge.rang_leg:
                    bridge.rang_leg = bridge.callee_leg
                    self._emit(CalleeRinging(bridge.call, time.time(), status, bridge.callee_leg))
        elif state in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED):
            # The caller's 200 goes out when the callee's 200 arrives (CONNECTING), ahead
            # of the ACK PJSIP sends the callee next: the ACK is off the set-up path.
            if bridge.caller_gone or bridge.ended_by is not None:
                if state == pj.PJSIP_INV_STATE_CONFIRMED:  # a BYE before the ACK is no use
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
            if self._live(bridge):
                if bridge.answered:
                    by = Party.GATEWAY if self._note_expiry(bridge, status) else Party.CALLEE
                    self._release(bridge, status, reason, by)
                else:
                    # Call control decides: the next target (failover) or what the caller hears.
                    self._emit(
                        CalleeFailed(
                            bridge.call,
                            time.time(),
                            status,
                            reason,
                            leg=bridge.callee_leg,
                            q850=bridge.q850,
                        )
                    )

    def caller_media(self, bridge: Bridge) -> None:
        if bridge.connected:
            self.media_update(bridge, Party.CALLER)
            return
        bridge.caller_media = bridge.caller.getAudioMedia(-1)
        if not bridge.caller_codec:
            bridge.caller_codec = _codec(bridge.caller)
        self._connect(bridge)

    def callee_media(self, bridge: Bridge, callee: Any) -> None:
        if callee is not bridge.callee:
            return  # a parallel leg: connected if and when it answers first
        if bridge.connected:
            self.media_update(bridge, Party.CALLEE)
            return
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

    def media_update(self, bridge: Bridge, party: Party) -> None:
        """A re-INVITE changed one leg's media once the bridge was up: bridge its port again.

        Measured: after a hold re-INVITE the leg's conference port comes back
        rebuilt, often in the same slot, without its connections; connecting
        twice is harmless. (`CallInfo.media` reads garbage through this
        build's bindings, so nothing here relies on it.)
        """
        leg = getattr(bridge, _LEGS[party])
        if leg is None or (party is Party.CALLER and bridge.transferred):
            return  # a caller that transferred is no longer part of the audio
        try:
            media = leg.getAudioMedia(-1)
        except Exception:  # noqa: BLE001 - no audio port right now (e.g. inactive): nothing to do
            return
        setattr(bridge, _MEDIA[party], media)
        other = getattr(bridge, _MEDIA[_peer(bridge, party)])
        if other is not None:
            media.startTransmit(other)
            other.startTransmit(media)

    def offer_received(self, bridge: Bridge, party: Party, sdp: str) -> None:
        """A re-INVITE/UPDATE offer on one leg: reflect hold and resume to the other leg.

        Our own reflected hold is an offer we send, never one we receive, so
        it does not come back; a session-timer refresh is a sendrecv offer and
        changes nothing unless that side was holding.
        """
        held = hold_requested(sdp)
        if held == (party in bridge.held_by):
            return
        if held:
            bridge.held_by.add(party)
        else:
            bridge.held_by.discard(party)
        other = getattr(bridge, _LEGS[_peer(bridge, party)])
        if other is None or not bridge.answered:
            return
        pj = self._pj
        prm = _audio_only(pj.CallOpParam(True))
        try:
            if held:
                other.setHold(prm)
            else:
                prm.opt.flag = pj.PJSUA_CALL_UNHOLD
                other.reinvite(prm)
        except Exception as exc:  # noqa: BLE001 - e.g. a re-INVITE already pending: keep the call
            _log.warning("hold_relay_failed", call=bridge.call, held=held, error=_reason(exc))

    def note_reason(self, bridge: Bridge, leg: Any, prm: Any) -> None:
        """Keep the Q.850 cause of a Reason header in the message that ended `leg`.

        Read before the state is handled, so the cause travels with the
        release to the other leg (BYE, CANCEL or final response) and out. A leg
        still active was not ended: its message (a 180, a 200) is not read, each
        read copies the whole message out of PJSIP.
        """
        if bridge.q850 is not None or leg.isActive():
            return
        message = _received_message(self._pj, prm)
        if message is not None:
            bridge.q850 = reason_in_message(message)

    def _note_transfer(self, bridge: Bridge, prm: Any) -> None:
        """The caller's BYE names a transfer the edge accepted (`TRANSFER_HEADER`) that no
        command has come for yet: it is on its way, keep the callee for it."""
        if not bridge.answered or bridge.transfer_pending or bridge.transferred:
            return
        message = _received_message(self._pj, prm)
        mark = _TRANSFER_MARK.search(message) if message is not None else None
        if mark is not None and int(mark.group(1)) > bridge.transfer_heard:
            bridge.transfer_pending = True

    @staticmethod
    def _note_expiry(bridge: Bridge, status: int) -> bool:
        """An answered leg that ends with 408 was ended by its session timer, i.e. by us."""
        if not bridge.answered or status != EXPIRED_STATUS:
            return False
        if bridge.q850 is None:
            bridge.q850 = RECOVERY_ON_TIMER_EXPIRY
        return True

    def _with_reason(self, prm: Any, q850: int | None) -> Any:
        if q850 is not None:
            header = self._pj.SipHeader()
            header.hName = "Reason"
            header.hValue = reason_value(q850)
            prm.txOption.headers.append(header)
        return prm

    def transfer_requested(self, bridge: Bridge, party: Party, target: str) -> None:
        """A REFER that reached pjsua: declined (see TRANSFER_DECLINED), logged."""
        _log.info("transfer_declined", call=bridge.call, by=party.value, target=target)

    # --- blind transfer (call control routed the caller's REFER) -------------------

    def _place_transfer(self, bridge: Bridge, command: PlaceTransfer) -> None:
        place = command.place
        if not bridge.answered or bridge.transferred or place.leg <= bridge.transfer_leg:
            return
        bridge.transfer_pending = True
        if bridge.transfer_notified < command.transfer:
            bridge.transfer_notified = command.transfer
            self._notify(bridge, 100, "Trying", final=False)
        self._drop_transfer(bridge)  # failover: the leg still under way gives way
        bridge.transfer_leg = place.leg

        def failed(status: int, reason: str) -> TransferFailed:
            return TransferFailed(bridge.call, time.time(), status, reason, place.leg)

        leg = bridge.transfer = self._new_leg(self._transfer_leg, bridge, place, failed)
        if leg is None:
            return
        try:
            leg.makeCall(place.target, self._invite_param(place))
        except Exception as exc:  # noqa: BLE001 - e.g. an unusable target URI
            bridge.transfer = None
            self._discard(bridge, leg, None)
            self._emit(failed(502, _reason(exc)))

    def _end_transfer(self, bridge: Bridge, command: EndTransfer) -> None:
        """No target: the caller hears why and keeps the callee; if it left, the callee goes."""
        if bridge.transferred:
            return
        self._drop_transfer(bridge)
        bridge.transfer_pending = False
        if not bridge.caller_gone:
            self._notify(bridge, command.status, command.reason, final=True)
            return
        if bridge.q850 is None:
            bridge.q850 = command.q850
        # It hung up counting on the transfer: the call ends because the caller left.
        self._release(bridge, command.status, command.reason, Party.CALLER)

    def transfer_state(self, bridge: Bridge, leg: Any) -> None:
        if leg is not bridge.transfer:
            return
        pj = self._pj
        info = leg.getInfo()
        state = info.state
        if state == pj.PJSIP_INV_STATE_CONFIRMED:
            if self._live(bridge) and bridge.transfer_pending:
                self._transferred(bridge, leg)
            else:
                self._drop_transfer(bridge)
        elif state == pj.PJSIP_INV_STATE_DISCONNECTED:
            bridge.transfer = bridge.transfer_media = None
            self._discard(bridge, leg, None)
            status, reason = int(info.lastStatusCode), str(info.lastReason)
            if self._live(bridge) and bridge.transferred:
                self._release(bridge, status, reason, Party.TARGET)
            elif self._live(bridge) and bridge.transfer_pending:
                self._emit(TransferFailed(bridge.call, time.time(), status, reason, leg.leg))
            self._forget_if_gone(bridge)

    def _transferred(self, bridge: Bridge, leg: Any) -> None:
        """The target answered: the callee's audio goes to it, the caller is told and let go."""
        bridge.transferred, bridge.transfer_pending = True, False
        a, b = bridge.caller_media, bridge.callee_media
        if a is not None and b is not None:
            a.stopTransmit(b)
            b.stopTransmit(a)
        bridge.caller_media = None
        self._connect_target(bridge)
        self._notify(bridge, 200, "OK", final=True)
        if not bridge.caller_gone and not bridge.caller_released:
            bridge.caller_released = True
            try:
                bridge.caller.hangup(self._pj.CallOpParam())
            except Exception as exc:  # noqa: BLE001 - it is leaving anyway
                _log.debug("transferor_hangup_failed", call=bridge.call, error=_reason(exc))
        self._emit(TransferAnswered(bridge.call, time.time(), leg.leg))

    def transfer_media(self, bridge: Bridge, leg: Any) -> None:
        if leg is not bridge.transfer:
            return
        if bridge.transfer_media is not None:
            self.media_update(bridge, Party.TARGET)
            return
        bridge.transfer_media = leg.getAudioMedia(-1)
        self._connect_target(bridge)

    def _connect_target(self, bridge: Bridge) -> None:
        b, c = bridge.callee_media, bridge.transfer_media
        if bridge.transferred and b is not None and c is not None:
            b.startTransmit(c)
            c.startTransmit(b)

    def _drop_transfer(self, bridge: Bridge) -> None:
        """End the transfer leg, silently (failover, release, or the call ended)."""
        leg = bridge.transfer
        if leg is None:
            return
        bridge.transfer = bridge.transfer_media = None
        self._discard(bridge, leg, self._with_reason(self._pj.CallOpParam(), bridge.q850))
        self._forget_if_gone(bridge)

    def _notify(self, bridge: Bridge, status: int, reason: str, *, final: bool) -> None:
        """Tell the caller how its transfer goes (RFC 3515 §2.4.4: NOTIFY, message/sipfrag)."""
        if bridge.caller_gone or bridge.caller_released:
            return
        pj = self._pj
        prm = pj.CallSendRequestParam()
        prm.method = "NOTIFY"
        state = "terminated;reason=noresource"
        if not final:
            state = f"active;expires={_REFER_SUBSCRIPTION_S}"
        for name, value in (("Event", "refer"), ("Subscription-State", state)):
            header = pj.SipHeader()
            header.hName, header.hValue = name, value
            prm.txOption.headers.append(header)
        prm.txOption.contentType = "message/sipfrag;version=2.0"
        prm.txOption.msgBody = f"SIP/2.0 {status} {reason}\r\n"
        try:
            bridge.caller.sendRequest(prm)
        except Exception as exc:  # noqa: BLE001 - the caller may be leaving: the transfer goes on
            _log.warning("transfer_notify_failed", call=bridge.call, error=_reason(exc))

    def relay_dtmf(self, bridge: Bridge, source: Party, digit: str) -> None:
        """A digit from one leg (RFC 4733 or SIP INFO) goes to the other as RFC 4733."""
        target = getattr(bridge, _LEGS[_peer(bridge, source)])
        if target is None or not bridge.connected:
            return  # no media path yet: a digit now would be lost on the other side too
        prm = self._pj.CallSendDtmfParam()
        prm.digits = digit
        prm.method = self._pj.PJSUA_DTMF_METHOD_RFC2833
        target.sendDtmf(prm)

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
        self._forget_if_gone(bridge)

    def _forget_if_gone(self, bridge: Bridge) -> None:
        if bridge.caller_gone and bridge.callee_gone and bridge.transfer is None:
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
            for leg in (bridge.caller, bridge.callee, bridge.transfer, *bridge.forks.values()):
                if leg is not None:
                    leg.bridge = None
            bridge.caller = bridge.callee = bridge.caller_media = bridge.callee_media = None
            bridge.transfer = bridge.transfer_media = None
            bridge.forks.clear()
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


def _classes(pj: Any, b2bua: B2bua) -> tuple[Any, Any, Any, Any]:
    """pjsua2 subclasses whose callbacks only forward, wrapped, to `b2bua`.

    `bridge` is None once the call was reaped (see `reap`).
    """

    class CallerLeg(_in_call(b2bua, Party.CALLER), pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, call_id: int, bridge: Bridge) -> None:
            super().__init__(account, call_id)
            self.bridge = bridge

        def onCallState(self, prm: Any) -> None:
            if self.bridge is None:  # already reaped
                return
            try:
                b2bua.note_reason(self.bridge, self, prm)
                b2bua.caller_state(self.bridge, prm)
            except Exception as exc:  # noqa: BLE001 - this call only
                b2bua.fault(self.bridge, exc)

        def onCallMediaState(self, prm: Any) -> None:
            if self.bridge is None:  # already reaped
                return
            try:
                b2bua.caller_media(self.bridge)
            except Exception as exc:  # noqa: BLE001 - this call only
                b2bua.fault(self.bridge, exc)

    class CalleeLeg(_in_call(b2bua, Party.CALLEE), pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, bridge: Bridge) -> None:
            super().__init__(account)
            self.bridge = bridge
            self.leg = 0

        def onCallState(self, prm: Any) -> None:
            if self.bridge is None:  # already reaped
                return
            try:
                b2bua.note_reason(self.bridge, self, prm)
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

    class TransferLeg(_in_call(b2bua, Party.TARGET), pj.Call):  # type: ignore[misc]
        def __init__(self, account: Any, bridge: Bridge) -> None:
            super().__init__(account)
            self.bridge = bridge
            self.leg = 0

        def onCallState(self, prm: Any) -> None:
            if self.bridge is None:  # dropped or reaped
                return
            try:
                b2bua.note_reason(self.bridge, self, prm)
                b2bua.transfer_state(self.bridge, self)
            except Exception as exc:  # noqa: BLE001 - this call only
                b2bua.fault(self.bridge, exc)

        def onCallMediaState(self, prm: Any) -> None:
            _guarded(b2bua, self.bridge, b2bua.transfer_media, self)

    class EngineAccount(pj.Account):  # type: ignore[misc]
        def onIncomingCall(self, prm: Any) -> None:
            try:
                b2bua.incoming(prm)
            except Exception as exc:  # noqa: BLE001 - no Call owns it: the caller times out
                _log.error("incoming_call_fault", error=_reason(exc))

    return CallerLeg, CalleeLeg, TransferLeg, EngineAccount


def _in_call(b2bua: B2bua, party: Party) -> type:
    """Callbacks of an answered leg, the same on both sides but for which side it is.

    A mixin before `pj.Call`: the SWIG director finds these by attribute lookup.
    """

    class InCallCallbacks:
        bridge: Bridge | None

        def onDtmfDigit(self, prm: Any) -> None:
            _guarded(b2bua, self.bridge, b2bua.relay_dtmf, party, str(prm.digit))

        def onCallRxOffer(self, prm: Any) -> None:
            _guarded(b2bua, self.bridge, b2bua.offer_received, party, prm.offer.wholeSdp)

        def onCallTransferRequest(self, prm: Any) -> None:
            prm.statusCode = TRANSFER_DECLINED  # first: nothing below may leave pjsua's 202
            _guarded(b2bua, self.bridge, b2bua.transfer_requested, party, str(prm.dstUri))

    return InCallCallbacks


def _guarded(b2bua: B2bua, bridge: Bridge | None, action: Callable[..., None], *args: Any) -> None:
    """Run a leg callback's work; an exception ends that call only (None: already reaped)."""
    if bridge is None:
        return
    try:
        action(bridge, *args)
    except Exception as exc:  # noqa: BLE001 - this call only
        b2bua.fault(bridge, exc)


_LEGS = {Party.CALLER: "caller", Party.CALLEE: "callee", Party.TARGET: "transfer"}
_MEDIA = {party: f"{name}_media" for party, name in _LEGS.items()}


def _peer(bridge: Bridge, party: Party) -> Party:
    """Whom `party` talks to: the callee talks to the target once transferred."""
    if party is not Party.CALLEE:
        return Party.CALLEE
    return Party.TARGET if bridge.transferred else Party.CALLER


def offered_call(call: int, at: float, message: str) -> CallOffered:
    """The CallOffered event for a caller's INVITE as the engine received it.

    Only the header section is read: a body line (SDP, a multipart part) is not a
    header, and scanning it would cost each search as much again.
    """
    head = message.split("\r\n\r\n", 1)[0]
    line_end = head.find("\r\n")
    parts = head[: line_end if line_end >= 0 else None].split(" ")
    from_match = _FROM.search(head)
    call_id_match = _CALL_ID.search(head)
    # Set by the edge only (it strips copies from peers): who the caller was admitted as.
    origin = _ORIGIN.search(head)
    kind, name = (origin.group(1).lower(), origin.group(2)) if origin else ("", "")
    return CallOffered(
        call,
        at,
        parts[1] if len(parts) > 1 else "",
        _uri_of(from_match.group(1)) if from_match else "",
        call_id_match.group(1) if call_id_match else "",
        account=name if kind == "account" else "",
        trunk=name if kind == "trunk" else "",
        max_forwards=int(hops.group(1)) if (hops := _MAX_FORWARDS.search(head)) else 70,
        display_name=_display_of(from_match.group(1)) if from_match else "",
        asserted_identity=pai.group(1) if (pai := _PAI.search(head)) else "",
        privacy=privacy.group(1) if (privacy := _PRIVACY.search(head)) else "",
    )


def _received_message(pj: Any, prm: Any) -> str | None:
    """The message a leg just received that changed its state (None: not a received one)."""
    event = prm.e
    if event.type != pj.PJSIP_EVENT_TSX_STATE:
        return None
    tsx_state = event.body.tsxState
    if tsx_state.type != pj.PJSIP_EVENT_RX_MSG:
        return None
    return str(tsx_state.src.rdata.wholeMsg)


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


def _display_of(name_addr: str) -> str:
    """The display name of a From value (quotes and escapes removed); "" when none."""
    start = name_addr.find("<")
    if start <= 0:
        return ""
    name = name_addr[:start].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def _reason(exc: BaseException) -> str:
    info = getattr(exc, "info", None)
    if callable(info):
        with contextlib.suppress(Exception):
            return str(info())
    return str(exc) or type(exc).__name__


def _audio_only(prm: Any) -> Any:
    """`prm` offering one audio stream and nothing else.

    pjsua's default call setting (2.17) also offers a T.140 real-time text
    stream: a second RTP/RTCP socket pair per leg and an m=text line that no
    trunk here uses. It doubled the callee leg's sockets and grew its INVITE
    from ~1,000 to 1,332 bytes.
    """
    prm.opt.audioCount = 1
    prm.opt.videoCount = 0
    prm.opt.textCount = 0
    return prm
