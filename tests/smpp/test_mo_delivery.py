"""The MO retry schedule and state table: pure, fake clock, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp.config import SmsMoDeliveryConfig
from smpp.mo_delivery import Delivered, Refused, RetrySchedule, TryAgain

CONFIG = SmsMoDeliveryConfig(
    initial_backoff=10.0,
    max_backoff=100.0,
    multiplier=2.0,
    jitter=0.5,
    max_attempts=5,
    max_age=1000.0,
)
RECEIVED = 1_700_000_000.0
NO_JITTER = 0.5  # the middle of [0, 1): neither longer nor shorter


def test_backoff_doubles_up_to_the_cap() -> None:
    schedule = RetrySchedule(CONFIG)
    waits = [schedule.backoff(n, NO_JITTER) for n in range(1, 7)]
    assert waits == [10.0, 20.0, 40.0, 80.0, 100.0, 100.0]


@given(st.integers(min_value=1, max_value=50), st.floats(min_value=0, max_value=0.999999))
def test_jitter_stays_within_its_fraction(attempts: int, random: float) -> None:
    schedule = RetrySchedule(CONFIG)
    base = schedule.backoff(attempts, NO_JITTER)
    assert base * 0.5 <= schedule.backoff(attempts, random) <= base * 1.5


def test_jitter_spreads_retries() -> None:
    schedule = RetrySchedule(CONFIG)
    assert schedule.backoff(1, 0.0) == 5.0
    assert schedule.backoff(1, 0.999) == pytest.approx(14.99)


def test_delivered_is_final() -> None:
    update = RetrySchedule(CONFIG).after_attempt(Delivered(), 2, RECEIVED, RECEIVED + 50, 0.1)
    assert (update.state, update.result, update.attempts) == ("delivered", "delivered", 3)
    assert update.next_attempt_at is None and update.last_error is None


def test_temporary_failure_is_retried_after_the_backoff() -> None:
    now = RECEIVED + 1
    update = RetrySchedule(CONFIG).after_attempt(TryAgain("HTTP 503"), 0, RECEIVED, now, NO_JITTER)
    assert (update.state, update.result, update.attempts) == ("pending", "retry", 1)
    assert update.next_attempt_at == now + 10.0
    assert update.last_error == "HTTP 503"


def test_retry_after_longer_than_the_backoff_is_honoured() -> None:
    schedule = RetrySchedule(CONFIG)
    now = RECEIVED + 1
    longer = schedule.after_attempt(TryAgain("HTTP 429", 300.0), 0, RECEIVED, now, NO_JITTER)
    assert longer.next_attempt_at == now + 300.0
    shorter = schedule.after_attempt(TryAgain("HTTP 429", 1.0), 0, RECEIVED, now, NO_JITTER)
    assert shorter.next_attempt_at == now + 10.0


def test_permanent_failure_is_not_retried() -> None:
    update = RetrySchedule(CONFIG).after_attempt(Refused("HTTP 400"), 0, RECEIVED, RECEIVED, 0.3)
    assert (update.state, update.result, update.attempts) == ("failed", "failed", 1)
    assert update.next_attempt_at is None and update.last_error == "HTTP 400"


def test_attempts_run_out() -> None:
    """A fake clock walks through every retry: the fifth failure is final."""
    schedule = RetrySchedule(CONFIG)
    now, attempts, states = RECEIVED, 0, []
    while True:
        update = schedule.after_attempt(TryAgain("down"), attempts, RECEIVED, now, NO_JITTER)
        states.append(update.state)
        attempts = update.attempts
        if update.next_attempt_at is None:
            break
        now = update.next_attempt_at
    assert states == ["pending"] * 4 + ["failed"]
    assert now == RECEIVED + 10 + 20 + 40 + 80


def test_max_age_ends_retries_early() -> None:
    schedule = RetrySchedule(CONFIG)
    late = RECEIVED + 995.0  # the next try (10 s on) would be past max_age (1000 s)
    update = schedule.after_attempt(TryAgain("down"), 1, RECEIVED, late, NO_JITTER)
    assert (update.state, update.result) == ("failed", "failed")
    assert update.last_error == "down"
