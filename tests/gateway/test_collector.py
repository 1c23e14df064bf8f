"""The collector settings the daemon applies once start-up is done."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.collector import settle_collector
from gateway.config.loader import ConfigError, parse_config


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_settle_freezes_what_exists_and_sets_the_thresholds() -> None:
    gc.unfreeze()
    built_at_start = [object() for _ in range(100)]  # noqa: F841 - kept alive across the call
    frozen = settle_collector((50_000, 20, 100))
    assert gc.get_threshold() == (50_000, 20, 100)
    assert frozen == gc.get_freeze_count() > 100


def test_thresholds_come_from_the_daemon_section() -> None:
    cfg = parse_config("[daemon]\ngc_thresholds = [10000, 10, 10]\n", "c.toml")
    assert cfg.daemon.gc_thresholds == (10_000, 10, 10)
    assert parse_config("", "c.toml").daemon.gc_thresholds == (50_000, 20, 100)
    with pytest.raises(ConfigError, match=r"c.toml:2: daemon.gc_thresholds"):
        parse_config("[daemon]\ngc_thresholds = [0, 10, 10]\n", "c.toml")
    with pytest.raises(ConfigError, match=r"daemon.gc_thresholds"):
        parse_config("[daemon]\ngc_thresholds = [700, 10]\n", "c.toml")
