"""Auth lockout and per-source packet rate limiting, on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.lockout import AuthLockout, PacketRateLimiter

IP = "192.0.2.1"
OTHER = "198.51.100.7"


def make_lockout(max_tracked: int = 100) -> AuthLockout:
    return AuthLockout(max_failures=3, window=60.0, block_for=300.0, max_tracked=max_tracked)


def test_blocks_after_n_failures_within_window() -> None:
    lockout = make_lockout()
    assert not lockout.record_failure(IP, 0.0)
    assert not lockout.record_failure(IP, 10.0)
    assert not lockout.is_blocked(IP, 10.0)
    assert lockout.record_failure(IP, 60.0)
    assert lockout.is_blocked(IP, 60.0)
    assert lockout.is_blocked(IP, 359.9)
    assert not lockout.is_blocked(IP, 360.0)
    assert not lockout.is_blocked(OTHER, 60.0)
    assert lockout.lockouts == 1


def test_failures_outside_window_do_not_block() -> None:
    lockout = make_lockout()
    assert not lockout.record_failure(IP, 0.0)
    assert not lockout.record_failure(IP, 30.0)
    assert not lockout.record_failure(IP, 61.0)  # the first one is now out of the window
    assert not lockout.record_failure(IP, 95.0)  # 30, 61, 95: window 65 > 60
    assert lockout.record_failure(IP, 100.0)  # 61, 95, 100
    assert lockout.lockouts == 1


def test_success_resets_failures_but_not_a_block() -> None:
    lockout = make_lockout()
    lockout.record_failure(IP, 0.0)
    lockout.record_failure(IP, 1.0)
    lockout.record_success(IP, 2.0)
    assert not lockout.record_failure(IP, 3.0)
    assert not lockout.record_failure(IP, 4.0)
    assert lockout.record_failure(IP, 5.0)
    lockout.record_success(IP, 6.0)
    assert lockout.is_blocked(IP, 6.0)


def test_failures_while_blocked_do_not_count_new_lockouts() -> None:
    lockout = make_lockout()
    for t in range(3):
        lockout.record_failure(IP, float(t))
    assert lockout.record_failure(IP, 10.0)
    assert lockout.lockouts == 1
    # After the block runs out, the count starts afresh.
    assert not lockout.record_failure(IP, 400.0)


def test_memory_is_bounded_and_blocks_survive_a_spray() -> None:
    lockout = make_lockout(max_tracked=10)
    for t in range(3):
        lockout.record_failure(IP, float(t))
    assert lockout.is_blocked(IP, 3.0)
    for i in range(1000):
        lockout.record_failure(f"10.0.{i // 256}.{i % 256}", 4.0)
    assert lockout.tracked <= 20
    assert lockout.is_blocked(IP, 5.0)


def test_sweep_forgets_old_records() -> None:
    lockout = make_lockout()
    lockout.record_failure(OTHER, 0.0)
    for t in range(3):
        lockout.record_failure(IP, float(t))
    lockout.sweep(1000.0)
    assert lockout.tracked == 0


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=40))
def test_blocked_iff_n_failures_in_window(times: list[float]) -> None:
    """Against a brute-force model that remembers every failure."""
    lockout = make_lockout()
    history: list[float] = []
    blocked_until = float("-inf")
    for now in sorted(times):
        if now < blocked_until:
            assert lockout.record_failure(IP, now)
            continue
        history.append(now)
        recent = [t for t in history if now - t <= lockout.window]
        expect = len(recent) >= lockout.max_failures
        if expect:
            blocked_until = now + lockout.block_for
            history.clear()
        assert lockout.record_failure(IP, now) is expect


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_failures": 0, "window": 1.0, "block_for": 1.0, "max_tracked": 1},
        {"max_failures": 1, "window": 0.0, "block_for": 1.0, "max_tracked": 1},
        {"max_failures": 1, "window": 1.0, "block_for": -1.0, "max_tracked": 1},
        {"max_failures": 1, "window": 1.0, "block_for": 1.0, "max_tracked": 0},
    ],
)
def test_lockout_rejects_nonsense_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AuthLockout(**kwargs)  # type: ignore[arg-type]


# --- packet rate ----------------------------------------------------------------------------


def test_burst_then_sustained_rate() -> None:
    limiter = PacketRateLimiter(rate=10.0, burst=5, max_tracked=100)
    assert all(limiter.allow(IP, 0.0) for _ in range(5))
    assert not limiter.allow(IP, 0.0)
    assert limiter.allow(OTHER, 0.0)  # per source
    assert not limiter.allow(IP, 0.05)  # half a token
    assert limiter.allow(IP, 0.1)
    assert not limiter.allow(IP, 0.1)
    assert all(limiter.allow(IP, 100.0) for _ in range(5))  # refill caps at burst
    assert not limiter.allow(IP, 100.0)
    assert limiter.dropped == 4


def test_clock_step_back_does_not_refill() -> None:
    limiter = PacketRateLimiter(rate=1.0, burst=1, max_tracked=10)
    assert limiter.allow(IP, 100.0)
    assert not limiter.allow(IP, 50.0)
    assert not limiter.allow(IP, 100.5)
    assert limiter.allow(IP, 101.0)


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = PacketRateLimiter(rate=1.0, burst=1, max_tracked=50)
    for i in range(10_000):
        limiter.allow(f"2001:db8::{i:x}", 0.0)
    assert limiter.tracked == 50


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(times: list[float]) -> None:
    limiter = PacketRateLimiter(rate=2.0, burst=3, max_tracked=10)
    times.sort()
    allowed = sum(limiter.allow(IP, t) for t in times)
    assert allowed <= limiter.burst + limiter.rate * (times[-1] - times[0]) + 1e-9
