"""TrunkHealth: the probe schedule and the UP/DOWN table, on a fake clock."""

from __future__ import annotations

import pytest

from gateway.calls.trunk_health import (
    TRANSITIONS,
    Health,
    HealthChange,
    HealthCheck,
    Probe,
    TrunkHealth,
)

CHECK = HealthCheck(interval=10.0, timeout=2.0, down_after=3, up_after=2)


def health(now: float = 0.0, **checks: HealthCheck) -> TrunkHealth:
    h = TrunkHealth()
    h.configure(checks or {"carrier": CHECK}, now)
    return h


def fail(h: TrunkHealth, now: float, name: str = "carrier") -> list[HealthChange]:
    """One probe that times out: sent at `now`, expired at its deadline."""
    assert h.due(now) == [name]
    return h.expire(now + CHECK.timeout)


def answer(h: TrunkHealth, now: float, status: int = 200) -> HealthChange | None:
    assert h.due(now) == ["carrier"]
    return h.answered("carrier", status, now + 0.1)


def test_the_table_covers_every_state_and_outcome() -> None:
    assert set(TRANSITIONS) == {(s, p) for s in Health for p in Probe}


def test_starts_up_and_unknown_trunks_count_as_up() -> None:
    h = health()
    assert h.is_up("carrier") and h.is_up("never-configured")
    assert h.health("carrier") is Health.UP


def test_probes_are_due_every_interval_and_not_while_one_is_out() -> None:
    h = health(now=100.0)
    assert h.next_deadline() == 100.0
    assert h.due(100.0) == ["carrier"]
    assert h.due(101.0) == []  # waiting for the answer
    assert h.next_deadline() == 100.0 + CHECK.timeout
    assert h.answered("carrier", 200, 100.5) is None
    assert h.next_deadline() == 110.0
    assert h.due(109.9) == []
    assert h.due(110.0) == ["carrier"]


def test_down_after_consecutive_failures_only() -> None:
    h = health()
    assert fail(h, 0) == [] and fail(h, 10) == []
    assert answer(h, 20) is None  # an answer resets the streak
    assert fail(h, 30) == [] and fail(h, 40) == []
    assert h.is_up("carrier")
    assert fail(h, 50) == [HealthChange("carrier", Health.DOWN, 50 + CHECK.timeout)]
    assert not h.is_up("carrier")
    assert fail(h, 60) == []  # already down: no second change


def test_up_again_after_consecutive_answers() -> None:
    h = health()
    for t in (0, 10, 20):
        fail(h, t)
    assert not h.is_up("carrier")
    assert answer(h, 30) is None
    assert fail(h, 40) == []  # a failure resets the way back
    assert answer(h, 50) is None
    assert answer(h, 60) == HealthChange("carrier", Health.UP, 60.1)
    assert h.is_up("carrier")


@pytest.mark.parametrize(("status", "up"), [(200, True), (404, True), (405, True), (503, False)])
def test_status_classes(status: int, up: bool) -> None:
    h = health(carrier=HealthCheck(10.0, 2.0, down_after=1, up_after=1))
    h.due(0.0)
    change = h.answered("carrier", status, 0.1)
    assert h.is_up("carrier") is up
    assert (change is None) is up


def test_late_answer_after_timeout_is_ignored() -> None:
    h = health(carrier=HealthCheck(10.0, 2.0, down_after=1, up_after=1))
    assert fail(h, 0) == [HealthChange("carrier", Health.DOWN, 2.0)]
    assert h.answered("carrier", 200, 3.0) is None  # no probe is out
    assert not h.is_up("carrier")


def test_reload_keeps_health_of_kept_trunks_and_drops_removed_ones() -> None:
    h = health(carrier=HealthCheck(10.0, 2.0, 1, 1), other=HealthCheck(10.0, 2.0, 1, 1))
    h.due(0.0)
    h.expire(2.0)
    assert not h.is_up("carrier") and not h.is_up("other")
    h.configure({"carrier": HealthCheck(5.0, 1.0, 1, 1)}, 3.0)
    assert not h.is_up("carrier")
    assert h.health("other") is None and h.is_up("other")


def test_nothing_probed_has_no_deadline() -> None:
    h = TrunkHealth()
    assert h.next_deadline() is None and h.due(0.0) == [] and h.expire(0.0) == []
