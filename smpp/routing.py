"""Numbers and routes: E.164 normalisation, MT routes by prefix, MO number owners.

Pure lookups built once from `SmsConfig`; phonenumbers is used only to
normalise (results cached, the hot path sees the same numbers again and again).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final

import phonenumbers

from smpp.config import SmsChannel, SmsConfig, SmsNumbersConfig

NORMALISE_CACHE: Final = 65_536
MIN_E164_DIGITS: Final = 7
"""Shortest E.164 number in use (country code included, e.g. Niue's +683 4002);
phonenumbers calls far shorter strings "possible" where lengths vary (DE)."""
MO_SHORT_CODE_DIGITS: Final = 6
"""MO destinations of at most this many digits, not in international form, are
short codes and kept as received."""
_ALPHANUMERIC: Final = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ._-]{1,11}$")
_SHORT_CODE: Final = re.compile(r"^[0-9]{3,8}$")
_STRICT_E164: Final = re.compile(rf"^\+[1-9][0-9]{{{MIN_E164_DIGITS - 1},14}}$")
_COUNTRY_PREFIXES: Final = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


class BadNumberError(ValueError):
    """Not a number we can route or send from."""


def _digits(prefix: str) -> str:
    return prefix.lstrip("+")


class NumberNormaliser:
    """Turns what users write into E.164 (`+4915112345678`)."""

    def __init__(self, default_region: str | None) -> None:
        self.default_region = default_region
        self.e164 = functools.lru_cache(maxsize=NORMALISE_CACHE)(self._e164)

    def _e164(self, number: str) -> str:
        text = number.strip()
        if _STRICT_E164.match(text) and (
            text[1:2] in _COUNTRY_PREFIXES
            or text[1:3] in _COUNTRY_PREFIXES
            or text[1:4] in _COUNTRY_PREFIXES
        ):
            # Already E.164 with a known country code: the hot path of API and
            # bulk submissions, spared phonenumbers' full parse.
            return text
        if text.startswith("00"):
            text = "+" + text[2:]
        if not text.startswith("+") and self.default_region is None:
            raise BadNumberError(f"{number!r} is not in international form (+...)")
        try:
            parsed = phonenumbers.parse(text, None if text.startswith("+") else self.default_region)
        except phonenumbers.NumberParseException as exc:
            raise BadNumberError(f"{number!r}: {exc}") from exc
        # Possible (length fits the country), not valid: new ranges must not be refused.
        e164: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if not phonenumbers.is_possible_number(parsed) or len(e164) - 1 < MIN_E164_DIGITS:
            raise BadNumberError(f"{number!r} is not a possible number")
        return e164


@dataclass(frozen=True, slots=True)
class SourceAddress:
    """A submit_sm source: address text with its TON/NPI."""

    addr: str
    ton: int
    npi: int


def source_address(source: str, normaliser: NumberNormaliser) -> SourceAddress:
    """Alphanumeric sender (TON 5), short code (TON 3) or international number (TON 1)."""
    text = source.strip()
    if _SHORT_CODE.match(text):
        return SourceAddress(text, 3, 0)
    if _ALPHANUMERIC.match(text):
        return SourceAddress(text, 5, 0)
    return SourceAddress(_digits(normaliser.e164(text)), 1, 1)


class MtRouter:
    """Destination -> SMSC names in priority order; the longest prefix wins."""

    def __init__(self, config: SmsConfig) -> None:
        self._routes = {_digits(route.prefix): route.smsc for route in config.routes}
        self._longest = max((len(p) for p in self._routes), default=0)

    def route(self, e164: str) -> tuple[str, ...] | None:
        digits = _digits(e164)
        routes = self._routes
        for length in range(min(len(digits), self._longest), -1, -1):
            found = routes.get(digits[:length])
            if found is not None:
                return found
        return None

    def smsc_names(self) -> set[str]:
        return {name for names in self._routes.values() for name in names}


@dataclass(frozen=True, slots=True)
class NumberOwner:
    account: str
    channels: tuple[SmsChannel, ...]
    entry: SmsNumbersConfig
    """The `[[sms.numbers]]` table: where its channels deliver to."""


class MoDirectory:
    """Which account owns a number MO messages are sent to (exact, then longest prefix)."""

    def __init__(self, config: SmsConfig, normaliser: NumberNormaliser) -> None:
        self._exact: dict[str, NumberOwner] = {}
        self._prefixes: dict[str, NumberOwner] = {}
        for entry in config.numbers:
            owner = NumberOwner(entry.account, entry.channels, entry)
            for number in entry.numbers:
                self._exact[_digits(normaliser.e164(number))] = owner
            for prefix in entry.prefixes:
                self._prefixes[_digits(prefix)] = owner
        self._longest = max((len(p) for p in self._prefixes), default=0)

    def owner(self, e164: str) -> NumberOwner | None:
        digits = _digits(e164)
        found = self._exact.get(digits)
        if found is not None:
            return found
        for length in range(min(len(digits), self._longest), 0, -1):
            found = self._prefixes.get(digits[:length])
            if found is not None:
                return found
        return None


def mo_destination(addr: str, ton: int, normaliser: NumberNormaliser) -> str:
    """E.164 of an MO destination_addr; as received when it is no number (short code)."""
    text = addr.strip()
    if ton == 1 and text.isdigit():
        text = "+" + text
    elif text.isdigit() and len(text) <= MO_SHORT_CODE_DIGITS:
        return text
    try:
        return normaliser.e164(text)
    except BadNumberError:
        return text
