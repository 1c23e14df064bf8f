"""SIPp peers and the engine under test, for the call-path interop tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.calls.control import CallControl
from gateway.calls.registry import CallSettings
from gateway.calls.routing import PrefixRoute, StaticRouter, StaticRoutes
from media.engine import EngineInfo, EngineSettings, PjsipEngine
from tests.support.ports import free_udp_port
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


@asynccontextmanager
async def running_gateway(
    routes: tuple[PrefixRoute, ...], settings: CallSettings | None = None
) -> AsyncIterator[Gateway]:
    engine = PjsipEngine(engine_settings(), asyncio.get_running_loop())
    control = CallControl(engine, StaticRouter(StaticRoutes(routes)), settings)
    info = await engine.start()
    try:
        yield Gateway(engine, info, control)
    finally:
        control.close()
        await engine.stop()


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
        str(free_udp_port()),
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
