"""The asyncio adapter of trunk health: OPTIONS through the edge, one re-armed timer.

Probes leave through the edge's public side (`SipEdge.originate`), not a
socket of their own: the trunk sees the same source address as our calls
(its ACL admits both or neither), TCP/TLS trunks are probed over the
connections calls use, and no extra port has to be opened in a firewall.
Responses come back by their LOCAL_BRANCH Via. What a response or a
timeout means is decided by the pure core in trunk_health.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence

from gateway.calls.trunk_health import Health, HealthChange, HealthCheck, TrunkHealth
from gateway.config.accounts import TrunkConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.sip.edge import SipEdge
from gateway.sip.headers import Headers
from gateway.sip.message import SipRequest, SipResponse, cseq, vias
from gateway.sip.proxy import LOCAL_BRANCH, Hop, Interface, hop_to
from gateway.sip.uri import hostport

_log = get_logger("calls.trunk_health")


def health_checks(trunks: Sequence[TrunkConfig]) -> dict[str, HealthCheck]:
    """The probed trunks: outbound ones with `options_interval` > 0."""
    return {
        t.name: HealthCheck(
            t.options_interval, t.options_timeout, t.options_down_after, t.options_up_after
        )
        for t in trunks
        if t.host is not None and t.options_interval > 0
    }


def options_request(
    hop: Hop, via: Interface, branch: str, call_id: str, user_agent: str
) -> SipRequest:
    """An out-of-dialog OPTIONS to the trunk at `hop`, sent by the edge itself."""
    uri = f"sip:{hostport(hop.host, None if hop.srv else hop.port, hop.transport)}"
    own = hostport(via.host, None)
    headers = Headers(
        (
            ("Via", via.via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:callgate@{own}>;tag={branch[-12:]}"),
            ("To", f"<{uri}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 OPTIONS"),
            ("User-Agent", user_agent),
            ("Accept", "application/sdp"),
            ("Content-Length", "0"),
        )
    )
    return SipRequest("OPTIONS", uri, headers)


class TrunkProber:
    """Sends each due probe, feeds responses and timeouts to `TrunkHealth`, reports changes."""

    def __init__(
        self,
        edge: SipEdge,
        metrics: Metrics,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.health = TrunkHealth()
        self._edge = edge
        self._metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._clock = clock or self._loop.time
        self._hops: dict[str, Hop] = {}
        self._probed: set[str] = set()
        self._outstanding: dict[str, str] = {}  # branch -> trunk, the latest probe per trunk
        self._timer: asyncio.TimerHandle | None = None
        edge.local_responses = self.on_response

    def configure(self, trunks: Sequence[TrunkConfig]) -> None:
        """Probe the outbound trunks with checks enabled (start and reload)."""
        checks = health_checks(trunks)
        self._hops = {
            t.name: hop_to(t.transport, t.host, t.uri_port)
            for t in trunks
            if t.name in checks and t.host is not None
        }
        self.health.configure(checks, self._clock())
        for name in self._probed - checks.keys():
            self._metrics.trunk_up.remove(name)  # no stale "down" for a removed trunk
        self._probed = set(checks)
        for name in checks:
            self._metrics.trunk_up.labels(trunk=name).set(1 if self.health.is_up(name) else 0)
        self._outstanding = {b: n for b, n in self._outstanding.items() if n in checks}
        self._tick()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._edge.local_responses = None

    def on_response(self, response: SipResponse) -> None:
        if response.status < 200 or cseq(response)[1] != "OPTIONS":
            return
        name = self._outstanding.pop(vias(response)[0].branch or "", None)
        if name is None:
            return  # late (already counted as failed) or not ours
        change = self.health.answered(name, response.status, self._clock())
        if change is not None:
            self._report(change)

    def _tick(self) -> None:
        now = self._clock()
        for change in self.health.expire(now):
            self._report(change)
        for name in self.health.due(now):
            self._probe(name)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.health.next_deadline()
        if deadline is not None:
            # The timer runs on the loop's clock; the core's times are on `clock`.
            delay = max(deadline - self._clock(), 0.0)
            self._timer = self._loop.call_later(delay, self._tick)

    def _probe(self, name: str) -> None:
        hop = self._hops[name]
        branch = LOCAL_BRANCH + os.urandom(10).hex()
        self._outstanding = {b: n for b, n in self._outstanding.items() if n != name}
        self._outstanding[branch] = name
        request = options_request(
            hop,
            self._edge.public_interface(hop.transport),
            branch,
            f"{os.urandom(12).hex()}@callgate",
            self._edge.config.server_header,
        )
        self._edge.originate(request, hop)

    def _report(self, change: HealthChange) -> None:
        up = change.health is Health.UP
        self._metrics.trunk_up.labels(trunk=change.trunk).set(1 if up else 0)
        log = _log.info if up else _log.warning
        log("trunk_health", trunk=change.trunk, health=str(change.health))
