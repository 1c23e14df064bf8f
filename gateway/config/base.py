"""Base for every configuration section.

Each section is one frozen pydantic model; unknown keys are errors (no silent
typos) and each field's docstring becomes its entry in docs/configuration.md.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A configuration section: frozen, strict about unknown keys, documented."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )
