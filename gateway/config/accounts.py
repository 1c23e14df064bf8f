"""Configuration of accounts (softphones, customers) and trunks (carriers, PBXs)."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator

from gateway.config.base import Section
from gateway.config.secrets import SecretRef

_USERNAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]{1,64}")


class AccountConfig(Section):
    """An account: a SIP user that registers and places calls."""

    name: str
    """Account name; also its SIP username and the user part of its AOR."""
    ha1: SecretRef | None = None
    """Digest HA1 hashes, never the password: a file (or variable) with lines
    `MD5:<hex>` and `SHA-256:<hex>`, as printed by `callgate account hash`.
    Unset: the account has no SIP credentials (e.g. SMS only)."""
    max_contacts: int | None = Field(default=None, ge=1, le=100)
    """Contacts this account may register; unset uses [sip.registrar] max_contacts."""

    @field_validator("name")
    @classmethod
    def _sip_user(cls, value: str) -> str:
        if not _USERNAME.fullmatch(value):
            raise ValueError("an account name is 1-64 SIP user characters (letters, digits, .-_)")
        return value


class TrunkConfig(Section):
    """A SIP trunk: admitted by source address instead of digest auth."""

    name: str
    """Trunk name, used in logs, metrics and routing."""
    allow: tuple[str, ...] = Field(min_length=1)
    """Source networks admitted as this trunk, e.g. `["192.0.2.10/32", "2001:db8::/64"]`."""

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP network") from exc
        return value
