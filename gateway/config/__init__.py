"""Configuration: TOML file -> frozen pydantic models, with file:line errors."""
