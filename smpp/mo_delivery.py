"""MO delivery to an account's channels: outcomes, the retry schedule, the state table.

Pure: the worker (`smpp.mo_worker`) passes `now` (wall-clock epoch seconds, as
the store keeps them) and a random number for the jitter; nothing here reads a
clock or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

from smpp.config import SmsMoDeliveryConfig, SmsNumbersConfig

DeliveryState = Literal["pending", "delivered", "failed"]
Result = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class MoMessage:
    """One stored MO message as the channels see it."""

    id: str
    account: str
    source: str
    destination: str
    text: str | None
    received_at: float
    smsc: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """The channel took the message."""


@dataclass(frozen=True, slots=True)
class TryAgain:
    """A temporary failure: try again later, not before `retry_after` seconds if set."""

    reason: str
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A permanent failure: trying again cannot help."""

    reason: str


DeliveryOutcome = Delivered | TryAgain | Refused


class MoChannel(Protocol):
    """One channel's adapter (webhook, e-mail): one attempt, its outcome, never raises
    for a failure of the destination."""

    async def deliver(self, message: MoMessage, target: SmsNumbersConfig) -> DeliveryOutcome: ...


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """What to write back to the delivery's row after an attempt."""

    state: DeliveryState
    result: Result
    attempts: int
    next_attempt_at: float | None
    last_error: str | None


# (outcome, retries left) -> (new state, metric result). Retries left means:
# attempts below max_attempts and the next attempt still before max_age.
TRANSITIONS: Final[dict[tuple[type[DeliveryOutcome], bool], tuple[DeliveryState, Result]]] = {
    (Delivered, True): ("delivered", "delivered"),
    (Delivered, False): ("delivered", "delivered"),
    (TryAgain, True): ("pending", "retry"),
    (TryAgain, False): ("failed", "failed"),
    (Refused, True): ("failed", "failed"),
    (Refused, False): ("failed", "failed"),
}


class RetrySchedule:
    """Exponential backoff with jitter, bounded by attempts and by the message's age."""

    def __init__(self, config: SmsMoDeliveryConfig) -> None:
        self._config = config

    def backoff(self, attempts: int, random: float) -> float:
        """Seconds after attempt number `attempts` (1 = the first) failed; `random` in [0, 1)."""
        c = self._config
        base = min(c.max_backoff, c.initial_backoff * c.multiplier ** (attempts - 1))
        return base * (1.0 + c.jitter * (2.0 * random - 1.0))

    def after_attempt(
        self,
        outcome: DeliveryOutcome,
        attempts_before: int,
        received_at: float,
        now: float,
        random: float,
    ) -> DeliveryUpdate:
        attempts = attempts_before + 1
        next_at: float | None = None
        if isinstance(outcome, TryAgain):
            wait = self.backoff(attempts, random)
            if outcome.retry_after is not None:
                wait = max(wait, outcome.retry_after)
            next_at = now + wait
            left = (
                attempts < self._config.max_attempts
                and next_at <= received_at + self._config.max_age
            )
        else:
            left = True
        state, result = TRANSITIONS[type(outcome), left]
        error = None if isinstance(outcome, Delivered) else outcome.reason
        if state != "pending":
            next_at = None
        return DeliveryUpdate(state, result, attempts, next_at, error)
