"""Prometheus metrics of one daemon, in its own registry (no module singletons)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    """Every metric the daemon exports; components receive this object."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.config_reloads = Counter(
            "callgate_config_reloads", "Configuration reloads by result", ["result"], registry=r
        )
        self.engine_up = Gauge("callgate_engine_up", "1 while the PJSIP engine beats", registry=r)
        self.store_up = Gauge("callgate_store_up", "1 while the store answers", registry=r)
        self.sip_requests = Counter(
            "callgate_sip_requests", "SIP requests received by method", ["method"], registry=r
        )
        self.sip_responses_sent = Counter(
            "callgate_sip_responses_sent",
            "SIP responses sent by the edge",
            ["status"],
            registry=r,
        )
        self.sip_bad_messages = Counter(
            "callgate_sip_bad_messages",
            "Malformed SIP messages by transport",
            ["transport"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
