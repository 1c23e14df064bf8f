"""Daemon lifecycle: start-up, SIGHUP reload, SIGTERM drain, systemd notify."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from gateway.calls.control import CallControl
from gateway.calls.dialplan import DialPlan
from gateway.calls.overload import CallAdmission, EngineIntake, OverloadLimits, OverloadPolicy
from gateway.calls.registry import CallSettings
from gateway.calls.routing import CallRequest, dialed_number
from gateway.calls.transfer import transfer_permission
from gateway.calls.trunk_accounts import RegistrationReporter, edge_route, trunk_accounts
from gateway.calls.trunk_health import TrunkHealth
from gateway.calls.trunk_probe import TrunkProber
from gateway.collector import settle_collector
from gateway.config.loader import ConfigError, load_config
from gateway.config.models import CallgateConfig
from gateway.config.secrets import SecretUnavailableError
from gateway.http import AdminHttp
from gateway.logs import configure_logging, get_logger
from gateway.metrics import Metrics
from gateway.realtime import RealtimeRefused, enter_realtime
from gateway.reload import merge_reload
from gateway.sdnotify import SystemdNotifier
from gateway.sip.admission import AuthenticatedOnly
from gateway.sip.directory import Directory, DirectoryError
from gateway.sip.edge import SipEdge
from gateway.sip.nat import destination
from gateway.sip.registrar import Binding, RegisterResult, Registrar
from gateway.sms_api import SmsApi
from gateway.store.bindings import BindingStore, BindingWriter
from gateway.store.cdrs import CdrStore, CdrWriter
from gateway.store.database import Store, StoreError
from media.engine import EngineError, EngineSettings
from media.engine_process import EngineProcess
from media.session_timer import SessionTimer
from smpp.mo_delivery import MoChannel
from smpp.mo_email import EmailChannel
from smpp.mo_webhook import WebhookChannel
from smpp.mo_worker import MoDeliveryWorker
from smpp.server import SmppServer
from smpp.service import SmsService

_log = get_logger("daemon")


class StartupError(Exception):
    """Start-up cannot continue; the message tells the admin what to fix."""


def engine_settings(config: CallgateConfig) -> EngineSettings:
    m = config.media
    return EngineSettings(
        host=m.engine_host,
        port=m.engine_port,
        max_calls=m.max_calls,
        media_threads=m.media_threads,
        rtp_port_start=m.rtp_port_start,
        rtp_port_range=m.rtp_port_range,
        codecs=m.codecs,
        log_level=m.log_level,
        receive_buffer=config.sip.udp_receive_buffer,
        session_timer=SessionTimer(m.session_timer, m.session_expires, m.session_min_se),
        realtime_priority=config.daemon.realtime_priority,
    )


_LAG_PROBE = 0.05  # seconds between event-loop lag measurements

_NO_ANSWER_REASONS = {
    408: "Request Timeout",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    603: "Decline",
}


def overload_limits(config: CallgateConfig) -> OverloadLimits:
    c = config.calls
    return OverloadLimits(
        max_new_per_second=c.max_new_per_second,
        burst=c.max_new_burst,
        max_concurrent=c.max_concurrent,
        max_loop_lag=c.max_loop_lag,
        retry_after=c.overload_retry_after,
        max_engine_delay=c.max_engine_delay,
        max_receive_delay=c.max_receive_delay,
    )


def call_settings(config: CallgateConfig) -> CallSettings:
    c = config.calls
    return CallSettings(
        no_answer_timeout=c.no_answer_timeout,
        no_answer_status=c.no_answer_status,
        no_answer_reason=_NO_ANSWER_REASONS.get(c.no_answer_status, "No Answer"),
        attempt_timeout=c.attempt_timeout,
        records_kept=c.records_kept,
    )


class RegisteredContacts:
    """The dial plan's view of the edge's registrar (set once the edge exists)."""

    def __init__(self) -> None:
        self.registrar: Registrar | None = None

    def contacts(self, account: str) -> list[tuple[str, str]]:
        if self.registrar is None:
            return []
        return [
            (b.contact_uri, destination(b.received, b.contact_uri))
            for b in self.registrar.lookup_user(account, time.time())
        ]


class Daemon:
    """One Callgate node: owns every component and their order of start and stop."""

    def __init__(self, config: CallgateConfig, config_path: Path | None) -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = Metrics()
        self.notifier = SystemdNotifier()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[bool]] = set()
        self.store: Store | None = None
        self.engine: EngineProcess | None = None
        self.edge: SipEdge | None = None
        self.http: AdminHttp | None = None
        self.binding_writer: BindingWriter | None = None
        self.cdr_writer: CdrWriter | None = None
        self.sms: SmsService | None = None
        self.mo_delivery: MoDeliveryWorker | None = None
        self._mo_webhook: WebhookChannel | None = None
        self.calls: CallControl | None = None
        self.trunk_prober: TrunkProber | None = None
        self.smpp_server: SmppServer | None = None
        self.smpp_port = 0
        self.loop_lag = 0.0
        self.intake = EngineIntake()
        self.contacts = RegisteredContacts()
        self.dial_plan = DialPlan([], {})
        self._transfer_permission = transfer_permission(config)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code."""
        configure_logging(self.config.logging)
        try:
            await self._start()
        except BaseException:
            # Whatever stopped start-up, stop the engine and close the store.
            await self._shutdown()
            raise
        thresholds = self.config.daemon.gc_thresholds
        frozen = settle_collector(thresholds)
        _log.info("collector_settled", thresholds=list(thresholds), frozen_objects=frozen)
        self._enter_realtime()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._spawn_reload)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        watchdog = asyncio.create_task(self._watchdog())
        lag_monitor = asyncio.create_task(self._measure_loop_lag())
        heartbeat = asyncio.create_task(self._heartbeat())
        self.notifier.ready(f"serving on {self._describe_listeners()}")
        _log.info("ready", node=self.config.node.name, listeners=self._describe_listeners())
        await self._stop.wait()
        self.notifier.stopping()
        await self._drain()
        watchdog.cancel()
        lag_monitor.cancel()
        heartbeat.cancel()
        await self._shutdown()
        _log.info("stopped")
        return 0

    def _enter_realtime(self) -> None:
        """The loop thread (SIP edge, call control) on SCHED_RR once start-up is done:
        the threads started before (writers, the engine process) stay on the fair
        scheduler, and so do those started after."""
        priority = self.config.daemon.realtime_priority
        try:
            enter_realtime(priority, threads_inherit=False)
        except RealtimeRefused as exc:
            _log.warning("realtime_refused", reason=str(exc))
        else:
            if priority:
                _log.info("realtime_scheduling", policy="SCHED_RR", priority=priority)

    async def _start(self) -> None:
        cfg = self.config
        data_dir = cfg.node.data_dir
        try:
            (data_dir / "run").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(
                f"cannot create data directory {data_dir}: {exc.strerror}; "
                "set [node] data_dir to a writable directory"
            ) from None
        try:
            self.store = await Store.open(cfg.store, data_dir)
        except StoreError as exc:
            raise StartupError(f"{exc}; check [store] url") from None
        crashed = await self.store.begin_run(cfg.node.name, dt.datetime.now(dt.UTC))
        cdr_store = CdrStore(self.store)
        if crashed:
            closed = await cdr_store.close_abandoned(crashed)
            _log.warning("previous_run_crashed", runs=crashed, cdrs_closed=closed)
        assert self.store.run_id is not None
        self.cdr_writer = CdrWriter(
            cdr_store,
            cfg.node.name,
            self.store.run_id,
            write_delay=cfg.cdr.write_delay,
            max_pending=cfg.cdr.max_pending,
            on_drop=self.metrics.cdr_dropped.inc,
        )
        self.cdr_writer.start()
        self.engine = EngineProcess(
            engine_settings(cfg), asyncio.get_running_loop(), logging=cfg.logging
        )
        self.dial_plan = DialPlan.from_config(cfg, self.contacts, trunk_up=self._trunk_up)
        self.calls = CallControl(
            self.engine,
            self.dial_plan,
            call_settings(cfg),
            on_record=lambda record: self.metrics.calls_finished.labels(
                disposition=str(record.disposition)
            ).inc(),
            on_change=self.cdr_writer.record,
            may_transfer=self._may_transfer,
        )
        self.engine.attach_registrations(RegistrationReporter(self.metrics))
        try:
            info = await self.engine.start()
        except EngineError as exc:
            raise StartupError(f"{exc}; check [media] (engine_port, max_calls)") from None
        _log.info(
            "engine_started", version=info.version, sip_port=info.sip_port, codecs=list(info.codecs)
        )
        if info.realtime_refused:
            _log.warning("engine_realtime_refused", reason=info.realtime_refused)
        try:
            directory = Directory.from_config(cfg.accounts, cfg.trunks)
        except DirectoryError as exc:
            raise StartupError(f"{exc}; fix [[accounts]]") from None
        bindings = BindingStore(self.store)
        restored = await bindings.load(time.time())
        self.binding_writer = BindingWriter(bindings, cfg.sip.registrar.persist_delay)
        self.binding_writer.start()
        policy = OverloadPolicy(
            AuthenticatedOnly(),
            CallAdmission(overload_limits(cfg)),
            active_calls=self.calls.active_calls,
            loop_lag=lambda: self.loop_lag,
            on_reject=lambda why: self.metrics.calls_rejected.labels(reason=why).inc(),
            intake=self.intake,
            engine_up=self._engine_up,
            emergency=lambda request: self.dial_plan.is_emergency(
                CallRequest(
                    dialed_number(request.request_uri),
                    request.from_uri,
                    account=request.account or "",
                    inbound_trunk=request.trunk or "",
                )
            ),
        )
        self.edge = SipEdge(
            cfg.sip,
            self.metrics,
            (info.sip_host, info.sip_port),
            directory,
            policy,
            bindings_sink=self._bindings_changed,
        )
        self.edge.transfers = self.calls
        self.edge.engine_answered = self.intake.offered
        self.edge.between_messages = self.engine.poll_calls
        self.contacts.registrar = self.edge.access.registrar
        try:
            await self.edge.start(restored)
        except OSError as exc:
            raise StartupError(
                f"cannot open SIP listener: {exc.strerror or exc}; "
                "change [sip] listen or stop the program using that port"
            ) from None
        try:
            await self._route_engine_through_edge(cfg)
        except (SecretUnavailableError, EngineError) as exc:
            raise StartupError(f"cannot set up outbound trunks: {exc}; fix [[trunks]]") from None
        self.trunk_prober = TrunkProber(self.edge, self.metrics)
        self.trunk_prober.configure(cfg.trunks)
        if cfg.smpp.smsc:
            self.sms = SmsService(cfg.sms, cfg.smpp.smsc, self.store)
            await self.sms.start()
            _log.info("sms_started", smscs=[s.name for s in cfg.smpp.smsc])
            self._start_mo_delivery(cfg)
            if cfg.smpp.server is not None:
                self.smpp_server = SmppServer(cfg.smpp.server, self.sms)
                try:
                    port = await self.smpp_server.start()
                except OSError as exc:
                    raise StartupError(
                        f"cannot open SMPP listener {cfg.smpp.server.host}:"
                        f"{cfg.smpp.server.port}: {exc.strerror or exc}; change [smpp.server]"
                    ) from None
                except SecretUnavailableError as exc:
                    raise StartupError(f"{exc}; fix [[smpp.server.users]]") from None
                self.smpp_port = port
                _log.info("smpp_server_started", port=port)
        api = SmsApi(lambda: self.sms, lambda: {a.name for a in self.config.accounts})
        self.http = AdminHttp(self.metrics, self.readiness, api.routes())
        try:
            await self.http.start(cfg.http.host, cfg.http.port)
        except OSError as exc:
            raise StartupError(
                f"cannot open admin HTTP listener {cfg.http.host}:{cfg.http.port}: "
                f"{exc.strerror or exc}; change [http] port"
            ) from None
        self._write_runtime_file()

    def _start_mo_delivery(self, cfg: CallgateConfig) -> None:
        """Deliver MO messages to the channels some `[[sms.numbers]]` table asks for."""
        wanted = {channel for entry in cfg.sms.numbers for channel in entry.channels}
        channels: dict[str, MoChannel] = {}
        if "webhook" in wanted:
            self._mo_webhook = WebhookChannel(cfg.sms.mo_delivery.webhook_timeout)
            channels["webhook"] = self._mo_webhook
        if "email" in wanted:
            channels["email"] = EmailChannel(cfg.sms.email)
        if not channels:
            return
        assert self.store is not None
        self.mo_delivery = MoDeliveryWorker(
            self.store,
            cfg.sms,
            channels,
            on_result=lambda channel, result: self.metrics.sms_mo_deliveries.labels(
                channel, result
            ).inc(),
        )
        self.mo_delivery.start()

    async def _route_engine_through_edge(self, cfg: CallgateConfig) -> None:
        """B-legs and trunk registrations leave through the edge, with each trunk's account."""
        assert self.engine is not None and self.edge is not None
        await self.engine.route_through_edge(edge_route(self.edge), trunk_accounts(cfg.trunks))

    def _may_transfer(self, account: str, trunk: str) -> bool:
        """`allow_transfer` as the configuration says now (it follows reloads)."""
        return self._transfer_permission(account, trunk)

    def _trunk_up(self, name: str) -> bool:
        """For routing: a trunk is up unless its OPTIONS probes say otherwise."""
        health = self.trunk_health
        return health is None or health.is_up(name)

    @property
    def trunk_health(self) -> TrunkHealth | None:
        """Which trunks answer their OPTIONS probes: `is_up(name)` for routing."""
        return self.trunk_prober.health if self.trunk_prober is not None else None

    def _bindings_changed(self, result: RegisterResult | None, expired: list[Binding]) -> None:
        assert self.binding_writer is not None and self.edge is not None
        if result is not None:
            self.binding_writer.record(result.updated, result.removed)
        if expired:
            self.binding_writer.record((), expired)
        self.metrics.sip_bindings.set(len(self.edge.access.registrar))

    def _describe_listeners(self) -> str:
        assert self.edge is not None
        return ", ".join(f"{b.transport}:{b.host}:{b.port}" for b in self.edge.bound)

    def _write_runtime_file(self) -> None:
        """Record actual ports (listeners may use port 0) for tools and tests."""
        assert self.edge is not None and self.http is not None and self.engine is not None
        assert self.engine.info is not None
        state = {
            "pid": os.getpid(),
            "sip": [
                {"transport": b.transport, "host": b.host, "port": b.port} for b in self.edge.bound
            ],
            "http": {"host": self.config.http.host, "port": self.http.port},
            "engine": {
                "host": self.engine.info.sip_host,
                "port": self.engine.info.sip_port,
                "pid": self.engine.pid,
            },
        }
        if self.smpp_server is not None and self.config.smpp.server is not None:
            state["smpp"] = {"host": self.config.smpp.server.host, "port": self.smpp_port}
        path = self.config.node.data_dir / "run" / "callgate.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.replace(path)

    async def readiness(self) -> dict[str, bool]:
        """Checks behind /readyz; also feeds the up gauges."""
        engine_ok = self._engine_up()
        store_ok = self.store is not None and await self.store.ping()
        self.metrics.engine_up.set(1 if engine_ok else 0)
        self.metrics.store_up.set(1 if store_ok else 0)
        return {"engine": engine_ok, "store": store_ok}

    async def _measure_loop_lag(self) -> None:
        """How late a short timer fires: the node's backlog, for load shedding."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(_LAG_PROBE)
            self.loop_lag = max(loop.time() - started - _LAG_PROBE, 0.0)
            self.metrics.loop_lag.set(self.loop_lag)
            self.metrics.engine_intake_delay.set(self.intake.delay(time.time()))

    def _engine_up(self) -> bool:
        engine = self.engine
        stall = self.config.daemon.engine_stall_timeout
        return engine is not None and engine.alive(time.monotonic(), stall)

    async def _heartbeat(self) -> None:
        """Mark this run alive in the store: where its open CDRs end if it crashes."""
        assert self.store is not None
        while True:
            try:
                await self.store.mark_alive(time.time())
            except SQLAlchemyError as exc:
                _log.error("store_heartbeat_failed", error=str(exc))
            await asyncio.sleep(self.config.cdr.heartbeat_interval)

    async def _watchdog(self) -> None:
        """Pet systemd's watchdog only while the engine (process and thread) is healthy."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            if self._engine_up():
                self.notifier.watchdog()
            else:
                _log.error("engine_unhealthy_watchdog_withheld")
            await asyncio.sleep(interval)

    def _spawn_reload(self) -> None:
        task = asyncio.create_task(self.reload())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        """Validate the config file anew; apply it only if it is valid as a whole."""
        self.notifier.reloading()
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            self.metrics.config_reloads.labels(result="rejected").inc()
            _log.error(
                "config_reload_rejected",
                problems=[str(p) for p in exc.problems],
                hint="the previous configuration stays in force",
            )
            self.notifier.ready("reload rejected; previous configuration in force")
            return False
        merged, needs_restart = merge_reload(self.config, new)
        try:
            directory = Directory.from_config(merged.accounts, merged.trunks)
        except DirectoryError as exc:
            self.metrics.config_reloads.labels(result="rejected").inc()
            _log.error(
                "config_reload_rejected",
                problems=[str(exc)],
                hint="the previous configuration stays in force",
            )
            self.notifier.ready("reload rejected; previous configuration in force")
            return False
        if needs_restart:
            _log.warning(
                "config_reload_needs_restart",
                keys=needs_restart,
                hint="these settings keep their old values until a restart",
            )
        trunks_changed = merged.trunks != self.config.trunks
        self.config = merged
        configure_logging(merged.logging)
        if trunks_changed and self.engine is not None and self.edge is not None:
            try:
                await self._route_engine_through_edge(merged)
            except (SecretUnavailableError, EngineError) as exc:
                _log.error("trunk_accounts_not_updated", error=str(exc))
        self._rebuild_dial_plan(merged)
        if self.trunk_prober is not None:
            self.trunk_prober.configure(merged.trunks)
        if self.edge is not None:
            self.edge.reload(merged.sip, directory)
        self.metrics.config_reloads.labels(result="applied").inc()
        _log.info("config_reloaded", source=str(self.config_path or "embedded defaults"))
        self.notifier.ready("configuration reloaded")
        return True

    def _rebuild_dial_plan(self, config: CallgateConfig) -> None:
        """Accounts and trunks changed by a reload reach routing (forwarding, caller ID,
        who can be called); `[calls]` itself waits for a restart."""
        try:
            plan = DialPlan.from_config(config, self.contacts, trunk_up=self._trunk_up)
        except KeyError as exc:  # a trunk the (restart-only) routes still name was removed
            _log.error("dial_plan_not_updated", missing_trunk=str(exc), hint="restart to apply")
            return
        self.dial_plan = plan
        self._transfer_permission = transfer_permission(config)
        if self.calls is not None:
            self.calls.registry.router = plan

    async def _drain(self) -> None:
        """Refuse new work, let what is in progress finish up to the drain timeout."""
        timeout = self.config.daemon.drain_timeout
        _log.info("draining", timeout=timeout)
        deadline = time.monotonic() + timeout
        if self.edge is not None:
            self.edge.stop_accepting()
        if self.calls is not None:
            try:
                await asyncio.wait_for(self.calls.wait_idle(), timeout)
            except TimeoutError:
                _log.warning(
                    "drain_timeout",
                    calls=self.calls.active_calls(),
                    hint="remaining calls are released now",
                )
        if self.sms is not None and not await self.sms.drain(max(deadline - time.monotonic(), 0.0)):
            _log.warning("sms_drain_timeout", hint="unsent messages stay queued for the next start")

    async def _shutdown(self) -> None:
        if self.trunk_prober is not None:
            self.trunk_prober.stop()
        if self.http is not None:
            await self.http.stop()
        if self.smpp_server is not None:
            await self.smpp_server.stop()
        if self.mo_delivery is not None:
            await self.mo_delivery.stop()
        if self._mo_webhook is not None:
            await self._mo_webhook.close()
        if self.sms is not None:
            await self.sms.stop()
        if self.calls is not None:
            self.calls.close()
        if self.engine is not None:
            await self.engine.stop()
        if self.edge is not None:
            # After the engine: its last BYEs (and un-REGISTERs) leave through the edge.
            await self.edge.stop()
        if self.binding_writer is not None:
            try:
                await self.binding_writer.close()
            except SQLAlchemyError as exc:
                _log.error("bindings_flush_failed", error=str(exc))
        cdrs_written = True
        if self.cdr_writer is not None:
            # After the engine stopped: calls it ended on the way out are in the batch.
            try:
                await self.cdr_writer.close()
            except SQLAlchemyError as exc:
                cdrs_written = False
                _log.error(
                    "cdr_flush_failed",
                    error=str(exc),
                    pending=self.cdr_writer.pending(),
                    hint="this run stays open: the next start closes its CDRs as after a crash",
                )
        if self.store is not None:
            if cdrs_written:
                try:
                    await self.store.end_run(dt.datetime.now(dt.UTC))
                except SQLAlchemyError as exc:
                    _log.error("store_end_run_failed", error=str(exc))
            await self.store.close()
