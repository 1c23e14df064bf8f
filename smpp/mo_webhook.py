"""The `webhook` MO channel: a signed JSON POST per message (aiohttp adapter).

The body and signature and the reading of the answer are pure functions; the
class only sends. Receivers verify `X-Callgate-Signature: sha256=<hex>`, the
HMAC-SHA256 of the raw body under the account's `webhook_secret`, and
de-duplicate by `id` (delivery is at-least-once).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Final

import aiohttp

from gateway.config.secrets import SecretUnavailableError
from smpp.config import SmsNumbersConfig
from smpp.mo_delivery import Delivered, DeliveryOutcome, MoMessage, Refused, TryAgain

SIGNATURE_HEADER: Final = "X-Callgate-Signature"
_RETRIED_4XX: Final = frozenset({408, 425, 429})
"""Client errors that mean "not now" rather than "never"."""


def webhook_body(message: MoMessage) -> bytes:
    received = dt.datetime.fromtimestamp(message.received_at, dt.UTC)
    document = {
        "id": message.id,
        "account": message.account,
        "from": message.source,
        "to": message.destination,
        "text": message.text,
        "received_at": received.isoformat().replace("+00:00", "Z"),
        "smsc": message.smsc,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - now, 0.0)


def http_outcome(status: int, retry_after: str | None, now: float) -> DeliveryOutcome:
    """2xx delivered; other 4xx permanent; 5xx, 408, 425 and 429 (and anything else) retried."""
    if 200 <= status < 300:
        return Delivered()
    if 400 <= status < 500 and status not in _RETRIED_4XX:
        return Refused(f"HTTP {status}")
    return TryAgain(f"HTTP {status}", retry_after_seconds(retry_after, now))


class WebhookChannel:
    """POSTs with one shared connection pool; `close()` when done."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.time) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, message: MoMessage, target: SmsNumbersConfig) -> DeliveryOutcome:
        if target.webhook_url is None or target.webhook_secret is None:
            return Refused("no webhook_url/webhook_secret configured")
        try:
            secret = target.webhook_secret.reveal().get_secret_value()
        except SecretUnavailableError as exc:
            return TryAgain(str(exc))
        body = webhook_body(message)
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body)}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                target.webhook_url, data=body, headers=headers, allow_redirects=False
            ) as response:
                return http_outcome(
                    response.status, response.headers.get("Retry-After"), self._clock()
                )
        except TimeoutError:
            return TryAgain("timeout")
        except aiohttp.ClientError as exc:
            return TryAgain(f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
