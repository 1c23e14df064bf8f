"""pytest fixture ``smsc``: a started SMSC simulator per test, stopped afterwards.

Re-export it where it is needed, e.g. in a conftest.py:
``from smsc.fixture import smsc`` when ``tests/`` is on ``sys.path`` (pytest's
default prepend import mode with no ``tests/__init__.py``), or
``from tests.smsc.fixture import smsc`` when the repository root is.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .simulator import SmscSimulator


@pytest.fixture
def smsc() -> Iterator[SmscSimulator]:
    """A simulator with default behaviour; change it with ``smsc.set_scenario(...)``."""
    with SmscSimulator().start() as simulator:
        yield simulator
