"""Helpers for the SMS service tests: configs for a simulator, a store, counting."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from gateway.config.models import StoreConfig
from gateway.config.secrets import SecretRef
from gateway.store.database import Store
from smpp.config import SmscConfig, SmsConfig
from smpp.service import SmsService
from tests.smsc.simulator import SmscSimulator

PASSWORD_ENV = "CALLGATE_TEST_SMSC_PASSWORD"
WAIT = 30.0


def smsc_config(sim: SmscSimulator, name: str = "sim", **overrides: Any) -> SmscConfig:
    values: dict[str, Any] = {
        "name": name,
        "host": sim.host,
        "port": sim.smpp_port,
        "system_id": sim.system_id,
        "password": SecretRef(env=PASSWORD_ENV),
        "window": 50,
        "response_timeout": 2.0,
        "bind_timeout": 5.0,
        "reconnect_initial": 0.05,
        "reconnect_max": 0.3,
        "reconnect_jitter": 0.0,
        "throttle_backoff_initial": 0.02,
        "throttle_backoff_max": 0.2,
    }
    values.update(overrides)
    return SmscConfig(**values)


def sms_config(smscs: tuple[str, ...] = ("sim",), **overrides: Any) -> SmsConfig:
    values: dict[str, Any] = {
        "default_region": "DE",
        "routes": [{"prefix": "", "smsc": list(smscs)}],
        "retry": {"initial_backoff": 0.05, "max_backoff": 0.5, "max_attempts": 20},
        "stop_grace": 5.0,
    }
    values.update(overrides)
    return SmsConfig(**values)


async def open_store(data_dir: Path) -> Store:
    return await Store.open(StoreConfig(), data_dir)


def destination(n: int) -> str:
    return f"+4915112{n:06d}"


def accepted_payloads(sim: SmscSimulator) -> Counter[tuple[str, str]]:
    """(destination_addr, short_message_hex) of every submit_sm the simulator accepted."""
    return Counter(
        (m["destination_addr"], m["short_message_hex"])
        for m in sim.messages()
        if m["command_status"] == 0
    )


async def submit_many(
    service: SmsService, count: int, account: str = "alice", prefix: str = "msg"
) -> list[str]:
    results = await asyncio.gather(
        *(
            service.submit(account, "Callgate", destination(n), f"{prefix} {n}")
            for n in range(count)
        )
    )
    ids = []
    for result in results:
        assert hasattr(result, "segments"), result
        ids.append(result.message_id)
    assert None not in ids
    return [str(i) for i in ids]
