"""Per-account submit limits: a rate (token bucket) and a daily quota. Pure.

Counters are per UTC day; the service loads today's counts from the store at
start and writes increments with each batch, so a restart keeps the quota.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from smpp.config import SmsAccountConfig
from smpp.queue import TokenBucket
from smpp.submit_result import RejectReason


@dataclass(frozen=True, slots=True)
class LimitHit:
    reason: RejectReason
    detail: str


class SubmitLimits:
    def __init__(self, accounts: tuple[SmsAccountConfig, ...]) -> None:
        self._config = {entry.account: entry for entry in accounts}
        self._buckets = {
            entry.account: TokenBucket(entry.rate, float(entry.burst))
            for entry in accounts
            if entry.rate is not None
        }
        self._day = ""
        self._counts: dict[str, int] = {}

    def load(self, day: str, counts: Mapping[str, int]) -> None:
        self._day = day
        self._counts = dict(counts)

    def count(self, account: str, day: str) -> int:
        return self._counts.get(account, 0) if day == self._day else 0

    def admit(self, account: str, now: float, day: str) -> LimitHit | None:
        """Count one message for `account`, or say which limit refuses it."""
        if day != self._day:
            self._day = day
            self._counts = {}
        config = self._config.get(account)
        if config is None:
            self._counts[account] = self._counts.get(account, 0) + 1
            return None
        used = self._counts.get(account, 0)
        if config.daily_quota is not None and used >= config.daily_quota:
            return LimitHit(RejectReason.QUOTA, f"daily quota of {config.daily_quota} used up")
        bucket = self._buckets.get(account)
        if bucket is not None and bucket.take(now) is not None:
            return LimitHit(RejectReason.THROTTLED, f"over {config.rate} messages per second")
        self._counts[account] = used + 1
        return None

    def release(self, account: str, day: str) -> None:
        """Give back a count whose message was not stored after all."""
        if day == self._day and self._counts.get(account, 0) > 0:
            self._counts[account] -= 1
