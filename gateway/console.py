"""Terminal output shared by the CLI commands."""

from __future__ import annotations

import datetime as dt

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str) -> typer.Exit:
    """Print one clear error line; raise the returned Exit (code 1)."""
    err.print(f"[bold red]callgate:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=1)


def parse_time(value: str, option: str) -> dt.datetime:
    """An ISO 8601 time given on the command line; without an offset it is local time."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{option} {value!r} is not an ISO 8601 time, e.g. 2026-12-24T18:00") from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as a person typing it means
    return parsed


def progress(label: str, *, disable: bool = False) -> Progress:
    """A progress bar on stderr (stdout stays clean for output); gone when done."""
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=disable,
        transient=True,
    )
