"""Base for every configuration section, and validators shared by sections.

Each section is one frozen pydantic model; unknown keys are errors (no silent
typos) and each field's docstring becomes its entry in docs/configuration.md.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict

from gateway.calls.numbers import is_region


class Section(BaseModel):
    """A configuration section: frozen, strict about unknown keys, documented."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )


def check_port(value: int) -> int:
    """0 means any free port (tests, ephemeral listeners)."""
    if not 0 <= value <= 65535:
        raise ValueError("a port is a number from 0 to 65535 (0 = any free port)")
    return value


def check_host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from exc
    return value


def check_region(value: str) -> str:
    if not is_region(value):
        raise ValueError(f"{value!r} is not a region code (ISO 3166 alpha-2, e.g. US, DE, GB)")
    return value
