"""SmscConfig / SmppConfig validation and the session settings derived from them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from smpp.client import reconnect_delay, session_settings
from smpp.config import SmppConfig, SmscConfig

BASE: dict[str, Any] = {
    "name": "smsc-a",
    "host": "smsc.example.net",
    "system_id": "callgate",
    "password": {"env": "SMSC_A_PASSWORD"},
}


def test_defaults_and_secret_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    config = SmscConfig(**BASE)
    assert (config.port, config.bind_mode, config.window) == (2775, "transceiver", 10)
    assert config.concatenation == "udh8"
    monkeypatch.setenv("SMSC_A_PASSWORD", "s3cret")
    settings = session_settings(config)
    assert settings.password == "s3cret"
    assert settings.window == config.window
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    "override",
    [
        {"password": "literal"},  # a secret is a reference, never a literal
        {"password": {"env": "X", "file": "/y"}},
        {"windw": 10},  # typo: unknown keys are errors
        {"window": 0},
        {"bind_mode": "both"},
        {"concatenation": "udh7"},
        {"system_id": "x" * 16},
        {"host": "bad host"},
        {"name": "has space"},
        {"reconnect_initial": 10.0, "reconnect_max": 1.0},
        {"reconnect_jitter": 1.5},
        {"max_pdu_bytes": 100},
    ],
)
def test_invalid_values_are_rejected(override: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SmscConfig(**{**BASE, **override})


def test_smsc_names_are_unique() -> None:
    SmppConfig(smsc=(SmscConfig(**BASE), SmscConfig(**{**BASE, "name": "smsc-b"})))
    with pytest.raises(ValidationError, match="configured twice"):
        SmppConfig(smsc=(SmscConfig(**BASE), SmscConfig(**BASE)))


def test_config_is_frozen() -> None:
    config = SmscConfig(**BASE)
    with pytest.raises(ValidationError):
        config.window = 5


def test_every_field_is_documented() -> None:
    for model in (SmscConfig, SmppConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"


def test_reconnect_delay_doubles_caps_and_jitters() -> None:
    config = SmscConfig(
        **{**BASE, "reconnect_initial": 1.0, "reconnect_max": 8.0, "reconnect_jitter": 0.5}
    )
    assert [reconnect_delay(config, n, 0.5) for n in range(1, 6)] == [1, 2, 4, 8, 8]
    assert reconnect_delay(config, 1, 0.0) == 0.5
    assert reconnect_delay(config, 1, 1.0) == 1.5


MO_OWNER = (
    '[[accounts]]\nname = "alice"\n\n'
    '[[sms.numbers]]\naccount = "alice"\nnumbers = ["+4930123456"]\n'
)


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ('channels = ["store", "webhook"]\n', "c.toml:7: sms.numbers[0].channels: "),
        ('channels = ["email"]\n', "channel `email` needs `email_to`"),
        (
            'webhook_url = "ftp://example.test/"\nwebhook_secret = { env = "K" }\n'
            'channels = ["webhook"]\n',
            "c.toml:7: sms.numbers[0].webhook_url: ",
        ),
        ('email_to = "nobody"\nchannels = ["email"]\n', "is not an e-mail address"),
    ],
)
def test_mo_channels_need_their_targets(lines: str, needle: str) -> None:
    from gateway.config.loader import ConfigError, parse_config

    with pytest.raises(ConfigError) as raised:
        parse_config(MO_OWNER + lines, "c.toml")
    assert needle in str(raised.value)


def test_mo_channel_targets_accepted() -> None:
    from gateway.config.loader import parse_config

    config = parse_config(
        MO_OWNER + 'webhook_url = "https://hooks.example.test/mo"\n'
        'webhook_secret = { env = "K" }\nemail_to = "ops@example.test"\n'
        'channels = ["store", "webhook", "email"]\n',
        "c.toml",
    )
    (entry,) = config.sms.numbers
    assert entry.webhook_url == "https://hooks.example.test/mo"
    assert entry.email_to == "ops@example.test"
