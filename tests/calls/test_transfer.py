"""Blind transfer in call control, pure: a REFER's verdict, the transfer legs, the record.

A fake clock (`now` passed in), the real dial plan; no engine, no sockets.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calls.cdr import cdr_row
from gateway.calls.dialplan import DialPlan, PrefixRoute, RouteChoice, TrunkTarget
from gateway.calls.q850 import q850_for_sip
from gateway.calls.registry import (
    TRANSITIONS,
    CallInput,
    CallRegistry,
    CallSettings,
    CallState,
    Cause,
)
from gateway.calls.transfer import NOT_ALLOWED, NOT_ANSWERED, NOT_THE_CALLER, PENDING
from gateway.sip.refer import TransferRequest, TransferVerdict
from media.events import (
    CallAnswered,
    CallEnded,
    CallOffered,
    EndTransfer,
    Party,
    PlaceCallee,
    PlaceTransfer,
    TransferAnswered,
    TransferFailed,
)

PLAN = DialPlan(
    [
        PrefixRoute("1", (RouteChoice("b"),), transit=True),
        PrefixRoute("2", (RouteChoice("c1", 0), RouteChoice("c2", 1)), transit=True),
        PrefixRoute("3", (RouteChoice("b"),)),  # not for trunk callers
    ],
    {
        "b": TrunkTarget("b", "10.0.0.2"),
        "c1": TrunkTarget("c1", "10.0.0.31", channels=1),
        "c2": TrunkTarget("c2", "10.0.0.32"),
    },
    emergency_numbers=("112",),
    emergency_trunks=("c1",),
)
SETTINGS = CallSettings(no_answer_timeout=30.0)
CID = "cid-1"
CALLER = "sip:alice@192.0.2.9"


def everyone(_account: str, _trunk: str) -> bool:
    return True


def answered_call(*, trunk: str = "pbx", may_transfer: bool = True, call: int = 1) -> CallRegistry:
    reg = CallRegistry(PLAN, SETTINGS, everyone if may_transfer else None)
    reg.handle(CallOffered(call, 100.0, "sip:1555@engine", CALLER, CID, trunk=trunk), now=0.0)
    reg.handle(CallAnswered(call, 101.0), now=1.0)
    return reg


def refer(to: str = "sip:2345@198.51.100.7:5099", trunk: str = "pbx") -> TransferRequest:
    return TransferRequest(CID, to, "<sip:alice@192.0.2.9>", trunk=trunk)


def leg_to(
    host: str, trunk: str, leg: int, number: str = "2345", transfer: int = 1
) -> PlaceTransfer:
    return PlaceTransfer(
        1, transfer, PlaceCallee(1, f"sip:{number}@{host}:5060", CALLER, trunk, leg=leg)
    )


def accepted(transfer: int = 1) -> TransferVerdict:
    return TransferVerdict(202, "Accepted", transfer)


def test_the_refer_to_user_is_routed_like_a_call_of_the_caller_never_its_host() -> None:
    reg = answered_call()
    verdict, commands = reg.transfer(refer(), now=2.0)
    assert verdict == accepted()
    assert commands == [leg_to("10.0.0.31", "c1", 0)]  # the route's trunk, not 198.51.100.7
    record = reg.live[1]
    assert record.state is CallState.TRANSFERRING
    assert reg.trunk_calls == {"b": 1, "c1": 1}  # B's leg and the transfer leg each hold one


def test_an_answered_transfer_ends_with_the_target_and_both_legs_billed() -> None:
    reg = answered_call()
    reg.transfer(refer(), now=2.0)
    assert reg.handle(TransferAnswered(1, 105.0, 0), now=5.0) == []
    assert reg.next_deadline() is None  # the transfer's no-answer timer is gone
    assert reg.handle(CallEnded(1, 112.5, Party.TARGET, 200, "", "PCMU", "PCMU"), 12.5) == []
    (record,) = reg.finished
    assert (record.cause, record.ended_by) == (Cause.TARGET_HANGUP, Party.TARGET)
    assert reg.trunk_calls == {}
    row = cdr_row(record, "n", 1)
    assert (row["transfer_dialed"], row["transfer_trunk"], row["transfer_status"]) == (
        "2345",
        "c1",
        200,
    )
    assert row["transfer_target"] == "sip:2345@10.0.0.31:5060"
    assert (row["transferred_at"], row["transfer_billable_seconds"]) == (105.0, 8)
    assert row["billable_seconds"] == 12  # the whole answered call, 101.0 to 112.5


def test_a_failing_trunk_fails_over_and_the_last_failure_is_notified() -> None:
    reg = answered_call()
    reg.transfer(refer(), now=2.0)
    assert reg.handle(TransferFailed(1, 103.0, 503, "", 0), now=3.0) == [
        leg_to("10.0.0.32", "c2", 1)
    ]
    assert reg.trunk_calls == {"b": 1, "c2": 1}  # c1's channel is free again
    assert reg.handle(TransferFailed(1, 103.5, 503, "", 0), now=3.5) == []  # stale leg
    assert reg.handle(TransferFailed(1, 104.0, 486, "", 1), now=4.0) == [
        EndTransfer(1, 1, 486, "Busy Here", q850_for_sip(486))
    ]
    record = reg.live[1]
    assert record.state is CallState.ANSWERED  # the caller keeps the callee
    assert record.transfer is not None and record.transfer.status == 486
    assert reg.trunk_calls == {"b": 1}


def test_an_unroutable_target_is_notified_and_the_call_stays() -> None:
    reg = answered_call()
    assert reg.transfer(refer("sip:9999@198.51.100.7"), now=2.0) == (
        accepted(),
        [EndTransfer(1, 1, 404, "Not Found")],
    )
    assert reg.live[1].state is CallState.ANSWERED
    # A trunk caller cannot take a route that is not for transit (403, as for a call).
    assert reg.transfer(refer("sip:3000@x"), now=3.0) == (
        accepted(2),
        [EndTransfer(1, 2, 403, "Forbidden")],
    )


def test_the_transfer_times_out_like_an_unanswered_call() -> None:
    reg = answered_call()
    reg.transfer(refer(), now=2.0)
    assert reg.next_deadline() == 32.0
    assert reg.expire(31.9) == []
    assert reg.expire(32.0) == [EndTransfer(1, 1, 480, "Temporarily Unavailable", 18)]
    assert reg.live[1].state is CallState.ANSWERED and reg.trunk_calls == {"b": 1}


def test_a_second_transfer_numbers_on_and_continues_the_legs() -> None:
    reg = answered_call()
    reg.transfer(refer(), now=2.0)
    reg.handle(TransferFailed(1, 103.0, 486, "", 0), now=3.0)
    verdict, commands = reg.transfer(refer("sip:2999@x"), now=4.0)
    assert (verdict, commands) == (accepted(2), [leg_to("10.0.0.31", "c1", 1, "2999", 2)])


def test_emergency_targets_ignore_channel_limits() -> None:
    reg = answered_call()
    reg.trunk_calls["c1"] = 1  # another call holds c1's only channel
    assert reg.transfer(refer("sip:112@x"), now=2.0)[1] == [leg_to("10.0.0.31", "c1", 0, "112")]


@pytest.mark.parametrize(
    ("request_", "may_transfer", "answered", "verdict"),
    [
        (refer(trunk="someone-else"), True, True, NOT_THE_CALLER),
        (refer(), False, True, NOT_ALLOWED),
        (refer(), True, False, NOT_ANSWERED),
    ],
    ids=["not-the-caller", "not-allowed", "not-answered"],
)
def test_refusals_start_nothing(
    request_: TransferRequest, may_transfer: bool, answered: bool, verdict: TransferVerdict
) -> None:
    reg = CallRegistry(PLAN, SETTINGS, everyone if may_transfer else None)
    reg.handle(CallOffered(1, 100.0, "sip:1555@engine", CALLER, CID, trunk="pbx"), now=0.0)
    if answered:
        reg.handle(CallAnswered(1, 101.0), now=1.0)
    assert reg.transfer(request_, now=2.0) == (verdict, [])
    assert reg.live[1].transfer is None


def test_a_transfer_under_way_refuses_another_and_unknown_calls_are_the_engines() -> None:
    reg = answered_call()
    reg.transfer(refer(), now=2.0)
    assert reg.transfer(refer("sip:2999@x"), now=3.0) == (PENDING, [])
    assert reg.transfer(TransferRequest("other-cid", "sip:2345@x", trunk="pbx"), 3.0) == (None, [])
    reg.handle(CallEnded(1, 104.0, Party.CALLEE, 200, "", "", ""), now=4.0)
    assert reg.transfer(refer(), now=5.0) == (None, [])  # ended: its Call-ID is forgotten


def test_every_transfer_state_can_end() -> None:
    for state in (CallState.TRANSFERRING, CallState.TRANSFERRED):
        assert TRANSITIONS[(state, CallInput.ENDED)] is CallState.ENDED


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["refer", "refer_sos", "fail", "answer", "end", "tick"]),
        st.sampled_from([408, 486, 503]),
        st.integers(0, 3),
    ),
    max_size=30,
)


@settings(deadline=None)  # a loaded machine must not fail it
@given(_STEPS)
def test_channels_are_counted_exactly_through_transfers(
    script: list[tuple[str, int, int]],
) -> None:
    reg = answered_call()
    now = 2.0
    for kind, status, leg in script:
        now += 7.0
        if kind in ("refer", "refer_sos"):
            reg.transfer(refer("sip:112@x" if kind == "refer_sos" else "sip:2345@x"), now)
        elif kind == "fail":
            reg.handle(TransferFailed(1, now, status, "", leg), now)
        elif kind == "answer":
            reg.handle(TransferAnswered(1, now, leg), now)
        elif kind == "end":
            reg.handle(CallEnded(1, now, Party.CALLEE, 200, "", "", ""), now)
        reg.expire(now)
        held = Counter(
            holder.channel
            for record in reg.live.values()
            for holder in (record, record.transfer)
            if holder is not None and holder.channel
        )
        assert reg.trunk_calls == held
    assert all(r.state is CallState.ENDED for r in reg.finished)
