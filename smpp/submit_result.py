"""What `SmsService.submit` answers: the message id, or a typed rejection.

A rejection carries the SMPP command_status a customer-facing SMPP server
would answer with (and the HTTP API can map), plus whether trying again
later can help.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

ESME_RSYSERR: Final = 0x08
ESME_RINVDSTADR: Final = 0x0B
ESME_RINVSRCADR: Final = 0x0A
ESME_RSUBMITFAIL: Final = 0x45
ESME_RTHROTTLED: Final = 0x58
ESME_RINVEXPIRY: Final = 0x62
ESME_RINVSCHED: Final = 0x61


class RejectReason(StrEnum):
    FILTER = "filter"
    """The content filter refused the text (recorded as a rejected message)."""
    QUOTA = "quota"
    """The account's daily quota is used up."""
    THROTTLED = "throttled"
    """The account submits faster than its configured rate."""
    NO_ROUTE = "no_route"
    """No route (or no SMSC) for the destination."""
    BAD_NUMBER = "bad_number"
    """The destination (or source) is not a usable number."""
    BAD_MESSAGE = "bad_message"
    """Text, schedule or validity that cannot be sent (too long, in the past, ...)."""
    UNAVAILABLE = "unavailable"
    """The store could not record the message; nothing was accepted."""


REJECT_STATUS: Final[dict[RejectReason, tuple[int, bool]]] = {
    RejectReason.FILTER: (ESME_RSUBMITFAIL, False),
    RejectReason.QUOTA: (ESME_RTHROTTLED, True),
    RejectReason.THROTTLED: (ESME_RTHROTTLED, True),
    RejectReason.NO_ROUTE: (ESME_RINVDSTADR, False),
    RejectReason.BAD_NUMBER: (ESME_RINVDSTADR, False),
    RejectReason.BAD_MESSAGE: (ESME_RSUBMITFAIL, False),
    RejectReason.UNAVAILABLE: (ESME_RSYSERR, True),
}
"""reason -> (command_status to answer with, whether a retry later may succeed)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """Stored durably; the queue will send it."""

    message_id: str
    segments: int
    duplicate: bool = False
    """The idempotency key was seen before: this is the earlier message's id."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not accepted, and why; `message_id` is set when the rejection was recorded."""

    reason: RejectReason
    detail: str
    command_status: int
    retry_later: bool
    message_id: str | None = None

    @classmethod
    def of(
        cls,
        reason: RejectReason,
        detail: str,
        message_id: str | None = None,
        command_status: int | None = None,
    ) -> Rejected:
        status, retry_later = REJECT_STATUS[reason]
        return cls(
            reason,
            detail,
            status if command_status is None else command_status,
            retry_later,
            message_id,
        )


SubmitResult = Accepted | Rejected
