"""Who is calling: accounts (digest credentials) and trunks (source networks).

Built from configuration at start and on every reload; lookups are pure.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.accounts import AccountConfig, TrunkConfig
from gateway.config.secrets import SecretUnavailableError

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


class DirectoryError(Exception):
    """An account's HA1 secret cannot be read or parsed; names the account."""


def format_ha1(username: str, realm: str, password: str) -> str:
    """The HA1 lines for an account's secret file (`callgate account hash`)."""
    lines = []
    for name, algorithm in _ALGORITHMS.items():
        digest = algorithm(f"{username}:{realm}:{password}".encode()).hexdigest()
        lines.append(f"{name}:{digest}")
    return "\n".join(lines) + "\n"


def parse_ha1(text: str, account: str) -> dict[str, str]:
    """`MD5:<hex>` / `SHA-256:<hex>` lines -> {algorithm: hex}."""
    hashes: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        algorithm = _ALGORITHMS.get(name.strip().upper().replace("SHA256", "SHA-256"))
        expected = algorithm().digest_size * 2 if algorithm else 0
        value = value.strip().lower()
        if (
            not sep
            or algorithm is None
            or len(value) != expected
            or any(c not in "0123456789abcdef" for c in value)
        ):
            raise DirectoryError(
                f"account {account}: HA1 line {number} is not `MD5:<32 hex>` or "
                "`SHA-256:<64 hex>`; create it with `callgate account hash`"
            )
        hashes[name.strip().upper().replace("SHA256", "SHA-256")] = value
    if not hashes:
        raise DirectoryError(f"account {account}: HA1 secret holds no hash")
    return hashes


@dataclass(frozen=True)
class Account:
    name: str
    ha1: Mapping[str, str]
    max_contacts: int | None


_CACHED_SOURCES = 65_536


class Directory:
    """Accounts by name and trunks by source network."""

    def __init__(
        self,
        accounts: Mapping[str, Account],
        trunks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]],
        trunk_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self.accounts = accounts
        # Longest prefix first, so a narrower network wins.
        self._trunks = sorted(trunks, key=lambda item: item[0].prefixlen, reverse=True)
        self._trunk_hosts = trunk_hosts
        self._by_ip: dict[str, str | None] = {}  # trunk_for() runs for every packet

    @classmethod
    def from_config(
        cls, accounts: tuple[AccountConfig, ...], trunks: tuple[TrunkConfig, ...]
    ) -> Directory:
        loaded: dict[str, Account] = {}
        for account in accounts:
            if account.ha1 is None:
                continue
            try:
                secret = account.ha1.reveal().get_secret_value()
            except SecretUnavailableError as exc:
                raise DirectoryError(f"account {account.name}: {exc}") from None
            loaded[account.name] = Account(
                account.name, parse_ha1(secret, account.name), account.max_contacts
            )
        networks = [
            (ipaddress.ip_network(net, strict=False), trunk.name)
            for trunk in trunks
            for net in trunk.allow
        ]
        hosts = set()
        for trunk in trunks:
            if trunk.host is not None:
                # A DNS name is skipped: its addresses cannot be listed here.
                with contextlib.suppress(ValueError):
                    hosts.add(str(ipaddress.ip_address(trunk.host)))
        return cls(loaded, networks, frozenset(hosts))

    def credentials(self, username: str, _realm: str) -> Mapping[str, str] | None:
        """HA1 hashes by algorithm for the digest authenticator."""
        account = self.accounts.get(username)
        return account.ha1 if account is not None else None

    def trunk_for(self, source_ip: str) -> str | None:
        """The trunk whose allow-list holds this source address, if any."""
        cache = self._by_ip
        if source_ip in cache:
            return cache[source_ip]
        if len(cache) >= _CACHED_SOURCES:
            cache.clear()  # bounded: a spray of sources cannot grow it
        name = cache[source_ip] = self._lookup_trunk(source_ip)
        return name

    def trusted(self, source_ip: str) -> bool:
        """A trunk's address (inbound allow-list or outbound host): exempt from the
        per-source packet limit, which is sized for single phones, not carriers."""
        return source_ip in self._trunk_hosts or self.trunk_for(source_ip) is not None

    def _lookup_trunk(self, source_ip: str) -> str | None:
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return None
        for network, name in self._trunks:
            if address in network:
                return name
        return None
