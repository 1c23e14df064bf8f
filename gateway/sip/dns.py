"""Where a SIP URI with a DNS name goes: RFC 3263 §4.2 without NAPTR.

A name with an explicit port is looked up as A/AAAA; a name without one as
SRV (`_sip._udp`, `_sip._tcp`, `_sips._tcp`), falling back to A/AAAA on port
5060/5061 when it has no SRV records. Answers are cached for their TTL
(bounded by `max_ttl`), failures for a short while, so a burst of calls to
one carrier asks the DNS once. SRV targets are ordered per RFC 2782
(priority, then weighted random); the edge is stateless and sends to the
first, so failing over between a name's targets is left to the next
attempt (the trunk's OPTIONS checks and the dial plan's trunk failover).

`order_srv` is pure; `SipResolver` is the thin adapter on dnspython.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from gateway.config.base import nameserver_address
from gateway.logs import get_logger
from gateway.sip.proxy import DEFAULT_PORTS
from gateway.sip.uri import is_ip_literal

_log = get_logger("sip.dns")

Target = tuple[str, int]

_SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
_FAILURE_TTL = 5.0
"""Seconds a failed lookup is remembered: retransmissions do not each ask again."""


class DnsFailure(Exception):
    """The name has no usable address (NXDOMAIN, no records, or no answer in time)."""


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


def order_srv(records: Sequence[Srv], rand: Callable[[], float] = random.random) -> list[Srv]:
    """RFC 2782: lowest priority first; within one priority, weighted random order
    (weight-0 records last)."""
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        pool = [r for r in records if r.priority == priority and r.weight > 0]
        while pool:
            pick = rand() * sum(r.weight for r in pool)
            index = 0
            for index, record in enumerate(pool):  # noqa: B007 - the index is the choice
                pick -= record.weight
                if pick < 0:
                    break
            ordered.append(pool.pop(index))
        ordered.extend(r for r in records if r.priority == priority and r.weight == 0)
    return ordered


class SipResolver:
    """Cached RFC 3263 lookups for the edge (`nameservers`: "ip" or "ip:port"; empty:
    the system's /etc/resolv.conf)."""

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        timeout: float = 2.0,
        max_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._max_ttl = max_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._resolver = _resolver(nameservers, timeout)
        # Oldest first; an OrderedDict, as a dict emptied from the front walks freed slots.
        self._cache: OrderedDict[tuple[str, str, int | None], tuple[float, list[Target]]] = (
            OrderedDict()
        )
        self._pending: dict[tuple[str, str, int | None], asyncio.Future[list[Target]]] = {}

    def cached(self, host: str, transport: str, port: int | None) -> list[Target] | None:
        """The cached answer, if fresh (raises DnsFailure for a fresh failure)."""
        entry = self._cache.get((host.lower(), transport, port))
        if entry is None or entry[0] <= self._clock():
            return None
        if not entry[1]:
            raise DnsFailure(host)
        return entry[1]

    async def resolve(self, host: str, transport: str, port: int | None) -> list[Target]:
        """Addresses for `host` in the order to try; raises DnsFailure."""
        known = self.cached(host, transport, port)
        if known is not None:
            return known
        key = (host.lower(), transport, port)
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(*key))
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _lookup(self, host: str, transport: str, port: int | None) -> list[Target]:
        key = (host, transport, port)
        try:
            targets, ttl = await self._targets(host, transport, port)
        except DnsFailure:
            self._remember(key, _FAILURE_TTL, [])
            _log.warning("sip_dns_failed", host=host, transport=transport)
            raise
        self._remember(key, min(ttl, self._max_ttl), targets)
        return targets

    def _remember(
        self, key: tuple[str, str, int | None], ttl: float, targets: list[Target]
    ) -> None:
        """Cache an answer; names come from peers' Contacts too, so the cache is bounded:
        expired entries go first, then the oldest."""
        cache = self._cache
        cache.pop(key, None)  # re-inserted last: the oldest entries stay first
        if len(cache) >= self._max_entries:
            now = self._clock()
            for stale in [k for k, (until, _) in cache.items() if until <= now]:
                del cache[stale]
            while len(cache) >= self._max_entries:
                cache.popitem(last=False)
        cache[key] = (self._clock() + ttl, targets)

    async def _targets(
        self, host: str, transport: str, port: int | None
    ) -> tuple[list[Target], float]:
        if port is not None:
            addresses, ttl = await self._addresses(host)
            return [(a, port) for a in addresses], ttl
        try:
            answer = await self._resolver.resolve(f"{_SRV_PREFIX[transport]}.{host}", "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            addresses, ttl = await self._addresses(host)
            return [(a, DEFAULT_PORTS[transport]) for a in addresses], ttl
        except dns.exception.DNSException as exc:
            raise DnsFailure(f"{host}: {exc}") from exc
        records = [
            Srv(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
            for r in answer
            if r.target.to_text() != "."
        ]
        targets: list[Target] = []
        ttl = float(answer.rrset.ttl if answer.rrset is not None else 0)
        for record in order_srv(records):
            try:
                addresses, address_ttl = await self._addresses(record.target)
            except DnsFailure:
                continue
            ttl = min(ttl, address_ttl)
            targets.extend((a, record.port) for a in addresses)
        if not targets:
            raise DnsFailure(f"{host}: no SRV target resolves")
        return targets, ttl

    async def _addresses(self, host: str) -> tuple[list[str], float]:
        if is_ip_literal(host):
            return [host.strip("[]")], self._max_ttl
        found: list[str] = []
        ttl = self._max_ttl
        for kind in ("A", "AAAA"):
            try:
                answer = await self._resolver.resolve(host, kind)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise DnsFailure(f"{host}: {exc}") from exc
            found.extend(r.address for r in answer)
            if answer.rrset is not None:
                ttl = min(ttl, float(answer.rrset.ttl))
        if not found:
            raise DnsFailure(f"{host}: no address")
        return found, ttl


def _resolver(nameservers: Sequence[str], timeout: float) -> dns.asyncresolver.Resolver:
    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        servers = [a for a in map(nameserver_address, nameservers) if a is not None]
        resolver.nameservers = [host for host, _ in servers]
        resolver.nameserver_ports = dict(servers)
    resolver.lifetime = timeout
    return resolver
