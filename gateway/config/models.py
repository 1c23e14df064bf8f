"""The configuration schema: one frozen model per TOML section.

Field docstrings are the configuration reference (docs/configuration.md is
generated from them). Defaults are the embedded loopback configuration that
`callgate run` uses without `--config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config.accounts import AccountConfig, TrunkConfig
from gateway.config.base import Section, check_host, check_port
from gateway.config.calls import CallsConfig
from gateway.config.cdr import CdrConfig
from gateway.config.secrets import SecretRef
from gateway.config.sip import SipConfig
from media.rtp_ports import minimum_span
from media.session_timer import RFC4028_MIN_SE, SessionTimerUse
from smpp.config import SmppConfig, SmsConfig


class NodeConfig(Section):
    """This node's identity and where it keeps its data."""

    name: str = "callgate"
    """Node name, used in logs, metrics and generated identifiers."""
    data_dir: Path = Path("var")
    """Directory for the SQLite store, runtime files and recordings. Relative
    paths are resolved against the working directory."""


class DaemonConfig(Section):
    """Process lifecycle: draining, watchdog, the garbage collector and CPU scheduling."""

    drain_timeout: float = Field(default=30.0, gt=0)
    """Seconds that SIGTERM waits for active calls and sessions to finish before
    they are ended and the process exits."""
    engine_stall_timeout: float = Field(default=5.0, gt=0)
    """Seconds without a heartbeat from the PJSIP engine thread after which the
    node reports not ready and stops petting the systemd watchdog."""
    gc_thresholds: tuple[int, int, int] = (50_000, 20, 100)
    """Cyclic garbage collector thresholds set once start-up is done (Python's
    `gc.set_threshold`: allocations before a gen-0 collection, gen-0 collections
    before a gen-1 one, gen-1 before a gen-2 one); what start-up built is frozen
    out of collections first. With Python's defaults (700, 10, 10) collections
    took about a tenth of the daemon's CPU per SMS under load."""
    realtime_priority: int = Field(default=0, ge=0, le=99)
    """`SCHED_RR` priority (1-99) for the threads that carry calls: the SIP loop thread
    and the PJSIP engine's threads (0 = the fair scheduler). On 2 busy cores it about
    halved the added set-up latency's p99 at 300 calls/s. Needs `LimitRTPRIO=` (the
    shipped systemd unit grants it) or root; refused, the daemon logs why and runs on.
    The kernel keeps a share of each second for other tasks (`sched_rt_runtime_us`)."""

    @field_validator("gc_thresholds")
    @classmethod
    def _positive_thresholds(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if value[0] < 1 or value[1] < 1 or value[2] < 1:
            raise ValueError("every threshold must be at least 1 (0 would turn the collector off)")
        return value


class MediaConfig(Section):
    """The PJSIP engine (own thread) that carries calls and media."""

    engine_host: str = "127.0.0.1"
    """Loopback address the engine's SIP transport binds; only the edge talks to it."""
    engine_port: int = 0
    """Engine SIP port (0 = any free port)."""
    max_calls: int = Field(default=4096, ge=1, le=4096)
    """Most simultaneous pjsua calls (legs); the build's limit is 4096."""
    rtp_port_start: int = Field(default=20000, ge=1024, le=65000)
    """First RTP port."""
    rtp_port_range: int = Field(default=20000, ge=2, le=40000)
    """Number of RTP ports from `rtp_port_start` (two per leg: RTP and RTCP). The engine's
    own account (caller legs, calls to registered contacts) uses the lower half, each
    outbound trunk an equal share of the upper half (all of it without trunks)."""
    media_threads: int = Field(default=1, ge=1, le=16)
    """PJSIP media worker threads."""
    codecs: tuple[str, ...] = ("opus/48000/2", "G722/16000/1", "PCMU/8000/1", "PCMA/8000/1")
    """Codec preference order (PJSIP codec ids); codecs not listed are disabled."""
    log_level: int = Field(default=1, ge=0, le=6)
    """PJSIP's own log verbosity (0 = none, 6 = everything)."""
    session_timer: SessionTimerUse = "optional"
    """RFC 4028 session timers on every leg: `off`; `optional` (used when the peer
    supports them); `required` (peers without them are refused with 420); `always`
    (used even when the peer does not say it supports them). A leg whose peer stops
    refreshing is ended (BYE) and the call with it, so dead calls do not pile up."""
    session_expires: int = Field(default=1800, ge=RFC4028_MIN_SE, le=86400)
    """Session interval in seconds we ask for (Session-Expires)."""
    session_min_se: int = Field(default=RFC4028_MIN_SE, ge=RFC4028_MIN_SE, le=86400)
    """Shortest session interval in seconds we accept (Min-SE; RFC 4028 floor: 90)."""

    _host = field_validator("engine_host")(check_host)
    _port = field_validator("engine_port")(check_port)

    @model_validator(mode="after")
    def _rtp_range_fits(self) -> MediaConfig:
        if self.rtp_port_start + self.rtp_port_range > 65536:
            raise ValueError("rtp_port_start + rtp_port_range must not exceed 65536")
        if self.session_min_se > self.session_expires:
            raise ValueError("session_min_se must not exceed session_expires")
        return self


class StoreConfig(Section):
    """The database: SQLite (default) or PostgreSQL."""

    url: str | None = None
    """SQLAlchemy URL, e.g. `postgresql+asyncpg://callgate@db/callgate`. Unset means
    SQLite (WAL) at `<data_dir>/callgate.db`."""
    password: SecretRef | None = None
    """Database password (`{ file = "..." }` or `{ env = "..." }`), added to `url`."""
    pool_size: int = Field(default=5, ge=1, le=100)
    """Connections kept open (PostgreSQL)."""

    @field_validator("url")
    @classmethod
    def _supported_driver(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("sqlite+aiosqlite://", "postgresql+asyncpg://")
        ):
            raise ValueError("use sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value


class HttpConfig(Section):
    """The admin HTTP listener: health, readiness, metrics."""

    host: str = "127.0.0.1"
    """Address to bind; keep it on loopback or a management network."""
    port: int = 8080
    """Port to bind (0 = any free port)."""

    _host = field_validator("host")(check_host)
    _port = field_validator("port")(check_port)


class LoggingConfig(Section):
    """Structured logs on stdout."""

    format: Literal["json", "console"] = "console"
    """`json` for log shippers, `console` for people."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""


class CallgateConfig(Section):
    """The whole configuration file."""

    node: NodeConfig = NodeConfig()
    """Node identity and data directory."""
    daemon: DaemonConfig = DaemonConfig()
    """Lifecycle settings."""
    sip: SipConfig = SipConfig()
    """SIP edge."""
    media: MediaConfig = MediaConfig()
    """PJSIP engine."""
    store: StoreConfig = StoreConfig()
    """Database."""
    http: HttpConfig = HttpConfig()
    """Admin HTTP listener."""
    logging: LoggingConfig = LoggingConfig()
    """Logging."""
    accounts: tuple[AccountConfig, ...] = ()
    """Accounts (softphones, customers): `[[accounts]]` entries."""
    trunks: tuple[TrunkConfig, ...] = ()
    """SIP trunks (carriers, PBXs): `[[trunks]]` entries."""
    calls: CallsConfig = CallsConfig()
    """Call control and the dial plan."""
    cdr: CdrConfig = CdrConfig()
    """Call detail records."""
    smpp: SmppConfig = SmppConfig()
    """SMS centres: `[[smpp.smsc]]` entries."""
    sms: SmsConfig = SmsConfig()
    """SMS queue: routes, retries, content filter, per-account limits, MO numbers."""

    @model_validator(mode="after")
    def _unique_names(self) -> CallgateConfig:
        for kind, items in (("account", self.accounts), ("trunk", self.trunks)):
            names = [item.name for item in items]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique: {', '.join(duplicates)}")
        outbound = {trunk.name for trunk in self.trunks if trunk.host is not None}
        if self.media.rtp_port_range < minimum_span(len(outbound)):
            raise ValueError(
                f"[media] rtp_port_range {self.media.rtp_port_range} is too small for "
                f"{len(outbound)} outbound trunks (each gets its own RTP ports); "
                f"set it to at least {minimum_span(len(outbound))}"
            )
        routed = [
            (f"[[calls.routes]] prefix {r.prefix!r}", [t.trunk for t in r.trunks])
            for r in self.calls.routes
        ]
        routed.append(("[calls.emergency]", list(self.calls.emergency.trunks)))
        for where, names in routed:
            unknown = [name for name in names if name not in outbound]
            if unknown:
                raise ValueError(
                    f"{where} names unknown trunk {', '.join(unknown)}; "
                    "define it in [[trunks]] with a `host`"
                )
        smscs = {smsc.name for smsc in self.smpp.smsc}
        for route in self.sms.routes:
            unknown = [name for name in route.smsc if name not in smscs]
            if unknown:
                raise ValueError(
                    f"[[sms.routes]] prefix {route.prefix!r} names unknown SMSC "
                    f"{', '.join(unknown)}; define it in [[smpp.smsc]]"
                )
        accounts = {account.name for account in self.accounts}
        server_users = self.smpp.server.users if self.smpp.server is not None else ()
        referenced = [
            *(user.account for user in server_users),
            *(entry.account for entry in self.sms.accounts),
            *(entry.account for entry in self.sms.numbers),
            *(entry.account for entry in self.sms.filter.accounts),
        ]
        unknown_accounts = sorted({name for name in referenced if name not in accounts})
        if unknown_accounts:
            raise ValueError(
                f"[sms] refers to unknown account(s) {', '.join(unknown_accounts)}; "
                "add them to [[accounts]]"
            )
        if self.smpp.server is not None and not self.smpp.smsc:
            raise ValueError("[smpp.server] needs at least one [[smpp.smsc]] to send through")
        return self
