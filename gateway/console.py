"""Terminal output shared by the CLI commands."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str) -> typer.Exit:
    """Print one clear error line; raise the returned Exit (code 1)."""
    err.print(f"[bold red]callgate:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=1)
