"""Node-wide admission of new calls: rate, concurrency and load shedding.

Measured (bench/daemon_calls.py, docs/BENCHMARKS.md): the whole daemon carries
250-300 calls/s cleanly on a quiet 2-core machine and fails some admitted calls
above that. Refusing the excess at the edge with 503 + Retry-After, before
PJSIP spends anything, kept admitted calls healthy at 1.5x and 2x a rate set
below that capacity; shedding on the engine's intake delay alone does not.
Besides the configured rate and concurrency, three signals say the node is
behind: the event loop's lag; the engine's intake delay — how long the
oldest INVITE the edge passed to the engine has waited for the engine's first
answer (the engine's queue, expressed as time: it rises at once when the
engine stalls, and falls as soon as it catches up); and how long the INVITE
itself sat in the edge's UDP receive queue. The last is the one that catches a
node run past its capacity: its loop keeps turning (lag stays under 30 ms)
while its sockets queue megabytes, so every later message of every admitted
call waits behind the excess and their retransmission timers fire.
Pure: `now`, the active call count and the delays are passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.sip.admission import AdmissionPolicy, AdmissionRequest, Admit, Decision, Reject


@dataclass(frozen=True)
class OverloadLimits:
    max_new_per_second: float
    burst: int
    max_concurrent: int
    max_loop_lag: float
    retry_after: int
    max_engine_delay: float = 0.5
    """Seconds the oldest INVITE may wait for the engine before new calls are shed."""
    max_receive_delay: float = 0.1
    """Seconds a new INVITE may have waited in the edge's receive queue before it is shed."""
    remembered: int = 10_000
    """Recent INVITE transactions whose verdict is kept, so a retransmission gets the
    same answer (the edge is stateless) instead of spending a second token."""


class CallAdmission:
    """Token bucket for new calls, a concurrency cap, and shedding on loop lag."""

    def __init__(self, limits: OverloadLimits) -> None:
        self.limits = limits
        self._tokens = float(limits.burst)
        self._updated: float | None = None

    def check(
        self,
        now: float,
        active_calls: int,
        loop_lag: float,
        engine_delay: float = 0.0,
        received_delay: float = 0.0,
        *,
        emergency: bool = False,
    ) -> str | None:
        """None to admit, else why not (`rate`, `concurrent`, `lag`, `engine`, `queue`);
        takes a token.

        An emergency call is held only to `max_concurrent` (the engine's capacity): it
        is never shed for rate or lag, and takes no token.
        """
        limits = self.limits
        if active_calls >= limits.max_concurrent:
            return "concurrent"
        if emergency:
            return None
        if loop_lag > limits.max_loop_lag:
            return "lag"
        if engine_delay > limits.max_engine_delay:
            return "engine"
        if received_delay > limits.max_receive_delay:
            return "queue"
        if self._updated is not None:
            elapsed = max(now - self._updated, 0.0)
            self._tokens = min(
                float(limits.burst), self._tokens + elapsed * limits.max_new_per_second
            )
        self._updated = now
        if self._tokens < 1.0:
            return "rate"
        self._tokens -= 1.0
        return None


class EngineIntake:
    """INVITEs admitted towards the engine that it has not answered yet.

    The edge reports every engine response to an INVITE (`offered`): 100 Trying
    as much as a refusal PJSIP sends without offering the call (400/488 for a bad
    SDP), which otherwise would stay here as an engine ever further behind. Kept
    in admission order, so the oldest is first: `delay()` is O(1). An entry the
    engine never answers (the datagram was lost and never retransmitted) is
    forgotten after `forget_after` seconds (SIP's transaction timeout).
    """

    def __init__(self, forget_after: float = 32.0, remembered: int = 100_000) -> None:
        self.forget_after = forget_after
        self.remembered = remembered
        self._waiting: OrderedDict[str, float] = OrderedDict()

    def admitted(self, call_id: str, now: float) -> None:
        if call_id and call_id not in self._waiting:
            self._waiting[call_id] = now
            if len(self._waiting) > self.remembered:
                self._waiting.popitem(last=False)

    def offered(self, call_id: str) -> None:
        self._waiting.pop(call_id, None)

    def delay(self, now: float) -> float:
        """How long the oldest admitted INVITE has waited for the engine (0: none)."""
        waiting = self._waiting
        while waiting:
            call_id, since = next(iter(waiting.items()))
            if now - since <= self.forget_after:
                return max(now - since, 0.0)
            del waiting[call_id]
        return 0.0

    def depth(self) -> int:
        return len(self._waiting)


_NEW_CALLS = frozenset({"INVITE", "REFER"})


class OverloadPolicy:
    """Wraps another policy: INVITEs it would admit must also pass `CallAdmission`, and so
    must a caller's REFER (a blind transfer places a new call; its `request_uri` is the
    Refer-To)."""

    def __init__(
        self,
        inner: AdmissionPolicy,
        admission: CallAdmission,
        active_calls: Callable[[], int],
        loop_lag: Callable[[], float],
        on_reject: Callable[[str], None],
        intake: EngineIntake | None = None,
        engine_up: Callable[[], bool] = lambda: True,
        emergency: Callable[[AdmissionRequest], bool] = lambda _request: False,
    ) -> None:
        self._inner = inner
        self.admission = admission
        self.intake = intake or EngineIntake()
        self._engine_up = engine_up
        self._emergency = emergency
        self._verdicts: OrderedDict[str, bool] = OrderedDict()
        self._active_calls = active_calls
        self._loop_lag = loop_lag
        self._on_reject = on_reject

    def admit(self, request: AdmissionRequest, now: float) -> Decision:
        decision = self._inner.admit(request, now)
        if isinstance(decision, Reject) or request.method not in _NEW_CALLS:
            return decision
        admitted = self._verdicts.get(request.transaction) if request.transaction else None
        if admitted is None:
            if self._engine_up():
                why = self.admission.check(
                    now,
                    self._active_calls(),
                    self._loop_lag(),
                    self.intake.delay(now),
                    request.waited,
                    emergency=self._emergency(request),
                )
            else:
                why = "engine_down"
            admitted = why is None
            if admitted and request.method == "INVITE":  # a transfer is no engine intake
                self.intake.admitted(request.call_id, now)
            if why is not None:
                self._on_reject(why)
            if request.transaction:
                self._verdicts[request.transaction] = admitted
                if len(self._verdicts) > self.admission.limits.remembered:
                    self._verdicts.popitem(last=False)
        if admitted:
            return Admit()
        retry = str(self.admission.limits.retry_after)
        return Reject(503, "Service Unavailable", (("Retry-After", retry),))
