"""CDR rows from call records, pure: mapping, charging figures, closing after a crash."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.calls.cdr import (
    CDR_FIELDS,
    NODE_RESTART,
    CdrState,
    billable_seconds,
    cdr_row,
    closed_after_crash,
    duration,
    last_seen,
)
from gateway.calls.dialplan import DialPlan, PrefixRoute, RouteChoice, TrunkTarget
from gateway.calls.registry import CallRegistry
from media.events import CallAnswered, CalleeFailed, CalleeRinging, CallEnded, CallOffered, Party

ROUTER = DialPlan(
    [PrefixRoute("1", (RouteChoice("t"),), transit=True)], {"t": TrunkTarget("t", "10.0.0.1")}
)


def offer(reg: CallRegistry, call: int = 7, at: float = 1000.0, number: str = "1555") -> None:
    reg.handle(
        CallOffered(
            call, at, f"sip:{number}@engine", "sip:alice@example.com", f"cid-{call}", trunk="t1"
        ),
        now=0.0,
    )


def test_row_of_an_offered_call_is_in_progress() -> None:
    reg = CallRegistry(ROUTER)
    offer(reg)
    (record,) = reg.take_changed()
    row = cdr_row(record, "node-a", 3)
    assert tuple(row) == CDR_FIELDS
    assert row["state"] == CdrState.IN_PROGRESS
    assert (row["run_id"], row["call"], row["node"], row["sip_call_id"]) == (
        3,
        7,
        "node-a",
        "cid-7",
    )
    assert (row["inbound_trunk"], row["dialed"], row["target"]) == (
        "t1",
        "1555",
        "sip:1555@10.0.0.1:5060",
    )
    assert row["setup_at"] == 1000.0
    for name in ("ended_at", "duration", "billable_seconds", "disposition", "cause", "ended_by"):
        assert row[name] is None, name


def test_row_of_an_answered_call_is_finished_with_billable_seconds_rounded_up() -> None:
    reg = CallRegistry(ROUTER)
    offer(reg)
    reg.handle(CalleeRinging(7, 1001.0, 180), now=1.0)
    reg.handle(CallAnswered(7, 1002.5), now=2.5)
    (answered,) = reg.take_changed()  # ringing and answer coalesced: one change
    assert cdr_row(answered, "n", 1)["answered_at"] == 1002.5
    assert cdr_row(answered, "n", 1)["state"] == CdrState.IN_PROGRESS
    reg.handle(CallEnded(7, 1012.7, Party.CALLEE, 200, "", "PCMU", "PCMA"), now=12.7)
    (record,) = reg.take_changed()
    row = cdr_row(record, "n", 1)
    assert row["state"] == CdrState.FINISHED
    assert (row["ringing_at"], row["answered_at"], row["ended_at"]) == (1001.0, 1002.5, 1012.7)
    assert row["duration"] == 12.7
    assert row["billable_seconds"] == 11  # 10.2 s answered: 11 started seconds
    assert (row["disposition"], row["cause"], row["ended_by"]) == (
        "answered",
        "callee_hangup",
        "callee",
    )
    assert (row["caller_status"], row["caller_codec"], row["callee_codec"]) == (200, "PCMU", "PCMA")
    assert reg.take_changed() == []  # a finished record is never reported again


def test_row_of_a_busy_call_has_no_billable_time() -> None:
    reg = CallRegistry(ROUTER)
    offer(reg)
    reg.handle(CalleeFailed(7, 1000.2, 486, "Busy Here"), now=0.2)
    reg.handle(CallEnded(7, 1000.3, Party.GATEWAY, 486, "", "", ""), now=0.3)
    (record,) = reg.take_changed()  # offered and ended within one batch: one change
    row = cdr_row(record, "n", 1)
    assert (row["disposition"], row["caller_status"], row["callee_status"]) == ("busy", 486, 486)
    assert row["billable_seconds"] == 0
    assert row["duration"] == 0.3


@pytest.mark.parametrize(
    ("answered", "ended", "expected"),
    [
        (None, 50.0, 0),
        (10.0, 10.0, 0),
        (10.0, 12.0, 2),
        (10.0, 12.0004, 2),  # below a millisecond: float noise, not a new second
        (10.0, 12.001, 3),
        (10.0, 9.0, 0),  # clocks stepped back: never negative
    ],
)
def test_billable_seconds(answered: float | None, ended: float, expected: int) -> None:
    assert billable_seconds(answered, ended) == expected


def test_duration_is_exact_to_the_millisecond() -> None:
    assert duration(100.0, 103.2345) == 3.234
    assert duration(100.0, 99.0) == 0.0


def _open_row(**times: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {"setup_at": 100.0, "ringing_at": None, "answered_at": None}
    row["ended_at"] = None
    row.update(times)
    return row


def test_closing_after_a_crash_ends_at_the_runs_last_sign_of_life() -> None:
    answered = _open_row(ringing_at=101.0, answered_at=102.0)
    other = _open_row(setup_at=130.0)
    seen = last_seen([answered, other])
    assert seen == 130.0
    closed = closed_after_crash(answered, seen)
    assert closed == {
        "state": "finished",
        "ended_at": 130.0,
        "duration": 30.0,
        "billable_seconds": 28,
        "disposition": "failed",
        "cause": NODE_RESTART,
        "ended_by": "gateway",
    }
    # Never before the row's own latest time, never billed when unanswered.
    late = closed_after_crash(_open_row(ringing_at=140.0), 120.0)
    assert (late["ended_at"], late["billable_seconds"]) == (140.0, 0)
    assert last_seen([]) is None
