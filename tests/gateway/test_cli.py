"""The `callgate` command line: help everywhere, account hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.sip.digest import DigestAlgorithm, ha1
from gateway.sip.directory import DirectoryError, parse_ha1

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["check-config"],
        ["config-docs"],
        ["engine-info"],
        ["version"],
        ["account"],
        ["account", "hash"],
        ["sms"],
        ["sms", "send"],
        ["sms", "status"],
        ["sms", "stats"],
        ["cdr"],
        ["cdr", "list"],
        ["cdr", "export"],
    ],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_account_hash_matches_digest_ha1(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("Circle of Life\n")
    result = runner.invoke(
        app,
        [
            "account",
            "hash",
            "Mufasa",
            "--realm",
            "http-auth@example.org",
            "--password-file",
            str(password),
        ],
    )
    assert result.exit_code == 0, result.output
    hashes = parse_ha1(result.output, "Mufasa")
    for algorithm in (DigestAlgorithm.MD5, DigestAlgorithm.SHA256):
        assert hashes[algorithm.value] == ha1(
            "Mufasa", "http-auth@example.org", "Circle of Life", algorithm
        )


@pytest.mark.parametrize("text", ["", "MD5:xyz\n", "SHA-1:" + "0" * 40 + "\n", "MD5 " + "0" * 32])
def test_bad_ha1_secret_names_the_account(text: str) -> None:
    with pytest.raises(DirectoryError, match="account bob"):
        parse_ha1(text, "bob")
