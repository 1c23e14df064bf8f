"""The `store_config` fixture: each test that takes it runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.config.models import StoreConfig
from tests.support.postgres import postgres_server


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster per test module."""
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_config(request: pytest.FixtureRequest) -> StoreConfig:
    if request.param == "sqlite":
        return StoreConfig()
    url: str = request.getfixturevalue("postgres_url")
    return StoreConfig(url=url)
