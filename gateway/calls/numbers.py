"""Telephone numbers: E.164 normalisation with a default region, and emergency numbers.

The one module that imports `phonenumbers`. A number without a country code
is read in the region of whoever sent it (the account's or trunk's
`region`); a number with `+` needs none. Answers are cached (LRU).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

import phonenumbers
from phonenumbers import (
    CountryCodeSource,
    NumberParseException,
    PhoneMetadata,
    PhoneNumberFormat,
    ValidationResult,
)


class NumberKind(StrEnum):
    E164 = "e164"
    """A possible number in its region: `e164` holds it."""
    INCOMPLETE = "incomplete"
    """The start of a full number (after `+`, an international or the national prefix)
    that is too short: overlap dialling's 484 Address Incomplete, not an unknown number."""
    OTHER = "other"
    """Not a telephone number (a name, an extension, too long, unknown country)."""


@dataclass(frozen=True, slots=True)
class Number:
    kind: NumberKind
    e164: str = ""


_OTHER = Number(NumberKind.OTHER)
_SEPARATORS = str.maketrans("", "", " -.()/")
# Too short to be a full number; "local only" is a subscriber number without its area code.
_PARTIAL = (ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY)


# phonenumbers spends ~50-100 us per parse, a call routes two numbers, and callers
# and destinations repeat: remember recent answers (pure functions, bounded memory).
_CACHED_NUMBERS = 65536


@lru_cache(maxsize=_CACHED_NUMBERS)
def normalise(text: str, region: str) -> Number:
    """`text` (a SIP user part or tel: number) as E.164, read in `region` when it has no `+`."""
    digits = text.translate(_SEPARATORS)
    if not digits or not all(c.isdigit() for c in digits.removeprefix("+")):
        return _OTHER  # names and extensions with letters are not numbers
    try:
        parsed = phonenumbers.parse(digits, region, keep_raw_input=True)
    except NumberParseException:
        return _OTHER
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason == ValidationResult.IS_POSSIBLE:
        return Number(NumberKind.E164, phonenumbers.format_number(parsed, PhoneNumberFormat.E164))
    if reason in _PARTIAL and _full_number_started(digits, parsed, region):
        return Number(NumberKind.INCOMPLETE)
    return _OTHER  # short codes and extensions (999, 1234) are unknown numbers, not partial


def _full_number_started(digits: str, parsed: phonenumbers.PhoneNumber, region: str) -> bool:
    if parsed.country_code_source != CountryCodeSource.FROM_DEFAULT_COUNTRY:
        return True  # "+", the international prefix (00, 011) or a country code was dialled
    metadata = PhoneMetadata.metadata_for_region(region)
    prefix = metadata.national_prefix if metadata is not None else None
    return prefix is not None and prefix != "" and digits.startswith(prefix)


@lru_cache(maxsize=_CACHED_NUMBERS)
def is_emergency(dialled: str, region: str) -> bool:
    """An emergency short code of `region` (911, 112, 999, ...) as dialled."""
    digits = dialled.translate(_SEPARATORS)
    return digits.isdigit() and bool(phonenumbers.is_emergency_number(digits, region))


def is_region(code: str) -> bool:
    """A region `phonenumbers` has metadata for (config validation)."""
    return code in phonenumbers.SUPPORTED_REGIONS
