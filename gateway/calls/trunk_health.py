"""Which outbound trunks are fit for calls: OPTIONS probe results through a state machine.

Pure core (no sockets, no clock): `TrunkHealth` says when each trunk is due
for a probe, takes the outcome of each probe and moves the trunk between
UP and DOWN by the transition table below. The router asks `is_up(name)`;
the asyncio adapter (gateway/calls/trunk_probe.py) sends the probes.

A trunk starts UP, so routing works from the first second; `down_after`
failed probes in a row take it out, `up_after` answered ones in a row bring
it back. One lost datagram therefore does not flap a trunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Health(StrEnum):
    UP = "up"
    DOWN = "down"


class Probe(StrEnum):
    """The outcome of one OPTIONS probe."""

    ANSWERED = "answered"
    """Any final response below 500: the trunk's SIP stack is alive (404/405 included)."""
    FAILED = "failed"
    """No response within the timeout, or a 5xx/6xx (the trunk says it cannot take calls)."""


# (state, outcome) -> the state a streak of such outcomes leads to; None resets the streak.
TRANSITIONS: Mapping[tuple[Health, Probe], Health | None] = {
    (Health.UP, Probe.ANSWERED): None,
    (Health.UP, Probe.FAILED): Health.DOWN,
    (Health.DOWN, Probe.FAILED): None,
    (Health.DOWN, Probe.ANSWERED): Health.UP,
}


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How one trunk is probed."""

    interval: float
    """Seconds from one probe's start to the next."""
    timeout: float
    """Seconds a probe waits for a final response before it counts as failed."""
    down_after: int
    """Failed probes in a row that take an UP trunk out of routing."""
    up_after: int
    """Answered probes in a row that bring a DOWN trunk back."""

    def streak_needed(self, towards: Health) -> int:
        return self.down_after if towards is Health.DOWN else self.up_after


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A trunk moved between UP and DOWN (for the log line and the metric)."""

    trunk: str
    health: Health
    at: float


@dataclass(slots=True)
class _Trunk:
    check: HealthCheck
    next_probe: float
    health: Health = Health.UP
    streak: int = 0
    waiting_until: float | None = None  # a probe is out until then


class TrunkHealth:
    """The health of every probed trunk; unprobed (or unknown) trunks count as up."""

    def __init__(self) -> None:
        self._trunks: dict[str, _Trunk] = {}

    def configure(self, checks: Mapping[str, HealthCheck], now: float) -> None:
        """Probe exactly `checks`; trunks kept from before keep their health (reload)."""
        for name in [n for n in self._trunks if n not in checks]:
            del self._trunks[name]
        for name, check in checks.items():
            trunk = self._trunks.get(name)
            if trunk is None:
                self._trunks[name] = _Trunk(check, next_probe=now)
            else:
                trunk.check = check

    def is_up(self, name: str) -> bool:
        trunk = self._trunks.get(name)
        return trunk is None or trunk.health is Health.UP

    def health(self, name: str) -> Health | None:
        trunk = self._trunks.get(name)
        return trunk.health if trunk is not None else None

    def due(self, now: float) -> list[str]:
        """Trunks to probe now; each is then waited for until its timeout."""
        names = []
        for name, trunk in self._trunks.items():
            if trunk.waiting_until is None and trunk.next_probe <= now:
                trunk.waiting_until = now + trunk.check.timeout
                trunk.next_probe = now + trunk.check.interval
                names.append(name)
        return names

    def expire(self, now: float) -> list[HealthChange]:
        """Probes past their timeout count as failed."""
        changes = []
        for name, trunk in self._trunks.items():
            if trunk.waiting_until is not None and trunk.waiting_until <= now:
                change = self._record(name, trunk, Probe.FAILED, now)
                if change is not None:
                    changes.append(change)
        return changes

    def answered(self, name: str, status: int, now: float) -> HealthChange | None:
        """A final response to the trunk's outstanding probe (late or unknown: ignored)."""
        trunk = self._trunks.get(name)
        if trunk is None or trunk.waiting_until is None:
            return None
        return self._record(name, trunk, Probe.ANSWERED if status < 500 else Probe.FAILED, now)

    def next_deadline(self) -> float | None:
        """When `due` or `expire` next has something to do (None: nothing is probed)."""
        times = [
            t.waiting_until if t.waiting_until is not None else t.next_probe
            for t in self._trunks.values()
        ]
        return min(times, default=None)

    def _record(self, name: str, trunk: _Trunk, outcome: Probe, now: float) -> HealthChange | None:
        trunk.waiting_until = None
        towards = TRANSITIONS[(trunk.health, outcome)]
        if towards is None:
            trunk.streak = 0
            return None
        trunk.streak += 1
        if trunk.streak < trunk.check.streak_needed(towards):
            return None
        trunk.health, trunk.streak = towards, 0
        return HealthChange(name, towards, now)
