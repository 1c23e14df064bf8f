"""Routing, number ownership, content filter, account limits and the [sms] config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from smpp.account_limits import SubmitLimits
from smpp.config import SmsAccountConfig, SmsConfig, SmsFilterConfig
from smpp.content_filter import ContentFilter
from smpp.routing import (
    BadNumberError,
    MoDirectory,
    MtRouter,
    NumberNormaliser,
    mo_destination,
    source_address,
)
from smpp.submit_result import Rejected, RejectReason


def test_longest_prefix_wins_and_default_route() -> None:
    config = SmsConfig(
        routes=[
            {"prefix": "", "smsc": ["default"]},
            {"prefix": "+49", "smsc": ["de1", "de2"]},
            {"prefix": "49151", "smsc": ["mobile"]},
        ]
    )
    router = MtRouter(config)
    assert router.route("+4915112345678") == ("mobile",)
    assert router.route("+493012345") == ("de1", "de2")
    assert router.route("+14155550100") == ("default",)
    assert MtRouter(SmsConfig(routes=[{"prefix": "+49", "smsc": ["x"]}])).route("+1415") is None


def test_config_refuses_duplicates_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        SmsConfig(routes=[{"prefix": "+49", "smsc": ["a"]}, {"prefix": "49", "smsc": ["b"]}])
    with pytest.raises(ValidationError):
        SmsConfig(routes=[{"prefix": "+49x", "smsc": ["a"]}])
    with pytest.raises(ValidationError):
        SmsConfig(filter={"patterns": ["("]})
    with pytest.raises(ValidationError):
        SmsConfig(default_region="XX")
    with pytest.raises(ValidationError):
        SmsConfig(numbers=[{"account": "a", "channels": ["fax"]}])
    with pytest.raises(ValidationError):
        SmsConfig(unknown_key=1)


def test_normalisation() -> None:
    german = NumberNormaliser("DE")
    assert german.e164("0151 1234 5678") == "+4915112345678"
    assert german.e164("004915112345678") == "+4915112345678"
    assert german.e164("+1 415 555 0100") == "+14155550100"
    with pytest.raises(BadNumberError):
        german.e164("12")
    with pytest.raises(BadNumberError):
        NumberNormaliser(None).e164("015112345678")  # no region: international only
    with pytest.raises(BadNumberError):
        german.e164("not a number")


def test_source_addresses() -> None:
    normaliser = NumberNormaliser("DE")
    assert source_address("Callgate", normaliser) == source_address("Callgate", normaliser)
    assert (
        source_address("Callgate", normaliser).ton,
        source_address("Callgate", normaliser).npi,
    ) == (5, 0)
    assert source_address("12345", normaliser).ton == 3
    international = source_address("+4930123456", normaliser)
    assert (international.addr, international.ton, international.npi) == ("4930123456", 1, 1)


def test_mo_number_owner_exact_then_longest_prefix() -> None:
    normaliser = NumberNormaliser("DE")
    config = SmsConfig(
        default_region="DE",
        numbers=[
            {"account": "alice", "numbers": ["030 1234567"], "channels": ["store", "sip"]},
            {"account": "bob", "prefixes": ["+4930123"]},
            {"account": "carol", "prefixes": ["+49301234"]},
        ],
    )
    directory = MoDirectory(config, normaliser)
    assert directory.owner("+49301234567").account == "alice"  # type: ignore[union-attr]
    assert directory.owner("+49301234567").channels == ("store", "sip")  # type: ignore[union-attr]
    assert directory.owner("+49301234999").account == "carol"  # type: ignore[union-attr]
    assert directory.owner("+49301239999").account == "bob"  # type: ignore[union-attr]
    assert directory.owner("+4940123") is None
    assert mo_destination("49301234567", 1, normaliser) == "+49301234567"
    assert mo_destination("0301234567", 0, normaliser) == "+49301234567"
    assert mo_destination("55555", 0, normaliser) == "55555"  # short code stays as it is


def test_content_filter_rules() -> None:
    content = ContentFilter(
        SmsFilterConfig(
            keywords=["casino", "free money"],
            patterns=[r"(?i)\bwin\s+\d+\s*eur"],
            blocked_url_hosts=["bad.example"],
            accounts=[
                {
                    "account": "bank",
                    "allow_patterns": [r"^Your code is \d{6}"],
                    "deny_keywords": ["crypto"],
                },
            ],
        )
    )
    assert content.check("x", "Hello there") is None
    assert content.check("x", "Visit the CASINO tonight") == "keyword 'CASINO'"
    assert content.check("x", "casinos are fine") is None  # whole words only
    assert content.check("x", "get FREE   money") is None  # exact phrase
    assert content.check("x", "Win 100 EUR now") is not None
    assert content.check("x", "see http://www.bad.example/x") == "URL host 'www.bad.example'"
    assert content.check("x", "see bad.example.org") is None
    assert content.check("x", "mail me at me@bad.example") is None  # not a URL
    assert content.check("bank", "Your code is 123456, casino") is None
    assert content.check("bank", "Your code is 123456, crypto") == "account rule: keyword 'crypto'"
    assert content.check("bank", "casino") == "keyword 'casino'"


def test_limits_quota_and_rate() -> None:
    limits = SubmitLimits(
        (
            SmsAccountConfig(account="q", daily_quota=2),
            SmsAccountConfig(account="r", rate=1.0, burst=2),
        )
    )
    limits.load("2024-01-01", {"q": 1})
    assert limits.admit("q", 0.0, "2024-01-01") is None
    hit = limits.admit("q", 0.0, "2024-01-01")
    assert hit is not None and hit.reason is RejectReason.QUOTA
    assert limits.admit("q", 0.0, "2024-01-02") is None  # a new day
    assert limits.admit("r", 10.0, "2024-01-02") is None
    assert limits.admit("r", 10.0, "2024-01-02") is None
    throttled = limits.admit("r", 10.0, "2024-01-02")
    assert throttled is not None and throttled.reason is RejectReason.THROTTLED
    assert limits.admit("r", 11.0, "2024-01-02") is None
    assert limits.admit("nobody", 0.0, "2024-01-02") is None
    rejected = Rejected.of(RejectReason.QUOTA, "x")
    assert rejected.command_status == 0x58 and rejected.retry_later
