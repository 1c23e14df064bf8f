"""Run a SIPp scenario as a real peer; ports are chosen by the system."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parent.parent / "sipp"


@dataclass(frozen=True)
class SippResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise RuntimeError("sipp is not installed; `make test` installs Debian's sip-tester")
    return path


def run_sipp(
    scenario: str,
    target: str,
    *,
    transport: str = "u1",
    calls: int = 1,
    rate: float = 10,
    timeout: float = 20,
    extra: tuple[str, ...] = (),
    workdir: Path | None = None,
    local_ip: str = "127.0.0.1",
) -> SippResult:
    """Run `scenario` (a file under tests/sipp) against `target` host:port."""
    args = [
        sipp_binary(),
        target,
        "-sf",
        str(SCENARIOS / scenario),
        "-t",
        transport,
        "-i",
        local_ip,
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-timeout",
        f"{timeout}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        *extra,
    ]
    proc = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout + 10, cwd=workdir, check=False
    )
    errors = ""
    if workdir is not None:
        for log in workdir.glob("*_errors.log"):
            errors += log.read_text(errors="replace")
    return SippResult(proc.returncode, proc.stdout[-4000:] + proc.stderr[-4000:] + errors)
