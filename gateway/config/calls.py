"""Configuration of call control: timers and the dial plan."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from gateway.config.base import Section, check_region

_DIGITS = re.compile(r"\+?[0-9*#]*")


class RouteTrunkConfig(Section):
    """One trunk of a route, with its place in the order of attempts."""

    trunk: str
    """Name of a `[[trunks]]` entry with a `host`."""
    priority: int = Field(default=0, ge=0, le=65535)
    """Lower is tried first; the next priority is tried when all of this one failed."""
    weight: int = Field(default=1, ge=1, le=65535)
    """Share of calls among trunks of the same priority (weighted random order, as in
    DNS SRV, RFC 2782)."""


class CallRouteConfig(Section):
    """Dialled numbers starting with `prefix` go to the route's trunks."""

    prefix: str = ""
    """Leading digits of the dialled number (`""` matches everything); the longest wins.
    With a leading `+` it matches the number in E.164 (read in the caller's region),
    without one the digits as dialled."""
    trunks: tuple[RouteTrunkConfig, ...] = Field(min_length=1)
    """Trunks that take these calls: `[{ trunk = "a", priority = 0, weight = 2 }, ...]`,
    or just names (`["a", "b"]`: tried in that order). A trunk that answers 5xx or 408,
    or does not ring within `attempt_timeout`, or is at its `channels` limit, passes
    the call to the next one."""
    transit: bool = False
    """Calls that came in from a trunk may use this route (trunk to trunk). Off: they
    get 403, so a carrier cannot relay traffic through us by mistake or fraud."""

    @field_validator("prefix")
    @classmethod
    def _digits(cls, value: str) -> str:
        if not _DIGITS.fullmatch(value):
            raise ValueError("a prefix is digits, optionally after a leading +")
        return value

    @field_validator("trunks", mode="before")
    @classmethod
    def _names_in_order(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [
                {"trunk": item, "priority": index} if isinstance(item, str) else item
                for index, item in enumerate(value)
            ]
        return value


class EmergencyConfig(Section):
    """Emergency calls: the region's emergency numbers (911, 112, ...) and `numbers`."""

    trunks: tuple[str, ...] = ()
    """Trunks for emergency calls, tried in this order, regardless of their `channels`
    limit and of route weights. Empty: emergency numbers go through `[[calls.routes]]`
    like any other number (still ignoring channel limits)."""
    numbers: tuple[str, ...] = ()
    """More numbers treated as emergency calls, as dialled (e.g. a site's own security desk)."""

    @field_validator("numbers")
    @classmethod
    def _digit_strings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for number in value:
            if not number or not _DIGITS.fullmatch(number):
                raise ValueError(f"{number!r} is not a number")
        return value


class ForwardDefaultsConfig(Section):
    """Call forwarding defaults for accounts that do not set their own, and its limits."""

    busy: str | None = None
    """Forward target when an account is busy (e.g. a voicemail number); unset: 486."""
    no_answer: str | None = None
    """Forward target when an account does not answer; unset: the call rings until
    `[calls] no_answer_timeout`."""
    no_answer_after: float = Field(default=20.0, gt=0, le=3600)
    """Seconds of ringing before the no-answer forward takes the call."""
    unreachable: str | None = None
    """Forward target when no phone of the account is registered or reachable; unset: 480."""
    max_hops: int = Field(default=5, ge=0, le=20)
    """Forwards one call may take (a forwarding loop ends with 483 Too Many Hops)."""


class CallsConfig(Section):
    """Call control: no-answer timer and routes."""

    no_answer_timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds an unanswered call may ring before both legs are released."""
    no_answer_status: int = Field(default=480, ge=400, le=699)
    """Status the caller gets when nobody answers in time."""
    routes: tuple[CallRouteConfig, ...] = ()
    """One `[[calls.routes]]` table per prefix; calls matching none get 404 (484 when
    the number is too short to be complete)."""
    emergency: EmergencyConfig = EmergencyConfig()
    """Where emergency calls go."""
    default_region: str = "US"
    """Region (ISO 3166 alpha-2) for numbers without a country code from accounts
    that set no `region` of their own."""
    forward: ForwardDefaultsConfig = ForwardDefaultsConfig()
    """Call forwarding defaults and hop cap."""
    attempt_timeout: float = Field(default=8.0, gt=0, le=300)
    """Seconds a trunk has to ring (180/183) before the call fails over to the next
    trunk of its route. The last trunk is never cut short (the no-answer timer is)."""
    records_kept: int = Field(default=10_000, ge=0, le=10_000_000)
    """Finished call records also kept in memory (tests, benchmarks); the durable
    record of every call is its CDR in the store (see `[cdr]`)."""
    max_new_per_second: float = Field(default=100.0, gt=0)
    """New calls admitted per second, node-wide; more get 503 with Retry-After at the
    edge before the engine spends anything. Measure your node (bench/daemon_calls.py)
    and keep this below the rate it sustains with zero failures."""
    max_new_burst: int = Field(default=20, ge=1)
    """New calls admitted back to back above `max_new_per_second`."""
    max_concurrent: int = Field(default=2000, ge=1, le=2048)
    """Calls in progress, node-wide (each uses two of the engine's 4096 legs)."""
    max_loop_lag: float = Field(default=0.25, gt=0)
    """Seconds of event-loop lag above which new calls are shed (the node is behind)."""
    max_engine_delay: float = Field(default=0.5, gt=0)
    """Seconds the oldest INVITE passed to the engine may wait for the engine's first
    answer (100 Trying or any other) before new calls are shed (the engine's queue,
    measured as time)."""
    max_receive_delay: float = Field(default=0.1, gt=0)
    """Seconds a new INVITE may have waited in the edge's UDP receive queue (kernel
    receive time to the edge reading it) before it is shed: the node is past its
    capacity and every admitted call's messages queue behind the excess."""
    overload_retry_after: int = Field(default=5, ge=1, le=3600)
    """Retry-After seconds sent with an overload 503."""

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)
