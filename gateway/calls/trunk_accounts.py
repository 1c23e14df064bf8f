"""From `[[trunks]]` to the engine's trunk accounts, and what their registrations report.

The engine (media/trunks.py) knows nothing of configuration or metrics:
this module turns trunk settings and the running edge into its plain
settings, and turns its registration events into a log line and a gauge.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.accounts import TrunkConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.sip.edge import SipEdge
from gateway.sip.uri import hostport
from media.trunks import EdgeRoute, TrunkAccountSettings, TrunkRegistration

_log = get_logger("calls.trunks")


def edge_route(edge: SipEdge) -> EdgeRoute:
    """The engine's way out: Route to the edge's internal side, Contact on its public side."""
    public = edge.public_interface("udp")
    return EdgeRoute(
        proxy=edge.internal_interface.uri("engine").strip("<>"),
        contact=f"sip:{hostport(public.host, public.port, public.transport)}",
    )


def trunk_accounts(trunks: Sequence[TrunkConfig]) -> tuple[TrunkAccountSettings, ...]:
    """Settings for every outbound trunk (those with a `host`); reads their passwords now.

    Raises SecretUnavailableError when a password cannot be read.
    """
    return tuple(
        TrunkAccountSettings(
            name=t.name,
            host=t.host,
            port=t.uri_port,
            transport=t.transport,
            username=t.username,
            password=t.password.reveal().get_secret_value() if t.password is not None else None,
            registration=t.registration,
            registration_expires=t.registration_expires,
        )
        for t in trunks
        if t.host is not None
    )


class RegistrationReporter:
    """Logs each registration change and keeps `callgate_trunk_registered` current."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, event: TrunkRegistration) -> None:
        self._metrics.trunk_registered.labels(trunk=event.trunk).set(1 if event.registered else 0)
        log = _log.info if event.registered else _log.warning
        log(
            "trunk_registration",
            trunk=event.trunk,
            registered=event.registered,
            status=event.status,
            reason=event.reason,
            expires=event.expires,
        )
