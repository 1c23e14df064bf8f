"""The dial plan: accounts, prefix routes to trunks (priority, weight), emergency calls.

Pure policy behind the `Router` protocol. Numbers are read in the region of
whoever placed the call (account or inbound trunk), then matched against the
routes: a prefix with `+` against the E.164 form, one without against the
digits as dialled; the longest prefix wins. The trunks of a route are
ordered by priority, and within one priority by a weighted random draw (the
DNS SRV rule, RFC 2782), so weights share the load and lower priorities are
the failover.

A dialled account name rings all the account's registered contacts at once
(`fork`), unless its forwarding says otherwise: `always` re-routes at once,
`unreachable` when nothing is registered. Each forward counts a hop; past
`max_hops` the call gets 483.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from typing import Protocol

from gateway.calls.callerid import CallerId, asserted_uri, identity_uri, requests_privacy
from gateway.calls.numbers import Number, NumberKind, is_emergency, normalise
from gateway.calls.routing import (
    CallRequest,
    Forwarding,
    Numbers,
    Refusal,
    Routed,
    RouteDecision,
    Target,
    dialed_number,
)
from gateway.config.models import CallgateConfig
from gateway.sip.uri import hostport

NOT_FOUND = Refusal(404, "Not Found")
INCOMPLETE = Refusal(484, "Address Incomplete")
FORBIDDEN = Refusal(403, "Forbidden")
UNREGISTERED = Refusal(480, "Temporarily Unavailable")
TOO_MANY_HOPS = Refusal(483, "Too Many Hops")


class ContactLookup(Protocol):
    """The registrar, as the dial plan sees it."""

    def contacts(self, account: str) -> Sequence[tuple[str, str]]:
        """The account's registered contacts now, most preferred first: (URI, destination),
        the destination being where to send instead of the URI's host (a phone behind NAT:
        see gateway/sip/nat.py), or empty."""
        ...


@dataclass(frozen=True, slots=True)
class AccountRoute:
    """An account: its forwarding (with `always`, which only the dial plan uses) and the
    caller ID its calls present."""

    forwarding: Forwarding
    always: str = ""
    display: str = ""
    number: str = ""
    private: bool = False


@dataclass(frozen=True, slots=True)
class TrunkTarget:
    """Where calls to one outbound trunk go."""

    name: str
    host: str
    port: int | None = 5060
    """None: no port in the URI (a DNS name: its SRV records say)."""
    transport: str = "udp"
    channels: int | None = None
    trusted: bool = False

    def uri(self, user: str) -> str:
        return f"sip:{user}@{hostport(self.host, self.port, self.transport)}"


@dataclass(frozen=True, slots=True)
class RouteChoice:
    trunk: str
    priority: int = 0
    weight: int = 1


@dataclass(frozen=True, slots=True)
class PrefixRoute:
    prefix: str
    choices: tuple[RouteChoice, ...]
    transit: bool = False
    """Calls from trunks may take this route."""


@dataclass(frozen=True, slots=True)
class Regions:
    """Which region numbers are read in, by who placed the call."""

    default: str = "US"
    accounts: Mapping[str, str] | None = None
    trunks: Mapping[str, str] | None = None

    def of(self, request: CallRequest) -> str:
        if request.inbound_trunk and self.trunks:
            return self.trunks.get(request.inbound_trunk, self.default)
        if request.account and self.accounts:
            return self.accounts.get(request.account, self.default)
        return self.default


class DialPlan:
    """The `Router` built from `[calls]` and `[[trunks]]`."""

    def __init__(
        self,
        routes: Sequence[PrefixRoute],
        trunks: Mapping[str, TrunkTarget],
        *,
        regions: Regions | None = None,
        emergency_trunks: Sequence[str] = (),
        emergency_numbers: Sequence[str] = (),
        rng: random.Random | None = None,
        accounts: Mapping[str, AccountRoute] | None = None,
        contacts: ContactLookup | None = None,
        max_hops: int = 5,
        trusted_inbound: frozenset[str] = frozenset(),
        trunk_up: Callable[[str], bool] | None = None,
    ) -> None:
        self._trusted_inbound = trusted_inbound
        self._trunk_up = trunk_up
        """OPTIONS health: a trunk that is down leaves the routes (not the emergency route)."""
        self._accounts = accounts or {}
        self._contacts = contacts
        self._max_hops = max_hops
        self._routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self._trunks = trunks
        self._regions = regions or Regions()
        self._emergency_trunks = tuple(trunks[name] for name in emergency_trunks)
        self._emergency_numbers = frozenset(emergency_numbers)
        self._rng = rng or random.Random()  # noqa: S311 - load sharing, not secrecy

    @classmethod
    def from_config(
        cls,
        config: CallgateConfig,
        contacts: ContactLookup | None = None,
        rng: random.Random | None = None,
        trunk_up: Callable[[str], bool] | None = None,
    ) -> DialPlan:
        c = config.calls
        d = c.forward
        accounts = {
            a.name: AccountRoute(
                Forwarding(
                    a.name,
                    busy=_first(a.forward.busy, d.busy),
                    no_answer=_first(a.forward.no_answer, d.no_answer),
                    no_answer_after=a.forward.no_answer_after or d.no_answer_after,
                    unreachable=_first(a.forward.unreachable, d.unreachable),
                ),
                always=a.forward.always or "",
                display=a.caller_id.name or "",
                number=a.caller_id.number or "",
                private=a.caller_id.private,
            )
            for a in config.accounts
        }
        trunks = {
            t.name: TrunkTarget(t.name, t.host, t.uri_port, t.transport, t.channels, t.trusted)
            for t in config.trunks
            if t.host is not None
        }
        routes = [
            PrefixRoute(
                r.prefix,
                tuple(RouteChoice(t.trunk, t.priority, t.weight) for t in r.trunks),
                r.transit,
            )
            for r in c.routes
        ]
        regions = Regions(
            c.default_region,
            {a.name: a.region for a in config.accounts if a.region is not None},
            {t.name: t.region for t in config.trunks},
        )
        return cls(
            routes,
            trunks,
            regions=regions,
            emergency_trunks=c.emergency.trunks,
            emergency_numbers=c.emergency.numbers,
            rng=rng,
            accounts=accounts,
            contacts=contacts,
            max_hops=d.max_hops,
            trusted_inbound=frozenset(t.name for t in config.trunks if t.trusted),
            trunk_up=trunk_up,
        )

    def route(self, request: CallRequest) -> RouteDecision:
        decision = self._route(request)
        if isinstance(decision, Routed):
            return replace(decision, caller_id=self._caller_id(request, decision.numbers))
        return decision

    def _caller_id(self, request: CallRequest, numbers: Numbers) -> CallerId:
        """Who the caller is, from what we authenticated (see callerid.py)."""
        account = self._accounts.get(request.account) if request.account else None
        private = requests_privacy(request.privacy)
        if account is not None:
            number = account.number or numbers.caller_e164 or dialed_number(request.caller)
            uri = identity_uri(request.caller, number)
            return CallerId(uri, account.display or request.display, private or account.private)
        asserted = asserted_uri(request.asserted)
        if asserted and request.inbound_trunk in self._trusted_inbound:
            return CallerId(asserted, request.display, private)
        return CallerId(identity_uri(request.caller, numbers.caller_e164), request.display, private)

    def is_emergency(self, request: CallRequest) -> bool:
        """An emergency number for whoever dials it (the edge exempts these from shedding)."""
        dialed = request.dialed
        if dialed in self._emergency_numbers:
            return True
        return bool(dialed) and is_emergency(dialed, self._regions.of(request))

    def _route(self, request: CallRequest) -> RouteDecision:
        region = self._regions.of(request)
        dialed = request.dialed
        callee = normalise(dialed, region)
        numbers = Numbers(normalise(dialed_number(request.caller), region).e164, callee.e164)
        if not dialed:
            return Refusal(NOT_FOUND.status, NOT_FOUND.reason, numbers)
        if dialed in self._emergency_numbers or is_emergency(dialed, region):
            return self._emergency(dialed, callee, numbers)
        if request.hops > self._max_hops:
            return Refusal(TOO_MANY_HOPS.status, TOO_MANY_HOPS.reason, numbers)
        account = self._accounts.get(dialed)
        if account is not None:
            return self._to_account(request, account, numbers)
        route = self._match(dialed, callee)
        if route is None:
            refusal = INCOMPLETE if callee.kind is NumberKind.INCOMPLETE else NOT_FOUND
            return Refusal(refusal.status, refusal.reason, numbers)
        if request.inbound_trunk and not route.transit:
            return Refusal(FORBIDDEN.status, FORBIDDEN.reason, numbers)
        user = callee.e164 or dialed
        targets = tuple(
            Target(trunk.uri(user), trunk.name, trunk.channels, trunk.trusted)
            for trunk in self._ordered(route.choices)
            if self._trunk_up is None or self._trunk_up(trunk.name)
        )
        return Routed(targets, numbers)

    def _to_account(
        self, request: CallRequest, account: AccountRoute, numbers: Numbers
    ) -> RouteDecision:
        forwarding = account.forwarding
        if account.always:
            return self.forward(request, account.always, forwarding.account)
        contacts = self._contacts.contacts(forwarding.account) if self._contacts else ()
        if not contacts:
            if forwarding.unreachable:
                return self.forward(request, forwarding.unreachable, forwarding.account)
            return Refusal(UNREGISTERED.status, UNREGISTERED.reason, numbers)
        targets = tuple(Target(uri, destination=where) for uri, where in contacts)
        return Routed(targets, numbers, fork=True, forwarding=forwarding, hops=request.hops)

    def forward(self, request: CallRequest, target: str, account: str) -> RouteDecision:
        """Route `target` as dialled by the forwarding `account`, one hop further."""
        forwarded = self.route(
            CallRequest(target, request.caller, account=account, hops=request.hops + 1)
        )
        if isinstance(forwarded, Routed):
            forwarded = replace(forwarded, hops=request.hops + 1)
        return forwarded

    def _emergency(self, dialed: str, callee: Number, numbers: Numbers) -> RouteDecision:
        # Emergency calls keep the short code as dialled and ignore channel limits.
        trunks = self._emergency_trunks
        if not trunks:
            route = self._match(dialed, callee)
            if route is None:
                return Refusal(NOT_FOUND.status, NOT_FOUND.reason, numbers)
            trunks = tuple(self._trunks[c.trunk] for c in sorted(route.choices, key=_priority))
        targets = tuple(Target(t.uri(dialed), t.name, trusted=t.trusted) for t in trunks)
        return Routed(targets, numbers, emergency=True)

    def _match(self, dialed: str, callee: Number) -> PrefixRoute | None:
        for route in self._routes:  # longest prefix first
            if route.prefix.startswith("+"):
                if callee.e164.startswith(route.prefix) and callee.e164:
                    return route
            elif dialed.startswith(route.prefix):
                return route
        return None

    def _ordered(self, choices: Sequence[RouteChoice]) -> list[TrunkTarget]:
        ordered: list[TrunkTarget] = []
        for _, group in groupby(sorted(choices, key=_priority), key=_priority):
            pool = list(group)
            while pool:
                pick = self._rng.choices(range(len(pool)), [c.weight for c in pool])[0]
                ordered.append(self._trunks[pool.pop(pick).trunk])
        return ordered


def _priority(choice: RouteChoice) -> int:
    return choice.priority


def _first(own: str | None, default: str | None) -> str:
    return own if own is not None else (default or "")
