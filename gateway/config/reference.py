"""Generate docs/configuration.md from the configuration models."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway.config.models import CallgateConfig
from gateway.config.secrets import SecretRef
from gateway.reload import RESTART_ONLY

_HEADER = """# Configuration reference

Generated from the configuration models by `callgate config-docs`; do not edit.

Callgate reads one TOML file (`callgate run --config FILE`; without it the
embedded defaults below apply, which is what `config/callgate.toml` spells
out). `callgate check-config FILE` validates a file and names file, line and
key of every problem. Unknown keys are errors. `SIGHUP` re-reads the file:
an invalid file keeps the running configuration; settings marked
*restart* keep their old value until the next start.

Secrets are never written in the file: a secret is `{ file = "/path" }` (the
file's content) or `{ env = "NAME" }` (an environment variable).
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        optional = " (optional)" if type(None) in args else ""
        return " or ".join(names) + optional
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if annotation is SecretRef:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _toml_value(value: Any) -> str:
    if isinstance(value, BaseModel):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.model_dump().items())
        return "{ " + inner + " }"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return json.dumps(str(value))
    if value is None:
        return "(unset)"
    return json.dumps(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `X`, `tuple[X, ...]` or `X | None`, if any (not secrets)."""
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if (
            isinstance(candidate, type)
            and issubclass(candidate, BaseModel)
            and candidate is not SecretRef
        ):
            return candidate
    return None


def _section(
    title: str, model: type[BaseModel], restart: set[str], out: list[str], *, array: bool = False
) -> None:
    doc = (model.__doc__ or "").strip()
    heading = f"`[[{title}]]` (each entry)" if array else f"`[{title}]`"
    out += [f"## {heading}", "", doc, ""]
    out += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for name, field in model.model_fields.items():
        out.append(_row(name, field, title, restart))
        inner = nested_model(field.annotation)
        if inner is not None:
            is_array = typing.get_origin(field.annotation) is tuple
            nested.append((f"{title}.{name}", inner, is_array))
    out.append("")
    for sub_title, sub_model, is_array in nested:
        _section(sub_title, sub_model, restart, out, array=is_array)


def _row(name: str, field: FieldInfo, title: str, restart: set[str]) -> str:
    description = _cell(field.description or "")
    if title in restart or f"{title}.{name}" in restart:
        description += " *(restart)*"
    if field.is_required():
        default_text = "required"
    else:
        default = field.get_default(call_default_factory=True)
        default_text = (
            "see below" if isinstance(default, BaseModel) else f"`{_cell(_toml_value(default))}`"
        )
    return f"| `{name}` | {_cell(_type_name(field.annotation))} | {default_text} | {description} |"


def render_reference() -> str:
    """The whole reference page as Markdown."""
    restart = {section if key is None else f"{section}.{key}" for section, key in RESTART_ONLY}
    out = [_HEADER]
    for name, field in CallgateConfig.model_fields.items():
        model = nested_model(field.annotation)
        assert model is not None, f"top-level key {name} must be a section"
        _section(name, model, restart, out)
    return "\n".join(out).rstrip() + "\n"
