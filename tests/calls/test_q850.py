"""RFC 3398 cause mapping and RFC 3326 Reason headers: pure, no engine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calls.q850 import (
    CAUSE_TEXT,
    Q850_TO_SIP,
    SIP_TO_Q850,
    parse_reason,
    q850_for_sip,
    reason_in_message,
    reason_value,
    sip_for_q850,
)


@pytest.mark.parametrize(
    ("status", "cause"),
    [(404, 1), (486, 17), (480, 18), (408, 102), (603, 21), (503, 41), (502, 38), (484, 28)],
)
def test_sip_to_q850_per_rfc_3398(status: int, cause: int) -> None:
    assert q850_for_sip(status) == cause


def test_sip_without_a_cause() -> None:
    assert q850_for_sip(200) is None
    assert q850_for_sip(487) is None  # our own CANCEL
    assert q850_for_sip(488) is None  # "by Warning header"
    assert q850_for_sip(499) == 127  # unknown: interworking


@pytest.mark.parametrize(
    ("cause", "status"), [(1, 404), (17, 486), (18, 408), (19, 480), (21, 403), (34, 503)]
)
def test_q850_to_sip_per_rfc_3398(cause: int, status: int) -> None:
    assert sip_for_q850(cause) == status


def test_unlisted_causes_map_by_class() -> None:
    assert sip_for_q850(30) == 480
    assert sip_for_q850(44) == 503
    assert sip_for_q850(100) == 500


def test_tables_are_consistent() -> None:
    assert set(SIP_TO_Q850.values()) <= set(CAUSE_TEXT)
    assert set(Q850_TO_SIP) <= set(CAUSE_TEXT)
    assert all(300 <= s < 700 for s in [*SIP_TO_Q850, *Q850_TO_SIP.values()])


def test_reason_round_trip() -> None:
    assert reason_value(17) == 'Q.850;cause=17;text="User busy"'
    assert reason_value(99) == "Q.850;cause=99"
    for cause in range(1, 128):
        assert parse_reason(reason_value(cause)) == cause


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ('SIP;cause=200;text="Call completed elsewhere", Q.850 ;cause=31', 31),
        ('q.850;text="a, b;cause=5";cause=16', 16),
        ("Q.850;cause=0", None),
        ("Q.850;cause=128", None),
        ("Q.850;cause=abc", None),
        ("Q.850", None),
        ("SIP;cause=486", None),
        ("Q.850;;cause=16", None),
    ],
)
def test_parse_reason(value: str, cause: int | None) -> None:
    assert parse_reason(value) == cause


def test_reason_in_message_reads_headers_only() -> None:
    message = (
        "BYE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1\r\n"
        "reason: Q.850;cause=41\r\nContent-Length: 25\r\n\r\nReason: Q.850;cause=17\r\n"
    )
    assert reason_in_message(message) == 41
    assert reason_in_message(message.replace("reason: Q.850;cause=41\r\n", "")) is None


@given(st.text())
def test_parse_reason_never_raises(value: str) -> None:
    cause = parse_reason(value)
    assert cause is None or 1 <= cause <= 127
