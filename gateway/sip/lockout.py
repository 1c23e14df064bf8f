"""Per-source abuse limits for the SIP edge: auth lockout and packet rate.

Pure and bounded: ``now`` is passed in, and each table holds at most
``max_tracked`` sources, evicting the least recently seen, so a flood from
many addresses costs memory proportional to the cap, not to the flood.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")


class AuthLockout:
    """Blocks a source after ``max_failures`` failed authentications within ``window``.

    Failures and blocks are kept in separate tables, each capped at
    ``max_tracked``: a spray of one-off failures from many sources evicts
    other failure records, never an active block.
    """

    def __init__(
        self, max_failures: int, window: float, block_for: float, max_tracked: int
    ) -> None:
        _require_positive(
            max_failures=max_failures, window=window, block_for=block_for, max_tracked=max_tracked
        )
        self.max_failures = max_failures
        self.window = window
        self.block_for = block_for
        self.max_tracked = max_tracked
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked_until: OrderedDict[str, float] = OrderedDict()
        self.lockouts = 0
        """How many times a source has been blocked (a metric)."""

    def is_blocked(self, source: str, now: float) -> bool:
        """Whether requests from ``source`` must be refused without authenticating."""
        until = self._blocked_until.get(source)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked_until[source]
        return False

    def record_failure(self, source: str, now: float) -> bool:
        """Count a failed authentication; returns whether ``source`` is now blocked."""
        if self.is_blocked(source, now):
            return True
        failures = self._failures.get(source)
        if failures is None:
            failures = deque(maxlen=self.max_failures)
            self._failures[source] = failures
            while len(self._failures) > self.max_tracked:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(source)
        failures.append(now)
        if len(failures) < self.max_failures or now - failures[0] > self.window:
            return False
        del self._failures[source]
        self._blocked_until[source] = now + self.block_for
        self._blocked_until.move_to_end(source)
        while len(self._blocked_until) > self.max_tracked:
            self._blocked_until.popitem(last=False)
        self.lockouts += 1
        return True

    def record_success(self, source: str, now: float) -> None:
        """Forget the source's failures (a block, once imposed, still runs out)."""
        del now  # part of the interface: every policy call is timed
        self._failures.pop(source, None)

    def sweep(self, now: float) -> None:
        """Drop expired blocks and failure records older than the window."""
        for source in [s for s, until in self._blocked_until.items() if now >= until]:
            del self._blocked_until[source]
        stale = [s for s, f in self._failures.items() if now - f[-1] > self.window]
        for source in stale:
            del self._failures[source]

    @property
    def tracked(self) -> int:
        """Sources currently held in memory (failures plus blocks)."""
        return len(self._failures) + len(self._blocked_until)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float


class PacketRateLimiter:
    """Per-source token bucket, checked before a packet is parsed.

    A source may send ``burst`` packets at once and ``rate`` per second
    sustained. A source evicted for room comes back with a full bucket,
    which is the price of bounded memory.
    """

    def __init__(self, rate: float, burst: int, max_tracked: int) -> None:
        _require_positive(rate=rate, burst=burst, max_tracked=max_tracked)
        self.rate = rate
        self.burst = burst
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.dropped = 0
        """Packets refused (a metric)."""

    def allow(self, source: str, now: float) -> bool:
        """Whether to process one more packet from ``source``."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), last=now)
            self._buckets[source] = bucket
            while len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
            elapsed = max(0.0, now - bucket.last)  # a clock step back refills nothing
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.last = max(bucket.last, now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        self.dropped += 1
        return False

    @property
    def tracked(self) -> int:
        """Sources currently held in memory."""
        return len(self._buckets)
