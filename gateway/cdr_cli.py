"""`callgate cdr ...`: list and export call detail records straight from the node's store."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from gateway.calls.cdr import CDR_FIELDS, TIME_FIELDS
from gateway.calls.registry import Disposition
from gateway.config.loader import ConfigError, load_config
from gateway.console import err as _err
from gateway.console import fail as _fail
from gateway.console import out as _out
from gateway.console import parse_time, progress

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) loads only when a command runs
    from gateway.store.cdrs import CdrQuery, CdrStore

cdr_app = typer.Typer(
    help="List and export call detail records (CDRs) from the node's store.",
    no_args_is_help=True,
)

T = TypeVar("T")


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="The node's configuration (to find its store)."),
]
AccountOption = Annotated[
    str | None, typer.Option("--account", "-a", help="Only calls of this account.")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since", help="Calls set up at or after this time (ISO 8601; local if no offset)."
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option("--until", help="Calls set up before this time (ISO 8601; local if no offset)."),
]
DispositionOption = Annotated[
    Disposition | None, typer.Option("--disposition", help="Only calls with this outcome.")
]
NumberOption = Annotated[
    str | None,
    typer.Option(
        "--number", "-n", help="Caller or callee: E.164 number or dialled digits (exact)."
    ),
]


def _query(
    account: str | None,
    since: str | None,
    until: str | None,
    disposition: Disposition | None,
    number: str | None,
    limit: int | None,
) -> CdrQuery:
    from gateway.store.cdrs import CdrQuery  # noqa: PLC0415 - keeps `--help` fast

    if limit is not None and limit < 1:
        raise _fail("--limit must be at least 1")
    return CdrQuery(
        account=account,
        since=parse_time(since, "--since").timestamp() if since is not None else None,
        until=parse_time(until, "--until").timestamp() if until is not None else None,
        disposition=str(disposition) if disposition is not None else None,
        number=number,
        limit=limit,
    )


def _with_store(config: Path | None, work: Callable[[CdrStore], Awaitable[T]]) -> T:
    """Open the node's store (as the daemon does), run `work`, close it."""
    from gateway.store.cdrs import CdrStore  # noqa: PLC0415 - keeps `--help` fast
    from gateway.store.database import Store, StoreError, store_url  # noqa: PLC0415

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    url = store_url(cfg.store, cfg.node.data_dir)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        raise _fail(f"no store at {url.database}: has the daemon run with this --config?")

    async def main() -> T:
        store = await Store.open(cfg.store, cfg.node.data_dir)
        try:
            return await work(CdrStore(store))
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreError as exc:
        raise _fail(str(exc)) from None


def iso_time(value: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC, to the millisecond."""
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat(timespec="milliseconds")


def export_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as exported: times in ISO 8601 UTC, the rest as stored."""
    return {name: iso_time(row[name]) if name in TIME_FIELDS else row[name] for name in CDR_FIELDS}


_LIST_COLUMNS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("setup (UTC)", lambda r: (iso_time(r["setup_at"]) or "")[:19].replace("T", " ")),
    ("account/trunk", lambda r: r["account"] or r["inbound_trunk"]),
    ("caller", lambda r: r["caller_e164"] or r["caller"]),
    ("callee", lambda r: r["callee_e164"] or r["dialed"]),
    ("state", lambda r: r["state"]),
    ("disposition", lambda r: r["disposition"] or ""),
    ("cause", lambda r: r["cause"] or ""),
    ("status", lambda r: str(r["caller_status"] or "")),
    ("duration", lambda r: "" if r["duration"] is None else f"{r['duration']:.3f}"),
    ("billable", lambda r: "" if r["billable_seconds"] is None else str(r["billable_seconds"])),
)


@cdr_app.command("list")
def list_cdrs(
    config: ConfigOption = None,
    account: AccountOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    disposition: DispositionOption = None,
    number: NumberOption = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many calls.")] = 50,
) -> None:
    """Show matching calls as a table, oldest first."""
    query = _query(account, since, until, disposition, number, limit)

    async def fetch(store: CdrStore) -> list[dict[str, Any]]:
        return [row async for row in store.rows(query)]

    rows = _with_store(config, fetch)
    table = Table(*(title for title, _ in _LIST_COLUMNS))
    for row in rows:
        table.add_row(*(Text(cell(row)) for _, cell in _LIST_COLUMNS))  # no markup from peers
    _out.print(table)
    _err.print(f"{len(rows)} call(s)")


class _Writer:
    """Streams exported rows to a file: CSV with one header line, or one JSON array."""

    def __init__(self, file: IO[str], fmt: ExportFormat) -> None:
        self._file = file
        self._csv: csv.DictWriter[str] | None = None
        self._rows = 0
        if fmt is ExportFormat.CSV:
            self._csv = csv.DictWriter(file, fieldnames=CDR_FIELDS, lineterminator="\n")
            self._csv.writeheader()
        else:
            file.write("[")

    def write(self, row: dict[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            self._file.write(("," if self._rows else "") + "\n" + json.dumps(row))
        self._rows += 1

    def close(self) -> int:
        if self._csv is None:
            self._file.write("\n]\n")
        return self._rows


@cdr_app.command("export")
def export(
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="csv (one header line) or json (array).")
    ] = ExportFormat.CSV,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    config: ConfigOption = None,
    account: AccountOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    disposition: DispositionOption = None,
    number: NumberOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Export at most this many calls.")
    ] = None,
) -> None:
    """Export matching calls, every field, times in ISO 8601 UTC, oldest first."""
    query = _query(account, since, until, disposition, number, limit)

    async def stream(store: CdrStore, file: IO[str]) -> int:
        total = await store.count(query)
        writer = _Writer(file, fmt)
        with progress("exporting") as bar:
            task = bar.add_task("export", total=total)
            async for row in store.rows(query):
                writer.write(export_row(row))
                bar.advance(task)
        return writer.close()

    if output is None:
        _with_store(config, lambda store: stream(store, sys.stdout))
        return
    try:
        with output.open("w", encoding="utf-8", newline="") as file:
            written = _with_store(config, lambda store: stream(store, file))
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror}") from None
    _err.print(f"wrote {written} call(s) to {output}", soft_wrap=True, markup=False)
