"""From [[trunks]] to engine settings; route references; registration reports."""

from __future__ import annotations

import pytest

from gateway.calls.trunk_accounts import RegistrationReporter, trunk_accounts
from gateway.calls.trunk_probe import health_checks
from gateway.config.loader import ConfigError, parse_config
from gateway.metrics import Metrics
from media.trunks import TrunkAccountSettings, TrunkRegistration

_TRUNKS = """
[[trunks]]
name = "inbound"
allow = ["192.0.2.0/24"]

[[trunks]]
name = "carrier"
host = "198.51.100.9"
port = 5070
transport = "tcp"
username = "gw"
password = { env = "CARRIER_SECRET" }
registration = true
registration_expires = 300
options_interval = 0

[[trunks]]
name = "pbx"
host = "2001:db8::5"
"""


def test_outbound_trunks_become_engine_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARRIER_SECRET", "s3cret")
    config = parse_config(_TRUNKS, "c.toml")
    assert trunk_accounts(config.trunks) == (
        TrunkAccountSettings("carrier", "198.51.100.9", 5070, "tcp", "gw", "s3cret", True, 300),
        TrunkAccountSettings("pbx", "2001:db8::5", 5060, "udp"),
    )
    assert trunk_accounts(config.trunks)[1].registrar_uri() == "sip:[2001:db8::5]:5060"
    assert trunk_accounts(config.trunks)[0].registrar_uri() == "sip:198.51.100.9:5070;transport=tcp"
    # Probed: outbound trunks with checks on (carrier turned them off; pbx has the default).
    assert list(health_checks(config.trunks)) == ["pbx"]


@pytest.mark.parametrize("trunk", ["ghost", "inbound"])
def test_routes_may_only_name_outbound_trunks(trunk: str) -> None:
    text = _TRUNKS + f'[[calls.routes]]\nprefix = "1"\ntrunks = ["{trunk}"]\n'
    with pytest.raises(ConfigError, match=f"names unknown trunk {trunk}"):
        parse_config(text, "c.toml")


@pytest.mark.parametrize(
    ("status", "expires", "registered", "gauge"),
    [(200, 600, True, 1.0), (403, 0, False, 0.0), (200, 0, False, 0.0), (0, 0, False, 0.0)],
)
def test_registration_reports_set_the_gauge(
    status: int, expires: int, registered: bool, gauge: float
) -> None:
    metrics = Metrics()
    event = TrunkRegistration("carrier", 0.0, status, "x", expires)
    assert event.registered is registered
    RegistrationReporter(metrics)(event)
    assert metrics.trunk_registered.labels(trunk="carrier")._value.get() == gauge


def test_a_trunk_host_is_an_ip_address_or_a_dns_name() -> None:
    text = '[[trunks]]\nname = "carrier"\nhost = "sip_carrier.example"\n'
    with pytest.raises(ConfigError, match=r"c\.toml:3.*neither an IP address nor a DNS name"):
        parse_config(text, "c.toml")
    named = parse_config('[[trunks]]\nname = "c"\nhost = "sip.carrier.example"\n', "c.toml")
    assert (named.trunks[0].host, named.trunks[0].uri_port) == ("sip.carrier.example", None)
    config = parse_config('[[trunks]]\nname = "pbx"\nhost = "[2001:db8::5]"\n', "c.toml")
    assert (config.trunks[0].host, config.trunks[0].uri_port) == ("2001:db8::5", 5060)
