"""`callgate sms ...`: send, status and statistics through the running daemon's admin API."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from gateway.config.loader import ConfigError, load_config
from gateway.console import err as _err
from gateway.console import fail as _fail
from gateway.console import out as _out
from gateway.console import parse_time, progress

sms_app = typer.Typer(
    help="Send SMS and read their status through the running daemon.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="The daemon's configuration (to find its admin port)."),
]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="Admin API base URL, e.g. http://127.0.0.1:8080 (overrides --config)."
    ),
]
AccountOption = Annotated[
    str, typer.Option("--account", "-a", help="Account the messages belong to.")
]


class ApiError(Exception):
    """The daemon answered with an error (or could not be reached)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail") or body.get("error") or f"HTTP {status}")
        self.status = status
        self.body = body


def _base_url(config: Path | None, url: str | None) -> str:
    if url is not None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise _fail(f"--url {url!r} must start with http:// or https://")
        return url.rstrip("/")
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    runtime = cfg.node.data_dir / "run" / "callgate.json"
    try:
        http = json.loads(runtime.read_text(encoding="utf-8"))["http"]
    except (OSError, ValueError, KeyError):
        raise _fail(f"cannot read {runtime}: is the daemon running with this --config?") from None
    host = f"[{http['host']}]" if ":" in http["host"] else http["host"]
    return f"http://{host}:{http['port']}"


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    # Only http(s): _base_url checks the scheme of a --url given by the admin.
    request = urllib.request.Request(  # noqa: S310
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
        except ValueError:
            detail = {"error": exc.reason}
        raise ApiError(exc.code, detail) from None
    except urllib.error.URLError as exc:
        raise ApiError(0, {"detail": f"cannot reach {url}: {exc.reason}"}) from None


def _account_url(base: str, account: str) -> str:
    return f"{base}/api/v1/accounts/{urllib.parse.quote(account, safe='')}/sms"


def _parse_at(value: str | None) -> str | None:
    return None if value is None else parse_time(value, "--at").isoformat()


@sms_app.command("send")
def send(
    account: AccountOption,
    source: Annotated[str, typer.Option("--from", help="Sender number or alphanumeric id.")],
    text: Annotated[str, typer.Option("--text", "-t", help="Message text.")],
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Destination number (repeatable).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="File with one destination number per line (bulk)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Send at this time (ISO 8601; local time if no offset)."),
    ] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Queue a message to one or many destinations; print each message id."""
    destinations = list(to or [])
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise _fail(f"cannot read {file}: {exc.strerror}") from None
        destinations += [
            line.strip() for line in lines if line.strip() and not line.startswith("#")
        ]
    if not destinations:
        raise _fail("give --to NUMBER or --file FILE")
    endpoint = _account_url(_base_url(config, url), account)
    scheduled = _parse_at(at)
    accepted, rejected = 0, 0
    with progress("sending", disable=len(destinations) < 2) as bar:
        task = bar.add_task("send", total=len(destinations))
        for destination in destinations:
            body: dict[str, Any] = {"source": source, "destination": destination, "text": text}
            if scheduled is not None:
                body["scheduled_at"] = scheduled
            try:
                result = _call("POST", endpoint, body)
            except ApiError as exc:
                if exc.status == 0:
                    raise _fail(str(exc)) from None
                rejected += 1
                _err.print(
                    f"{escape(destination)}: rejected ({exc.body.get('error')}): "
                    f"{escape(str(exc))}",
                    soft_wrap=True,
                )
            else:
                accepted += 1
                _out.print(f"{destination}\t{result['id']}", markup=False)
            bar.advance(task)
    if len(destinations) > 1:
        _err.print(f"{accepted} accepted, {rejected} rejected")
    if rejected:
        raise typer.Exit(code=1)


@sms_app.command("status")
def status(
    message_id: Annotated[str, typer.Argument(help="Message id printed by `sms send`.")],
    account: AccountOption,
    config: ConfigOption = None,
    url: UrlOption = None,
) -> None:
    """Show a message's state, segments and receipts (JSON)."""
    try:
        result = _call(
            "GET",
            f"{_account_url(_base_url(config, url), account)}/"
            f"{urllib.parse.quote(message_id, safe='')}",
        )
    except ApiError as exc:
        raise _fail(str(exc)) from None
    _out.print_json(data=result)


@sms_app.command("stats")
def stats(account: AccountOption, config: ConfigOption = None, url: UrlOption = None) -> None:
    """Show the account's SMS statistics: sent, delivered, failed, pending, success rate."""
    try:
        result = _call("GET", f"{_account_url(_base_url(config, url), account)}/stats")
    except ApiError as exc:
        raise _fail(str(exc)) from None
    rate = result.get("success_rate")
    _out.print(
        f"sent {result['sent']}  delivered {result['delivered']}  failed {result['failed']}  "
        f"pending {result['pending']}  success rate " + ("n/a" if rate is None else f"{rate:.1%}")
    )
