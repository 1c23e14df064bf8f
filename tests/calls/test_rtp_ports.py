"""RTP port slices per pjsua account (media/rtp_ports.py) and their config check."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config.loader import ConfigError, parse_config
from media.rtp_ports import PortSlice, minimum_span, plan_ports


def test_without_trunks_the_engine_account_has_every_port() -> None:
    plan = plan_ports(20000, 20000, [])
    assert plan.engine == PortSlice(20000, 20000)
    assert plan.trunks == {}
    assert plan.engine.rtp_range == 19998  # last RTP port 39998, its RTCP 39999


def test_the_engine_keeps_half_and_trunks_share_the_rest_in_name_order() -> None:
    plan = plan_ports(20000, 20000, ["pbx", "carrier"])
    assert plan.engine == PortSlice(20000, 10000)
    assert plan.trunks == {"carrier": PortSlice(30000, 5000), "pbx": PortSlice(35000, 5000)}


@given(
    start=st.integers(1024, 30000),
    span=st.integers(2, 30000),
    names=st.lists(st.text(min_size=1, max_size=5), unique=True, max_size=40),
)
def test_slices_are_disjoint_even_and_inside_the_range(
    start: int, span: int, names: list[str]
) -> None:
    if span < minimum_span(len(names)):
        with pytest.raises(ValueError, match="at least"):
            plan_ports(start, span, names)
        return
    plan = plan_ports(start, span, names)
    slices = sorted([plan.engine, *plan.trunks.values()], key=lambda s: s.start)
    assert set(plan.trunks) == set(names)
    for first, second in itertools.pairwise(slices):
        assert first.start + first.span <= second.start
    for ports in slices:
        assert ports.span >= 2
        assert ports.span % 2 == 0
        assert (ports.start - start) % 2 == 0
        assert start <= ports.start
        assert ports.start + ports.span <= start + span


def test_a_range_too_small_for_the_trunks_is_a_config_error() -> None:
    trunks = "".join(f'[[trunks]]\nname = "t{i}"\nhost = "192.0.2.{i + 1}"\n' for i in range(3))
    with pytest.raises(ConfigError, match="rtp_port_range 10 is too small for 3 outbound"):
        parse_config(f"[media]\nrtp_port_range = 10\n{trunks}", "c.toml")
    parse_config(f"[media]\nrtp_port_range = 12\n{trunks}", "c.toml")
