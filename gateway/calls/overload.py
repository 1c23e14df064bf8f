"""Node-wide admission of new calls: rate, concurrency and load shedding.

Measured: the engine carries 300 calls/s cleanly and collapses above that on
2 cores (docs/BENCHMARKS.md). Refusing the excess at the edge with 503 +
Retry-After, before PJSIP spends anything, keeps admitted calls healthy.
Pure: `now`, the active call count and the event-loop lag are passed in.
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
    remembered: int = 10_000
    """Recent INVITE transactions whose verdict is kept, so a retransmission gets the
    same answer (the edge is stateless) instead of spending a second token."""


class CallAdmission:
    """Token bucket for new calls, a concurrency cap, and shedding on loop lag."""

    def __init__(self, limits: OverloadLimits) -> None:
        self.limits = limits
        self._tokens = float(limits.burst)
        self._updated: float | None = None

    def check(self, now: float, active_calls: int, loop_lag: float) -> str | None:
        """None to admit, else why not (`rate`, `concurrent`, `lag`); takes a token."""
        limits = self.limits
        if active_calls >= limits.max_concurrent:
            return "concurrent"
        if loop_lag > limits.max_loop_lag:
            return "lag"
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


class OverloadPolicy:
    """Wraps another policy: INVITEs it would admit must also pass `CallAdmission`."""

    def __init__(
        self,
        inner: AdmissionPolicy,
        admission: CallAdmission,
        active_calls: Callable[[], int],
        loop_lag: Callable[[], float],
        on_reject: Callable[[str], None],
    ) -> None:
        self._inner = inner
        self.admission = admission
        self._verdicts: OrderedDict[str, bool] = OrderedDict()
        self._active_calls = active_calls
        self._loop_lag = loop_lag
        self._on_reject = on_reject

    def admit(self, request: AdmissionRequest, now: float) -> Decision:
        decision = self._inner.admit(request, now)
        if isinstance(decision, Reject) or request.method != "INVITE":
            return decision
        admitted = self._verdicts.get(request.transaction) if request.transaction else None
        if admitted is None:
            why = self.admission.check(now, self._active_calls(), self._loop_lag())
            admitted = why is None
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
