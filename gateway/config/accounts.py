"""Configuration of accounts (softphones, customers) and trunks (carriers, PBXs)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Section, check_region
from gateway.config.secrets import SecretRef
from gateway.sip.uri import is_ip_literal

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?")
"""RFC 1123 labels; the last (top-level) label starts with a letter (RFC 3261 toplabel)."""
_USERNAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]{1,64}")


def _sip_user(value: str | None, problem: str) -> str | None:
    """A dial string that can be the user part of a SIP URI as it is."""
    if value is not None and not _USERNAME.fullmatch(value):
        raise ValueError(problem)
    return value


class ForwardConfig(Section):
    """Call forwarding of one account. Targets are numbers or account names, routed
    as if the account had dialled them; unset ones use `[calls.forward]`."""

    always: str | None = None
    """Every call goes here at once; the account's phones do not ring."""
    busy: str | None = None
    """When the account's phones answer busy (486, 600)."""
    no_answer: str | None = None
    """When nobody answers within `no_answer_after` seconds."""
    no_answer_after: float | None = Field(default=None, gt=0, le=3600)
    """Seconds of ringing before `no_answer` takes the call."""
    unreachable: str | None = None
    """When no phone is registered, or none can be reached (408, 480, 5xx)."""

    _targets = field_validator("always", "busy", "no_answer", "unreachable")(
        lambda value: _sip_user(value, "a forward target is a number or an account name")
    )


class CallerIdConfig(Section):
    """What callees see of this account's calls (From, and P-Asserted-Identity towards
    trusted trunks)."""

    name: str | None = None
    """Display name; unset: the one the phone sends."""
    number: str | None = None
    """Number presented for the account; unset: the phone's From user, in E.164 when
    it is a number."""
    private: bool = False
    """Withhold the caller ID on every call (anonymous From, RFC 3323); trusted trunks
    still get it in P-Asserted-Identity with `Privacy: id`. A phone can ask for this per
    call with its own Privacy header."""

    _number = field_validator("number")(
        lambda value: _sip_user(value, "a number is SIP user characters, e.g. +4930123456")
    )


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
    region: str | None = None
    """Region (ISO 3166 alpha-2) for numbers this account dials or presents without a
    country code; unset uses [calls] default_region."""
    forward: ForwardConfig = ForwardConfig()
    """Call forwarding: `forward = { busy = "+4930123456", no_answer = "bob" }`."""
    caller_id: CallerIdConfig = CallerIdConfig()
    """Caller ID presentation: `caller_id = { name = "Sales", number = "+4930123456" }`."""
    allow_transfer: bool = True
    """The account's phones may blind-transfer the calls they placed (REFER); the
    target is routed by the dial plan as if the account had dialled it."""

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        return None if value is None else check_region(value)

    @field_validator("name")
    @classmethod
    def _sip_user(cls, value: str) -> str:
        if not _USERNAME.fullmatch(value):
            raise ValueError("an account name is 1-64 SIP user characters (letters, digits, .-_)")
        return value


class TrunkConfig(Section):
    """A SIP trunk (carrier, PBX): calls from it are admitted by source address instead of
    digest auth; calls to it go to `host` (routes name it)."""

    name: str
    """Trunk name, used in logs, metrics, CDRs and routes."""
    allow: tuple[str, ...] = ()
    """Source networks admitted as this trunk, e.g. `["192.0.2.10/32", "2001:db8::/64"]`;
    empty for an outbound-only trunk."""
    host: str | None = None
    """Where calls routed to this trunk go: an IP address or a DNS name (resolved by the
    edge, RFC 3263: SRV when `port` is unset, else A/AAAA); unset for an inbound-only
    trunk. Calls from the trunk are still recognised by `allow` only."""
    port: int | None = None
    """The trunk's SIP port; unset: the SRV records' port for a DNS name, else 5060
    (5061 for TLS)."""
    transport: Literal["udp", "tcp", "tls"] = "udp"
    """Transport towards the trunk."""
    username: str | None = None
    """Digest username our calls (and registration) answer the trunk's challenges with."""
    password: SecretRef | None = None
    """Digest password for `username`, from a file or environment variable."""
    registration: bool = False
    """Register `username` at the trunk (for carriers that route inbound calls to a
    registered contact)."""
    registration_expires: int = Field(default=600, ge=60, le=86400)
    """Registration lifetime asked for, in seconds."""
    channels: int | None = Field(default=None, ge=1)
    """Concurrent calls this trunk takes from us; unset: no limit of its own."""
    region: str = "US"
    """Default region (ISO 3166 alpha-2) for numbers from this trunk without a country
    code, for E.164 normalisation."""
    trusted: bool = False
    """The trunk is in our trust domain (RFC 3325): calls to it carry the caller's
    P-Asserted-Identity (also for callers who withhold their ID), and a
    P-Asserted-Identity on calls from it is believed. Only for carriers and PBXs
    under contract; everyone else gets From only."""
    allow_transfer: bool = False
    """Calls from this trunk may be blind-transferred by it (REFER); the target is
    routed by the dial plan as a call from this trunk (transit routes only)."""
    options_interval: float = Field(default=30.0, ge=0)
    """Seconds between OPTIONS health checks of `host`; a trunk that stops answering
    leaves routing until it answers again. 0 disables the checks."""
    options_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds an OPTIONS probe waits for a final response before it counts as failed."""
    options_down_after: int = Field(default=3, ge=1, le=100)
    """Failed probes in a row (timeouts or 5xx/6xx) that take the trunk out of routing."""
    options_up_after: int = Field(default=2, ge=1, le=100)
    """Answered probes in a row that bring a trunk that was out back into routing."""

    _region = field_validator("region")(check_region)

    @field_validator("port")
    @classmethod
    def _remote_port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError("a trunk's port is a number from 1 to 65535")
        return value

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an IP network") from exc
        return value

    @field_validator("host")
    @classmethod
    def _address_or_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            return str(ipaddress.ip_address(value.strip("[]")))
        except ValueError:
            pass
        name = value.rstrip(".").lower()
        if not _HOSTNAME.fullmatch(name):
            raise ValueError(f"{value!r} is neither an IP address nor a DNS name")
        return name

    @property
    def uri_port(self) -> int | None:
        """The port written in URIs to this trunk: `port`; unset, the transport's default
        for an address, and none for a DNS name (its SRV records decide)."""
        if self.port is not None or self.host is None:
            return self.port
        if not is_ip_literal(self.host):
            return None
        return 5061 if self.transport == "tls" else 5060

    @model_validator(mode="after")
    def _inbound_or_outbound(self) -> TrunkConfig:
        if not self.allow and self.host is None:
            raise ValueError("a trunk needs `allow` (calls from it) or `host` (calls to it)")
        if (self.username is None) != (self.password is None):
            raise ValueError("set `username` and `password` together")
        if self.registration and self.username is None:
            raise ValueError("`registration = true` needs `username` and `password`")
        return self
