"""Blind transfer as call control keeps it: the state of one call's transfer, who may
transfer, and the answers to a REFER that call control refuses.

The registry (registry.py) drives it: the Refer-To's user part is routed by
the dial plan as if the caller had dialled it, the transfer legs are tried
one at a time, and the record keeps what happened for the CDR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.calls.routing import Target
from gateway.config.models import CallgateConfig
from gateway.sip.refer import TransferVerdict

TransferPermission = Callable[[str, str], bool]
"""May the caller of a call from (account, inbound trunk) transfer it?"""

NOT_THE_CALLER = TransferVerdict(403, "Forbidden")
"""The REFER was admitted as someone else than the call's caller."""
NOT_ALLOWED = TransferVerdict(403, "Transfer Not Allowed")
NOT_ANSWERED = TransferVerdict(403, "Call Not Answered")
PENDING = TransferVerdict(491, "Request Pending")
"""A transfer of this call is under way already."""


@dataclass(slots=True)
class Transfer:
    """The caller's blind transfer of a call (the last one it asked for)."""

    number: int
    """1 for the call's first transfer (commands and the edge's BYE mark carry it)."""
    dialed: str
    """The Refer-To's user part, as routed."""
    referred_by: str = ""
    target: str = ""
    """The URI of the transfer leg that answered or was tried last."""
    trunk: str = ""
    """That leg's outbound trunk (empty: none)."""
    status: int | None = None
    """How it ended: 200 (the callee talks to the target) or the failure the caller was
    told; None while under way."""
    answered_at: float | None = None
    """When the target answered: the start of the callee-target part of the call."""
    leg: int = field(default=-1, repr=False)
    """The last transfer leg's number (continued from the call's previous transfer)."""
    pending: tuple[Target, ...] = field(default=(), repr=False)
    deadline: float | None = field(default=None, repr=False)
    """When an unanswered transfer is given up."""
    channel: str = field(default="", repr=False)
    """The trunk whose channel the transfer leg holds (empty: none counted)."""


def transfer_permission(config: CallgateConfig) -> TransferPermission:
    """`allow_transfer` of the caller's account or inbound trunk."""
    accounts = {a.name for a in config.accounts if a.allow_transfer}
    trunks = {t.name for t in config.trunks if t.allow_transfer}

    def allowed(account: str, trunk: str) -> bool:
        return trunk in trunks if trunk else account in accounts

    return allowed
