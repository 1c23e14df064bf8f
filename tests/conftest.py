"""Fixtures and hooks shared by every test directory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop

pytest_plugins = ["tests.smsc.fixture", "tests.support.store_fixtures"]


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    """Async tests run on uvloop, the loop the daemon runs on."""
    return {"uvloop": uvloop.new_event_loop}
