"""Registrar core (RFC 3261 §10.3), pure: the edge parses, we decide, the edge answers.

Choices, documented once here:

- Binding identity: ``(+sip.instance, reg-id)`` when the contact carries an
  instance id (RFC 5626 §6 / RFC 5627), else the contact URI as given by
  ``uri_key`` (identity by default: the edge should pass the URI in the
  normalised form its parser compares with, RFC 3261 §19.1.4).
- More contacts than ``max_contacts_per_aor``: 403 "Too Many Contacts" by
  default (``OverflowPolicy.REJECT``); ``REPLACE_OLDEST`` instead drops the
  bindings closest to expiry that the request did not touch.
- A request is atomic: any error leaves every binding unchanged.
- ``now`` is any clock in seconds; if snapshots outlive the process (the
  store), give the registrar wall-clock time so ``expires_at`` stays
  meaningful after a restart.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Final


class RegistrarError(Exception):
    """A refused REGISTER: the status, reason and extra headers to answer with."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers: dict[str, str] = dict(headers or {})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegistrarError):
            return NotImplemented
        return (self.status, self.reason, self.headers) == (
            other.status,
            other.reason,
            other.headers,
        )

    def __hash__(self) -> int:
        return hash((self.status, self.reason))


class Wildcard(Enum):
    """``Contact: *`` (remove every binding of the AOR)."""

    STAR = "*"


_QVALUE_RE: Final = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")  # RFC 3261 §25.1
_DELTA_SECONDS_RE: Final = re.compile(r"[0-9]+")
_MAX_DELTA_SECONDS: Final = 2**32 - 1  # RFC 3261 §20.19: larger values mean this
_MAX_REG_ID: Final = 2**31 - 1  # RFC 5626 §4.1
_DEFAULT_Q: Final = 1.0  # RFC 3261 §10.2.1.2: absent q ranks as highest
_HEAP_SLACK: Final = 2
"""The expiry heap is compacted when it holds this many times the live bindings."""


def parse_qvalue(text: str) -> float:
    """A q parameter per the qvalue grammar (0 to 1, three decimals at most)."""
    if not _QVALUE_RE.fullmatch(text):
        raise RegistrarError(400, f"Invalid q-value {text!r}")
    return float(text)


def parse_delta_seconds(text: str) -> int:
    """An expires value; beyond 2**32-1 it is taken as 2**32-1 (RFC 3261 §20.19)."""
    if not _DELTA_SECONDS_RE.fullmatch(text):
        raise RegistrarError(400, f"Invalid expires value {text!r}")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(_MAX_DELTA_SECONDS)):
        return _MAX_DELTA_SECONDS
    return min(int(digits), _MAX_DELTA_SECONDS)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@dataclass(slots=True)
class ContactSpec:
    """One Contact of a REGISTER, as the edge's parser hands it over."""

    uri: str
    params: Mapping[str, str | None] = field(default_factory=dict)
    q: float | None = None
    expires: int | None = None
    instance_id: str | None = None
    """``+sip.instance`` without its quotes (RFC 5626 / RFC 5627)."""
    reg_id: int | None = None

    @classmethod
    def from_params(cls, uri: str, params: Mapping[str, str | None]) -> ContactSpec:
        """Build from the contact's header parameters, validating q/expires/reg-id."""
        if not params:  # the usual Contact: a bare <uri>
            return cls(uri, {})
        lowered = {name.lower(): value for name, value in params.items()}
        q_text = lowered.get("q")
        expires_text = lowered.get("expires")
        instance = lowered.get("+sip.instance")
        reg_id_text = lowered.get("reg-id")
        reg_id: int | None = None
        if reg_id_text is not None:
            if not _DELTA_SECONDS_RE.fullmatch(reg_id_text) or len(reg_id_text) > len(
                str(_MAX_REG_ID)
            ):
                raise RegistrarError(400, f"Invalid reg-id {reg_id_text!r}")
            reg_id = int(reg_id_text)
            if not 1 <= reg_id <= _MAX_REG_ID:
                raise RegistrarError(400, f"Invalid reg-id {reg_id_text!r}")
        if "q" in lowered and q_text is None:
            raise RegistrarError(400, "q parameter without a value")
        if "expires" in lowered and expires_text is None:
            raise RegistrarError(400, "expires parameter without a value")
        return cls(
            uri=uri,
            params=dict(params),
            q=None if q_text is None else parse_qvalue(q_text),
            expires=None if expires_text is None else parse_delta_seconds(expires_text),
            instance_id=None if instance is None else _unquote(instance),
            reg_id=reg_id,
        )


@dataclass(slots=True)
class Binding:
    """One registered contact of an address-of-record."""

    aor: str
    contact_uri: str
    expires_at: float
    q: float
    call_id: str
    cseq: int
    received: str | None = None
    """Where the REGISTER came from ("ip:port;transport"), to reach a UA behind NAT."""
    instance_id: str | None = None
    reg_id: int | None = None
    user_agent: str | None = None
    path: tuple[str, ...] | None = None
    """RFC 3327 Path headers, in order, to route requests to the UA."""

    def remaining(self, now: float) -> int:
        """Whole seconds left, for the ``expires=`` of the 200 OK's Contact."""
        return max(0, math.ceil(self.expires_at - now))


@dataclass(slots=True)
class RegisterResult:
    """A successful REGISTER: what to answer with and what changed (to persist)."""

    bindings: tuple[Binding, ...]
    """All current bindings of the AOR, by q descending: the 200 OK's Contacts."""
    updated: tuple[Binding, ...] = ()
    """Bindings created or refreshed by this request."""
    removed: tuple[Binding, ...] = ()
    """Bindings this request removed (expires=0, ``*``, or overflow replacement)."""


class OverflowPolicy(Enum):
    """What to do when a REGISTER would exceed the per-AOR contact cap."""

    REJECT = "reject"
    """403 Too Many Contacts."""
    REPLACE_OLDEST = "replace_oldest"
    """Drop untouched bindings closest to expiry to make room."""


BindingKey = tuple[str, str | int | None]


@dataclass(slots=True)
class _RegisterRequest:
    """The REGISTER-wide values every contact is processed with."""

    aor: str
    call_id: str
    cseq: int
    header_expires: int | None
    source: str | None
    now: float
    user_agent: str | None
    path: tuple[str, ...] | None
    max_contacts: int


def _identity(uri: str) -> str:
    return uri


def _user_of(aor: str) -> str:
    """`alice` of `sip:alice@example.net` (AORs are canonical, see `SipUri.aor`)."""
    scheme_end = aor.find(":") + 1
    at = aor.rfind("@")
    return aor[scheme_end:at] if at >= scheme_end else ""


def _by_preference(binding: Binding) -> tuple[float, float]:
    return (-binding.q, -binding.expires_at)


class Registrar:
    """Bindings per address-of-record, with RFC 3261 §10.3 update rules."""

    def __init__(
        self,
        max_contacts_per_aor: int,
        min_expires: int,
        max_expires: int,
        default_expires: int,
        *,
        overflow: OverflowPolicy = OverflowPolicy.REJECT,
        uri_key: Callable[[str], str] = _identity,
    ) -> None:
        if max_contacts_per_aor <= 0:
            raise ValueError("max_contacts_per_aor must be positive")
        if not 0 < min_expires <= default_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        self.max_contacts_per_aor = max_contacts_per_aor
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.overflow = overflow
        self._uri_key = uri_key
        self._aors: dict[str, dict[BindingKey, Binding]] = {}
        self._aors_of_user: dict[str, set[str]] = {}
        """AORs by user part, so calls to an account find its contacts in any domain."""
        self._expiry_heap: list[tuple[float, str, BindingKey]] = []
        self._count = 0

    def __len__(self) -> int:
        """Live-or-unswept bindings across all AORs."""
        return self._count

    def _key(self, uri: str, instance_id: str | None, reg_id: int | None) -> BindingKey:
        if instance_id is not None:
            return ("instance:" + instance_id, reg_id)
        return ("uri:" + self._uri_key(uri), None)

    def _binding_key(self, binding: Binding) -> BindingKey:
        return self._key(binding.contact_uri, binding.instance_id, binding.reg_id)

    def _live(self, aor: str, now: float) -> dict[BindingKey, Binding]:
        """The AOR's bindings, minus any that expired since the last sweep."""
        current = self._aors.get(aor, {})
        return {key: b for key, b in current.items() if b.expires_at > now}

    def _expires_for(self, contact: ContactSpec, header_expires: int | None) -> int:
        if contact.expires is not None:
            return contact.expires
        if header_expires is not None:
            return header_expires
        return self.default_expires

    def register(
        self,
        aor: str,
        contacts: list[ContactSpec] | Wildcard,
        *,
        call_id: str,
        cseq: int,
        header_expires: int | None,
        source: str | None,
        now: float,
        user_agent: str | None = None,
        path: tuple[str, ...] | None = None,
        max_contacts: int | None = None,
    ) -> RegisterResult | RegistrarError:
        """Apply one REGISTER; a ``RegistrarError`` is returned (not raised) as the answer.

        ``max_contacts`` overrides the registrar-wide cap for this AOR (per-account limits).
        """
        if not call_id:
            return RegistrarError(400, "Missing Call-ID")
        if cseq < 0:
            return RegistrarError(400, "Invalid CSeq")
        if header_expires is not None and header_expires < 0:
            return RegistrarError(400, "Invalid Expires")
        request = _RegisterRequest(
            aor,
            call_id,
            cseq,
            header_expires,
            source,
            now,
            user_agent,
            path,
            max_contacts or self.max_contacts_per_aor,
        )
        live = self._live(aor, now)
        if isinstance(contacts, Wildcard):
            return self._unregister_all(live, request)
        if not contacts:
            return self._commit(aor, live, (), (), now)
        return self._update(live, contacts, request)

    def _unregister_all(
        self, live: dict[BindingKey, Binding], request: _RegisterRequest
    ) -> RegisterResult | RegistrarError:
        if request.header_expires != 0:
            return RegistrarError(400, "Contact: * requires Expires: 0")
        for binding in live.values():
            if binding.call_id == request.call_id and request.cseq <= binding.cseq:
                return RegistrarError(500, "Out of order CSeq")
        return self._commit(request.aor, {}, (), tuple(live.values()), request.now)

    def _update(
        self,
        live: dict[BindingKey, Binding],
        contacts: list[ContactSpec],
        request: _RegisterRequest,
    ) -> RegisterResult | RegistrarError:
        result = dict(live)
        updated: dict[BindingKey, Binding] = {}
        removed: dict[BindingKey, Binding] = {}
        for contact in contacts:
            if contact.q is not None and not 0.0 <= contact.q <= 1.0:
                return RegistrarError(400, f"Invalid q-value {contact.q!r}")
            expires = self._expires_for(contact, request.header_expires)
            if expires < 0:
                return RegistrarError(400, "Invalid expires")
            if 0 < expires < self.min_expires:
                return RegistrarError(
                    423, "Interval Too Brief", {"Min-Expires": str(self.min_expires)}
                )
            expires = min(expires, self.max_expires)
            key = self._key(contact.uri, contact.instance_id, contact.reg_id)
            existing = live.get(key)
            if (
                existing is not None
                and existing.call_id == request.call_id
                and request.cseq <= existing.cseq
            ):
                return RegistrarError(500, "Out of order CSeq")
            if expires == 0:
                updated.pop(key, None)
                result.pop(key, None)
                if existing is not None:
                    removed[key] = existing
                continue
            binding = Binding(
                aor=request.aor,
                contact_uri=contact.uri,
                expires_at=request.now + expires,
                q=_DEFAULT_Q if contact.q is None else contact.q,
                call_id=request.call_id,
                cseq=request.cseq,
                received=request.source,
                instance_id=contact.instance_id,
                reg_id=contact.reg_id,
                user_agent=request.user_agent,
                path=request.path,
            )
            result[key] = binding
            updated[key] = binding
            removed.pop(key, None)

        if len(result) > request.max_contacts:
            overflow = self._make_room(result, updated, request.max_contacts)
            if isinstance(overflow, RegistrarError):
                return overflow
            removed.update(overflow)
        return self._commit(
            request.aor, result, tuple(updated.values()), tuple(removed.values()), request.now
        )

    def _make_room(
        self, result: dict[BindingKey, Binding], updated: dict[BindingKey, Binding], cap: int
    ) -> dict[BindingKey, Binding] | RegistrarError:
        """Apply the overflow policy to ``result`` in place; returns what it dropped."""
        excess = len(result) - cap
        untouched = sorted(
            (b for k, b in result.items() if k not in updated), key=lambda b: b.expires_at
        )
        if self.overflow is OverflowPolicy.REJECT or excess > len(untouched):
            return RegistrarError(403, "Too Many Contacts")
        dropped: dict[BindingKey, Binding] = {}
        for binding in untouched[:excess]:
            key = self._binding_key(binding)
            dropped[key] = result.pop(key)
        return dropped

    def _commit(
        self,
        aor: str,
        bindings: dict[BindingKey, Binding],
        updated: tuple[Binding, ...],
        removed: tuple[Binding, ...],
        now: float,
    ) -> RegisterResult:
        previous = self._aors.pop(aor, {})
        self._count -= len(previous)
        # Expired bindings the request did not replace stay until sweep()
        # reports them, so every expiry is seen exactly once.
        held = {k: b for k, b in previous.items() if b.expires_at <= now and k not in bindings}
        held.update(bindings)
        if held:
            self._aors[aor] = held
            self._count += len(held)
            if not previous:  # a refresh's AOR is indexed already
                self._aors_of_user.setdefault(_user_of(aor), set()).add(aor)
        elif previous:
            self._forget_aor(aor)
        for binding in updated:
            heapq.heappush(self._expiry_heap, (binding.expires_at, aor, self._binding_key(binding)))
        self._maybe_compact_heap()
        return RegisterResult(
            bindings=tuple(sorted(bindings.values(), key=_by_preference)),
            updated=updated,
            removed=removed,
        )

    def _maybe_compact_heap(self) -> None:
        """Refreshes leave stale heap entries; rebuild before they dominate memory."""
        if len(self._expiry_heap) <= _HEAP_SLACK * max(self._count, 1):
            return
        self._expiry_heap = [
            (b.expires_at, aor, key)
            for aor, bindings in self._aors.items()
            for key, b in bindings.items()
        ]
        heapq.heapify(self._expiry_heap)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        """Live bindings of ``aor``, most preferred (highest q, then freshest) first."""
        return sorted(self._live(aor, now).values(), key=_by_preference)

    def lookup_user(self, user: str, now: float) -> list[Binding]:
        """Live bindings of every AOR with this user part (an account, in any domain)."""
        found = [
            b for aor in self._aors_of_user.get(user, ()) for b in self._live(aor, now).values()
        ]
        return sorted(found, key=_by_preference)

    def _forget_aor(self, aor: str) -> None:
        user = _user_of(aor)
        aors = self._aors_of_user.get(user)
        if aors is not None:
            aors.discard(aor)
            if not aors:
                del self._aors_of_user[user]

    def sweep(self, now: float) -> list[Binding]:
        """Remove and return every binding expired at ``now``."""
        expired: list[Binding] = []
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            expires_at, aor, key = heapq.heappop(heap)
            bindings = self._aors.get(aor)
            if bindings is None:
                continue
            binding = bindings.get(key)
            if binding is None or binding.expires_at != expires_at:
                continue  # removed or refreshed since this entry was pushed
            del bindings[key]
            self._count -= 1
            if not bindings:
                del self._aors[aor]
                self._forget_aor(aor)
            expired.append(binding)
        return expired

    def bindings(self) -> Iterable[Binding]:
        """Every binding held (expired ones too until swept): the snapshot to persist."""
        for bindings in list(self._aors.values()):
            yield from list(bindings.values())

    def restore(self, bindings: Iterable[Binding], now: float) -> int:
        """Load a snapshot, skipping expired bindings; returns how many were kept.

        Restored bindings replace same-key ones; per AOR, the cap keeps the
        latest-expiring bindings (the configured cap may have been lowered).
        """
        by_aor: dict[str, dict[BindingKey, Binding]] = {}
        for binding in bindings:
            if binding.expires_at <= now:
                continue
            clamped = replace(binding, expires_at=min(binding.expires_at, now + self.max_expires))
            by_aor.setdefault(binding.aor, {})[self._binding_key(clamped)] = clamped
        kept = 0
        for aor, restored in by_aor.items():
            merged = {**self._live(aor, now), **restored}
            newest = sorted(merged.items(), key=lambda item: item[1].expires_at, reverse=True)
            capped = dict(newest[: self.max_contacts_per_aor])
            self._commit(aor, capped, tuple(capped.values()), (), now)
            kept += sum(1 for key in capped if key in restored)
        return kept
