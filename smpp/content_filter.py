"""The content filter for MT texts: keywords, patterns, URL hosts, per-account rules.

Pure: built once from `SmsFilterConfig`, `check()` returns why a text is
refused (or None). Order: the account's deny rules, then its allow rules
(which skip the global rules), then the global rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from smpp.config import SmsFilterConfig

_URL_HOST: Final = re.compile(
    r"(?i)(?:\b[a-z][a-z0-9+.-]*://)?(?<![\w@.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
    r"[a-z]{2,63})(?![\w-])"
)


def _keyword_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    words = [w for w in words if w]
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _any_pattern(patterns: Iterable[str]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]


@dataclass(frozen=True, slots=True)
class _Rules:
    keywords: re.Pattern[str] | None
    patterns: list[re.Pattern[str]]

    def match(self, text: str) -> str | None:
        if self.keywords is not None and (found := self.keywords.search(text)):
            return f"keyword {found.group(0)!r}"
        for pattern in self.patterns:
            if pattern.search(text):
                return f"pattern {pattern.pattern!r}"
        return None


class ContentFilter:
    def __init__(self, config: SmsFilterConfig) -> None:
        self._global = _Rules(_keyword_pattern(config.keywords), _any_pattern(config.patterns))
        self._hosts = tuple(h.lower().strip(".") for h in config.blocked_url_hosts)
        self._deny = {
            entry.account: _Rules(
                _keyword_pattern(entry.deny_keywords), _any_pattern(entry.deny_patterns)
            )
            for entry in config.accounts
        }
        self._allow = {
            entry.account: _Rules(
                _keyword_pattern(entry.allow_keywords), _any_pattern(entry.allow_patterns)
            )
            for entry in config.accounts
        }
        self.active = bool(
            config.keywords or config.patterns or config.blocked_url_hosts or config.accounts
        )

    def check(self, account: str, text: str) -> str | None:
        """Why `text` from `account` is refused, or None when it may be sent."""
        if not self.active:
            return None
        deny = self._deny.get(account)
        if deny is not None and (reason := deny.match(text)):
            return f"account rule: {reason}"
        allow = self._allow.get(account)
        if allow is not None and allow.match(text):
            return None
        if reason := self._global.match(text):
            return reason
        return self._blocked_host(text)

    def _blocked_host(self, text: str) -> str | None:
        if not self._hosts:
            return None
        for found in _URL_HOST.finditer(text):
            host = found.group(1).lower()
            for blocked in self._hosts:
                if host == blocked or host.endswith("." + blocked):
                    return f"URL host {host!r}"
        return None
