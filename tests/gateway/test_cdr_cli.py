"""`callgate cdr list/export` on a store written by the CDR writer."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway import console
from gateway.calls.cdr import CDR_FIELDS
from gateway.calls.registry import CallRecord, CallState, Cause, Disposition
from gateway.cli import app
from gateway.config.models import StoreConfig
from gateway.store.cdrs import CdrStore, CdrWriter
from gateway.store.database import Store
from media.events import Party

runner = CliRunner()
T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def _finished(call: int, setup_at: float, account: str, disposition: Disposition) -> CallRecord:
    record = CallRecord(call, f"cid-{call}", "sip:[c]@h", "1555", setup_at, account=account)
    record.callee_e164 = "+1555"
    if disposition is Disposition.ANSWERED:
        record.answered_at = setup_at + 1.0
    record.ended_at = setup_at + 10.25
    record.state = CallState.ENDED
    record.disposition = disposition
    record.cause = Cause.CALLER_HANGUP
    record.ended_by = Party.CALLER
    record.caller_status = 200
    return record


@pytest.fixture
def config(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    async def fill() -> None:
        store = await Store.open(StoreConfig(), data_dir)
        writer = CdrWriter(CdrStore(store), "node-a", 1, write_delay=0, max_pending=100)
        writer.record(_finished(1, T0, "alice", Disposition.ANSWERED))
        writer.record(_finished(2, T0 + 3600, "bob", Disposition.BUSY))
        writer.record(CallRecord(3, "cid-3", "sip:c@h", "999", T0 + 7200, account="alice"))
        await writer.close()
        await store.close()

    asyncio.run(fill())
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\nname = "node-a"\ndata_dir = "{data_dir}"\n', encoding="utf-8")
    return path


def test_list_shows_matching_calls(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console.out, "width", 200)  # a wide terminal: one line per call
    result = runner.invoke(app, ["cdr", "list", "--config", str(config), "--account", "alice"])
    assert result.exit_code == 0, result.output
    assert "2026-09-21 14:13:20" in result.output
    assert "answered" in result.output and "in_progress" in result.output
    assert "sip:[c]@h" in result.output  # a peer's text is shown as is, never as markup
    assert "busy" not in result.output
    assert "2 call(s)" in result.output


def test_export_csv_with_filters(config: Path) -> None:
    result = runner.invoke(
        app,
        ["cdr", "export", "-c", str(config), "--format", "csv", "--since", "2026-09-21T15:00Z"],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["call"] for row in rows] == ["2", "3"]
    assert tuple(rows[0]) == CDR_FIELDS
    assert rows[0]["setup_at"] == "2026-09-21T15:13:20.000+00:00"
    assert (rows[0]["disposition"], rows[0]["billable_seconds"]) == ("busy", "0")


def test_export_json_to_a_file(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "cdrs.json"
    result = runner.invoke(
        app,
        ["cdr", "export", "-c", str(config), "-f", "json", "-o", str(out), "--number", "+1555"],
    )
    assert result.exit_code == 0, result.output
    assert f"wrote 2 call(s) to {out}" in result.output
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [row["call"] for row in rows] == [1, 2]
    first = rows[0]
    assert (first["duration"], first["billable_seconds"]) == (10.25, 10)
    assert first["answered_at"] == "2026-09-21T14:13:21.000+00:00"
    limited = runner.invoke(app, ["cdr", "export", "-c", str(config), "-f", "json", "--limit", "1"])
    assert [row["call"] for row in json.loads(limited.stdout)] == [1]
    none = runner.invoke(app, ["cdr", "export", "-c", str(config), "-f", "json", "-a", "carol"])
    assert json.loads(none.stdout) == []


def test_export_by_disposition(config: Path) -> None:
    result = runner.invoke(app, ["cdr", "export", "-c", str(config), "--disposition", "busy"])
    assert result.exit_code == 0, result.output
    assert [row["call"] for row in csv.DictReader(io.StringIO(result.stdout))] == ["2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "is not an ISO 8601 time"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--disposition", "happy"], "Invalid value"),
    ],
)
def test_bad_filters_are_refused(config: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["cdr", "list", "-c", str(config), *args])
    assert result.exit_code != 0
    assert message in result.output


def test_missing_store_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\ndata_dir = "{tmp_path / "nowhere"}"\n', encoding="utf-8")
    result = runner.invoke(app, ["cdr", "list", "-c", str(path)])
    assert result.exit_code == 1
    assert "no store at" in result.output
