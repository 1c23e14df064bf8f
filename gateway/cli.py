"""The `callgate` command line."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from gateway.cdr_cli import cdr_app
from gateway.config.loader import ConfigError, check_secrets, load_config
from gateway.config.reference import render_reference
from gateway.console import err as _err
from gateway.console import fail as _fail
from gateway.console import out as _out
from gateway.sms_cli import sms_app

app = typer.Typer(
    help="Callgate: SIP/SMPP telephony gateway and call-control server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML configuration file; embedded defaults if omitted."),
]


@app.command()
def run(config: ConfigOption = None) -> None:
    """Run the daemon in the foreground (logs to stdout) until SIGTERM/SIGINT."""
    import uvloop  # noqa: PLC0415 - only the daemon needs it

    from gateway.daemon import Daemon, StartupError  # noqa: PLC0415 - keeps `--help` fast

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            _err.print(str(problem), soft_wrap=True, markup=False)
        raise _fail("configuration is invalid; fix the lines above") from None

    async def main() -> int:
        return await Daemon(cfg, config).run()

    try:
        code = uvloop.run(main())
    except StartupError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code=code)


@app.command("check-config")
def check_config(
    file: Annotated[Path, typer.Argument(help="Configuration file to validate.")],
) -> None:
    """Validate a configuration file; print every problem with file:line and key."""
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            _err.print(str(problem), soft_wrap=True, markup=False)
        raise _fail(f"{len(exc.problems)} problem(s) in {file}") from None
    problems = check_secrets(cfg, file.read_text(encoding="utf-8"), str(file))
    for problem in problems:
        _err.print(str(problem), soft_wrap=True, markup=False)
    if problems:
        raise _fail(f"{len(problems)} secret(s) cannot be read")
    _out.print(f"{file}: OK")


@app.command("config-docs")
def config_docs(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print (or write) the configuration reference generated from the models."""
    text = render_reference()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        _out.print(f"wrote {output}")


@app.command("engine-info")
def engine_info() -> None:
    """Start the PJSIP engine briefly and print what the build provides."""
    from gateway.config.models import CallgateConfig  # noqa: PLC0415
    from gateway.daemon import engine_settings  # noqa: PLC0415
    from media.engine import EngineError, PjsipEngine  # noqa: PLC0415

    settings = engine_settings(CallgateConfig())

    async def probe() -> None:
        engine = PjsipEngine(dataclasses.replace(settings, probe=True), asyncio.get_running_loop())
        try:
            info = await engine.start()
        finally:
            await engine.stop()
        for key, value in info.__dict__.items():
            _out.print(f"{key}: {value}", markup=False)

    try:
        asyncio.run(probe())
    except (EngineError, ImportError) as exc:
        raise _fail(f"{exc}; run `make setup` to build PJSIP") from None


account_app = typer.Typer(help="Account helpers.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(sms_app, name="sms")
app.add_typer(cdr_app, name="cdr")


@account_app.command("hash")
def account_hash(
    name: Annotated[str, typer.Argument(help="Account name (its SIP username).")],
    realm: Annotated[
        str, typer.Option(help="Digest realm: [sip.auth] realm of the node.")
    ] = "callgate",
    password_file: Annotated[
        Path | None,
        typer.Option(help="Read the password from this file instead of prompting."),
    ] = None,
) -> None:
    """Print the HA1 lines for an account's `ha1` secret file (the password is not kept)."""
    from gateway.sip.directory import format_ha1  # noqa: PLC0415

    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise _fail("the password is empty")
    typer.echo(format_ha1(name, realm, password), nl=False)


@app.command()
def version() -> None:
    """Print the Callgate version."""
    from importlib.metadata import version as dist_version  # noqa: PLC0415

    _out.print(dist_version("callgate"))
