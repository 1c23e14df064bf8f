"""Async tests run on the daemon's loop implementation."""

import asyncio


async def test_async_tests_run_on_uvloop() -> None:
    assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
