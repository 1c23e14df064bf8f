"""Digest authentication, server side (RFC 3261 §22, RFC 7616, RFC 8760).

Pure: every function takes its inputs (header text, ``now``, secrets) and
returns a value; the edge sends what the outcome says.

Choices, documented once here:

- Algorithms: ``MD5`` and ``SHA-256``. The ``-sess`` variants and
  ``SHA-512-256`` are rejected with 400: we never offer them, so a client
  answering with one answers a challenge we did not send.
- ``qop=auth`` (and ``auth-int``, which is stronger) is required. RFC 2069
  responses (no qop) carry no cnonce and no nonce-count, so they allow
  chosen-plaintext attacks and replays for the whole nonce lifetime; they
  are refused with 400 ``qop=auth required``. RFC 8760 requires qop
  support for SIP anyway.
- ``userhash=true`` (RFC 7616 §3.4.4) is not offered and is refused.
- Interop: SIPp before SIPp/sipp#676 (e.g. Debian's 3.6.1, tested) answers
  only MD5 and reads the *first* challenge, failing on SHA-256 first; offer
  ``(MD5,)`` or MD5 first to such peers. Later SIPp also answers SHA-256.
- Nonces are stateless (timestamp + salt + a 128-bit MAC: keyed BLAKE2s,
  a PRF like HMAC-SHA256 at a quarter of its cost per call); the only state
  is the bounded ``NonceCounter`` for replay protection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from functools import lru_cache
from typing import Final


class DigestError(Exception):
    """A malformed or unacceptable credential: carries the SIP answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class UnsupportedSchemeError(DigestError):
    """Credentials in another scheme (Basic, Bearer...): answer with a challenge."""

    def __init__(self, scheme: str) -> None:
        super().__init__(f"unsupported authorization scheme {scheme!r}", status=401)
        self.scheme = scheme


class DigestAlgorithm(StrEnum):
    """The digest algorithms we verify; values are the wire names."""

    MD5 = "MD5"
    SHA256 = "SHA-256"


_ALGORITHMS_BY_UPPER_NAME: Final = {a.value.upper(): a for a in DigestAlgorithm}
_HEX_LENGTH: Final = {DigestAlgorithm.MD5: 32, DigestAlgorithm.SHA256: 64}
_DEFAULT_ALGORITHM: Final = DigestAlgorithm.MD5  # RFC 7616 §3.4: absent means MD5
_QOP_AUTH: Final = "auth"
_QOP_AUTH_INT: Final = "auth-int"
_SUPPORTED_QOPS: Final = frozenset({_QOP_AUTH, _QOP_AUTH_INT})
_NONCE_COUNT_RE: Final = re.compile(r"[0-9a-fA-F]{8}")
_LOWER_HEX_RE: Final = re.compile(r"[0-9a-f]+")

# RFC 3261 §25.1: token, LWS, quoted-string (qdtext / quoted-pair).
_TOKEN: Final = r"[!%'*+\-.0-9A-Z_`a-z~]+"  # noqa: S105 (grammar token, not a secret)
_LWS: Final = r"[ \t\r\n]*"
_QDTEXT: Final = r'[^"\\\x00-\x08\x0a-\x1f\x7f]'
_QUOTED_PAIR: Final = r"\\[\x00-\x09\x0b\x0c\x0e-\x7f]"
# quoted-string body as the unrolled loop `qdtext* (quoted-pair qdtext*)*`: the
# same language as `(qdtext | quoted-pair)*` at a fraction of the regex steps.
_QUOTED_BODY: Final = f"{_QDTEXT}*(?:{_QUOTED_PAIR}{_QDTEXT}*)*"
_TOKEN_RE: Final = re.compile(_TOKEN)
_AUTH_PARAM_RE: Final = re.compile(
    rf'({_LWS}({_TOKEN}){_LWS}={_LWS}(?:"({_QUOTED_BODY})"|({_TOKEN})){_LWS}(,|\Z))'
)
_SCHEME_RE: Final = re.compile(rf"{_LWS}({_TOKEN})(?:[ \t\r\n]+|\Z)")
_ESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_REQUIRED_PARAMS: Final = ("username", "realm", "nonce", "uri", "response")


@dataclass(slots=True)
class DigestCredentials:
    """One parsed ``Authorization``/``Proxy-Authorization`` Digest value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    """Lower-case hex, length checked against the algorithm."""
    algorithm: DigestAlgorithm
    qop: str | None
    cnonce: str | None
    nc: str | None
    """The nonce-count exactly as sent (8 hex digits), since it enters the hash."""
    opaque: str | None

    @property
    def nonce_count(self) -> int:
        """The nonce-count as a number, 0 when there is no qop."""
        return int(self.nc, 16) if self.nc is not None else 0


def _parse_auth_params(text: str) -> dict[str, str]:
    """``name=value`` pairs, names lower-cased; duplicates and garbage are errors.

    One ``findall`` pass: the items form a valid list exactly when they tile
    the whole text (each starts where the last ended) and the last one ends it.
    """
    params: dict[str, str] = {}
    items = _AUTH_PARAM_RE.findall(text)
    if not items or items[-1][4] or sum(len(item[0]) for item in items) != len(text):
        raise DigestError("malformed Digest parameters")
    for _whole, raw_name, quoted, token, _separator in items:
        name = raw_name.lower()
        if token:
            value = token
        elif "\\" in quoted:
            value = _ESCAPE_RE.sub(r"\1", quoted)
        else:
            value = quoted  # "" for an empty quoted-string
        if name in params:
            raise DigestError(f"duplicate Digest parameter {name!r}")
        params[name] = value
    return params


def _parse_algorithm(value: str | None) -> DigestAlgorithm:
    if value is None:
        return _DEFAULT_ALGORITHM
    algorithm = _ALGORITHMS_BY_UPPER_NAME.get(value.upper())
    if algorithm is None:
        raise DigestError(f"unsupported digest algorithm {value!r}")
    return algorithm


def parse_credentials(value: str) -> DigestCredentials:
    """Parse a credentials header value; raise ``DigestError`` (400) if unusable.

    A scheme other than Digest raises ``UnsupportedSchemeError`` (status 401)
    so the edge answers with a challenge rather than a 400.
    """
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates from a lenient byte decode
            raise DigestError("credentials are not valid UTF-8") from None
    scheme_match = _SCHEME_RE.match(value)
    if scheme_match is None:
        raise DigestError("malformed authorization header")
    scheme = scheme_match.group(1)
    if scheme.lower() != "digest":
        raise UnsupportedSchemeError(scheme)
    params = _parse_auth_params(value[scheme_match.end() :])

    missing = [name for name in _REQUIRED_PARAMS if not params.get(name)]
    if missing:
        raise DigestError(f"missing Digest parameter(s): {', '.join(missing)}")
    algorithm = _parse_algorithm(params.get("algorithm"))
    if params.get("userhash", "false").lower() != "false":
        raise DigestError("userhash is not supported")

    response = params["response"].lower()
    if len(response) != _HEX_LENGTH[algorithm] or not _LOWER_HEX_RE.fullmatch(response):
        raise DigestError(f"response is not a {algorithm.value} hex digest")

    qop = params.get("qop")
    cnonce = params.get("cnonce")
    nc = params.get("nc")
    if qop is None:
        if cnonce is not None or nc is not None:
            raise DigestError("cnonce/nc given without qop")
    else:
        if qop.lower() not in _SUPPORTED_QOPS:
            raise DigestError(f"unsupported qop {qop!r}")
        if not cnonce:
            raise DigestError("qop requires a cnonce")
        if nc is None or not _NONCE_COUNT_RE.fullmatch(nc):
            raise DigestError("qop requires nc of 8 hex digits")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=response,
        algorithm=algorithm,
        qop=qop,
        cnonce=cnonce,
        nc=nc,
        opaque=params.get("opaque"),
    )


def _hexdigest(algorithm: DigestAlgorithm, data: bytes) -> str:
    if algorithm is DigestAlgorithm.MD5:
        # The protocol mandates MD5 for old clients; the flag keeps it working
        # on FIPS builds (security comes from the nonce, cnonce and HA1).
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    return hashlib.sha256(data).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: DigestAlgorithm) -> str:
    """H(username:realm:password) in lower-case hex: what the account store keeps."""
    return _hexdigest(algorithm, f"{username}:{realm}:{password}".encode())


_HA2_MEMO_ENTRIES: Final = 4096
"""H(method:uri) results kept: a UA sends every REGISTER to the same Request-URI."""
_HA2_MEMO_MAX_CHARS: Final = 256
"""Longer URIs are hashed every time, so the memo stays small whatever peers send."""


@lru_cache(maxsize=_HA2_MEMO_ENTRIES)
def _auth_ha2(algorithm: DigestAlgorithm, method: str, uri: str) -> str:
    """H(A2) for qop=auth (RFC 7616 §3.4.3): no body in it, so it repeats per URI."""
    return _hexdigest(algorithm, f"{method}:{uri}".encode())


def expected_response(
    credentials: DigestCredentials, method: str, ha1_hex: str, body: bytes = b""
) -> str:
    """The response a client knowing ``ha1_hex`` computes (RFC 7616 §3.4.1)."""
    algorithm = credentials.algorithm
    uri = credentials.uri
    if credentials.qop is not None and credentials.qop.lower() == _QOP_AUTH_INT:
        ha2 = _hexdigest(algorithm, f"{method}:{uri}:{_hexdigest(algorithm, body)}".encode())
    elif len(uri) <= _HA2_MEMO_MAX_CHARS:
        ha2 = _auth_ha2(algorithm, method, uri)
    else:
        ha2 = _hexdigest(algorithm, f"{method}:{uri}".encode())
    if credentials.qop is None:
        data = f"{ha1_hex.lower()}:{credentials.nonce}:{ha2}"
    else:
        data = (
            f"{ha1_hex.lower()}:{credentials.nonce}:{credentials.nc}:"
            f"{credentials.cnonce}:{credentials.qop}:{ha2}"
        )
    return _hexdigest(algorithm, data.encode())


def verify(credentials: DigestCredentials, method: str, ha1_hex: str, body: bytes = b"") -> bool:
    """Whether the response proves knowledge of the password (constant-time compare)."""
    expected = expected_response(credentials, method, ha1_hex, body)
    return hmac.compare_digest(expected.encode(), credentials.response.encode())


def quote(value: str) -> str:
    """A quoted-string for ``value``; CR/LF cannot be carried and are refused."""
    if "\r" in value or "\n" in value:
        raise ValueError("a quoted-string cannot contain CR or LF")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@lru_cache(maxsize=64)
def _challenge_parts(
    realm: str, algorithm: DigestAlgorithm, stale: bool, opaque: str | None
) -> tuple[str, str]:
    """A challenge's text before and after the nonce: the same for every challenge."""
    after = [""]
    if opaque is not None:
        after.append(f"opaque={quote(opaque)}")
    after.append(f"algorithm={algorithm.value}")
    after.append(f'qop="{_QOP_AUTH}"')
    if stale:
        after.append("stale=true")
    return f"Digest realm={quote(realm)}, nonce=", ", ".join(after)


def challenge_header(
    realm: str,
    nonce: str,
    algorithm: DigestAlgorithm,
    stale: bool,
    opaque: str | None = None,
) -> str:
    """A ``WWW-Authenticate``/``Proxy-Authenticate`` value offering ``qop=auth``."""
    before, after = _challenge_parts(realm, algorithm, stale, opaque)
    return before + quote(nonce) + after


class NonceStatus(Enum):
    """What a presented nonce is worth."""

    VALID = "valid"
    STALE = "stale"
    """Ours but expired: re-challenge with ``stale=true`` (no password prompt)."""
    INVALID = "invalid"
    """Not ours (forged, corrupted, other secret): plain challenge."""


_TIMESTAMP: Final = struct.Struct(">d")
_SALT_BYTES: Final = 8
"""Random bytes per nonce so two challenges in the same instant differ."""
_MAC_BYTES: Final = 16
"""A 128-bit tag: unforgeable, and keeps nonces short."""
_MAC_PERSON: Final = b"cg-nonce"
"""Domain separation for the MAC key derived from the configured secret."""
_NONCE_BYTES: Final = _TIMESTAMP.size + _SALT_BYTES + _MAC_BYTES
_MIN_SECRET_BYTES: Final = 16
_LENGTH_PREFIX: Final = struct.Struct(">I")


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict base64url decode: ``None`` unless ``text`` is the canonical encoding."""
    try:
        padded = text.encode("ascii") + b"=" * (-len(text) % 4)
        raw = base64.urlsafe_b64decode(padded)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None
    return raw if _b64encode(raw) == text else None


class NonceService:
    """Stateless nonces: ``base64url(timestamp | salt | MAC(secret, ...))``.

    The MAC covers the timestamp, salt, realm and an optional source (pass
    the client IP, not ip:port, so NAT rebinding does not break it). Any
    edge node sharing the secret can check any nonce.
    """

    def __init__(
        self,
        secret: bytes,
        lifetime: float,
        entropy: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"nonce secret must be at least {_MIN_SECRET_BYTES} bytes")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        # BLAKE2s takes a key of at most 32 bytes; derive one from a secret of any length.
        self._key = hashlib.blake2s(secret, person=_MAC_PERSON).digest()
        self.lifetime = lifetime
        self._entropy = entropy

    def _mac(self, stamp_and_salt: bytes, realm: str, source: str) -> bytes:
        realm_bytes = realm.encode()
        source_bytes = source.encode()
        message = b"".join(
            (
                stamp_and_salt,
                _LENGTH_PREFIX.pack(len(realm_bytes)),
                realm_bytes,
                source_bytes,
            )
        )
        return hashlib.blake2s(message, key=self._key, digest_size=_MAC_BYTES).digest()

    def issue(self, now: float, realm: str, source: str = "") -> str:
        """A fresh nonce for ``realm`` (and ``source`` if binding to it)."""
        stamp_and_salt = _TIMESTAMP.pack(now) + self._entropy(_SALT_BYTES)
        return _b64encode(stamp_and_salt + self._mac(stamp_and_salt, realm, source))

    def issued_at(self, nonce: str, realm: str, source: str = "") -> float | None:
        """When an authentic nonce was issued; ``None`` if it is not ours."""
        raw = _b64decode(nonce)
        if raw is None or len(raw) != _NONCE_BYTES:
            return None
        stamp_and_salt, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(stamp_and_salt, realm, source)):
            return None
        (issued,) = _TIMESTAMP.unpack_from(stamp_and_salt)
        return float(issued)

    def status_at(self, issued_at: float | None, now: float) -> NonceStatus:
        """Classify a nonce by its issue time (``None``: not authentic).

        A nonce from the future (clock reset at restart) is stale, not
        invalid: it is ours, the client just needs a new one.
        """
        if issued_at is None:
            return NonceStatus.INVALID
        if 0 <= now - issued_at <= self.lifetime:
            return NonceStatus.VALID
        return NonceStatus.STALE

    def check(self, nonce: str, now: float, realm: str, source: str = "") -> NonceStatus:
        """VALID, STALE (ours but expired) or INVALID."""
        return self.status_at(self.issued_at(nonce, realm, source), now)


@dataclass(slots=True)
class _CountEntry:
    highest_nc: int
    issued_at: float
    bound: tuple[str, str]
    """The realm and source the nonce's MAC was checked against."""


class NonceCounter:
    """Replay protection: the highest nonce-count seen per nonce, bounded.

    When the table is full the least recently used nonce is forgotten, and
    every nonce issued no later than a forgotten one is refused from then on
    (the client gets ``stale=true`` and a fresh nonce): forgetting never
    re-opens a replay window.
    """

    def __init__(self, max_entries: int, lifetime: float) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        if lifetime <= 0:
            raise ValueError("lifetime must be positive")
        self.max_entries = max_entries
        self.lifetime = lifetime
        self._entries: OrderedDict[str, _CountEntry] = OrderedDict()
        self._forgotten_up_to = float("-inf")
        self.evictions = 0
        """Live nonces forgotten for lack of room (a metric: raise the cap if it grows)."""

    def __len__(self) -> int:
        return len(self._entries)

    def _expired(self, entry: _CountEntry, now: float) -> bool:
        return now - entry.issued_at > self.lifetime

    def verified_issue_time(self, nonce: str, realm: str, source: str) -> float | None:
        """When ``nonce`` was issued, if a request from ``source`` already proved it ours
        (its MAC checked, its digest verified); else None and the MAC must be checked.

        Phones reuse a nonce for every refresh: this spares each one the MAC.
        """
        entry = self._entries.get(nonce)
        if entry is None or entry.bound != (realm, source):
            return None
        return entry.issued_at

    def advance(
        self, nonce: str, nc: int, issued_at: float, now: float, bound: tuple[str, str] = ("", "")
    ) -> bool:
        """Record ``nc`` for ``nonce`` if it is higher than any seen; else it is a replay.

        ``bound``: the realm and source its MAC was checked against.
        """
        self._drop_expired_head(now)
        if now - issued_at > self.lifetime:
            self._entries.pop(nonce, None)
            return False
        entry = self._entries.get(nonce)
        if entry is None:
            if issued_at <= self._forgotten_up_to:
                return False
            self._entries[nonce] = _CountEntry(nc, issued_at, bound)
            self._evict_over_cap()
            return True
        if nc <= entry.highest_nc:
            return False
        entry.highest_nc = nc
        self._entries.move_to_end(nonce)
        return True

    def _drop_expired_head(self, now: float) -> None:
        """Cheap incremental expiry: the least recently used entries go first."""
        while self._entries:
            nonce, entry = next(iter(self._entries.items()))
            if not self._expired(entry, now):
                return
            del self._entries[nonce]

    def _evict_over_cap(self) -> None:
        while len(self._entries) > self.max_entries:
            _, entry = self._entries.popitem(last=False)
            self._forgotten_up_to = max(self._forgotten_up_to, entry.issued_at)
            self.evictions += 1

    def sweep(self, now: float) -> int:
        """Drop every expired entry; returns how many went."""
        expired = [n for n, e in self._entries.items() if self._expired(e, now)]
        for nonce in expired:
            del self._entries[nonce]
        return len(expired)


_UNKNOWN_USER_HA1: Final = {a: "0" * _HEX_LENGTH[a] for a in DigestAlgorithm}
"""Stands in for an unknown user's HA1 so the failure costs the same hashing."""

CredentialLookup = Callable[[str, str], Mapping[str, str] | None]
"""(username, realm) -> {algorithm wire name: HA1 hex}, or ``None`` if unknown."""


@dataclass(slots=True)
class Authenticated:
    """The request is from ``username``."""

    username: str
    algorithm: DigestAlgorithm


@dataclass(slots=True)
class Challenge:
    """Answer 401/407 with one authenticate header per value (strongest first)."""

    headers: list[str]
    stale: bool


@dataclass(slots=True)
class Failed:
    """Wrong password (or unknown user): count a failure, then 401/407 or 403.

    ``headers`` is a fresh challenge for the edge to re-challenge with.
    """

    username: str
    headers: list[str]


@dataclass(slots=True)
class Rejected:
    """Unusable credentials: answer ``status reason`` (a client bug, not a guess)."""

    status: int
    reason: str


AuthOutcome = Authenticated | Challenge | Failed | Rejected


class DigestAuthenticator:
    """Decides one request's authentication; pure (``now`` passed in).

    Order of checks is cheapest-first, and nothing touches the account store
    before the nonce HMAC has proved the nonce is ours: unauthenticated
    floods cost one HMAC each.
    """

    def __init__(
        self,
        nonces: NonceService,
        counter: NonceCounter,
        algorithms: Sequence[DigestAlgorithm] = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5),
        opaque: str | None = None,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one digest algorithm must be offered")
        self._nonces = nonces
        self._counter = counter
        self._algorithms = tuple(algorithms)
        self._opaque = opaque

    def challenge(
        self,
        realm: str,
        now: float,
        source: str = "",
        stale: bool = False,
        algorithms: Sequence[DigestAlgorithm] | None = None,
    ) -> Challenge:
        """A fresh challenge: one header per algorithm, in preference order (RFC 8760)."""
        nonce = self._nonces.issue(now, realm, source)
        offered = self._algorithms if algorithms is None else algorithms
        headers = [challenge_header(realm, nonce, a, stale, self._opaque) for a in offered]
        return Challenge(headers=headers, stale=stale)

    def authenticate(
        self,
        *,
        method: str,
        request_uri: str,
        authorization: str | None,
        realm: str,
        lookup: CredentialLookup,
        now: float,
        source: str = "",
        body: bytes = b"",
    ) -> AuthOutcome:
        """Authenticate one request from its credentials header value (or none)."""
        if authorization is None:
            return self.challenge(realm, now, source)
        try:
            credentials = parse_credentials(authorization)
        except UnsupportedSchemeError:
            return self.challenge(realm, now, source)
        except DigestError as error:
            return Rejected(error.status, error.reason)

        if credentials.realm != realm or credentials.algorithm not in self._algorithms:
            # Credentials for another realm, or an algorithm we stopped
            # offering (no downgrade): treat as absent.
            return self.challenge(realm, now, source)
        if credentials.qop is None:
            return Rejected(400, "qop=auth required")
        if credentials.uri != request_uri:
            return Rejected(400, "Digest uri does not match the Request-URI")
        if self._opaque is not None and credentials.opaque != self._opaque:
            return self.challenge(realm, now, source)

        issued_at = self._counter.verified_issue_time(credentials.nonce, realm, source)
        if issued_at is None:
            issued_at = self._nonces.issued_at(credentials.nonce, realm, source)
        status = self._nonces.status_at(issued_at, now)
        if status is not NonceStatus.VALID or issued_at is None:
            return self.challenge(realm, now, source, stale=status is NonceStatus.STALE)

        ha1_by_algorithm = lookup(credentials.username, realm)
        if ha1_by_algorithm is None:
            # Unknown users look exactly like wrong passwords, in outcome and
            # in time spent (no enumeration).
            verify(credentials, method, _UNKNOWN_USER_HA1[credentials.algorithm], body)
            return Failed(credentials.username, self.challenge(realm, now, source).headers)
        ha1_hex = ha1_by_algorithm.get(credentials.algorithm.value)
        if ha1_hex is None:
            # The account has no HA1 for this algorithm: offer what it has,
            # rather than count a failure the user cannot avoid.
            usable = [a for a in self._algorithms if a.value in ha1_by_algorithm]
            if not usable:
                return Failed(credentials.username, self.challenge(realm, now, source).headers)
            return self.challenge(realm, now, source, algorithms=usable)
        if not verify(credentials, method, ha1_hex, body):
            return Failed(credentials.username, self.challenge(realm, now, source).headers)
        # After verify, so forged requests cannot burn a client's nonce-counts.
        counted = self._counter.advance(
            credentials.nonce, credentials.nonce_count, issued_at, now, (realm, source)
        )
        if not counted:
            return self.challenge(realm, now, source, stale=True)
        return Authenticated(credentials.username, credentials.algorithm)
