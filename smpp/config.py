"""Configuration of the SMPP client side: one `SmscConfig` per SMS centre.

In TOML this is `[smpp]` with one `[[smpp.smsc]]` table per SMSC; the password
is a secret reference (`password = { env = "SMSC_A_PASSWORD" }`), never a literal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.config.base import Section
from gateway.config.secrets import SecretRef

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")


def _check_plain_host(value: str) -> str:
    if not _HOST.match(value):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


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

    _host = field_validator("host")(_check_plain_host)

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
    server: SmppServerConfig | None = None
    """`[smpp.server]`: accept binds from customers' ESMEs (unset: no SMPP listener)."""

    @model_validator(mode="after")
    def _unique_names(self) -> SmppConfig:
        names = [entry.name for entry in self.smsc]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"SMSC name(s) configured twice: {', '.join(duplicates)}")
        return self


# ---------------------------------------------------------------------- [sms]

_ACCOUNT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=%-]{1,64}$")
_E164_PREFIX = re.compile(r"^\+?[0-9]{0,15}$")
SmsChannel = Literal["store", "sip", "email", "mqtt", "webhook"]
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(?:[/?#]\S*)?$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


def _check_account(value: str) -> str:
    if not _ACCOUNT.match(value):
        raise ValueError("an account name is 1-64 letters, digits or .-_")
    return value


def _check_prefixes(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if not _E164_PREFIX.match(value):
            raise ValueError(f"{value!r} is not a number prefix ('+' and digits)")
    return values


def _check_patterns(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a regular expression: {exc}") from exc
    return values


class SmsRouteConfig(Section):
    """One MT route: destinations starting with `prefix` go to `smsc`."""

    prefix: str = ""
    """E.164 prefix of the destination, e.g. `"+4915"` (the `+` is optional);
    the longest matching prefix wins, `""` is the default route."""
    smsc: tuple[str, ...] = Field(min_length=1)
    """SMSC names in priority order: the first one that is bound takes the
    message; the others are the failover."""

    _prefix = field_validator("prefix")(lambda value: _check_prefixes((value,))[0])


class SmsRetryConfig(Section):
    """What happens after a temporary submit failure (throttled, queue full,
    timeout, connection lost): retry with exponential backoff."""

    initial_backoff: float = Field(default=5.0, gt=0, le=86_400)
    """Seconds before the first retry of a message after a temporary error."""
    max_backoff: float = Field(default=600.0, gt=0, le=86_400)
    """Longest wait between retries of one message."""
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    """Factor by which the wait grows after each failed attempt."""
    max_attempts: int = Field(default=10, ge=1, le=1000)
    """submit_sm attempts per segment before the message is failed (timeouts and
    lost connections count; answers saying "throttled" do not)."""
    temporary_statuses: tuple[int, ...] = ()
    """Extra submit_sm_resp command_status values to treat as temporary (retry)."""
    permanent_statuses: tuple[int, ...] = ()
    """Extra command_status values to treat as permanent (fail at once); they win
    over the built-in temporary list."""
    unknown_is_temporary: bool = True
    """Whether a command_status in neither list (nor the built-in tables) is retried."""

    @model_validator(mode="after")
    def _ordered(self) -> SmsRetryConfig:
        if self.initial_backoff > self.max_backoff:
            raise ValueError("initial_backoff must not exceed max_backoff")
        return self


class SmsAccountFilterConfig(Section):
    """Content rules for one account, on top of the global `[sms.filter]` ones."""

    account: str
    """The account these rules apply to."""
    allow_patterns: tuple[str, ...] = ()
    """Regular expressions; a text matching one skips the global rules (not the
    account's own deny rules), e.g. an OTP template that contains a blocked word."""
    allow_keywords: tuple[str, ...] = ()
    """Words (case-insensitive, whole words) that let a text skip the global rules."""
    deny_patterns: tuple[str, ...] = ()
    """Regular expressions that reject this account's texts."""
    deny_keywords: tuple[str, ...] = ()
    """Words (case-insensitive, whole words) that reject this account's texts."""

    _account = field_validator("account")(_check_account)
    _patterns = field_validator("allow_patterns", "deny_patterns")(_check_patterns)


class SmsFilterConfig(Section):
    """The content filter every MT text passes before it is queued."""

    keywords: tuple[str, ...] = ()
    """Words (case-insensitive, whole words) that reject a text."""
    patterns: tuple[str, ...] = ()
    """Regular expressions (Python syntax) that reject a text when they match anywhere."""
    blocked_url_hosts: tuple[str, ...] = ()
    """Host names whose URLs reject a text; a host also blocks its subdomains."""
    accounts: tuple[SmsAccountFilterConfig, ...] = ()
    """One `[[sms.filter.accounts]]` table per account with its own allow/deny rules."""

    _patterns = field_validator("patterns")(_check_patterns)


class SmsAccountConfig(Section):
    """Limits of one account's MT traffic."""

    account: str
    """The account these limits apply to."""
    daily_quota: int | None = Field(default=None, ge=0)
    """Messages accepted per UTC day; unset means no quota."""
    rate: float | None = Field(default=None, gt=0)
    """Messages accepted per second (token bucket); over it a submit is refused
    with ESME_RTHROTTLED. Unset means no limit."""
    burst: int = Field(default=10, ge=1, le=1_000_000)
    """Submits accepted back to back before `rate` applies."""
    send_rate: float | None = Field(default=None, gt=0)
    """Pacing of this account's queue towards the SMSCs, in messages per second
    (bulk campaigns do not starve other accounts); unset means no pacing."""
    send_burst: int = Field(default=10, ge=1, le=1_000_000)
    """Messages sent back to back before `send_rate` applies."""

    _account = field_validator("account")(_check_account)


class SmsNumbersConfig(Section):
    """Numbers owned by one account: MO messages to them belong to it."""

    account: str
    """The owning account."""
    numbers: tuple[str, ...] = ()
    """Exact numbers (normalised to E.164 with `default_region`)."""
    prefixes: tuple[str, ...] = ()
    """Number blocks as E.164 prefixes, e.g. `"+493012345"`; the longest match wins."""
    webhook_url: str | None = None
    """URL (`https://` or `http://`) the `webhook` channel POSTs each MO message to
    as JSON; required with that channel."""
    webhook_secret: SecretRef | None = None
    """Key of the HMAC-SHA256 signature sent in `X-Callgate-Signature`
    (`sha256=<hex>` over the body); required with the `webhook` channel."""
    email_to: str | None = None
    """Address the `email` channel sends each MO message to; required with that
    channel (the server is `[sms.email]`)."""
    channels: tuple[SmsChannel, ...] = ("store",)
    """Where MO messages go: `store` (kept for the account's API) is delivered at
    once; `webhook` and `email` are delivered by the MO delivery worker; `sip` and
    `mqtt` are recorded as pending deliveries (no adapter yet)."""

    _account = field_validator("account")(_check_account)
    _prefixes = field_validator("prefixes")(_check_prefixes)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _HTTP_URL.match(value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("email_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value

    @field_validator("channels")
    @classmethod
    def _channel_targets(
        cls, value: tuple[SmsChannel, ...], info: ValidationInfo
    ) -> tuple[SmsChannel, ...]:
        # Fields declared above `channels` are in info.data (unless invalid themselves),
        # so the error points at the `channels` line.
        given = info.data
        if "webhook" in value and (
            given.get("webhook_url", "") is None or given.get("webhook_secret", "") is None
        ):
            raise ValueError("channel `webhook` needs `webhook_url` and `webhook_secret`")
        if "email" in value and given.get("email_to", "") is None:
            raise ValueError("channel `email` needs `email_to`")
        return value


class SmsMoDeliveryConfig(Section):
    """How pending MO deliveries (`webhook`, `email`) are attempted and retried."""

    concurrency: int = Field(default=8, ge=1, le=1000)
    """Deliveries in progress at once per channel."""
    per_account_concurrency: int = Field(default=2, ge=1, le=1000)
    """Deliveries in progress at once per channel and account, so that one slow or
    dead destination leaves the other slots to the other accounts."""
    batch: int = Field(default=100, ge=1, le=10_000)
    """Due deliveries read from the store per channel in one query."""
    poll_interval: float = Field(default=1.0, gt=0, le=3600)
    """Seconds between looks for due deliveries when none is known to be waiting."""
    initial_backoff: float = Field(default=5.0, gt=0, le=86_400)
    """Seconds before the first retry of a failed attempt."""
    max_backoff: float = Field(default=600.0, gt=0, le=86_400)
    """Longest wait between two attempts (a longer Retry-After is still honoured)."""
    multiplier: float = Field(default=2.0, ge=1.0, le=10.0)
    """Factor by which the wait grows after each failed attempt."""
    jitter: float = Field(default=0.2, ge=0, le=1)
    """Fraction by which each wait is randomly lengthened or shortened, so that
    retries to one destination do not arrive in step."""
    max_attempts: int = Field(default=10, ge=1, le=1000)
    """Attempts per delivery before it is failed."""
    max_age: float = Field(default=86_400.0, gt=0, le=31_536_000)
    """Seconds after reception after which a delivery is failed instead of retried."""
    webhook_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds a webhook POST may take (connect and answer); longer is retried."""

    @model_validator(mode="after")
    def _ordered(self) -> SmsMoDeliveryConfig:
        if self.initial_backoff > self.max_backoff:
            raise ValueError("initial_backoff must not exceed max_backoff")
        return self


class SmsEmailConfig(Section):
    """The SMTP server the `email` MO channel sends through."""

    host: str = "127.0.0.1"
    """Host name or IP address of the SMTP server (submission or relay)."""
    port: int = Field(default=25, ge=1, le=65535)
    """TCP port (25 relay, 587 submission with STARTTLS, 465 implicit TLS)."""
    security: Literal["none", "starttls", "tls"] = "starttls"
    """`starttls` upgrades the connection and fails when the server cannot;
    `tls` is implicit TLS (port 465); `none` sends in clear (loopback relays only)."""
    tls_verify: bool = True
    """Verify the server's certificate and host name (only switch off for lab setups)."""
    username: str | None = None
    """Login name; unset means no authentication."""
    password: SecretRef | None = None
    """Login password (`{ file = "..." }` or `{ env = "..." }`), with `username`."""
    sender: str = "callgate@localhost"
    """Envelope and `From:` address of MO e-mails."""
    timeout: float = Field(default=30.0, gt=0, le=600)
    """Seconds for connecting and for each SMTP command; longer is retried."""

    _host = field_validator("host")(_check_plain_host)

    @model_validator(mode="after")
    def _login_complete(self) -> SmsEmailConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if not _EMAIL.match(self.sender):
            raise ValueError(f"sender {self.sender!r} is not an e-mail address")
        return self


class SmsConfig(Section):
    """SMS: routing, retries, content filter and per-account limits of the durable queue."""

    default_region: str | None = None
    """ISO country (e.g. `"DE"`) for numbers written without `+`; unset means such
    numbers are only accepted in international form."""
    validity: float = Field(default=172_800.0, gt=0, le=31_536_000)
    """Seconds a message may wait for delivery unless the submitter sets it."""
    registered_delivery: int | None = Field(default=None, ge=0, le=0x1F)
    """registered_delivery of every submit_sm; unset uses each SMSC's setting."""
    allow_latin1: bool = False
    """Send texts that GSM 03.38 cannot hold in Latin-1 (data_coding 3) instead of
    UCS-2 when they fit; only for SMSCs known to support it."""
    routes: tuple[SmsRouteConfig, ...] = ()
    """One `[[sms.routes]]` table per destination prefix."""
    retry: SmsRetryConfig = SmsRetryConfig()
    """`[sms.retry]`: backoff and the temporary/permanent split of errors."""
    filter: SmsFilterConfig = SmsFilterConfig()
    """`[sms.filter]`: the content filter."""
    accounts: tuple[SmsAccountConfig, ...] = ()
    """One `[[sms.accounts]]` table per account with limits."""
    numbers: tuple[SmsNumbersConfig, ...] = ()
    """One `[[sms.numbers]]` table per account owning MO numbers."""
    mo_delivery: SmsMoDeliveryConfig = SmsMoDeliveryConfig()
    """`[sms.mo_delivery]`: retries and concurrency of MO webhook and e-mail deliveries."""
    email: SmsEmailConfig = SmsEmailConfig()
    """`[sms.email]`: the SMTP server of the `email` MO channel."""
    write_batch: int = Field(default=2000, ge=1, le=100_000)
    """Most queued writes committed in one transaction (group commit)."""
    dispatch_slack: int = Field(default=2, ge=1, le=100)
    """Segments handed to an SMSC's sender per window slot; above 1 keeps the
    window full while answers are processed."""
    dlr_match_cache: int = Field(default=100_000, ge=0, le=10_000_000)
    """Segments kept in memory after their final receipt, so duplicate receipts
    are recognised without a database lookup."""
    orphan_dlr_ttl: float = Field(default=3600.0, ge=0, le=604_800)
    """Seconds a receipt that matches no submitted segment is kept for matching
    (it may arrive before the submit_sm_resp was processed)."""
    orphan_dlr_max: int = Field(default=100_000, ge=0, le=10_000_000)
    """Most unmatched receipts kept in memory."""
    stop_grace: float = Field(default=10.0, gt=0, le=600)
    """Seconds `stop()` waits for answers to submits in flight and the last writes."""

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import phonenumbers  # noqa: PLC0415 - only needed to validate

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. DE, US)")
        return value.upper()

    @model_validator(mode="after")
    def _consistent(self) -> SmsConfig:
        prefixes = [route.prefix.lstrip("+") for route in self.routes]
        twice = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if twice:
            raise ValueError(f"route prefix(es) configured twice: {', '.join(twice)}")
        accounts = [entry.account for entry in self.accounts]
        twice = sorted({a for a in accounts if accounts.count(a) > 1})
        if twice:
            raise ValueError(f"[[sms.accounts]] configured twice: {', '.join(twice)}")
        return self


# ---------------------------------------------------------------------- [smpp.server]


class SmppServerUserConfig(Section):
    """One customer ESME that may bind to Callgate's SMPP server."""

    system_id: str = Field(min_length=1, max_length=15)
    """The system_id the ESME binds with."""
    account: str
    """The account its submits are charged to (limits, quota, filter rules)."""
    password: SecretRef
    """Bind password (`{ file = "..." }` or `{ env = "..." }`; at most 8 characters)."""

    _account = field_validator("account")(_check_account)


class SmppServerConfig(Section):
    """The customer-facing SMPP server: ESMEs bind to Callgate and submit messages."""

    host: str = "127.0.0.1"
    """Address to listen on (`0.0.0.0` or `::` for all interfaces)."""
    port: int = Field(default=2775, ge=0, le=65535)
    """TCP port to listen on; 0 picks a free port (tests)."""
    tls_cert_file: Path | None = None
    """PEM certificate chain; with `tls_key_file` the server speaks TLS only."""
    tls_key_file: Path | None = None
    """PEM private key of `tls_cert_file`."""
    system_id: str = Field(default="Callgate", min_length=1, max_length=15)
    """Our system_id in bind responses."""
    bind_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds a new connection has to bind before it is closed (slowloris guard)."""
    inactivity_timeout: float = Field(default=120.0, gt=0, le=86_400)
    """Seconds a bound ESME may stay silent (no PDU, not even enquire_link) before
    the connection is closed."""
    response_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds to wait for the ESME's unbind_resp when the server shuts down."""
    window: int = Field(default=10, ge=1, le=1000)
    """Most submits per session being processed at once; more are answered
    ESME_RTHROTTLED."""
    max_pdu_rate: float = Field(default=200.0, gt=0, le=1_000_000)
    """Requests per second one session may send (token bucket); over it they are
    answered ESME_RTHROTTLED."""
    pdu_burst: int = Field(default=200, ge=1, le=1_000_000)
    """Requests one session may send back to back before `max_pdu_rate` applies."""
    max_pdu_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    """Largest PDU accepted; a longer command_length closes the connection (the
    stream cannot be resynchronised), and nothing longer is ever buffered."""
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    """Most connections at once; more are closed right after accept."""
    max_connections_per_ip: int = Field(default=20, ge=1, le=1_000_000)
    """Most connections at once from one source address."""
    shutdown_grace: float = Field(default=5.0, gt=0, le=600)
    """Seconds `stop()` waits for submits being processed and unbind answers."""
    users: tuple[SmppServerUserConfig, ...] = ()
    """One `[[smpp.server.users]]` table per ESME allowed to bind."""

    _host = field_validator("host")(_check_plain_host)

    @model_validator(mode="after")
    def _consistent(self) -> SmppServerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        ids = [user.system_id for user in self.users]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"[[smpp.server.users]] system_id twice: {', '.join(twice)}")
        return self
