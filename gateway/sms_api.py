"""SMS on the admin HTTP listener: submit, status and statistics per account.

The admin listener belongs on loopback or a management network; every
route is scoped to one account in its path, and a message is only visible
under the account that sent it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Collection
from dataclasses import asdict
from typing import Any

from aiohttp import web

from smpp.service import SmsService
from smpp.submit_result import Accepted, Rejected, RejectReason

_STATUS_FOR_REASON = {
    RejectReason.FILTER: 422,
    RejectReason.QUOTA: 429,
    RejectReason.THROTTLED: 429,
    RejectReason.NO_ROUTE: 422,
    RejectReason.BAD_NUMBER: 400,
    RejectReason.BAD_MESSAGE: 400,
    RejectReason.UNAVAILABLE: 503,
}
_MAX_BODY = 64 * 1024


class BadSubmission(Exception):
    """The request body is not a usable submission; the text says why."""


def _error(status: int, reason: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, "detail": detail, **extra}, status=status)


def _time(value: object, field: str) -> float | None:
    """ISO 8601 (with offset) or epoch seconds -> epoch seconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                raise BadSubmission(f"{field} needs a UTC offset, e.g. 2026-01-01T10:00:00+00:00")
            return parsed.timestamp()
    raise BadSubmission(f"{field} is an ISO 8601 time with offset or epoch seconds")


def parse_submission(body: object) -> dict[str, Any]:
    """Validate the JSON body of a submit; raise BadSubmission naming the problem."""
    if not isinstance(body, dict):
        raise BadSubmission("the body is a JSON object")
    known = {"source", "destination", "text", "idempotency_key", "scheduled_at", "validity"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadSubmission(f"unknown field(s): {', '.join(unknown)}")
    for field in ("source", "destination", "text"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise BadSubmission(f"{field} is a non-empty string")
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 128):
        raise BadSubmission("idempotency_key is a string of 1 to 128 characters")
    validity = body.get("validity")
    if validity is not None and (
        not isinstance(validity, int | float) or isinstance(validity, bool) or validity <= 0
    ):
        raise BadSubmission("validity is a positive number of seconds")
    return {
        "source": body["source"],
        "destination": body["destination"],
        "text": body["text"],
        "idempotency_key": key,
        "scheduled_at": _time(body.get("scheduled_at"), "scheduled_at"),
        "validity": float(validity) if validity is not None else None,
    }


class SmsApi:
    """aiohttp handlers over an `SmsService` (None while SMS is not configured)."""

    def __init__(
        self, service: Callable[[], SmsService | None], accounts: Callable[[], Collection[str]]
    ) -> None:
        self._service = service
        self._accounts = accounts

    def routes(self) -> list[web.RouteDef]:
        base = "/api/v1/accounts/{account}/sms"
        return [
            web.post(base, self.submit),
            web.get(base + "/stats", self.stats),
            web.get(base + "/{message_id}", self.status),
        ]

    def _context(self, request: web.Request) -> tuple[SmsService, str] | web.Response:
        service = self._service()
        if service is None:
            return _error(
                503, "sms_disabled", "SMS is not configured: add [[smpp.smsc]] and [[sms.routes]]"
            )
        account = request.match_info["account"]
        if account not in self._accounts():
            return _error(404, "unknown_account", f"no account {account!r} in [[accounts]]")
        return service, account

    async def submit(self, request: web.Request) -> web.Response:
        context = self._context(request)
        if isinstance(context, web.Response):
            return context
        service, account = context
        if request.content_length is not None and request.content_length > _MAX_BODY:
            return _error(413, "too_large", f"the body is limited to {_MAX_BODY} bytes")
        try:
            body = json.loads(await request.content.read(_MAX_BODY + 1) or b"null")
            fields = parse_submission(body)
        except (ValueError, BadSubmission) as exc:
            return _error(400, "bad_request", str(exc))
        result = await service.submit(account, **fields)
        if isinstance(result, Accepted):
            return web.json_response(
                {
                    "id": result.message_id,
                    "segments": result.segments,
                    "duplicate": result.duplicate,
                },
                status=200 if result.duplicate else 202,
            )
        return self._rejected(result)

    @staticmethod
    def _rejected(result: Rejected) -> web.Response:
        status = _STATUS_FOR_REASON.get(result.reason, 400)
        response = _error(
            status,
            str(result.reason),
            result.detail,
            command_status=result.command_status,
            id=result.message_id,
        )
        if result.retry_later:
            response.headers["Retry-After"] = "1"
        return response

    async def status(self, request: web.Request) -> web.Response:
        context = self._context(request)
        if isinstance(context, web.Response):
            return context
        service, account = context
        found = await service.status(account, request.match_info["message_id"])
        if found is None:
            return _error(404, "unknown_message", "no such message for this account")
        return web.json_response(asdict(found))

    async def stats(self, request: web.Request) -> web.Response:
        context = self._context(request)
        if isinstance(context, web.Response):
            return context
        service, account = context
        return web.json_response(asdict(await service.stats(account)))
