"""Load a TOML configuration file into `CallgateConfig`, with file:line errors."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.config.locate import PathKey, key_lines, line_of
from gateway.config.models import CallgateConfig
from gateway.config.secrets import SecretRef, SecretUnavailableError

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file, located for the admin."""

    source: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; carries every problem found."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def format_key(path: PathKey) -> str:
    """`('sip', 'listen', 0, 'port')` -> `sip.listen[0].port`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _describe(error: Any) -> str:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see docs/configuration.md)"
    if error["type"] == "missing":
        return "required key is missing"
    value = error.get("input")
    if error["type"] not in ("model_type",) and isinstance(value, str | int | float | bool):
        return f"{message} (got {value!r})"
    return message


def _model_path(loc: tuple[Any, ...]) -> PathKey:
    """Drop pydantic's validator/union labels from an error location."""
    return tuple(part for part in loc if isinstance(part, int) or "[" not in str(part))


def parse_config(text: str, source: str) -> CallgateConfig:
    """Parse and validate configuration text; raise ConfigError with positions."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        line = int(match.group(1)) if match else None
        if match:
            message = f"{message[: match.start()]} (column {match.group(2)})"
        raise ConfigError([ConfigProblem(source, line, "", f"invalid TOML: {message}")]) from None
    try:
        config = CallgateConfig.model_validate(data)
    except ValidationError as exc:
        lines = key_lines(text)
        problems = []
        for error in exc.errors():
            path = _model_path(tuple(error["loc"]))
            problems.append(
                ConfigProblem(source, line_of(lines, path), format_key(path), _describe(error))
            )
        raise ConfigError(problems) from None
    return config


def load_config(path: Path | None) -> CallgateConfig:
    """Read `path`, or return the embedded defaults when it is None."""
    if path is None:
        return CallgateConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read: {reason}")]) from None
    return parse_config(text, str(path))


def _secret_refs(model: BaseModel, path: PathKey) -> Iterator[tuple[PathKey, SecretRef]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
        for index, item in items:
            here = (*path, name) if index is None else (*path, name, index)
            if isinstance(item, SecretRef):
                yield here, item
            elif isinstance(item, BaseModel):
                yield from _secret_refs(item, here)


def check_secrets(config: CallgateConfig, text: str | None, source: str) -> list[ConfigProblem]:
    """Try to read every referenced secret; report the ones that cannot be read."""
    lines = key_lines(text) if text is not None else {}
    problems = []
    for path, ref in _secret_refs(config, ()):
        try:
            ref.reveal()
        except SecretUnavailableError as exc:
            problems.append(ConfigProblem(source, line_of(lines, path), format_key(path), str(exc)))
    return problems
