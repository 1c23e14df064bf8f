"""Who may do what at the edge: digest auth with lockout, REGISTER, and admission.

Pure: takes parsed requests and `now`, returns the response to send (or the
identity to admit with). The edge adapter does the I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.sip import SipConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.sip.address import NameAddress
from gateway.sip.digest import (
    Authenticated,
    Challenge,
    DigestAlgorithm,
    DigestAuthenticator,
    Failed,
    NonceCounter,
    NonceService,
    Rejected,
)
from gateway.sip.directory import Directory
from gateway.sip.errors import SipParseError
from gateway.sip.lockout import AuthLockout
from gateway.sip.message import (
    SipRequest,
    SipResponse,
    call_id,
    contacts,
    cseq,
    expires,
    to_address,
)
from gateway.sip.registrar import (
    ContactSpec,
    RegisterResult,
    Registrar,
    RegistrarError,
    Wildcard,
)

_log = get_logger("sip.access")

ResponseFactory = Callable[[SipRequest, int, str, tuple[tuple[str, str], ...]], SipResponse]


@dataclass(slots=True)
class Identity:
    """An authenticated caller: an account, or a trunk recognised by source."""

    account: str | None = None
    trunk: str | None = None


@dataclass(slots=True)
class Answer:
    """Reply with this response (the request goes no further)."""

    response: SipResponse


class AccessControl:
    """Digest authentication, lockout and the registrar, for one edge."""

    def __init__(
        self,
        config: SipConfig,
        directory: Directory,
        reply: ResponseFactory,
        metrics: Metrics,
        *,
        secret: bytes | None = None,
    ) -> None:
        auth = config.auth
        secret = secret or (
            auth.nonce_secret.reveal().get_secret_value().encode()
            if auth.nonce_secret is not None
            else os.urandom(32)
        )
        self.config = config
        self.directory = directory
        self._reply = reply
        self._metrics = metrics
        self.authenticator = DigestAuthenticator(
            NonceService(secret, auth.nonce_lifetime),
            NonceCounter(auth.max_nonce_counters, auth.nonce_lifetime),
            algorithms=tuple(DigestAlgorithm(a) for a in auth.algorithms),
        )
        protection = config.protection
        self.lockout = AuthLockout(
            protection.lockout_failures,
            protection.lockout_window,
            protection.lockout_duration,
            protection.max_tracked_sources,
        )
        reg = config.registrar
        self.registrar = Registrar(
            reg.max_contacts, reg.min_expires, reg.max_expires, reg.default_expires
        )

    def update(self, config: SipConfig, directory: Directory) -> None:
        """Reload: new accounts and realm; nonces, counters and bindings survive."""
        self.config = config
        self.directory = directory

    def authenticate(
        self, request: SipRequest, source: tuple[str, int], now: float, *, proxy: bool
    ) -> Identity | Answer:
        """Digest-authenticate `request` (401 for REGISTER, 407 for proxied requests)."""
        ip = source[0]
        if self.lockout.is_blocked(ip, now):
            return Answer(self._reply(request, 403, "Forbidden", ()))
        header = "Proxy-Authorization" if proxy else "Authorization"
        outcome = self.authenticator.authenticate(
            method=request.method,
            request_uri=request.uri,
            authorization=request.headers.get(header),
            realm=self.config.auth.realm,
            lookup=self.directory.credentials,
            now=now,
            source=ip,
            body=request.body,
        )
        if isinstance(outcome, Authenticated):
            self.lockout.record_success(ip, now)
            return Identity(account=outcome.username)
        if isinstance(outcome, Rejected):
            return Answer(self._reply(request, outcome.status, outcome.reason, ()))
        if isinstance(outcome, Failed):
            self._metrics.sip_auth_failures.inc()
            if self.lockout.record_failure(ip, now):
                self._metrics.sip_lockouts.inc()
                _log.warning(
                    "sip_source_locked_out",
                    source=ip,
                    user=outcome.username,
                    seconds=self.config.protection.lockout_duration,
                )
                return Answer(self._reply(request, 403, "Forbidden", ()))
        assert isinstance(outcome, Challenge | Failed)
        status, reason, name = (
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
            if proxy
            else (401, "Unauthorized", "WWW-Authenticate")
        )
        challenge = tuple((name, value) for value in outcome.headers)
        return Answer(self._reply(request, status, reason, challenge))

    def register(
        self, request: SipRequest, transport: str, source: tuple[str, int], now: float, wall: float
    ) -> tuple[SipResponse, RegisterResult | None]:
        """Handle a REGISTER end to end; return the answer and what changed."""
        try:
            to = to_address(request)
            aor_uri = to.sip_uri
        except SipParseError as exc:
            return self._reply(request, exc.status, exc.reason, ()), None
        domains = self.config.domains
        if domains and aor_uri.host.lower() not in domains:
            return self._reply(request, 404, "Not Found", ()), None
        verdict = self.authenticate(request, source, now, proxy=False)
        if isinstance(verdict, Answer):
            return verdict.response, None
        if verdict.account != aor_uri.user:
            # An account registers only its own address.
            return self._reply(request, 403, "Forbidden", ()), None
        account = self.directory.accounts.get(verdict.account or "")
        try:
            specs = _contact_specs(contacts(request))
            number, _method = cseq(request)
            result = self.registrar.register(
                aor_uri.aor(),
                specs,
                call_id=call_id(request),
                cseq=number,
                header_expires=expires(request),
                source=f"{transport}:{source[0]}:{source[1]}",
                now=wall,
                user_agent=request.headers.get("User-Agent"),
                max_contacts=account.max_contacts if account else None,
            )
            if isinstance(result, RegistrarError):
                raise result
        except RegistrarError as exc:
            return self._reply(request, exc.status, exc.reason, tuple(exc.headers.items())), None
        except SipParseError as exc:
            return self._reply(request, exc.status, exc.reason, ()), None
        listed = tuple(
            ("Contact", f"<{b.contact_uri}>;expires={b.remaining(wall)}") for b in result.bindings
        )
        return self._reply(request, 200, "OK", listed), result


def _contact_specs(values: list[NameAddress]) -> list[ContactSpec] | Wildcard:
    if any(value.is_wildcard for value in values):
        if len(values) != 1:
            raise RegistrarError(400, "Contact: * must stand alone")
        return Wildcard.STAR
    return [ContactSpec.from_params(value.uri, value.params) for value in values]
