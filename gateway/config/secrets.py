"""Secrets referenced from configuration: read from a file or the environment.

A secret never appears as a literal in a config file, so config files can be
shared and logged. The value is read when needed and kept as `SecretStr`, which
prints as `**********`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr, model_validator

from gateway.config.base import Section


class SecretUnavailableError(Exception):
    """The file or environment variable that holds a secret cannot be read."""


class SecretRef(Section):
    """Where a secret lives: exactly one of `file` or `env`."""

    file: Path | None = None
    """Path of a file whose content (without the trailing newline) is the secret."""
    env: str | None = None
    """Name of an environment variable that holds the secret."""

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("a secret needs exactly one of `file` or `env`")
        return self

    def reveal(self) -> SecretStr:
        """Read the secret now (files may be rotated between reloads)."""
        if self.file is not None:
            try:
                return SecretStr(self.file.read_text(encoding="utf-8").rstrip("\r\n"))
            except OSError as exc:
                raise SecretUnavailableError(
                    f"cannot read secret file {self.file}: {exc.strerror}"
                ) from exc
        assert self.env is not None
        value = os.environ.get(self.env)
        if value is None:
            raise SecretUnavailableError(f"environment variable {self.env} is not set")
        return SecretStr(value)

    def describe(self) -> str:
        """Where the secret comes from, safe to log."""
        return f"file {self.file}" if self.file is not None else f"env ${self.env}"
