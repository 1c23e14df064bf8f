"""The one exception type the SIP message layer raises for bad input.

It carries the answer: the status and reason phrase of the response to send
(when the bad message is a request), the header at fault, and whether a
stream connection has lost framing and must be closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.sip.message import SipResponse

BAD_REQUEST = 400
REQUEST_ENTITY_TOO_LARGE = 413
UNSUPPORTED_URI_SCHEME = 416
VERSION_NOT_SUPPORTED = 505
MESSAGE_TOO_LARGE = 513


class SipParseError(Exception):
    """Malformed or unacceptable SIP input; answer with `status` and `reason`."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        detail: str = "",
        header: str | None = None,
        close_connection: bool = False,
    ) -> None:
        super().__init__(f"{status} {reason}" + (f": {detail}" if detail else ""))
        self.status = status
        self.reason = reason
        self.detail = detail
        self.header = header
        self.close_connection = close_connection

    def response_for(self, data: bytes, to_tag: str | None = None) -> SipResponse | None:
        """The response to send for the rejected bytes, or None if unanswerable.

        See `gateway.sip.rejection.response_for`.
        """
        from gateway.sip.rejection import response_for  # noqa: PLC0415 - import cycle

        return response_for(self, data, to_tag)


def bad_header(name: str, detail: str = "") -> SipParseError:
    """400 naming the malformed header, so the peer can see what to fix."""
    return SipParseError(BAD_REQUEST, f"Bad Header: {name}", detail=detail, header=name)


def missing_header(name: str) -> SipParseError:
    """400 naming a mandatory header that is absent (RFC 3261 §8.1.1)."""
    return SipParseError(BAD_REQUEST, f"Missing Header: {name}", header=name)


def bad_request(reason: str, detail: str = "") -> SipParseError:
    """400 for faults outside any one header (start line, framing)."""
    return SipParseError(BAD_REQUEST, reason, detail=detail)
