"""Call detail records: a call record as a CDR row, and the closing of abandoned rows.

Pure: no clock, no store. The row of a call is written when it is offered
(`in_progress`), rewritten as it rings and is answered, and a last time when it
ends (`finished`). Times are wall-clock seconds since the epoch, as the engine
stamped them.

Charging figures, decided here once:
- `duration` = end - setup, exact to the millisecond;
- `billable_seconds` = end - answer rounded *up* to whole seconds (per-second
  billing, a started second counts), 0 when the call was never answered.
- A call its caller transferred (blind transfer) stays one row: `billable_seconds`
  covers the whole answered call; `transfer_billable_seconds` = end - the target's
  answer, rounded the same way, is the callee-target part (the leg the caller's
  account pays for towards `transfer_target`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from gateway.calls.registry import CallRecord, CallState, Disposition
from media.events import Party


class CdrState(StrEnum):
    IN_PROGRESS = "in_progress"
    FINISHED = "finished"


NODE_RESTART = "node_restart"
"""Cause of a row its node never finished (it crashed); closed at the next start."""

CDR_FIELDS: tuple[str, ...] = (
    "run_id",
    "call",
    "node",
    "sip_call_id",
    "state",
    "account",
    "inbound_trunk",
    "trunk",
    "caller",
    "dialed",
    "caller_e164",
    "callee_e164",
    "target",
    "setup_at",
    "ringing_at",
    "answered_at",
    "ended_at",
    "duration",
    "billable_seconds",
    "disposition",
    "cause",
    "caller_status",
    "callee_status",
    "q850_cause",
    "ended_by",
    "caller_codec",
    "callee_codec",
    "recording",
    "transfer_dialed",
    "transfer_target",
    "transfer_trunk",
    "transfer_status",
    "transferred_at",
    "transfer_billable_seconds",
)
"""Columns of a CDR, in the order lists and exports show them."""

TIME_FIELDS = frozenset({"setup_at", "ringing_at", "answered_at", "ended_at", "transferred_at"})


def duration(setup_at: float, ended_at: float) -> float:
    """Seconds from the caller's INVITE to the end of the call, to the millisecond."""
    return round(max(ended_at - setup_at, 0.0), 3)


def billable_seconds(answered_at: float | None, ended_at: float) -> int:
    """Whole seconds from answer to end, rounded up; 0 if never answered."""
    if answered_at is None:
        return 0
    # Rounded to the millisecond first so float noise (2.0000000001) is not a second.
    return math.ceil(round(max(ended_at - answered_at, 0.0), 3))


def cdr_row(record: CallRecord, node: str, run_id: int) -> dict[str, Any]:
    """The CDR row of `record` as it stands now (in progress until it has ended)."""
    finished = record.state is CallState.ENDED and record.ended_at is not None
    ended_at = record.ended_at if finished else None
    transfer = record.transfer
    transferred_at = transfer.answered_at if transfer is not None else None
    return {
        "run_id": run_id,
        "call": record.call,
        "node": node,
        "sip_call_id": record.sip_call_id,
        "state": str(CdrState.FINISHED if finished else CdrState.IN_PROGRESS),
        "account": record.account,
        "inbound_trunk": record.inbound_trunk,
        "trunk": record.trunk,
        "caller": record.caller,
        "dialed": record.dialed,
        "caller_e164": record.caller_e164,
        "callee_e164": record.callee_e164,
        "target": record.target,
        "setup_at": record.setup_at,
        "ringing_at": record.ringing_at,
        "answered_at": record.answered_at,
        "ended_at": ended_at,
        "duration": duration(record.setup_at, ended_at) if ended_at is not None else None,
        "billable_seconds": (
            billable_seconds(record.answered_at, ended_at) if ended_at is not None else None
        ),
        "disposition": str(record.disposition) if finished and record.disposition else None,
        "cause": str(record.cause) if finished and record.cause else None,
        "caller_status": record.caller_status,
        "callee_status": record.callee_status,
        "q850_cause": record.q850_cause,
        "ended_by": str(record.ended_by) if record.ended_by is not None else None,
        "caller_codec": record.caller_codec,
        "callee_codec": record.callee_codec,
        "recording": record.recording,
        "transfer_dialed": transfer.dialed if transfer is not None else "",
        "transfer_target": transfer.target if transfer is not None else "",
        "transfer_trunk": transfer.trunk if transfer is not None else "",
        "transfer_status": transfer.status if transfer is not None else None,
        "transferred_at": transferred_at,
        "transfer_billable_seconds": (
            billable_seconds(transferred_at, ended_at) if ended_at is not None else None
        ),
    }


def last_seen(rows: list[Mapping[str, Any]]) -> float | None:
    """The latest time any of a run's rows mentions: the last sign of life of that run."""
    return last_seen_of(*(row.get(name) for row in rows for name in TIME_FIELDS))


def last_seen_of(*times: float | None) -> float | None:
    """The latest of the known times (None if none is known)."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def closed_after_crash(row: Mapping[str, Any], run_last_seen: float) -> dict[str, Any]:
    """How an `in_progress` row of a crashed run is finished.

    It ends at the run's last sign of life (its last heartbeat or stored
    time, never before the row's own latest time): the real end is unknown,
    and this never bills more than was seen.
    """
    own = [row[name] for name in TIME_FIELDS if row.get(name) is not None]
    ended_at = max([run_last_seen, *own])
    return {
        "state": str(CdrState.FINISHED),
        "ended_at": ended_at,
        "duration": duration(row["setup_at"], ended_at),
        "billable_seconds": billable_seconds(row.get("answered_at"), ended_at),
        "disposition": str(Disposition.FAILED),
        "cause": NODE_RESTART,
        "ended_by": str(Party.GATEWAY),
    }
