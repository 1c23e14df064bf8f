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

        self.sip_dropped = Counter(
            "callgate_sip_dropped",
            "SIP packets/messages dropped by reason",
            ["reason"],
            registry=r,
        )
        self.sip_forwarded = Counter(
            "callgate_sip_forwarded",
            "SIP requests forwarded (in: to the engine, out: public)",
            ["direction"],
            registry=r,
        )
        self.sip_retransmissions = Counter(
            "callgate_sip_retransmissions_answered",
            "Retransmitted REGISTERs answered again from the answers kept for Timer J",
            registry=r,
        )
        self.sip_auth_failures = Counter(
            "callgate_sip_auth_failures", "Digest authentication failures", registry=r
        )
        self.sip_lockouts = Counter(
            "callgate_sip_lockouts", "Sources locked out after repeated auth failures", registry=r
        )
        self.sip_bindings = Gauge(
            "callgate_sip_bindings", "Registered contacts (bindings)", registry=r
        )
        self.trunk_registered = Gauge(
            "callgate_trunk_registered",
            "1 while our registration at the trunk holds",
            ["trunk"],
            registry=r,
        )
        self.trunk_up = Gauge(
            "callgate_trunk_up",
            "1 while the trunk answers OPTIONS health checks",
            ["trunk"],
            registry=r,
        )

        self.calls_rejected = Counter(
            "callgate_calls_rejected",
            "New calls refused by overload control",
            ["reason"],
            registry=r,
        )
        self.calls_finished = Counter(
            "callgate_calls_finished",
            "Finished calls by disposition",
            ["disposition"],
            registry=r,
        )
        self.cdr_dropped = Counter(
            "callgate_cdr_dropped",
            "CDR changes dropped because the store fell too far behind ([cdr] max_pending)",
            registry=r,
        )
        self.loop_lag = Gauge(
            "callgate_loop_lag_seconds", "Event-loop lag, last measurement", registry=r
        )
        self.engine_intake_delay = Gauge(
            "callgate_engine_intake_delay_seconds",
            "Age of the oldest INVITE passed to the engine and not yet taken up",
            registry=r,
        )

        self.sms_mo_deliveries = Counter(
            "callgate_sms_mo_deliveries",
            "MO delivery attempts by channel and result (delivered, retry, failed)",
            ["channel", "result"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
