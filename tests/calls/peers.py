"""SIPp peers and the engine under test, for the call-path interop tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.calls.control import CallControl
from gateway.calls.dialplan import DialPlan, PrefixRoute, RouteChoice, TrunkTarget
from gateway.calls.registry import CallRecord, CallSettings, CallState
from gateway.calls.routing import Router
from gateway.calls.transfer import TransferPermission
from media.engine import EngineInfo, EngineSettings, PjsipEngine
from tests.support.pjua_client import PjuaResult, pjua_answer, run_pjua
from tests.support.ports import free_media_port, free_udp_port
from tests.support.sipp import SCENARIOS, sipp_binary

CODECS = ("PCMU/8000/1", "PCMA/8000/1", "G722/16000/1", "opus/48000/2")


def engine_settings(**overrides: object) -> EngineSettings:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_calls": 4096,
        "media_threads": 1,
        "rtp_port_start": 42000,
        "rtp_port_range": 8000,
        "codecs": CODECS,
        "log_level": 1,
    }
    base.update(overrides)
    return EngineSettings(**base)  # type: ignore[arg-type]


@dataclass
class Gateway:
    engine: PjsipEngine
    info: EngineInfo
    control: CallControl

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.info.sip_port}"


def loopback_plan(*routes: tuple[str, tuple[int, ...]]) -> DialPlan:
    """Routes (prefix, callee ports in order of priority); each port is a trunk `t<port>`."""
    ports = {port for _, route_ports in routes for port in route_ports}
    trunks = {f"t{port}": TrunkTarget(f"t{port}", "127.0.0.1", port) for port in ports}
    return DialPlan(
        [
            PrefixRoute(
                prefix,
                tuple(RouteChoice(f"t{port}", priority) for priority, port in enumerate(ps)),
            )
            for prefix, ps in routes
        ],
        trunks,
    )


@asynccontextmanager
async def running_gateway(
    router: Router,
    settings: CallSettings | None = None,
    may_transfer: TransferPermission | None = None,
) -> AsyncIterator[Gateway]:
    engine = PjsipEngine(engine_settings(), asyncio.get_running_loop())
    control = CallControl(engine, router, settings, may_transfer=may_transfer)
    info = await engine.start()
    try:
        yield Gateway(engine, info, control)
    finally:
        control.close()
        await engine.stop()


def caller_args(
    dialed: str, rtp_port: int, *, pause_ms: int | None = None, extra: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """SIPp caller options: one call to `dialed`, SDP offering RTP at `rtp_port`, `-d` pause."""
    pause = ("-d", str(pause_ms)) if pause_ms is not None else ()
    return ("-s", dialed, "-m", "1", *pause, "-set", "rtp_port", str(rtp_port), *extra)


class UdpTrap(asyncio.DatagramProtocol):
    """A UDP port that only records what reaches it (a target nothing may dial)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)


@asynccontextmanager
async def udp_trap() -> AsyncIterator[tuple[UdpTrap, int]]:
    """A trap on loopback and its port."""
    transport, trap = await asyncio.get_running_loop().create_datagram_endpoint(
        UdpTrap, local_addr=("127.0.0.1", 0)
    )
    try:
        yield trap, int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


@dataclass
class SippRun:
    process: asyncio.subprocess.Process
    workdir: Path
    label: str

    async def finish(self, timeout: float = 30.0) -> str:
        """Wait for SIPp to exit; return its output, raising if it failed."""
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"SIPp {self.label} did not finish in {timeout}s") from None
        text = out.decode(errors="replace")
        if self.process.returncode != 0:
            errors = "".join(
                log.read_text(errors="replace") for log in self.workdir.glob("*_errors.log")
            )
            raise AssertionError(
                f"SIPp {self.label} exited {self.process.returncode}:\n{text[-3000:]}\n{errors}"
            )
        return text

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


async def start_sipp(
    label: str,
    scenario: str,
    workdir: Path,
    *,
    remote: str | None = None,
    port: int | None = None,
    args: tuple[str, ...] = (),
    timeout: float = 20.0,
) -> SippRun:
    """Start SIPp on `scenario`; UAS roles pass `port` (see free_udp_port)."""
    run_dir = workdir / label
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sipp_binary(),
        *([remote] if remote else []),
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port if port is not None else free_udp_port()),
        "-mp",
        str(free_media_port()),
        "-nostdin",
        "-timeout",
        f"{timeout}s",
        "-timeout_error",
        "-trace_err",
        *args,
    ]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=run_dir,
    )
    return SippRun(process, run_dir, label)


async def call_through(
    remote: str,
    tmp_path: Path,
    callee_port: int,
    caller_scenario: str,
    callee_scenario: str | None,
    *,
    dialed: str = "1234",
    caller_args: tuple[str, ...] = (),
    callee_args: tuple[str, ...] = (),
    rtp_port: int | None = None,
) -> SippRun | None:
    """One call from a SIPp caller at `remote` to a SIPp callee on `callee_port` (if any);
    both scenarios must pass. Returns the callee's run."""
    callee = None
    if callee_scenario is not None:
        callee = await start_sipp(
            "callee", callee_scenario, tmp_path, port=callee_port, args=("-m", "1", *callee_args)
        )
    try:
        caller = await start_sipp(
            "caller",
            caller_scenario,
            tmp_path,
            remote=remote,
            args=(
                "-s",
                dialed,
                "-m",
                "1",
                "-set",
                "rtp_port",
                str(rtp_port or free_udp_port()),
                *caller_args,
            ),
        )
        await caller.finish()
        if callee is not None:
            await callee.finish()
    finally:
        if callee is not None:
            callee.kill()
    return callee


async def sipp_call(
    gw: Gateway,
    tmp_path: Path,
    caller_scenario: str,
    callee_scenario: str | None,
    callee_port: int,
    *,
    dialed: str = "1234",
    caller_args: tuple[str, ...] = (),
    callee_args: tuple[str, ...] = (),
    rtp_port: int | None = None,
) -> CallRecord:
    """One SIPp caller -> engine -> SIPp callee call; the finished record, checked for basics."""
    await call_through(
        gw.target,
        tmp_path,
        callee_port,
        caller_scenario,
        callee_scenario,
        dialed=dialed,
        caller_args=caller_args,
        callee_args=callee_args,
        rtp_port=rtp_port,
    )
    records = await asyncio.wait_for(gw.control.wait_finished(1), 5)
    await asyncio.wait_for(gw.control.wait_idle(), 5)
    assert gw.control.active_calls() == 0
    (record,) = records
    assert record.state is CallState.ENDED
    assert record.dialed == dialed
    assert record.ended_at is not None and record.ended_at >= record.setup_at
    return record


async def pjua_call(
    callee_opts: list[str], caller_opts: list[str]
) -> tuple[PjuaResult, PjuaResult, CallRecord]:
    """One call pjua -> engine -> pjua; returns (caller, callee, record)."""
    with pjua_answer(["--ring-ms", "100", *callee_opts], timeout=30) as callee:
        async with running_gateway(loopback_plan(("1", (callee.port,)))) as gw:
            caller = await asyncio.to_thread(
                run_pjua, ["call", "--target", f"sip:1234@{gw.target}", *caller_opts], 30
            )
            (record,) = await asyncio.wait_for(gw.control.wait_finished(1), 5)
            await asyncio.wait_for(gw.control.wait_idle(), 5)
            far = await asyncio.to_thread(callee.wait, 20)
    return caller, far, record
