"""A far-end SIP user agent on pjsua2, for interop tests against the daemon.

pjsua2 is a process-wide singleton and the daemon under test runs its own
PJSIP, so this runs as a separate process:

    python tests/support/pjua.py register --registrar 127.0.0.1:5060 ...
    python tests/support/pjua.py answer --listen-transport udp ...
    python tests/support/pjua.py call --target sip:bob@127.0.0.1:5060 ...
    python tests/support/pjua.py phone --registrar 127.0.0.1:5060 --contact ... (register, answer)

Every event is one JSON object per line on stdout (PJSIP and our own logs go
to stderr); the last one is always `{"event": "exit", "code": N, ...}`. The
run is bounded by `--timeout` and only ever binds ephemeral ports.

pjsua2 runs with `threadCnt = 0` on the main thread, driven by a
`libHandleEvents()` loop, with the null audio device, as in media/engine.py.
pjsua2 keeps raw pointers to the writer, accounts and calls: they are held
in attributes until the library is destroyed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import pjsua2 as pj

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 2
EXIT_ERROR = 3
EXIT_TERMINATED = 4

_POLL_MSEC = 10
_SETTLE_S = 0.2
# pjsua logs every SIP message at level 4 when msgLogging is on; we need those
# lines to observe challenges and Authorization headers.
_MESSAGE_LOG_LEVEL = 4
_MESSAGE_LOG = re.compile(
    r"\b(?P<dir>TX|RX) \d+ bytes (?:Request|Response) msg[^\n]*\n(?P<msg>.*?)\n--end msg--",
    re.DOTALL,
)
_AUTH_HEADERS = {
    "reason": "reason_header",
    "authorization": "auth_header",
    "proxy-authorization": "auth_header",
    "www-authenticate": "challenge",
    "proxy-authenticate": "challenge",
}
_ALGORITHM_PARAM = re.compile(r"\balgorithm\s*=\s*\"?([A-Za-z0-9-]+)", re.IGNORECASE)
_STATE_NAMES = ("NULL", "CALLING", "INCOMING", "EARLY", "CONNECTING", "CONFIRMED", "DISCONNECTED")
_CALL_STATES = {getattr(pj, f"PJSIP_INV_STATE_{name}"): name for name in _STATE_NAMES}
_MEDIA_STATUS_NAMES = ("NONE", "ACTIVE", "LOCAL_HOLD", "REMOTE_HOLD", "ERROR")
_MEDIA_STATUSES = {getattr(pj, f"PJSUA_CALL_MEDIA_{name}"): name for name in _MEDIA_STATUS_NAMES}
# Media statuses with an audio stream (on hold one direction is muted, the port exists).
_STREAMING = (
    pj.PJSUA_CALL_MEDIA_ACTIVE,
    pj.PJSUA_CALL_MEDIA_LOCAL_HOLD,
    pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
)
_TRANSPORT_TYPES = {
    "udp": pj.PJSIP_TRANSPORT_UDP,
    "tcp": pj.PJSIP_TRANSPORT_TCP,
    "tls": pj.PJSIP_TRANSPORT_TLS,
}


# --- events ------------------------------------------------------------------


class EventSink:
    """Writes one JSON object per line to the real stdout, from any thread."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.marker: dict[str, Any] = {}
        """Added to every event from now on (`{"shutdown": true}` while tearing down)."""

    def emit(self, event: str, **fields: Any) -> None:
        if self.marker:
            fields = {**fields, **self.marker}
        line = json.dumps({"event": event, **fields}, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _claim_stdout() -> IO[str]:
    """Keep fd 1 for events and point everything else that writes to stdout at stderr.

    pjlib writes some lines to stdout itself (before our writer exists and
    after the library is destroyed); those must not corrupt the JSON stream.
    """
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


def _pj_reason(exc: BaseException) -> str:
    info = getattr(exc, "info", None)
    if callable(info):
        try:
            return str(info())
        except Exception:  # fall back to str()
            pass
    return str(exc) or type(exc).__name__


def _algorithm_of(header_value: str) -> str:
    """The digest algorithm named in a challenge or credentials; MD5 when absent (RFC 2617)."""
    match = _ALGORITHM_PARAM.search(header_value)
    return match.group(1).upper() if match else "MD5"


class MessageObserver:
    """Turns pjsua's message log lines into `sip_message`, `challenge` and `auth_header` events."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink

    def feed(self, text: str) -> None:
        for match in _MESSAGE_LOG.finditer(text):
            self._message(match.group("dir").lower(), match.group("msg"))

    def _message(self, direction: str, message: str) -> None:
        lines = message.replace("\r\n", "\n").split("\n")
        first_line = lines[0].strip()
        self._sink.emit("sip_message", direction=direction, first_line=first_line)
        for line in lines[1:]:
            if not line.strip():
                break  # end of headers
            name, sep, value = line.partition(":")
            event = _AUTH_HEADERS.get(name.strip().lower()) if sep else None
            if event is None:
                continue
            value = value.strip()
            self._sink.emit(
                event,
                direction=direction,
                header=name.strip(),
                value=value,
                algorithm=_algorithm_of(value),
                first_line=first_line,
            )


def _log_writer(observer: MessageObserver, stderr_level: int) -> Any:
    """A pjsua2 LogWriter: feeds message lines to the observer, echoes to stderr up to a level."""

    class Writer(pj.LogWriter):  # type: ignore[misc]
        def write(self, entry: Any) -> None:
            try:
                observer.feed(entry.msg)
                if entry.level <= stderr_level:
                    sys.stderr.write(entry.msg if entry.msg.endswith("\n") else entry.msg + "\n")
            except Exception as exc:  # never raise into PJSIP
                sys.stderr.write(f"pjua log writer error: {exc!r}\n")

    return Writer()


# --- the agent ---------------------------------------------------------------


@dataclass(frozen=True)
class TlsOptions:
    """How a TLS client transport checks the server."""

    ca_file: str | None
    verify_server: bool


@dataclass
class Timers:
    """Due actions as data: (due monotonic time, name, action); run by the pump."""

    pending: list[tuple[float, str, Callable[[], None]]] = field(default_factory=list)

    def at(self, due: float, name: str, action: Callable[[], None]) -> None:
        self.pending.append((due, name, action))

    def run_due(self, now: float) -> None:
        due = [t for t in self.pending if t[0] <= now]
        self.pending = [t for t in self.pending if t[0] > now]
        for _, _, action in due:
            action()


@dataclass(frozen=True)
class CallPlan:
    """What a call does besides ringing, answering and hanging up (tests of the B2BUA)."""

    tone: bool = False
    """Play a 1 kHz tone into the call and report how loud the received audio was."""
    dtmf: str = ""
    """RFC 4733 digits to send once the call is confirmed."""
    dtmf_after_s: float = 0.5
    reason_cause: int = 0
    """Q.850 cause for a Reason header on our BYE/CANCEL or rejection (0: none)."""
    hold_at_s: float = 0.0
    """Put the call on hold (re-INVITE, sendonly) this long after CONFIRMED (0: never)."""
    unhold_at_s: float = 0.0
    """Resume it (re-INVITE, sendrecv) this long after CONFIRMED (0: never)."""


_TONE_HZ = 1000
_LEVEL_SAMPLE_S = 0.05
# pjmedia signal level (0..255) above which a sample counts as audio, not silence/noise.
_AUDIBLE_LEVEL = 10


class Terminated(Exception):
    """SIGTERM/SIGINT arrived: shut down cleanly."""


class UserAgent:
    """Owns the pjsua2 Endpoint, its one transport and the event loop."""

    def __init__(self, sink: EventSink, deadline: float, log_level: int) -> None:
        self.sink = sink
        self.deadline = deadline
        self.timers = Timers()
        self.endpoint = pj.Endpoint()
        self.transport_id: int | None = None
        self.host = ""
        self._writer = _log_writer(MessageObserver(sink), log_level)
        self._log_level = log_level
        self._terminated = False
        self.keep: list[Any] = []  # accounts, calls, media: pjsua2 holds raw pointers
        self.plan = CallPlan()
        self.tone: Any = None
        """The ToneGenerator of the CallPlan; destroyed before the library (it owns a port)."""

    def start(
        self,
        transport: str,
        host: str,
        codecs: str,
        user_agent: str,
        tls: TlsOptions | None = None,
    ) -> tuple[str, int]:
        """Create the library and the one transport asked for; return its host and port."""
        self.host = host
        self.endpoint.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.userAgent = user_agent
        cfg.logConfig.writer = self._writer
        cfg.logConfig.level = max(self._log_level, _MESSAGE_LOG_LEVEL)
        cfg.logConfig.consoleLevel = cfg.logConfig.level  # the writer sees what passes this
        cfg.logConfig.msgLogging = True
        cfg.medConfig.noVad = True
        self.endpoint.libInit(cfg)
        self.endpoint.audDevManager().setNullDev()
        tcfg = pj.TransportConfig()
        tcfg.boundAddress = host
        tcfg.port = 0
        if transport == "tls":
            options = tls or TlsOptions(ca_file=None, verify_server=True)
            if options.ca_file:
                tcfg.tlsConfig.CaListFile = options.ca_file
            tcfg.tlsConfig.verifyServer = options.verify_server
        self.transport_id = self.endpoint.transportCreate(_TRANSPORT_TYPES[transport], tcfg)
        self._set_codecs([c.strip() for c in codecs.split(",") if c.strip()])
        self.endpoint.libStart()
        local = self.endpoint.transportGetInfo(self.transport_id).localName
        bound_host, _, port = local.rpartition(":")
        return bound_host.strip("[]"), int(port)

    def _set_codecs(self, wanted: list[str]) -> None:
        """Offer exactly the wanted codecs, in order (PJSIP's own default leads with speex)."""
        available = [c.codecId for c in self.endpoint.codecEnum2()]
        unknown = [c for c in wanted if c not in available]
        if unknown:
            raise ValueError(f"unknown codecs {unknown}; available: {available}")
        for codec_id in available:
            self.endpoint.codecSetPriority(codec_id, 0)
        for rank, codec_id in enumerate(wanted):
            self.endpoint.codecSetPriority(codec_id, 250 - rank)

    def terminate(self) -> None:
        self._terminated = True

    def pump_until(self, done: Callable[[], bool]) -> bool:
        """Handle PJSIP events and due timers until `done()`; False at the deadline."""
        while not done():
            if self._terminated:
                raise Terminated
            now = time.monotonic()
            if now >= self.deadline:
                return False
            self.endpoint.libHandleEvents(_POLL_MSEC)
            self.timers.run_due(time.monotonic())
        return True

    def pump_for(self, seconds: float) -> bool:
        """Handle events for `seconds` (bounded by the deadline)."""
        until = time.monotonic() + seconds
        return self.pump_until(lambda: time.monotonic() >= until)

    def shutdown(self, send_messages: bool = True) -> None:
        """Destroy the library without waiting for answers, so the run stays within its timeout.

        A short settle lets in-flight answers (the 200 to our BYE) arrive first.
        pjsua itself would wait up to `unregWaitMsec` plus a second for answers
        to the BYEs/un-REGISTERs it sends; with NO_RX it sends them and goes.
        Without `send_messages` bindings and calls are left as they are.
        """
        settle_until = min(time.monotonic() + _SETTLE_S, self.deadline)
        while not self._terminated and time.monotonic() < settle_until:
            self.endpoint.libHandleEvents(_POLL_MSEC)
        self.sink.marker = {"shutdown": True}
        self.tone = None
        flags = pj.PJSUA_DESTROY_NO_RX_MSG
        if not send_messages:
            flags |= pj.PJSUA_DESTROY_NO_TX_MSG
        try:
            self.endpoint.libDestroy(flags)
        except Exception as exc:  # nothing useful left to do
            self.sink.emit("error", where="libDestroy", reason=_pj_reason(exc))
        self.sink.marker = {}


def _account_config(agent: UserAgent, id_uri: str, user: str | None, password: str | None) -> Any:
    cfg = pj.AccountConfig()
    cfg.idUri = id_uri
    cfg.sipConfig.transportId = agent.transport_id
    # Loopback tests want exactly the messages they provoke: no re-REGISTER
    # or re-INVITE to fix up a Contact/Via from `received`/`rport`.
    cfg.natConfig.contactRewriteUse = 0
    cfg.natConfig.viaRewriteUse = 0
    cfg.natConfig.sdpNatRewriteUse = 0
    # RTP on an ephemeral port of the SIP address (pjsua2's default is 4000 on all addresses).
    cfg.mediaConfig.transportConfig.port = 0
    cfg.mediaConfig.transportConfig.boundAddress = agent.host
    if password is not None:
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", user or "", pj.PJSIP_CRED_DATA_PLAIN_PASSWD, password)
        )
    return cfg


def _transport_uri(uri: str, transport: str) -> str:
    """Add `;transport=` for TCP/TLS unless the URI already names one."""
    if transport == "udp" or "transport=" in uri.lower():
        return uri
    return f"{uri};transport={transport}"


# --- register ----------------------------------------------------------------


@dataclass
class RegistrationLog:
    """(code, reason, expires) of every registration outcome, in order."""

    states: list[tuple[int, str, int]] = field(default_factory=list)

    def outcome(self, agent: UserAgent, account: Any, register: bool) -> tuple[int, str] | None:
        """Send one REGISTER (or un-REGISTER) and wait for its outcome; None at the deadline."""
        seen = len(self.states)
        account.setRegistration(register)
        if not agent.pump_until(lambda: len(self.states) > seen):
            return None
        code, reason, _ = self.states[-1]
        return code, reason


def _note_reg_state(agent: UserAgent, log: RegistrationLog, account: Any, prm: Any) -> None:
    try:
        active = bool(account.getInfo().regIsActive)
    except Exception:  # the account may be going away
        active = False
    log.states.append((int(prm.code), str(prm.reason), int(prm.expiration)))
    agent.sink.emit(
        "reg_state",
        code=int(prm.code),
        reason=str(prm.reason),
        expires=int(prm.expiration),
        active=active,
    )


def _registering_account(agent: UserAgent, log: RegistrationLog) -> Any:
    class RegisteringAccount(pj.Account):  # type: ignore[misc]
        def onRegState(self, prm: Any) -> None:
            _note_reg_state(agent, log, self, prm)

    return RegisteringAccount()


def _registration_config(agent: UserAgent, args: argparse.Namespace) -> Any:
    cfg = _account_config(agent, f"sip:{args.user}@{args.domain}", args.user, args.password)
    cfg.regConfig.registrarUri = f"sip:{args.registrar};transport={args.transport}"
    cfg.regConfig.timeoutSec = args.expires
    cfg.regConfig.retryIntervalSec = 0  # a failure is reported, not retried
    cfg.regConfig.registerOnAdd = False
    return cfg


def run_register(agent: UserAgent, args: argparse.Namespace) -> tuple[int, str]:
    _, port = agent.start(
        args.transport, args.bind, args.codecs, "Callgate pjua", _tls_options(args)
    )
    agent.sink.emit("transport", transport=args.transport, port=port)
    log = RegistrationLog()
    account = _registering_account(agent, log)
    agent.keep.append(account)
    account.create(_registration_config(agent, args))
    for attempt in range(1, args.count + 1):
        outcome = log.outcome(agent, account, register=True)
        if outcome is None:
            return EXIT_TIMEOUT, f"no answer to REGISTER #{attempt}"
        code, reason = outcome
        if code != args.expect_code:
            return EXIT_FAILED, f"REGISTER #{attempt} got {code} {reason}"
    if args.expect_code != 200:
        return EXIT_OK, f"got the expected {args.expect_code}"
    if args.stay_s > 0 and not agent.pump_for(args.stay_s):
        return EXIT_TIMEOUT, "timeout while staying registered"
    if args.unregister_after:
        outcome = log.outcome(agent, account, register=False)
        if outcome is None:
            return EXIT_TIMEOUT, "no answer to the unregistering REGISTER"
        code, reason = outcome
        if code != 200:
            return EXIT_FAILED, f"unregistration got {code} {reason}"
        return EXIT_OK, "registered and unregistered"
    return EXIT_OK, "registered"


def _tls_options(args: argparse.Namespace) -> TlsOptions | None:
    if args.transport != "tls":
        return None
    return TlsOptions(ca_file=args.tls_ca, verify_server=not args.tls_no_verify)


# --- calls -------------------------------------------------------------------


@dataclass
class CallProgress:
    """What one call went through, as seen by our callbacks."""

    states: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    confirmed: bool = False
    disconnected: bool = False
    last_code: int = 0
    last_reason: str = ""
    hangup_by_us: bool = False
    audio: Any = None
    audible_samples: int = 0
    max_level: int = 0


def _tone_into(agent: UserAgent, progress: CallProgress, audio: Any) -> None:
    """Play the tone into the call's audio port (again: a re-INVITE may have rebuilt it)."""
    first = progress.audio is None
    progress.audio = audio
    if agent.tone is None:
        agent.tone = _tone_generator()
    agent.tone.startTransmit(audio)
    if first:
        _sample_level(agent, progress)


def _tone_generator() -> Any:
    tone = pj.ToneDesc()
    tone.freq1 = _TONE_HZ
    tone.freq2 = 0
    tone.on_msec = 30000
    tone.off_msec = 20
    tones = pj.ToneDescVector()
    tones.append(tone)
    generator = pj.ToneGenerator()
    generator.createToneGenerator(8000, 1)
    generator.play(tones, True)
    return generator


def _sample_level(agent: UserAgent, progress: CallProgress) -> None:
    """Every few ms while the call lasts: how loud is what the far side sends us."""
    if progress.disconnected or progress.audio is None:
        return
    # Measured: getRxLevel() reports our own tone here; getTxLevel() is what the network brought.
    try:
        level = int(progress.audio.getTxLevel())
    except Exception:  # the port went away with a re-INVITE; its successor comes with media_state
        level = 0
    progress.max_level = max(progress.max_level, level)
    if level > _AUDIBLE_LEVEL:
        progress.audible_samples += 1
    agent.timers.at(
        time.monotonic() + _LEVEL_SAMPLE_S, "level", lambda: _sample_level(agent, progress)
    )


def _send_dtmf(call: Any, progress: CallProgress, digits: str, sink: EventSink) -> None:
    if progress.disconnected:
        return
    prm = pj.CallSendDtmfParam()
    prm.digits = digits
    prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
    try:
        call.sendDtmf(prm)
        sink.emit("dtmf_sent", digits=digits)
    except Exception as exc:  # reported, the test decides
        sink.emit("error", where="dtmf", reason=_pj_reason(exc))


def _reinvite(call: Any, progress: CallProgress, sink: EventSink, hold: bool) -> None:
    if progress.disconnected:
        return
    prm = _call_param()
    try:
        if hold:
            call.setHold(prm)
        else:
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(prm)
        sink.emit("reinvite_sent", hold=hold)
    except Exception as exc:  # reported, the test decides
        sink.emit("error", where="reinvite", reason=_pj_reason(exc))


def _schedule_plan(agent: UserAgent, call: Any, progress: CallProgress) -> None:
    """The plan's timed actions, counted from CONFIRMED."""
    plan, now, sink = agent.plan, time.monotonic(), agent.sink
    if plan.dtmf:
        agent.timers.at(
            now + plan.dtmf_after_s, "dtmf", lambda: _send_dtmf(call, progress, plan.dtmf, sink)
        )
    for at, hold in ((plan.hold_at_s, True), (plan.unhold_at_s, False)):
        if at > 0:
            agent.timers.at(
                now + at, "reinvite", lambda hold=hold: _reinvite(call, progress, sink, hold)
            )


def _tracked_call(agent: UserAgent, account: Any, call_id: int, progress: CallProgress) -> Any:
    class TrackedCall(pj.Call):  # type: ignore[misc]
        def onCallState(self, prm: Any) -> None:
            info = self.getInfo()
            state = _CALL_STATES.get(info.state, str(info.state))
            progress.states.append(state)
            progress.codes.append(int(info.lastStatusCode))
            progress.last_code = int(info.lastStatusCode)
            progress.last_reason = str(info.lastReason)
            progress.confirmed = progress.confirmed or state == "CONFIRMED"
            progress.disconnected = state == "DISCONNECTED"
            fields: dict[str, Any] = {}
            if progress.disconnected:
                fields["ended_by"] = "local" if progress.hangup_by_us else "remote"
                if agent.plan.tone:
                    agent.sink.emit(
                        "audio_rx",
                        audible_samples=progress.audible_samples,
                        max_level=progress.max_level,
                    )
            if state == "CONFIRMED":
                _schedule_plan(agent, self, progress)
            agent.sink.emit(
                "call_state",
                state=state,
                code=progress.last_code,
                reason=progress.last_reason,
                call_id=str(info.callIdString),
                **fields,
            )

        def onCallMediaState(self, prm: Any) -> None:
            info = self.getInfo()
            manager = pj.Endpoint.instance().audDevManager()
            for index, media in enumerate(info.media):
                if media.type != pj.PJMEDIA_TYPE_AUDIO:
                    continue
                status = _MEDIA_STATUSES.get(media.status, str(media.status))
                if media.status in _STREAMING:
                    audio = self.getAudioMedia(index)  # a re-INVITE may bring a new port
                    agent.keep.append(audio)
                    audio.startTransmit(manager.getPlaybackDevMedia())
                    manager.getCaptureDevMedia().startTransmit(audio)
                    if agent.plan.tone:
                        _tone_into(agent, progress, audio)
                agent.sink.emit(
                    "media_state",
                    index=index,
                    status=status,
                    audible_samples=progress.audible_samples,
                )

        def onDtmfDigit(self, prm: Any) -> None:
            agent.sink.emit("dtmf_rx", digit=str(prm.digit), method=int(prm.method))

    return TrackedCall(account, call_id)


def _local_account(agent: UserAgent, id_uri: str, user: str | None, password: str | None) -> Any:
    account = pj.Account()
    account.create(_account_config(agent, id_uri, user, password))
    agent.keep.append(account)
    return account


def _call_param(code: int = 0) -> Any:
    """Call options: audio only (PJSIP 2.17 also offers a T.140 text stream by default)."""
    prm = pj.CallOpParam(True)
    prm.opt.textCount = 0
    if code:
        prm.statusCode = code
    return prm


def _with_reason(prm: Any, cause: int) -> Any:
    if cause:
        header = pj.SipHeader()
        header.hName = "Reason"
        header.hValue = f"Q.850;cause={cause}"
        prm.txOption.headers.append(header)
    return prm


def _hangup(call: Any, progress: CallProgress, sink: EventSink, reason_cause: int = 0) -> None:
    prm = _with_reason(_call_param(), reason_cause)
    progress.hangup_by_us = True
    try:
        call.hangup(prm)
    except Exception as exc:  # the call may already be gone
        sink.emit("error", where="hangup", reason=_pj_reason(exc))


def run_call(agent: UserAgent, args: argparse.Namespace) -> tuple[int, str]:
    host, port = agent.start(
        args.transport, args.bind, args.codecs, "Callgate pjua", _tls_options(args)
    )
    agent.sink.emit("transport", transport=args.transport, port=port)
    user = args.user or "pjua"
    account = _local_account(agent, f"sip:{user}@{args.domain or host}", user, args.password)
    progress = CallProgress()
    call = _tracked_call(agent, account, pj.PJSUA_INVALID_ID, progress)
    agent.keep.append(call)
    call.makeCall(_transport_uri(args.target, args.transport), _call_param())

    def confirmed_or_ended() -> bool:
        return progress.confirmed or progress.disconnected

    if not agent.pump_until(confirmed_or_ended):
        _hangup(call, progress, agent.sink)
        return EXIT_TIMEOUT, f"no answer; states {progress.states}"
    if not progress.confirmed:
        if args.expect_code != 200 and progress.last_code == args.expect_code:
            return EXIT_OK, f"rejected with the expected {progress.last_code}"
        return EXIT_FAILED, f"not answered: {progress.last_code} {progress.last_reason}"
    if args.expect_code != 200:
        _hangup(call, progress, agent.sink)
        return EXIT_FAILED, f"answered, but {args.expect_code} was expected"
    agent.timers.at(
        time.monotonic() + args.hangup_after_s,
        "hangup",
        lambda: _hangup(call, progress, agent.sink, agent.plan.reason_cause),
    )
    if not agent.pump_until(lambda: progress.disconnected):
        return EXIT_TIMEOUT, "the call did not end"
    return EXIT_OK, f"answered and ended: {progress.last_code} {progress.last_reason}"


# --- answer ------------------------------------------------------------------


def _answering_account(
    agent: UserAgent,
    args: argparse.Namespace,
    progress: CallProgress,
    log: RegistrationLog | None = None,
) -> Any:
    """Answers the first incoming call (and records its registrations in `log`, if any)."""
    calls: list[Any] = []

    class AnsweringAccount(pj.Account):  # type: ignore[misc]
        def onRegState(self, prm: Any) -> None:
            if log is not None:
                _note_reg_state(agent, log, self, prm)

        def onIncomingCall(self, prm: Any) -> None:
            # Only the first call is ours; later ones get their own progress and a 486.
            first = not calls
            call = _tracked_call(agent, self, prm.callId, progress if first else CallProgress())
            agent.keep.append(call)
            info = call.getInfo()
            agent.sink.emit(
                "incoming_call",
                call_id=str(info.callIdString),
                remote_uri=str(info.remoteUri),
                local_uri=str(info.localUri),
            )
            if not first:
                _answer(call, 486)
                return
            calls.append(call)
            if args.ring_ms > 0:
                _answer(call, 180)
                agent.timers.at(
                    time.monotonic() + args.ring_ms / 1000,
                    "answer",
                    lambda: (
                        None
                        if progress.disconnected
                        else _answer(call, args.code, progress, agent.plan.reason_cause)
                    ),
                )
            else:
                _answer(call, args.code, progress, agent.plan.reason_cause)

        def first_call(self) -> Any | None:
            return calls[0] if calls else None

    return AnsweringAccount()


def _answer(
    call: Any, code: int, progress: CallProgress | None = None, reason_cause: int = 0
) -> None:
    if progress is not None and code >= 300:
        progress.hangup_by_us = True  # rejecting is ending the call from our side
    call.answer(_with_reason(_call_param(code), reason_cause if code >= 300 else 0))


def run_answer(agent: UserAgent, args: argparse.Namespace) -> tuple[int, str]:
    host, port = agent.start(args.listen_transport, args.bind, args.codecs, "Callgate pjua answer")
    uri = _transport_uri(f"sip:{args.user}@{host}:{port}", args.listen_transport)
    progress = CallProgress()
    account = _answering_account(agent, args, progress)
    account.create(_account_config(agent, uri, None, None))
    agent.keep.append(account)
    agent.sink.emit("listening", transport=args.listen_transport, host=host, port=port, uri=uri)
    return _serve_one_call(agent, args, account, progress)


def run_phone(agent: UserAgent, args: argparse.Namespace) -> tuple[int, str]:
    """Register (with `--contact` as Contact, e.g. a private address as behind NAT), then
    answer one call that arrives, like `answer`."""
    _, port = agent.start(
        args.transport, args.bind, args.codecs, "Callgate pjua phone", _tls_options(args)
    )
    agent.sink.emit("transport", transport=args.transport, port=port)
    cfg = _registration_config(agent, args)
    if args.contact:
        cfg.sipConfig.contactForced = args.contact
    log = RegistrationLog()
    progress = CallProgress()
    account = _answering_account(agent, args, progress, log)
    agent.keep.append(account)
    account.create(cfg)
    outcome = log.outcome(agent, account, register=True)
    if outcome is None:
        return EXIT_TIMEOUT, "no answer to REGISTER"
    if outcome[0] != 200:
        return EXIT_FAILED, f"REGISTER got {outcome[0]} {outcome[1]}"
    agent.sink.emit("registered", port=port)
    return _serve_one_call(agent, args, account, progress)


def _serve_one_call(
    agent: UserAgent, args: argparse.Namespace, account: Any, progress: CallProgress
) -> tuple[int, str]:
    if not agent.pump_until(lambda: account.first_call() is not None):
        return EXIT_TIMEOUT, "no call arrived"
    call = account.first_call()
    if not agent.pump_until(lambda: progress.confirmed or progress.disconnected):
        return EXIT_TIMEOUT, f"the call neither confirmed nor ended; states {progress.states}"
    if args.code >= 300:
        if progress.last_code == args.code:
            return EXIT_OK, f"rejected with {args.code}"
        return EXIT_FAILED, f"wanted to reject with {args.code}, ended {progress.last_code}"
    if not progress.confirmed:
        return EXIT_FAILED, f"the call ended before it was confirmed: {progress.last_code}"
    if args.hold_s > 0:
        agent.timers.at(
            time.monotonic() + args.hold_s,
            "hangup",
            lambda: _hangup(call, progress, agent.sink, agent.plan.reason_cause),
        )
    if not agent.pump_until(lambda: progress.disconnected):
        return EXIT_TIMEOUT, "the call did not end"
    return EXIT_OK, f"answered and ended: {progress.last_code} {progress.last_reason}"


# --- command line ------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--timeout", type=float, default=15.0, help="hard bound on the whole run, seconds"
    )
    common.add_argument("--bind", default="127.0.0.1", help="local address (port is always 0)")
    common.add_argument("--log-level", type=int, default=3, help="PJSIP log level echoed to stderr")
    common.add_argument(
        "--codecs", default="PCMU/8000/1,PCMA/8000/1", help="codec ids to offer, in order"
    )
    common.add_argument(
        "--tone", action="store_true", help="play a tone into the call, report received audio"
    )
    common.add_argument("--dtmf", default="", help="RFC 4733 digits to send once confirmed")
    common.add_argument("--dtmf-after-s", type=float, default=0.5)
    common.add_argument("--hold-at-s", type=float, default=0.0, help="hold, s after CONFIRMED")
    common.add_argument("--unhold-at-s", type=float, default=0.0, help="resume, s after CONFIRMED")
    common.add_argument(
        "--reason-cause", type=int, default=0, help="Q.850 Reason on our BYE or rejection"
    )
    tls = argparse.ArgumentParser(add_help=False)
    group = tls.add_mutually_exclusive_group()
    group.add_argument("--tls-ca", metavar="FILE", help="CA bundle to verify the server with")
    group.add_argument(
        "--tls-no-verify", action="store_true", help="do not verify the server certificate"
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)

    reg = commands.add_parser("register", parents=[common, tls], help="REGISTER to a registrar")
    reg.add_argument("--registrar", required=True, metavar="HOST:PORT")
    reg.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    reg.add_argument("--user", required=True)
    reg.add_argument("--domain", required=True)
    reg.add_argument("--password", required=True)
    reg.add_argument("--expires", type=int, default=60)
    reg.add_argument("--count", type=int, default=1, help="REGISTER (refresh) this many times")
    reg.add_argument("--stay-s", type=float, default=0.0, help="stay registered this long")
    reg.add_argument("--unregister-after", action="store_true")
    reg.add_argument(
        "--expect-code", type=int, default=200, help="succeed iff REGISTER gets this code"
    )

    answering = argparse.ArgumentParser(add_help=False)
    answering.add_argument("--code", type=int, default=200, help="final response to send")
    answering.add_argument("--ring-ms", type=int, default=0, help="send 180 and wait this long")
    answering.add_argument(
        "--hold-s", type=float, default=2.0, help="hang up this long after CONFIRMED (0: never)"
    )

    answer = commands.add_parser(
        "answer", parents=[common, answering], help="answer one incoming call"
    )
    answer.add_argument("--listen-transport", choices=("udp", "tcp"), default="udp")
    answer.add_argument("--user", default="answer", help="user part of our URI")

    phone = commands.add_parser(
        "phone", parents=[common, tls, answering], help="register, then answer one call"
    )
    phone.add_argument("--registrar", required=True, metavar="HOST:PORT")
    phone.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    phone.add_argument("--user", required=True)
    phone.add_argument("--domain", required=True)
    phone.add_argument("--password", required=True)
    phone.add_argument("--expires", type=int, default=60)
    phone.add_argument("--contact", help="Contact to register and answer with (as behind NAT)")

    call = commands.add_parser("call", parents=[common, tls], help="place one call")
    call.add_argument("--target", required=True, help="request URI, e.g. sip:bob@127.0.0.1:5060")
    call.add_argument("--transport", choices=("udp", "tcp", "tls"), default="udp")
    call.add_argument("--user", help="our user (and auth user); default pjua")
    call.add_argument("--password", help="digest password for 401/407 challenges")
    call.add_argument("--domain", help="host part of our From URI; default our address")
    call.add_argument("--hangup-after-s", type=float, default=1.0)
    call.add_argument(
        "--expect-code", type=int, default=200, help="succeed iff the final response is this"
    )
    return parser


_COMMANDS: dict[str, Callable[[UserAgent, argparse.Namespace], tuple[int, str]]] = {
    "register": run_register,
    "answer": run_answer,
    "phone": run_phone,
    "call": run_call,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sink = EventSink(_claim_stdout())
    agent = UserAgent(sink, time.monotonic() + args.timeout, args.log_level)
    agent.plan = CallPlan(
        args.tone,
        args.dtmf,
        args.dtmf_after_s,
        args.reason_cause,
        args.hold_at_s,
        args.unhold_at_s,
    )

    def on_signal(signum: int, frame: Any) -> None:
        agent.terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Only `register` without --unregister-after leaves its binding behind on exit.
    send_on_exit = not (args.command == "register" and not args.unregister_after)
    try:
        code, reason = _COMMANDS[args.command](agent, args)
    except Terminated:
        code, reason = EXIT_TERMINATED, "terminated by signal"
    except Exception as exc:  # pj.Error and friends: report as an event
        code, reason = EXIT_ERROR, f"{type(exc).__name__}: {_pj_reason(exc)}"
    if code == EXIT_TIMEOUT:
        sink.emit("timeout", after_s=args.timeout)
    agent.shutdown(send_messages=send_on_exit)
    sink.emit("exit", code=code, reason=reason)
    return code


if __name__ == "__main__":
    sys.exit(main())
