"""Q.850 release causes: RFC 3398 mapping to and from SIP, and the RFC 3326 Reason header.

Pure data and functions. The engine reads a peer's `Reason: Q.850;cause=N`
from final responses and BYEs and passes it on to the other leg; call
control keeps the cause in the call record and, when a leg failed without
a Reason, derives one from the SIP status (RFC 3398 section 8.2.6.1).
"""

from __future__ import annotations

import re

from gateway.sip.errors import SipParseError
from gateway.sip.grammar import parse_params, quote, split_list

NORMAL_CLEARING = 16
NO_ANSWER = 19
RECOVERY_ON_TIMER_EXPIRY = 102
INTERWORKING = 127

CAUSE_TEXT: dict[int, str] = {
    1: "Unallocated number",
    2: "No route to network",
    3: "No route to destination",
    16: "Normal call clearing",
    17: "User busy",
    18: "No user responding",
    19: "No answer from user",
    20: "Subscriber absent",
    21: "Call rejected",
    22: "Number changed",
    23: "Redirection to new destination",
    25: "Exchange routing error",
    26: "Non-selected user clearing",
    27: "Destination out of order",
    28: "Invalid number format",
    29: "Facility rejected",
    31: "Normal, unspecified",
    34: "No circuit/channel available",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    47: "Resource unavailable, unspecified",
    55: "Incoming calls barred within CUG",
    57: "Bearer capability not authorized",
    58: "Bearer capability not presently available",
    63: "Service or option not available",
    65: "Bearer capability not implemented",
    70: "Only restricted digital information bearer capability is available",
    79: "Service or option not implemented",
    87: "User not member of CUG",
    88: "Incompatible destination",
    102: "Recovery on timer expiry",
    111: "Protocol error, unspecified",
    127: "Interworking, unspecified",
}

# RFC 3398 section 8.2.6.1: a SIP final status from the callee -> the cause to report.
# 487 (our own CANCEL) and 488/606 ("by Warning header") have no cause of their own.
SIP_TO_Q850: dict[int, int] = {
    400: 41,
    401: 21,
    402: 21,
    403: 21,
    404: 1,
    405: 63,
    406: 79,
    407: 21,
    408: 102,
    410: 22,
    413: 127,
    414: 127,
    415: 79,
    416: 127,
    420: 127,
    421: 127,
    423: 127,
    430: 20,  # Flow Failed (RFC 5626, after RFC 3398): the subscriber is absent
    480: 18,
    481: 41,
    482: 25,
    483: 25,
    484: 28,
    485: 1,
    486: 17,
    500: 41,
    501: 79,
    502: 38,
    503: 41,
    504: 102,
    505: 127,
    513: 127,
    600: 17,
    603: 21,
    604: 1,
}

# RFC 3398 section 7.2.4.1: a cause from the far side -> the SIP status to answer with.
# 16 (normal clearing) is a BYE or CANCEL, not a final response.
Q850_TO_SIP: dict[int, int] = {
    1: 404,
    2: 404,
    3: 404,
    17: 486,
    18: 408,
    19: 480,
    20: 480,
    21: 403,
    22: 410,
    23: 410,
    26: 404,
    27: 502,
    28: 484,
    29: 501,
    31: 480,
    34: 503,
    38: 503,
    41: 503,
    42: 503,
    47: 503,
    55: 403,
    57: 403,
    58: 503,
    65: 488,
    70: 488,
    79: 501,
    87: 403,
    88: 503,
    102: 504,
    111: 500,
    127: 500,
}

_MAX_CAUSE = 127
_PROTOCOL = "q.850"
_REASON_HEADER = re.compile(r"^Reason[ \t]*:(?P<value>.*?)\r?$", re.IGNORECASE | re.MULTILINE)


def q850_for_sip(status: int) -> int | None:
    """The cause for a callee's SIP failure status (None: 2xx, 487, or "by Warning")."""
    if status < 300:
        return None
    known = SIP_TO_Q850.get(status)
    if known is not None or status in (487, 488, 606):
        return known
    return INTERWORKING  # RFC 3398: an unknown final status is interworking, unspecified


def sip_for_q850(cause: int) -> int:
    """The SIP status for a release cause, by the table or by the cause's class."""
    known = Q850_TO_SIP.get(cause)
    if known is not None:
        return known
    if cause <= 31:  # normal event class
        return 480
    if cause <= 47:  # resource unavailable class
        return 503
    return 500


def reason_value(cause: int) -> str:
    """An RFC 3326 Reason header value for `cause`."""
    text = CAUSE_TEXT.get(cause)
    return f"Q.850;cause={cause};text={quote(text)}" if text else f"Q.850;cause={cause}"


def parse_reason(value: str) -> int | None:
    """The Q.850 cause in one Reason header value (None: another protocol, or none given)."""
    for item in split_list(value):
        protocol, _, params = item.partition(";")
        if protocol.strip().lower() != _PROTOCOL:
            continue
        try:
            cause = parse_params(params.strip(), "Reason").get("cause")
        except SipParseError:
            continue  # a malformed Reason is ignored, never fatal for the call
        if cause is not None and cause.isdigit() and 0 < int(cause) <= _MAX_CAUSE:
            return int(cause)
    return None


def reason_in_message(message: str) -> int | None:
    """The Q.850 cause from the Reason headers of a whole SIP message, if any."""
    head = message.split("\r\n\r\n", 1)[0]
    for match in _REASON_HEADER.finditer(head):
        cause = parse_reason(match.group("value"))
        if cause is not None:
            return cause
    return None
