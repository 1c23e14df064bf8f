"""Configuration of call control: timers and the static dial plan."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from gateway.config.base import Section, check_port

_DIGITS = re.compile(r"\+?[0-9*#]*")


class CallRouteConfig(Section):
    """Dialled numbers starting with `prefix` go to `sip:<number>@host:port`."""

    prefix: str = ""
    """Leading digits of the dialled number (`""` matches everything); the longest wins."""
    host: str
    """Host (IP literal) of the trunk or PBX that takes these calls."""
    port: int = 5060
    """Its SIP port."""
    transport: Literal["udp", "tcp"] = "udp"
    """Transport towards it."""
    trunk: str | None = None
    """Name of the `[[trunks]]` entry these calls leave through: its account places the
    callee leg (credentials, registration). Unset: the engine's own account, no credentials."""

    _port = field_validator("port")(check_port)

    @field_validator("prefix")
    @classmethod
    def _digits(cls, value: str) -> str:
        if not _DIGITS.fullmatch(value):
            raise ValueError("a prefix is digits, optionally after a leading +")
        return value


class CallsConfig(Section):
    """Call control: no-answer timer and routes."""

    no_answer_timeout: float = Field(default=60.0, gt=0, le=3600)
    """Seconds an unanswered call may ring before both legs are released."""
    no_answer_status: int = Field(default=480, ge=400, le=699)
    """Status the caller gets when nobody answers in time."""
    routes: tuple[CallRouteConfig, ...] = ()
    """One `[[calls.routes]]` table per prefix; calls matching none get 404."""
    records_kept: int = Field(default=10_000, ge=0, le=10_000_000)
    """Finished call records kept in memory (until the CDR table exists)."""
    max_new_per_second: float = Field(default=100.0, gt=0)
    """New calls admitted per second, node-wide; more get 503 with Retry-After at the
    edge before the engine spends anything. Measure your node (bench/calls.py) and
    keep this below the rate it sustains with zero failures."""
    max_new_burst: int = Field(default=20, ge=1)
    """New calls admitted back to back above `max_new_per_second`."""
    max_concurrent: int = Field(default=2000, ge=1, le=2048)
    """Calls in progress, node-wide (each uses two of the engine's 4096 legs)."""
    max_loop_lag: float = Field(default=0.25, gt=0)
    """Seconds of event-loop lag above which new calls are shed (the node is behind)."""
    overload_retry_after: int = Field(default=5, ge=1, le=3600)
    """Retry-After seconds sent with an overload 503."""
