"""Where a call goes: the Router interface and a static prefix table.

A router answers with a `Target` (a SIP URI for the callee leg) or a
`Refusal` (the status the caller gets). It is policy, called by the call
registry; it never talks to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.sip.errors import SipParseError
from gateway.sip.uri import SipUri


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What a router may look at."""

    dialed: str
    """The user part of the Request-URI (the number the caller dialled)."""
    caller: str
    """The caller's From URI."""
    account: str = ""
    """The account the caller authenticated as (empty when it came from a trunk)."""
    inbound_trunk: str = ""
    """The trunk the call came in from (empty when an account placed it)."""


@dataclass(frozen=True, slots=True)
class Target:
    uri: str
    trunk: str = ""
    """The outbound trunk the leg goes through (empty: none)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str


RouteDecision = Target | Refusal


class Router(Protocol):
    def route(self, request: CallRequest) -> RouteDecision: ...


@dataclass(frozen=True, slots=True)
class PrefixRoute:
    """Numbers starting with `prefix` go to `sip:{number}@{host}:{port}`."""

    prefix: str
    host: str
    port: int
    transport: str = "udp"
    trunk: str = ""
    """The outbound trunk whose account places the leg (empty: none)."""


@dataclass(frozen=True, slots=True)
class StaticRoutes:
    """A config-like table: the longest matching prefix wins; no match is `unknown`."""

    routes: tuple[PrefixRoute, ...]
    unknown: Refusal = Refusal(404, "Not Found")


class StaticRouter:
    """Longest-prefix match over `StaticRoutes`."""

    def __init__(self, table: StaticRoutes) -> None:
        self.table = table
        self._by_length = sorted(table.routes, key=lambda r: len(r.prefix), reverse=True)

    def route(self, request: CallRequest) -> RouteDecision:
        number = request.dialed
        if not number:
            return self.table.unknown
        for route in self._by_length:
            if number.startswith(route.prefix):
                host = f"[{route.host}]" if ":" in route.host else route.host
                params = "" if route.transport == "udp" else f";transport={route.transport}"
                return Target(f"sip:{number}@{host}:{route.port}{params}", route.trunk)
        return self.table.unknown


def dialed_number(request_uri: str) -> str:
    """The user part of a sip:/sips:/tel: Request-URI; empty when there is none."""
    try:
        return SipUri.parse(request_uri).user or ""
    except SipParseError:
        return ""
