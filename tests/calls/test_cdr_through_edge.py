"""CDRs of real calls: SIPp through the daemon (edge, engine), then the rows in its store.

Each SIPp caller sets its own Call-ID (`-cid_str`), so each CDR is found by
the Call-ID the caller sent. The crash test kills the daemon with SIGKILL in
mid-call and checks that the next start closes the call's row.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.calls.peers import SippRun, start_sipp
from tests.calls.test_call_through_edge import trunk_to
from tests.support.daemon import DaemonProcess, write_config
from tests.support.ports import free_udp_port

pytestmark = [pytest.mark.interop, pytest.mark.engine]

ROWS_TIMEOUT = 30.0  # generous: the machine may be loaded


def _query(data_dir: Path, sql: str) -> list[dict[str, Any]]:
    """Rows from the daemon's SQLite store (read-only; WAL lets us read while it writes)."""
    db = sqlite3.connect(f"file:{data_dir / 'callgate.db'}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute(sql)]
    finally:
        db.close()


def cdr_rows(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every CDR by SIP Call-ID."""
    return {row["sip_call_id"]: row for row in _query(data_dir, "SELECT * FROM cdrs")}


async def wait_heartbeat(data_dir: Path, run_id: int, after: float) -> float:
    """Wait until the run's heartbeat in the store is later than `after`; return it."""
    deadline = time.monotonic() + ROWS_TIMEOUT
    sql = f"SELECT last_seen_at FROM node_runs WHERE id = {int(run_id)}"
    while (seen := _query(data_dir, sql)[0]["last_seen_at"]) is None or seen <= after:
        if time.monotonic() > deadline:
            raise AssertionError(f"no heartbeat after {after} within {ROWS_TIMEOUT}s")
        await asyncio.sleep(0.1)
    return float(seen)


async def wait_rows(
    data_dir: Path, ready: Callable[[dict[str, dict[str, Any]]], bool]
) -> dict[str, dict[str, Any]]:
    """Poll the store until `ready(rows)`; the writer commits within `[cdr] write_delay`."""
    deadline = time.monotonic() + ROWS_TIMEOUT
    while True:
        rows = cdr_rows(data_dir)
        if ready(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"CDRs not as expected within {ROWS_TIMEOUT}s: {rows}")
        await asyncio.sleep(0.1)


def _daemon(
    tmp_path: Path, callee_port: int, drain_timeout: float = 5.0
) -> tuple[DaemonProcess, Path]:
    data_dir = tmp_path / "data"
    config = write_config(
        tmp_path / "c.toml",
        data_dir,
        drain_timeout=drain_timeout,
        extra=trunk_to(callee_port, "no_answer_timeout = 20.0")
        + "\n[cdr]\nwrite_delay = 0.2\nheartbeat_interval = 0.2\n",
    )
    daemon = DaemonProcess(config, data_dir)
    daemon.wait_event("ready", timeout=30)
    return daemon, data_dir


async def _caller(
    daemon: DaemonProcess, tmp_path: Path, label: str, scenario: str, number: str, *args: str
) -> SippRun:
    return await start_sipp(
        label,
        scenario,
        tmp_path,
        remote=f"127.0.0.1:{daemon.sip_port('udp')}",
        args=(
            "-s",
            number,
            "-m",
            "1",
            "-cid_str",
            f"{label}-%u@%s",
            "-set",
            "rtp_port",
            str(free_udp_port()),
            *args,
        ),
        timeout=40,
    )


async def _call(
    daemon: DaemonProcess,
    tmp_path: Path,
    label: str,
    caller_scenario: str,
    callee_scenario: str | None,
    callee_port: int,
    *,
    number: str = "1234",
    caller_args: tuple[str, ...] = (),
) -> None:
    callee = None
    if callee_scenario is not None:
        callee = await start_sipp(
            f"{label}-callee", callee_scenario, tmp_path, port=callee_port, args=("-m", "1")
        )
    try:
        caller = await _caller(daemon, tmp_path, label, caller_scenario, number, *caller_args)
        await caller.finish(timeout=60)
        if callee is not None:
            await callee.finish(timeout=60)
    finally:
        if callee is not None:
            callee.kill()


async def test_cdrs_of_answered_busy_cancelled_and_unknown_calls(tmp_path: Path) -> None:
    callee_port = free_udp_port()
    daemon, data_dir = _daemon(tmp_path, callee_port)
    try:
        await _call(
            daemon,
            tmp_path,
            "answered",
            "call_uac_hangup.xml",
            "call_uas_answer.xml",
            callee_port,
            caller_args=("-d", "1200"),
        )
        await _call(daemon, tmp_path, "busy", "call_uac_busy.xml", "call_uas_busy.xml", callee_port)
        await _call(
            daemon, tmp_path, "cancel", "call_uac_cancel.xml", "call_uas_ring.xml", callee_port
        )
        await _call(
            daemon, tmp_path, "unknown", "call_uac_unknown.xml", None, callee_port, number="999"
        )
        labels = ("answered", "busy", "cancel", "unknown")
        ids = {label: f"{label}-1@127.0.0.1" for label in labels}
        rows = await wait_rows(
            data_dir,
            lambda rows: all(rows.get(cid, {}).get("state") == "finished" for cid in ids.values()),
        )
        run_ids = {row["run_id"] for row in rows.values()}
        assert len(rows) == 4 and len(run_ids) == 1, rows
        for row in rows.values():
            assert row["node"] == "test"
            assert row["inbound_trunk"] == "test-trunk"
            assert row["account"] == ""
            assert row["ended_by"] is not None
            assert row["setup_at"] <= row["ended_at"]
            assert row["duration"] == pytest.approx(row["ended_at"] - row["setup_at"], abs=0.001)

        answered = rows[ids["answered"]]
        assert (answered["disposition"], answered["cause"], answered["ended_by"]) == (
            "answered",
            "caller_hangup",
            "caller",
        )
        assert answered["caller_status"] == 200
        assert answered["dialed"] == "1234"
        assert answered["target"] == f"sip:1234@127.0.0.1:{callee_port}"
        assert (
            answered["setup_at"]
            <= answered["ringing_at"]
            <= answered["answered_at"]
            <= answered["ended_at"]
        )
        assert answered["billable_seconds"] >= 1  # talked for about 1.2 s
        assert (answered["caller_codec"], answered["callee_codec"]) == ("PCMU", "PCMU")

        busy = rows[ids["busy"]]
        assert (busy["disposition"], busy["cause"]) == ("busy", "callee_busy")
        assert (busy["caller_status"], busy["callee_status"]) == (486, 486)
        assert busy["answered_at"] is None and busy["billable_seconds"] == 0

        cancel = rows[ids["cancel"]]
        assert (cancel["disposition"], cancel["cause"], cancel["ended_by"]) == (
            "cancelled",
            "caller_cancel",
            "caller",
        )
        assert cancel["caller_status"] == 487
        assert cancel["ringing_at"] is not None and cancel["answered_at"] is None
        assert cancel["billable_seconds"] == 0

        unknown = rows[ids["unknown"]]
        assert (unknown["disposition"], unknown["cause"], unknown["caller_status"]) == (
            "rejected",
            "route_refused",
            404,
        )
        assert unknown["target"] == "" and unknown["billable_seconds"] == 0
    finally:
        daemon.stop()


@asynccontextmanager
async def answered_call(
    tmp_path: Path, label: str, drain_timeout: float = 5.0
) -> AsyncIterator[tuple[DaemonProcess, Path, dict[str, Any]]]:
    """A daemon with one call answered and talking for minutes: (daemon, data_dir, its row)."""
    callee_port = free_udp_port()
    daemon, data_dir = _daemon(tmp_path, callee_port, drain_timeout)
    callee = caller = None
    try:
        callee = await start_sipp(
            "callee", "call_uas_answer.xml", tmp_path, port=callee_port, args=("-m", "1")
        )
        caller = await _caller(
            daemon, tmp_path, label, "call_uac_hangup.xml", "1234", "-d", "300000"
        )
        cid = f"{label}-1@127.0.0.1"
        rows = await wait_rows(
            data_dir, lambda rows: rows.get(cid, {}).get("answered_at") is not None
        )
        yield daemon, data_dir, rows[cid]
    finally:
        for peer in (caller, callee):
            if peer is not None:
                peer.kill()
        daemon.stop()


async def test_kill_9_mid_call_leaves_a_row_the_restart_closes(tmp_path: Path) -> None:
    cid = "crash-1@127.0.0.1"
    async with answered_call(tmp_path, "crash") as (daemon, data_dir, crashed):
        assert crashed["state"] == "in_progress"
        # Talked for at least a second by the node's own account: then it dies.
        heartbeat = await wait_heartbeat(data_dir, crashed["run_id"], crashed["answered_at"] + 1.0)
        daemon.signal(signal.SIGKILL)
        killed_at = time.time()
        assert daemon.proc.wait(30) == -signal.SIGKILL

    restarted = DaemonProcess(daemon.config, data_dir)
    try:
        event = restarted.wait_event("previous_run_crashed", timeout=30)
        assert event["cdrs_closed"] == 1
        restarted.wait_event("ready", timeout=30)
        row = cdr_rows(data_dir)[cid]
    finally:
        restarted.stop()
    assert (row["state"], row["disposition"], row["cause"], row["ended_by"]) == (
        "finished",
        "failed",
        "node_restart",
        "gateway",
    )
    assert row["run_id"] == crashed["run_id"]
    assert row["answered_at"] == crashed["answered_at"]
    # Ended at the crashed run's last heartbeat: not before the one seen, not after the kill.
    assert heartbeat <= row["ended_at"] <= killed_at
    assert row["duration"] == pytest.approx(row["ended_at"] - row["setup_at"], abs=0.001)
    assert row["billable_seconds"] >= 1


async def test_sigterm_mid_call_finishes_the_row_before_exit(tmp_path: Path) -> None:
    async with answered_call(tmp_path, "term", drain_timeout=1.0) as (daemon, data_dir, talking):
        assert daemon.stop(timeout=60) == 0
    cid = talking["sip_call_id"]
    row = cdr_rows(data_dir)[cid]  # the daemon has exited: what it left is final
    assert (row["state"], row["disposition"], row["ended_by"]) == (
        "finished",
        "answered",
        "gateway",
    )
    assert row["ended_at"] >= row["answered_at"]
