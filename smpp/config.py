"""Configuration of the SMPP client side: one `SmscConfig` per SMS centre.

In TOML this is `[smpp]` with one `[[smpp.smsc]]` table per SMSC; the password
is a secret reference (`password = { env = "SMSC_A_PASSWORD" }`), never a literal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Section
from gateway.config.secrets import SecretRef

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")

ConcatenationMethod = Literal["udh8", "udh16", "sar", "payload"]


class SmscConfig(Section):
    """One SMS centre this gateway binds to as an ESME."""

    name: str
    """Short unique name used in logs, metrics and routing rules."""
    host: str
    """Host name or IP address of the SMSC."""
    port: int = Field(default=2775, ge=1, le=65535)
    """TCP port of the SMSC (2775 is customary; TLS ports vary)."""
    tls: bool = False
    """Wrap the connection in TLS."""
    tls_verify: bool = True
    """Verify the SMSC's certificate and host name (only switch off for lab setups)."""
    tls_ca_file: Path | None = None
    """CA bundle for the SMSC's certificate; unset means the system's CAs."""
    system_id: str = Field(min_length=1, max_length=15)
    """Our system_id in the bind request."""
    password: SecretRef
    """Bind password (`{ file = "..." }` or `{ env = "..." }`; at most 8 characters)."""
    system_type: str = Field(default="", max_length=12)
    """system_type in the bind request; most SMSCs expect it empty."""
    address_range: str = Field(default="", max_length=40)
    """address_range in the bind request (which MO addresses we serve); usually empty."""
    bind_mode: Literal["transmitter", "receiver", "transceiver"] = "transceiver"
    """Bind as transmitter (submit only), receiver (MO/DLR only) or transceiver (both)."""
    window: int = Field(default=10, ge=1, le=1000)
    """Most submit_sm sent and not yet answered on this session."""
    max_submit_rate: float | None = Field(default=None, gt=0)
    """Most submit_sm per second on this session (the SMSC's contracted rate);
    unset means no limit besides the window."""
    submit_burst: int = Field(default=10, ge=1, le=10_000)
    """Submits that may go out back to back before max_submit_rate applies."""
    response_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds to wait for the answer to a request; a submit without one is reported
    so it can be offered again, an enquire_link or unbind without one closes the
    connection."""
    enquire_link_interval: float = Field(default=30.0, gt=0, le=3600)
    """Seconds without any PDU from the SMSC before an enquire_link is sent."""
    bind_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds to wait for the bind answer before giving up on the connection."""
    connect_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds to wait for the TCP (and TLS) connection to be established."""
    reconnect_initial: float = Field(default=1.0, gt=0, le=3600)
    """Seconds before the first reconnect attempt; doubled after each failure."""
    reconnect_max: float = Field(default=60.0, gt=0, le=86_400)
    """Longest wait between reconnect attempts."""
    reconnect_jitter: float = Field(default=0.2, ge=0, le=1)
    """Fraction by which each reconnect wait is randomly lengthened or shortened,
    so that many gateways do not reconnect in step."""
    throttle_backoff_initial: float = Field(default=1.0, gt=0, le=3600)
    """Seconds submits pause after ESME_RTHROTTLED / ESME_RMSGQFUL; doubled while
    the SMSC keeps throttling."""
    throttle_backoff_max: float = Field(default=30.0, gt=0, le=3600)
    """Longest submit pause after throttling."""
    max_pdu_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    """Largest PDU accepted from the SMSC; a longer command_length closes the connection."""
    registered_delivery: int = Field(default=1, ge=0, le=0x1F)
    """registered_delivery of submits that do not set it: 0 = no receipt,
    1 = receipt on final state, 2 = receipt on failure only."""
    concatenation: ConcatenationMethod = "udh8"
    """How long messages are split: UDH with 8- or 16-bit reference (`udh8`,
    `udh16`), SAR TLVs (`sar`) or one message_payload TLV (`payload`)."""

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '.' and '-' (at most 64)")
        return value

    @field_validator("host")
    @classmethod
    def _host_is_plain(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(f"{value!r} is not a host name or IP address")
        return value

    @model_validator(mode="after")
    def _backoffs_ordered(self) -> SmscConfig:
        if self.reconnect_initial > self.reconnect_max:
            raise ValueError("reconnect_initial must not exceed reconnect_max")
        if self.throttle_backoff_initial > self.throttle_backoff_max:
            raise ValueError("throttle_backoff_initial must not exceed throttle_backoff_max")
        return self


class SmppConfig(Section):
    """SMPP: the SMS centres this gateway binds to."""

    smsc: tuple[SmscConfig, ...] = ()
    """One `[[smpp.smsc]]` table per SMS centre."""

    @model_validator(mode="after")
    def _unique_names(self) -> SmppConfig:
        names = [entry.name for entry in self.smsc]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"SMSC name(s) configured twice: {', '.join(duplicates)}")
        return self
