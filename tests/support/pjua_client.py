"""Run the pjsua2 far-end user agent (tests/support/pjua.py) as a subprocess.

pjsua2 is a process-wide singleton, so each agent is its own process; this
module starts it with the interpreter running the tests and reads its events
(one JSON object per line on stdout).
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PJUA = Path(__file__).resolve().with_name("pjua.py")

GRACE_S = 10.0
"""Allowed beyond the agent's own --timeout for interpreter and PJSIP start and stop."""

Event = dict[str, Any]


@dataclass(frozen=True)
class PjuaResult:
    returncode: int
    events: list[Event]
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def of(self, event: str) -> list[Event]:
        """Every event of one kind, in order."""
        return [e for e in self.events if e.get("event") == event]

    def call_states(self) -> list[str]:
        return [str(e["state"]) for e in self.of("call_state")]

    @property
    def exit_reason(self) -> str:
        exits = self.of("exit")
        return str(exits[-1].get("reason", "")) if exits else "no exit event"

    def describe(self) -> str:
        """Events and the end of stderr, for assertion messages."""
        lines = [json.dumps(e) for e in self.events]
        return (
            f"returncode={self.returncode} ({self.exit_reason})\n"
            + "\n".join(lines)
            + "\n--- stderr (tail) ---\n"
            + self.stderr[-3000:]
        )


def pjua_command(args: Sequence[str], timeout: float) -> list[str]:
    """The command line; the wrapper's `--timeout` comes last, so it wins."""
    return [sys.executable, str(PJUA), *args, "--timeout", str(timeout)]


def parse_event(line: str) -> Event | None:
    line = line.strip()
    if not line:
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return {"event": "unparsed", "line": line}
    return value if isinstance(value, dict) else {"event": "unparsed", "line": line}


def run_pjua(args: Sequence[str], timeout: float = 15.0) -> PjuaResult:
    """Run one pjua command to completion, e.g. `run_pjua(["call", "--target", uri])`."""
    proc = subprocess.run(
        pjua_command(args, timeout),
        capture_output=True,
        text=True,
        timeout=timeout + GRACE_S,
        check=False,
    )
    events = [e for line in proc.stdout.splitlines() if (e := parse_event(line)) is not None]
    return PjuaResult(proc.returncode, events, proc.stderr)


class PjuaProcess:
    """A pjua that is still running; its events are read as they arrive."""

    def __init__(self, args: Sequence[str], timeout: float) -> None:
        self.timeout = timeout
        self._proc = subprocess.Popen(
            pjua_command(args, timeout),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[Event] = []
        self._incoming: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._stderr: list[str] = []
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_events, args=(self._proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self._proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self, stream: IO[str]) -> None:
        for line in stream:
            event = parse_event(line)
            if event is not None:
                self._incoming.put(event)
        self._incoming.put(None)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line)

    def wait_for(self, event: str, timeout: float) -> Event | None:
        """The next event of this kind (earlier ones are kept in `events`); None if none came."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                item = self._incoming.get(timeout=remaining)
            except queue.Empty:
                return None
            if item is None:  # the process closed stdout
                self._incoming.put(None)
                return None
            self.events.append(item)
            if item.get("event") == event:
                return item

    def wait(self, timeout: float | None = None) -> PjuaResult:
        """Wait for the process to exit by itself and collect everything it said."""
        limit = self.timeout + GRACE_S if timeout is None else timeout
        self._proc.wait(timeout=limit)
        return self._collect()

    def stop(self) -> PjuaResult:
        """Ask a still running process to end (SIGTERM: it shuts PJSIP down cleanly)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._collect()

    def _collect(self) -> PjuaResult:
        for reader in self._readers:
            reader.join(timeout=GRACE_S)
        while True:
            try:
                item = self._incoming.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.events.append(item)
        returncode = self._proc.returncode
        return PjuaResult(returncode, list(self.events), "".join(self._stderr))


class AnsweringPjua(PjuaProcess):
    """`pjua answer`, listening: `port` and `uri` say where to send the call."""

    port: int
    uri: str


@contextlib.contextmanager
def pjua_answer(args: Sequence[str] = (), timeout: float = 15.0) -> Iterator[AnsweringPjua]:
    """Run `pjua answer [args]` for the block; yields it once it is listening.

    Call `.wait()` inside the block to get its result after the call; the
    process is stopped on leaving the block if it is still running.
    """
    agent = AnsweringPjua(["answer", *args], timeout)
    try:
        listening = agent.wait_for("listening", timeout)
        if listening is None:
            result = agent.stop()
            raise RuntimeError(f"pjua answer never listened:\n{result.describe()}")
        agent.port = int(listening["port"])
        agent.uri = str(listening["uri"])
        yield agent
    finally:
        agent.stop()
