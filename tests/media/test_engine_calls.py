"""The engine's call half at the thread boundary: events out, death made visible."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from media.engine import EngineError, PjsipEngine
from media.events import CallEvent, EngineStopped
from tests.calls.peers import engine_settings

pytestmark = pytest.mark.engine


class _Injected(BaseException):
    """Escapes every `except Exception` in the engine loop, as a C-level abort would not."""


async def test_engine_thread_death_is_visible() -> None:
    engine = PjsipEngine(engine_settings(), asyncio.get_running_loop())
    stopped: asyncio.Future[EngineStopped] = asyncio.get_running_loop().create_future()

    def on_events(batch: Sequence[CallEvent]) -> None:
        for event in batch:
            if isinstance(event, EngineStopped) and not stopped.done():
                stopped.set_result(event)

    engine.attach_calls(on_events)
    await engine.start()
    assert engine.alive(time.monotonic(), 5.0)

    def die(_endpoint: Any) -> None:
        raise _Injected("injected")

    with pytest.raises(EngineError, match="engine died"):
        await asyncio.wait_for(engine.run(die), 5)
    event = await asyncio.wait_for(stopped, 5)
    assert event.crashed and "injected" in event.reason
    assert not engine.alive(time.monotonic(), 5.0)
    assert engine.failure is not None and "injected" in engine.failure
    with pytest.raises(EngineError):
        await engine.run(lambda _ep: None)
    await engine.stop()


async def test_clean_stop_is_not_a_crash() -> None:
    engine = PjsipEngine(engine_settings(), asyncio.get_running_loop())
    events: list[CallEvent] = []
    engine.attach_calls(events.extend)
    await engine.start()
    await engine.stop()
    await asyncio.sleep(0)  # the final batch is scheduled with call_soon_threadsafe
    assert [type(e) for e in events] == [EngineStopped]
    assert isinstance(events[0], EngineStopped) and not events[0].crashed
    assert engine.failure is None
