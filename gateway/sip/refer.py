"""Blind transfer requests (REFER, RFC 3515) from a caller, answered by the edge itself.

Why the edge and not the engine: pjsua, once it accepts a REFER, dials the
Refer-To URI on its own - a target that routing, limits, caller-ID policy
and CDRs never saw. So the edge parses the REFER here, hands call control a
`TransferRequest` (policy decides, through `TransferHandler`) and answers
with its verdict; call control places the transfer leg through the dial
plan. Pure: `now` is passed in.

`ReferLog` remembers each answered REFER for the life of its transaction,
so a retransmission gets the same answer and never a second transfer, and
which dialogs have an accepted transfer, so the caller's BYE right after the
202 can say so to the engine (`TRANSFER_HEADER`) before the engine has
heard of the transfer from call control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.sip.address import parse_name_addr
from gateway.sip.answers import TIMER_J_S, AnswerLog
from gateway.sip.errors import UNSUPPORTED_URI_SCHEME, SipParseError, bad_header, missing_header
from gateway.sip.grammar import split_list
from gateway.sip.message import SipRequest, call_id, cseq, from_address
from gateway.sip.uri import SipUri

TRANSFER_HEADER = "X-Callgate-Transfer"
"""On a caller's BYE towards the engine: the number of the call's last accepted transfer
(`TransferVerdict.transfer`); an engine that has not had a command for it yet keeps the
callee. Only the edge sets it; copies from peers are removed in both directions."""

ATTENDED_NOT_SUPPORTED = SipParseError(603, "Attended Transfer Not Supported")
ONLY_INVITE = SipParseError(603, "Only INVITE Transfers")
_SCHEMES = frozenset({"sip", "sips", "tel"})


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A caller's REFER as call control sees it."""

    call_id: str
    """The SIP Call-ID of the dialog the REFER came in (the call's caller leg)."""
    refer_to: str
    """The Refer-To URI; only its user part is dialled (through the dial plan)."""
    referred_by: str = ""
    account: str = ""
    """The account the REFER was authenticated as (empty for a trunk)."""
    trunk: str = ""
    """The trunk the REFER came from by source address (empty for an account)."""


@dataclass(frozen=True, slots=True)
class TransferVerdict:
    """The REFER's answer: 202 (accepted; NOTIFYs follow) or a refusal."""

    status: int
    reason: str
    transfer: int = 0
    """Accepted: the call's transfer number (1 for its first), as commands carry it."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra headers of the answer (Retry-After of an overload refusal)."""

    @property
    def accepted(self) -> bool:
        return self.status == 202


ACCEPTED = TransferVerdict(202, "Accepted")


class TransferHandler(Protocol):
    """Call control, as the edge sees it for REFER."""

    def transfer(self, request: TransferRequest) -> TransferVerdict | None:
        """The verdict on a REFER; None: not a call call control knows as the caller's leg
        (e.g. the callee's leg), the engine answers it."""
        ...


def parse_refer(request: SipRequest, *, account: str = "", trunk: str = "") -> TransferRequest:
    """The transfer a REFER asks for; SipParseError carries the answer when it is unusable.

    One Refer-To with a sip/sips/tel URI, not an attended transfer (a Replaces
    header in the URI), not a method other than INVITE.
    """
    values = request.headers.get_all("Refer-To")
    if not values:
        raise missing_header("Refer-To")
    items = [item for value in values for item in split_list(value)]
    if len(items) != 1:
        raise bad_header("Refer-To", "exactly one URI")
    uri = parse_name_addr(items[0], "Refer-To").uri
    scheme = uri.partition(":")[0].lower()
    if scheme not in _SCHEMES:
        raise SipParseError(UNSUPPORTED_URI_SCHEME, "Unsupported URI Scheme", header="Refer-To")
    target = SipUri.parse(uri)
    headers = {name.lower() for name in target.headers}
    if "replaces" in headers:
        raise ATTENDED_NOT_SUPPORTED
    method = target.params.get("method")
    if method is not None and method.upper() != "INVITE":
        raise ONLY_INVITE
    referred_by = request.headers.get("Referred-By") or ""
    return TransferRequest(call_id(request), uri, referred_by, account, trunk)


ReferKey = tuple[str, str, int]
"""A REFER transaction: Call-ID, From tag, CSeq number."""


def refer_key(request: SipRequest) -> ReferKey:
    return (call_id(request), from_address(request).tag or "", cseq(request)[0])


class ReferLog:
    """Answers given to REFERs and dialogs with an accepted transfer, each kept for
    `keep_for` seconds (Timer J: a REFER's retransmissions, and the window in which the
    caller's BYE carries `TRANSFER_HEADER`); at most `max_entries` of each."""

    def __init__(self, keep_for: float = TIMER_J_S, max_entries: int = 10_000) -> None:
        self._answers: AnswerLog[ReferKey, TransferVerdict] = AnswerLog(keep_for, max_entries)
        self._accepted: AnswerLog[str, int] = AnswerLog(keep_for, max_entries)

    def answer_for(self, key: ReferKey, now: float) -> TransferVerdict | None:
        """The answer already given to this REFER (a retransmission), or None."""
        return self._answers.answer_for(key, now)

    def remember(self, key: ReferKey, verdict: TransferVerdict, now: float) -> None:
        self._answers.remember(key, verdict, now)
        if verdict.accepted:
            self._accepted.remember(key[0], verdict.transfer, now)

    def transfer_accepted(self, dialog_call_id: str, now: float) -> int:
        """The number of the transfer accepted in this dialog within `keep_for` seconds
        (0: none). Looked up on every BYE."""
        return self._accepted.answer_for(dialog_call_id, now) or 0
