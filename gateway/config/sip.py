"""Configuration of the SIP edge: listeners, digest auth, registrar, protection."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.base import Section, check_host, check_port, nameserver_address
from gateway.config.secrets import SecretRef

DigestAlgorithmName = Literal["SHA-256", "MD5"]


class SipListener(Section):
    """One SIP listening socket."""

    transport: Literal["udp", "tcp", "tls"]
    """Transport protocol (required: a listener says what it speaks)."""
    host: str = "127.0.0.1"
    """IPv4 or IPv6 address to bind."""
    port: int = 5060
    """Port to bind (0 = any free port); when omitted 5060, or 5061 for `tls`."""
    tls_cert: Path | None = None
    """PEM certificate chain (required for `tls`)."""
    tls_key: Path | None = None
    """PEM private key (required for `tls`); keep it readable by the service user only."""

    _host = field_validator("host")(check_host)
    _port = field_validator("port")(check_port)

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: object) -> object:
        if isinstance(data, dict) and "port" not in data and data.get("transport") == "tls":
            return {**data, "port": 5061}
        return data

    @model_validator(mode="after")
    def _tls_needs_keys(self) -> SipListener:
        if self.transport == "tls" and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("a tls listener needs tls_cert and tls_key")
        return self


class SipAuthConfig(Section):
    """Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760)."""

    realm: str = "callgate"
    """Digest realm. Account HA1 hashes are computed with it: changing it
    invalidates every stored hash."""
    algorithms: tuple[DigestAlgorithmName, ...] = ("SHA-256", "MD5")
    """Challenges offered, most preferred first (RFC 8760 order). Some old user
    agents read only the first challenge: put "MD5" first for them."""
    nonce_lifetime: float = Field(default=300.0, ge=10, le=86400)
    """Seconds a nonce stays valid; an older one is answered with `stale=true`."""
    nonce_secret: SecretRef | None = None
    """Key that signs nonces. Unset: a random key per start (clients are simply
    re-challenged after a restart). Set it when several nodes share clients."""
    max_nonce_counters: int = Field(default=100_000, ge=100)
    """Nonces whose nonce-count is remembered for replay protection."""

    @field_validator("algorithms")
    @classmethod
    def _some_algorithm(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("list each algorithm once, at least one")
        return value


class RegistrarConfig(Section):
    """The registrar (RFC 3261 §10.3)."""

    min_expires: int = Field(default=60, ge=1)
    """Shorter registrations are refused with 423 and Min-Expires."""
    max_expires: int = Field(default=3600, ge=1)
    """Longer registrations are shortened to this."""
    default_expires: int = Field(default=3600, ge=1)
    """Used when the REGISTER names no expiry."""
    max_contacts: int = Field(default=5, ge=1, le=100)
    """Contacts per account unless the account sets its own."""
    sweep_interval: float = Field(default=5.0, gt=0)
    """Seconds between removals of expired bindings."""
    persist_delay: float = Field(default=0.25, ge=0, le=10)
    """Seconds registration changes gather before one write to the store (0: write
    each at once). A crash loses at most this much; a clean stop loses nothing."""

    @model_validator(mode="after")
    def _ordered(self) -> RegistrarConfig:
        if not self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need min_expires <= default_expires <= max_expires")
        return self


class SipProtectionConfig(Section):
    """Flood, brute-force and scanner protection at the edge."""

    packet_rate: float = Field(default=200.0, gt=0)
    """Packets per second accepted from one source address, checked before parsing."""
    packet_burst: int = Field(default=400, ge=1)
    """Packets one source may send in a burst above `packet_rate`."""
    lockout_failures: int = Field(default=5, ge=1)
    """Authentication failures from one source within `lockout_window` that lock it out."""
    lockout_window: float = Field(default=60.0, gt=0)
    """Seconds over which authentication failures are counted."""
    lockout_duration: float = Field(default=300.0, gt=0)
    """Seconds a locked-out source is refused."""
    max_tracked_sources: int = Field(default=100_000, ge=100)
    """Sources remembered for rate limits and lockouts (oldest forgotten first)."""
    user_agent_blocklist: tuple[str, ...] = (
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "sip-scan",
        "VaxSIPUserAgent",
    )
    """Requests whose User-Agent contains one of these (case-insensitive) are dropped."""
    max_headers: int = Field(default=128, ge=16, le=1024)
    """Header fields per message; more is refused."""
    stream_idle_timeout: float = Field(default=300.0, gt=0)
    """Seconds a TCP/TLS connection may stay silent before it is closed."""


class SipConfig(Section):
    """The SIP edge: public listeners and message handling."""

    listen: tuple[SipListener, ...] = (
        SipListener(transport="udp"),
        SipListener(transport="tcp"),
    )
    """Listening sockets; each is `{ transport = "udp", host = "...", port = 5060 }`."""
    domains: tuple[str, ...] = ()
    """SIP domains served: REGISTER for other domains gets 404. Empty: any
    domain (fine on loopback; set it on a public node)."""
    server_header: str = "Callgate"
    """Value of the Server / User-Agent header the edge sends."""
    max_message_bytes: int = Field(default=65535, ge=1024, le=1_048_576)
    """Largest SIP message accepted; larger ones get 413 (UDP) or a closed connection."""
    udp_receive_buffer: int = Field(default=4 * 1024 * 1024, ge=65536, le=256 * 1024 * 1024)
    """Socket receive buffer asked for each UDP listener and the engine's SIP socket, in
    bytes, so bursts are not dropped by the kernel. Linux caps it at `net.core.rmem_max`
    unless the process may force it (CAP_NET_ADMIN); raise that sysctl on busy nodes."""
    upstream: str | None = None
    """`host:port` (UDP) that admitted requests go to. Unset: the PJSIP engine.
    Tests point it at a SIPp UAS."""
    dns_servers: tuple[str, ...] = ()
    """DNS servers for trunk hosts and other peers given by name (`"ip"` or `"ip:port"`,
    `"[v6]:port"`). Empty: the system's /etc/resolv.conf."""
    dns_timeout: float = Field(default=2.0, gt=0, le=30)
    """Seconds a name lookup may take before the request it holds fails (503 to the
    engine, which fails over to the next trunk)."""
    auth: SipAuthConfig = SipAuthConfig()
    """Digest authentication."""
    registrar: RegistrarConfig = RegistrarConfig()
    """Registrar."""
    protection: SipProtectionConfig = SipProtectionConfig()
    """Flood and abuse protection."""

    @model_validator(mode="after")
    def _unique_listeners(self) -> SipConfig:
        seen: set[tuple[str, str, int]] = set()
        for listener in self.listen:
            key = (listener.transport, listener.host, listener.port)
            if listener.port and key in seen:
                raise ValueError(f"listener {key} is configured twice")
            seen.add(key)
        return self

    @field_validator("dns_servers")
    @classmethod
    def _servers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            if nameserver_address(server) is None:
                raise ValueError(f"{server!r} is not an IP address with an optional :port")
        return value

    @field_validator("upstream")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError("upstream is host:port")
            check_host(host.strip("[]"))
            check_port(int(port))
        return value
