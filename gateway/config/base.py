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


def nameserver_address(text: str) -> tuple[str, int] | None:
    """(ip, port) of a DNS server written "ip", "ip:port", "v6" or "[v6]:port"; None if
    it is none of these."""
    host, port = text, "53"
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            if not text.endswith("]"):
                return None
            host, port = text[1:-1], "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return str(address), int(port)
