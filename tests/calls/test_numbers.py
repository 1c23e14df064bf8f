"""E.164 normalisation and emergency numbers (phonenumbers behind one module)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calls.numbers import Number, NumberKind, is_emergency, is_region, normalise


def test_national_and_international_forms_normalise_to_e164() -> None:
    assert normalise("2025550123", "US") == Number(NumberKind.E164, "+12025550123")
    assert normalise("1 (202) 555-0123", "US") == Number(NumberKind.E164, "+12025550123")
    assert normalise("030 1234567", "DE") == Number(NumberKind.E164, "+49301234567")
    assert normalise("0049301234567", "DE") == Number(NumberKind.E164, "+49301234567")
    assert normalise("011 49 30 1234567", "US") == Number(NumberKind.E164, "+49301234567")
    # With a + the region does not matter.
    assert normalise("+442071234567", "US") == normalise("+442071234567", "DE")
    assert normalise("+442071234567", "US").e164 == "+442071234567"


def test_a_started_full_number_that_is_too_short_is_incomplete() -> None:
    assert normalise("+4930", "US").kind is NumberKind.INCOMPLETE
    assert normalise("1202555", "US").kind is NumberKind.INCOMPLETE  # national prefix 1
    assert normalise("0044207", "DE").kind is NumberKind.INCOMPLETE  # international prefix


def test_short_codes_names_and_junk_are_not_numbers() -> None:
    for text in ("999", "alice", "*21#", "+", "", "12345678901234567890", "2025550"):
        assert normalise(text, "US") == Number(NumberKind.OTHER), text


def test_emergency_numbers_depend_on_the_region() -> None:
    assert is_emergency("911", "US")
    assert is_emergency("112", "DE")
    assert is_emergency("999", "GB")
    assert not is_emergency("999", "US")
    assert not is_emergency("2025550123", "US")
    assert not is_emergency("alice", "US")


def test_regions() -> None:
    assert is_region("US") and is_region("DE")
    assert not is_region("XX") and not is_region("us")


@settings(deadline=None)  # a loaded machine must not fail it
@given(st.text(max_size=30), st.sampled_from(["US", "DE", "GB", "FR", "JP"]))
def test_any_text_normalises_or_is_other(text: str, region: str) -> None:
    number = normalise(text, region)
    assert (number.kind is NumberKind.E164) == bool(number.e164)
    if number.e164:
        assert number.e164.startswith("+") and number.e164[1:].isdigit()
