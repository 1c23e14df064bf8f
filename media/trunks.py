"""Outbound trunks inside the engine: one pjsua Account per trunk, routed through the edge.

Runs on the engine thread only (media/engine.py calls it there). Each
outbound trunk gets its own Account so its legs answer the trunk's digest
challenges with the trunk's credentials and, where configured, keep a
registration at the trunk. Every account, the engine's own included, sends
its out-of-dialog requests to the edge's internal interface (a loose Route),
so B-legs and REGISTERs leave from the edge's public address: one address
for the trunks' ACLs, one place that sees all signalling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.logs import get_logger
from gateway.sip.uri import hostport
from media.rtp_ports import PortSlice

_log = get_logger("engine.trunks")


@dataclass(frozen=True, slots=True)
class EdgeRoute:
    """How the engine's requests reach the outside: through the edge."""

    proxy: str
    """Loose-routing URI of the edge's internal interface (a `Route` the edge consumes)."""
    contact: str
    """Contact for trunk accounts: the edge's public address, the only one peers can reach."""


@dataclass(frozen=True, slots=True)
class TrunkAccountSettings:
    """What the engine needs to know about one outbound trunk (free of pydantic)."""

    name: str
    host: str
    port: int | None
    transport: str
    username: str | None = None
    password: str | None = None
    registration: bool = False
    registration_expires: int = 600

    def registrar_uri(self) -> str:
        return f"sip:{hostport(self.host, self.port, self.transport)}"


@dataclass(frozen=True, slots=True)
class TrunkRegistration:
    """A trunk registration changed state (refreshed, failed, removed)."""

    trunk: str
    at: float
    status: int
    """Last SIP status of the REGISTER transaction (0: no response, e.g. a timeout)."""
    reason: str
    expires: int
    """Seconds the binding lasts; 0 when not registered."""

    @property
    def registered(self) -> bool:
        return 200 <= self.status < 300 and self.expires > 0


class UnknownTrunk(Exception):
    """A callee leg names a trunk that has no account here: the leg fails with 503."""

    status = 503
    reason = "Trunk not configured"


class TrunkAccounts:
    """The trunks' pjsua Accounts, rebuilt only where their settings change."""

    def __init__(
        self,
        pj: Any,
        account_class: Any,
        base_config: Callable[[], Any],
        on_registration: Callable[[TrunkRegistration], None],
    ) -> None:
        self._pj = pj
        self._base_config = base_config
        self._on_registration = on_registration
        self._class = _trunk_account_class(account_class, self)
        self._accounts: dict[str, tuple[TrunkAccountSettings, PortSlice, Any]] = {}
        self._edge: EdgeRoute | None = None

    def apply(
        self,
        edge: EdgeRoute,
        trunks: Sequence[TrunkAccountSettings],
        ports: Mapping[str, PortSlice],
    ) -> None:
        """Create, replace or remove accounts so they match `trunks`, with RTP `ports`.

        Calls already placed through a replaced account keep their dialog (pjsua
        keeps it); only new legs use the new account. An account whose only
        change is its port slice is modified in place (a trunk added elsewhere
        must not make the others register again).
        """
        wanted = {t.name: t for t in trunks}
        edge_changed = edge != self._edge
        self._edge = edge
        for name in [n for n in self._accounts if n not in wanted]:
            self._remove(name)
        for name, settings in wanted.items():
            ports_of = ports[name]
            current = self._current(name)
            if current is not None and not edge_changed and current[0] == settings:
                if current[1] != ports_of:
                    account = self._accounts[name][2]
                    account.modify(self._config(settings, edge, ports_of))
                    self._accounts[name] = (settings, ports_of, account)
                    del account  # no reference may outlive a later `_remove`
                continue
            if current is not None:
                self._remove(name)
            account = self._class(name)
            account.create(self._config(settings, edge, ports_of), False)
            self._accounts[name] = (settings, ports_of, account)
            _log.info(
                "trunk_account_ready",
                trunk=name,
                auth=settings.username is not None,
                registration=settings.registration,
            )

    def _current(self, name: str) -> tuple[TrunkAccountSettings, PortSlice] | None:
        # Returns no account: a reference held past `_remove` would outlive its pjsua id.
        entry = self._accounts.get(name)
        return (entry[0], entry[1]) if entry is not None else None

    def account_for(self, name: str) -> Any:
        entry = self._accounts.get(name)
        if entry is None:
            raise UnknownTrunk(name)
        return entry[2]

    def registration_changed(self, name: str, prm: Any) -> None:
        status = int(prm.code)
        expires = max(int(prm.expiration), 0) if 200 <= status < 300 else 0
        self._on_registration(
            TrunkRegistration(name, time.time(), status, str(prm.reason), expires)
        )

    def close(self) -> None:
        """Shut every account down now (before libDestroy, on the engine thread)."""
        for name in list(self._accounts):
            self._remove(name)

    def _remove(self, name: str) -> None:
        """Shut the account down and drop the last reference to it now.

        A pjsua2 Account's destructor shuts down whatever account holds its
        pjsua id by then; pjsua reuses ids at once, so an Account object that
        outlived this call would delete the trunk account created next.
        """
        _settings, _ports, account = self._accounts.pop(name)
        account.trunk = None
        try:
            account.shutdown()
        except Exception as exc:  # noqa: BLE001 - going away anyway
            _log.debug("trunk_account_shutdown_failed", trunk=name, error=str(exc))
        del account

    def _config(self, trunk: TrunkAccountSettings, edge: EdgeRoute, ports: PortSlice) -> Any:
        pj = self._pj
        cfg = self._base_config()
        use_ports(cfg, ports)
        user = trunk.username or "callgate"
        cfg.idUri = f"sip:{user}@{hostport(trunk.host, None)}"
        route_through_edge(cfg, edge)
        cfg.sipConfig.contactForced = edge.contact.replace("sip:", f"sip:{user}@", 1)
        if trunk.username is not None and trunk.password is not None:
            cred = pj.AuthCredInfo("digest", "*", trunk.username, 0, trunk.password)
            cfg.sipConfig.authCreds.append(cred)
        cfg.regConfig.registrarUri = trunk.registrar_uri() if trunk.registration else ""
        cfg.regConfig.registerOnAdd = trunk.registration
        cfg.regConfig.timeoutSec = trunk.registration_expires
        return cfg


def use_ports(cfg: Any, ports: PortSlice) -> None:
    """Give an AccountConfig's media its own RTP port slice (media/rtp_ports.py)."""
    cfg.mediaConfig.transportConfig.port = ports.start
    cfg.mediaConfig.transportConfig.portRange = ports.rtp_range


def route_through_edge(cfg: Any, edge: EdgeRoute) -> None:
    """Send `cfg`'s account requests to the edge and never rewrite what the edge presents."""
    cfg.sipConfig.proxies.clear()
    cfg.sipConfig.proxies.append(edge.proxy)
    # The edge stamps received/rport; pjsua must not "fix" its Contact or Via from them.
    cfg.natConfig.contactRewriteUse = 0
    cfg.natConfig.viaRewriteUse = 0
    cfg.natConfig.sdpNatRewriteUse = 0
    cfg.natConfig.sipOutboundUse = 0


def _trunk_account_class(account_class: Any, accounts: TrunkAccounts) -> Any:
    """The engine's account class plus a registration callback that reports, wrapped."""

    class TrunkAccount(account_class):  # type: ignore[misc]
        def __init__(self, trunk: str) -> None:
            super().__init__()
            self.trunk: str | None = trunk

        def onRegState(self, prm: Any) -> None:
            if self.trunk is None:  # removed
                return
            try:
                accounts.registration_changed(self.trunk, prm)
            except Exception as exc:  # noqa: BLE001 - a report must not kill the engine thread
                _log.error("trunk_registration_report_failed", trunk=self.trunk, error=str(exc))

    return TrunkAccount
