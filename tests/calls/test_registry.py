"""The call state machine, pure: events in, commands out, a fake clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calls.control import CallControl
from gateway.calls.dialplan import AccountRoute, DialPlan, PrefixRoute, RouteChoice, TrunkTarget
from gateway.calls.q850 import NO_ANSWER, q850_for_sip
from gateway.calls.registry import (
    CALLEE_FAILURES,
    TRANSITIONS,
    CallInput,
    CallRegistry,
    CallSettings,
    CallState,
    Cause,
    Disposition,
    best_of,
    caller_answer_for,
)
from gateway.calls.routing import Forwarding, dialed_number
from media.events import (
    CallAnswered,
    CallCommand,
    CalleeFailed,
    CalleeRinging,
    CallEnded,
    CallEvent,
    CallOffered,
    EngineStopped,
    Party,
    PlaceCallee,
    ReleaseCall,
)

ROUTER = DialPlan(
    [PrefixRoute("1", (RouteChoice("a"),)), PrefixRoute("12", (RouteChoice("b"),))],
    {"a": TrunkTarget("a", "10.0.0.1"), "b": TrunkTarget("b", "10.0.0.2", 5070, "tcp")},
)


def offered(call: int = 1, number: str = "1555", at: float = 100.0) -> CallOffered:
    return CallOffered(call, at, f"sip:{number}@engine", "sip:alice@example.com", f"cid-{call}")


def ended(
    call: int = 1, by: Party = Party.CALLER, status: int = 200, at: float = 110.0
) -> CallEnded:
    return CallEnded(call, at, by, status, "", "PCMU", "PCMA")


def test_dialed_number() -> None:
    assert dialed_number("sip:+4930123@gw;user=phone") == "+4930123"
    assert dialed_number("tel:+4930123") == "+4930123"
    assert dialed_number("sip:gw.example.com") == ""
    assert dialed_number("garbage") == ""


def test_answered_call_lifecycle() -> None:
    reg = CallRegistry(ROUTER)
    assert reg.handle(offered(), now=0.0) == [
        PlaceCallee(1, "sip:1555@10.0.0.1:5060", "sip:alice@example.com", "a")
    ]
    assert reg.active_calls() == 1
    assert reg.handle(CalleeRinging(1, 101.0, 180), now=1.0) == []
    assert reg.handle(CalleeRinging(1, 101.5, 183), now=1.5) == []
    assert reg.handle(CallAnswered(1, 102.0), now=2.0) == []
    assert reg.next_deadline() is None  # answering cancels the no-answer timer
    assert reg.handle(ended(by=Party.CALLEE), now=10.0) == []
    assert reg.active_calls() == 0
    (record,) = reg.finished
    assert record.state is CallState.ENDED
    assert (record.setup_at, record.ringing_at, record.answered_at, record.ended_at) == (
        100.0,
        101.0,
        102.0,
        110.0,
    )
    assert record.disposition is Disposition.ANSWERED
    assert record.cause is Cause.CALLEE_HANGUP
    assert (record.caller_codec, record.callee_codec) == ("PCMU", "PCMA")
    assert reg.take_changed() == [record]  # offered, ringing, answered, ended: reported once
    assert reg.take_changed() == []


def test_unknown_number_is_released_with_404_and_no_callee() -> None:
    reg = CallRegistry(ROUTER)
    assert reg.handle(offered(number="999"), now=0.0) == [ReleaseCall(1, 404, "Not Found", 1)]
    assert reg.next_deadline() is None
    reg.handle(ended(by=Party.GATEWAY, status=404), now=0.1)
    (record,) = reg.finished
    assert (record.disposition, record.cause, record.caller_status) == (
        Disposition.REJECTED,
        Cause.ROUTE_REFUSED,
        404,
    )


def test_callee_busy_maps_to_486_for_the_caller() -> None:
    reg = CallRegistry(ROUTER)
    reg.handle(offered(), now=0.0)
    assert reg.handle(CalleeFailed(1, 100.1, 486, "Busy Here"), now=0.1) == [
        ReleaseCall(1, 486, "Busy Here", 17)
    ]
    assert reg.next_deadline() is None
    reg.handle(ended(by=Party.GATEWAY, status=486), now=0.2)
    (record,) = reg.finished
    assert (record.disposition, record.cause) == (Disposition.BUSY, Cause.CALLEE_BUSY)
    assert (record.caller_status, record.callee_status, record.q850_cause) == (486, 486, 17)


def test_failure_table() -> None:
    assert caller_answer_for(486).status == 486
    assert caller_answer_for(407).status == 503  # our leg's credentials: not the caller's problem
    assert caller_answer_for(500).status == 502
    assert caller_answer_for(302).status == 502  # redirects are not followed yet
    assert caller_answer_for(699).status == 603
    assert all(400 <= a.status < 700 for a in CALLEE_FAILURES.values())


def test_no_answer_timer_fires_at_its_deadline_only() -> None:
    reg = CallRegistry(ROUTER, CallSettings(no_answer_timeout=30.0))
    reg.handle(offered(), now=5.0)
    reg.handle(CalleeRinging(1, 101.0, 180), now=6.0)
    assert reg.next_deadline() == 35.0
    assert reg.expire(34.999) == []
    assert reg.expire(35.0) == [ReleaseCall(1, 480, "Temporarily Unavailable", 19)]
    assert reg.next_deadline() is None
    assert reg.live[1].state is CallState.RELEASING
    # The callee's 487 after our CANCEL and the caller's end must not change the outcome.
    assert reg.handle(CalleeFailed(1, 131.0, 487, "Request Terminated"), now=35.1) == []
    reg.handle(ended(by=Party.GATEWAY, status=480), now=35.2)
    (record,) = reg.finished
    assert (record.disposition, record.cause, record.caller_status) == (
        Disposition.NO_ANSWER,
        Cause.NO_ANSWER,
        480,
    )


def test_caller_cancel_before_answer() -> None:
    reg = CallRegistry(ROUTER)
    reg.handle(offered(), now=0.0)
    reg.handle(CalleeRinging(1, 101.0, 180), now=1.0)
    reg.handle(ended(by=Party.CALLER, status=487), now=2.0)
    assert reg.next_deadline() is None  # stale timer dropped
    (record,) = reg.finished
    assert (record.disposition, record.cause, record.caller_status) == (
        Disposition.CANCELLED,
        Cause.CALLER_CANCEL,
        487,
    )


def test_late_events_are_ignored_and_counted() -> None:
    reg = CallRegistry(ROUTER)
    reg.handle(offered(), now=0.0)
    reg.handle(CallAnswered(1, 101.0), now=1.0)
    reg.handle(CalleeRinging(1, 101.5, 180), now=1.5)  # ringing after answer
    reg.handle(ended(), now=2.0)
    reg.handle(ended(), now=2.1)  # unknown call now
    assert reg.ignored == 2
    assert reg.finished[0].ringing_at is None


def test_engine_stop_ends_every_live_call() -> None:
    reg = CallRegistry(ROUTER)
    reg.handle(offered(1), now=0.0)
    reg.handle(offered(2), now=0.0)
    reg.handle(CallAnswered(2, 101.0), now=1.0)
    reg.handle(EngineStopped(120.0, "engine thread died", crashed=True), now=2.0)
    assert reg.active_calls() == 0
    by_call = {r.call: r for r in reg.finished}
    assert by_call[1].disposition is Disposition.FAILED
    assert by_call[2].disposition is Disposition.ANSWERED
    assert {r.cause for r in reg.finished} == {Cause.ENGINE_STOPPED}
    assert reg.next_deadline() is None


def test_transition_table_lets_every_live_call_end() -> None:
    """The caller can hang up or cancel in any state; nothing leaves `ended`."""
    for state in CallState:
        if state is CallState.ENDED:
            assert not any(s is state for s, _ in TRANSITIONS)
        else:
            assert TRANSITIONS[(state, CallInput.ENDED)] is CallState.ENDED


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["offer", "offer_bad", "ring", "answer", "fail", "end", "tick", "stop"]),
        st.integers(1, 3),
        st.sampled_from([180, 183, 404, 486, 500, 603]),
    ),
    max_size=40,
)


_OFFERS = {"offer": "1555", "offer_bad": "9", "offer_trunk": "5551", "offer_sos": "911"}
_STEPS = ("ring", "answer", "fail", "end", "tick", "stop")


def scripted_event(
    reg: CallRegistry, kind: str, call: int, status: int, leg: int, now: float
) -> CallEvent | None:
    """One step of a property test's script (None: nothing arrives)."""
    if kind in _OFFERS or kind == "offer_bob":
        number = _OFFERS.get(kind, "bob")
        return offered(call, number=number, at=now) if call not in reg.live else None
    return {
        "ring": CalleeRinging(call, now, status, leg),
        "answer": CallAnswered(call, now),
        "fail": CalleeFailed(call, now, status, "", leg),
        "end": ended(call, at=now),
        "stop": EngineStopped(now, "", crashed=False),
        "tick": None,
    }[kind]


@given(_EVENTS)
def test_any_event_order_keeps_the_books_straight(script: list[tuple[str, int, int]]) -> None:
    reg = CallRegistry(ROUTER, CallSettings(no_answer_timeout=3.0))
    now = 0.0
    for kind, call, status in script:
        now += 1.0
        event = scripted_event(reg, kind, call, status, 0, now)
        if event is not None:
            reg.handle(event, now)
        reg.expire(now)
        assert reg.active_calls() == len(reg.live)
        assert all(r.state is not CallState.ENDED for r in reg.live.values())
    for record in reg.finished:
        assert record.state is CallState.ENDED
        assert record.disposition is not None and record.cause is not None
        assert record.ended_at is not None


class FakeEngine:
    def __init__(self) -> None:
        self.handler: Callable[[Sequence[CallEvent]], None] | None = None
        self.commands: asyncio.Queue[CallCommand] = asyncio.Queue()

    def attach_calls(self, handler: Callable[[Sequence[CallEvent]], None]) -> None:
        self.handler = handler

    def submit(self, command: CallCommand) -> None:
        self.commands.put_nowait(command)


async def test_control_adapter_routes_and_arms_the_no_answer_timer() -> None:
    engine = FakeEngine()
    finished = []
    control = CallControl(
        engine, ROUTER, CallSettings(no_answer_timeout=0.05), on_record=finished.append
    )
    assert engine.handler is not None
    engine.handler([offered()])
    assert isinstance(await engine.commands.get(), PlaceCallee)
    assert control.active_calls() == 1
    # Nothing else happens: the adapter's timer releases the call.
    assert await asyncio.wait_for(engine.commands.get(), 2) == ReleaseCall(
        1, 480, "Temporarily Unavailable", 19
    )
    engine.handler([ended(by=Party.GATEWAY, status=480)])
    await asyncio.wait_for(control.wait_idle(), 1)
    assert [r.cause for r in finished] == [Cause.NO_ANSWER]
    control.close()


async def test_control_adapter_reports_changes_for_cdrs_and_finished_calls_once() -> None:
    engine = FakeEngine()
    changes: list[tuple[int, CallState]] = []
    finished = []
    control = CallControl(
        engine,
        ROUTER,
        on_record=finished.append,
        on_change=lambda record: changes.append((record.call, record.state)),
    )
    assert engine.handler is not None
    engine.handler([offered(1), offered(2, number="999")])  # 2 is refused at once
    engine.handler([CallAnswered(1, 101.0)])
    engine.handler([ended(1), ended(2, by=Party.GATEWAY, status=404)])
    assert changes == [
        (1, CallState.SETUP),
        (2, CallState.RELEASING),
        (1, CallState.ANSWERED),
        (1, CallState.ENDED),
        (2, CallState.ENDED),
    ]
    assert [r.call for r in finished] == [1, 2]
    control.close()


# --- failover, channel limits, numbers ------------------------------------------------

THREE_TRUNKS = (
    [
        PrefixRoute("5", (RouteChoice("a", 0), RouteChoice("b", 1), RouteChoice("c", 2))),
        PrefixRoute("+49", (RouteChoice("b"),)),
    ],
    {
        "a": TrunkTarget("a", "10.0.0.1", channels=1),
        "b": TrunkTarget("b", "10.0.0.2"),
        "c": TrunkTarget("c", "10.0.0.3"),
    },
)
FAILOVER = DialPlan(*THREE_TRUNKS, emergency_trunks=("a",))
SETTINGS = CallSettings(no_answer_timeout=60.0, attempt_timeout=5.0)


def _place(call: int, host: str, trunk: str, leg: int, number: str = "5551") -> PlaceCallee:
    return PlaceCallee(call, f"sip:{number}@{host}:5060", "sip:alice@example.com", trunk, leg=leg)


def test_5xx_and_408_fail_over_to_the_next_trunk_in_order() -> None:
    reg = CallRegistry(FAILOVER, SETTINGS)
    assert reg.handle(offered(number="5551"), now=0.0) == [_place(1, "10.0.0.1", "a", 0)]
    assert reg.trunk_calls == {"a": 1}
    assert reg.handle(CalleeFailed(1, 100.1, 503, "Busy"), now=0.1) == [
        _place(1, "10.0.0.2", "b", 1)
    ]
    assert reg.trunk_calls == {"b": 1}
    assert reg.handle(CalleeFailed(1, 100.2, 408, "Timeout", leg=1), now=0.2) == [
        _place(1, "10.0.0.3", "c", 2)
    ]
    # The last trunk's failure is what the caller hears.
    assert reg.handle(CalleeFailed(1, 100.3, 500, "Oops", leg=2), now=0.3) == [
        ReleaseCall(1, 502, "Bad Gateway", q850_for_sip(500))
    ]
    reg.handle(ended(by=Party.GATEWAY, status=502), now=0.4)
    (record,) = reg.finished
    assert (record.trunk, record.callee_status, record.caller_status) == ("c", 500, 502)
    assert record.target == "sip:5551@10.0.0.3:5060"
    assert reg.trunk_calls == {}


def test_a_callees_answer_is_final_no_failover() -> None:
    reg = CallRegistry(FAILOVER, SETTINGS)
    reg.handle(offered(number="5551"), now=0.0)
    for status in (404, 486, 603):
        assert reg.handle(CalleeFailed(1, 100.1, status, ""), now=0.1) == [
            ReleaseCall(
                1,
                caller_answer_for(status).status,
                caller_answer_for(status).reason,
                q850_for_sip(status),
            )
        ]
        reg.handle(ended(by=Party.GATEWAY), now=0.2)
        reg.handle(offered(number="5551"), now=0.3)
    assert [r.trunk for r in reg.finished] == ["a", "a", "a"]


def test_late_events_of_a_replaced_leg_are_ignored() -> None:
    reg = CallRegistry(FAILOVER, SETTINGS)
    reg.handle(offered(number="5551"), now=0.0)
    reg.handle(CalleeFailed(1, 100.1, 503, ""), now=0.1)
    ignored = reg.ignored
    assert reg.handle(CalleeFailed(1, 100.2, 503, "", leg=0), now=0.2) == []
    assert reg.handle(CalleeRinging(1, 100.2, 180, leg=0), now=0.2) == []
    assert reg.ignored == ignored + 2
    assert reg.live[1].state is CallState.SETUP and reg.live[1].trunk == "b"


def test_a_trunk_that_does_not_ring_in_time_is_replaced_but_the_last_is_not() -> None:
    reg = CallRegistry(FAILOVER, SETTINGS)
    reg.handle(offered(number="5551"), now=0.0)
    assert reg.next_deadline() == 5.0
    assert reg.expire(4.9) == []
    assert reg.expire(5.0) == [_place(1, "10.0.0.2", "b", 1)]
    assert reg.trunk_calls == {"b": 1}  # the dropped leg's channel is free again
    # Ringing stops the attempt timer: b keeps the call until the no-answer timer.
    reg.handle(CalleeRinging(1, 106.0, 180, leg=1), now=6.0)
    assert reg.next_deadline() == 60.0
    assert reg.expire(59.0) == []
    assert reg.expire(60.0) == [ReleaseCall(1, 480, "Temporarily Unavailable", NO_ANSWER)]


def test_the_last_trunk_gets_no_attempt_timer() -> None:
    reg = CallRegistry(FAILOVER, SETTINGS)
    reg.handle(offered(number="+4930123456"), now=0.0)
    assert reg.next_deadline() == 60.0


def test_a_full_trunk_is_skipped_and_all_full_gets_503() -> None:
    one_trunk = DialPlan(
        [PrefixRoute("5", (RouteChoice("a"),))], {"a": TrunkTarget("a", "10.0.0.1", channels=1)}
    )
    reg = CallRegistry(FAILOVER, SETTINGS)
    reg.handle(offered(1, number="5551"), now=0.0)
    assert reg.handle(offered(2, number="5552"), now=0.0) == [_place(2, "10.0.0.2", "b", 0, "5552")]
    reg.handle(CallAnswered(1, 101.0), now=1.0)
    reg.handle(ended(1), now=2.0)
    assert reg.handle(offered(3, number="5553"), now=3.0) == [_place(3, "10.0.0.1", "a", 0, "5553")]
    full = CallRegistry(one_trunk, SETTINGS)
    full.handle(offered(1, number="5551"), now=0.0)
    assert full.handle(offered(2, number="5552"), now=0.0) == [
        ReleaseCall(2, 503, "Service Unavailable", q850_for_sip(503))
    ]


def test_emergency_calls_ignore_channel_limits() -> None:
    reg = CallRegistry(FAILOVER, SETTINGS)
    reg.handle(offered(1, number="5551"), now=0.0)  # takes a's only channel
    assert reg.handle(offered(2, number="911"), now=0.0) == [_place(2, "10.0.0.1", "a", 0, "911")]
    assert reg.trunk_calls == {"a": 2}


def test_records_carry_e164_numbers() -> None:
    reg = CallRegistry(FAILOVER, SETTINGS)
    reg.handle(
        CallOffered(1, 100.0, "sip:+4930123456@engine", "sip:2025550123@example.com", "c"),
        now=0.0,
    )
    record = reg.live[1]
    assert (record.caller_e164, record.callee_e164) == ("+12025550123", "+4930123456")


class Phones:
    def __init__(self, **contacts: list[str]) -> None:
        self.by_account = contacts

    def contacts(self, account: str) -> list[tuple[str, str]]:
        return [(uri, "") for uri in self.by_account.get(account, [])]


EVERYTHING = DialPlan(
    *THREE_TRUNKS,
    emergency_trunks=("a",),
    accounts={
        "bob": AccountRoute(Forwarding("bob", busy="5552", no_answer="carol", unreachable="bob")),
        "carol": AccountRoute(Forwarding("carol", busy="bob")),
    },
    contacts=Phones(bob=["sip:bob@192.0.2.1", "sip:bob@192.0.2.2"], carol=["sip:c@192.0.2.3"]),
)

_FAILOVER_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["offer_trunk", "offer_sos", "offer_bob", *_STEPS]),
        st.integers(1, 4),
        st.sampled_from([180, 408, 486, 500, 503, 603]),
        st.integers(0, 6),
    ),
    max_size=50,
)


@settings(deadline=None)  # a loaded machine must not fail it
@given(_FAILOVER_EVENTS)
def test_channels_are_counted_exactly_under_any_event_order(
    script: list[tuple[str, int, int, int]],
) -> None:
    reg = CallRegistry(EVERYTHING, SETTINGS)
    now = 0.0
    for kind, call, status, leg in script:
        now += 2.0
        event = scripted_event(reg, kind, call, status, leg, now)
        if event is not None:
            reg.handle(event, now)
        reg.expire(now)
        held = Counter(r.channel for r in reg.live.values() if r.channel)
        assert reg.trunk_calls == held
        assert sum(1 for r in reg.live.values() if r.channel == "a" and r.dialed != "911") <= 1
    for record in reg.finished:
        assert record.state is CallState.ENDED and record.disposition is not None


# --- forking to an account's contacts, forwarding ------------------------------------


def account_plan(**forwards: str) -> DialPlan:
    phones = Phones(bob=["sip:bob@192.0.2.1", "sip:bob@192.0.2.2"], carol=["sip:carol@192.0.2.3"])
    forwarding = Forwarding(
        "bob",
        busy=forwards.get("busy", ""),
        no_answer=forwards.get("no_answer", ""),
        no_answer_after=10.0,
        unreachable=forwards.get("unreachable", ""),
    )
    return DialPlan(
        [PrefixRoute("5", (RouteChoice("a"),))],
        {"a": TrunkTarget("a", "10.0.0.1")},
        accounts={
            "bob": AccountRoute(forwarding),
            "carol": AccountRoute(Forwarding("carol", busy="bob")),
        },
        contacts=phones,
        max_hops=3,
    )


def _ring(call: int, uri: str, leg: int, fork: bool = False) -> PlaceCallee:
    return PlaceCallee(call, uri, "sip:alice@example.com", leg=leg, fork=fork)


BOB_FORK = [_ring(1, "sip:bob@192.0.2.1", 0), _ring(1, "sip:bob@192.0.2.2", 1, fork=True)]


def test_an_account_rings_every_contact_and_waits_for_all_failures() -> None:
    reg = CallRegistry(account_plan(), SETTINGS)
    assert reg.handle(offered(number="bob"), now=0.0) == BOB_FORK
    assert reg.handle(CalleeRinging(1, 100.1, 180, leg=1), now=0.1) == []
    assert reg.live[1].state is CallState.RINGING
    assert reg.handle(CalleeFailed(1, 100.2, 480, "", leg=1), now=0.2) == []  # leg 0 still rings
    assert reg.handle(CalleeFailed(1, 100.3, 486, "", leg=0), now=0.3) == [
        ReleaseCall(
            1, 486, "Busy Here", q850_for_sip(486)
        )  # busy says more than unavailable (§16.7)
    ]


def test_a_6xx_from_one_contact_ends_the_search() -> None:
    reg = CallRegistry(account_plan(busy="carol"), SETTINGS)
    reg.handle(offered(number="bob"), now=0.0)
    assert reg.handle(CalleeFailed(1, 100.1, 603, "Decline", leg=0), now=0.1) == [
        ReleaseCall(
            1, 603, "Decline", q850_for_sip(603)
        )  # no forward on decline; the engine cancels leg 1
    ]


def test_best_of_failures() -> None:
    assert best_of(None, 503) == 503
    assert best_of(503, 404) == 404
    assert best_of(480, 486) == 486
    assert best_of(404, 486) == 486
    assert best_of(486, 500) == 486


def test_busy_forwards_to_the_target_one_hop_further() -> None:
    reg = CallRegistry(account_plan(busy="carol"), SETTINGS)
    reg.handle(offered(number="bob"), now=0.0)
    reg.handle(CalleeFailed(1, 100.1, 486, "", leg=0), now=0.1)
    assert reg.handle(CalleeFailed(1, 100.2, 486, "", leg=1), now=0.2) == [
        _ring(1, "sip:carol@192.0.2.3", 2)  # replaces, no fork flag: the engine drops the rest
    ]
    record = reg.live[1]
    assert (record.hops, record.state) == (1, CallState.SETUP)
    # carol is busy too and forwards back to bob: a loop, cut by the hop cap (3).
    commands = reg.handle(CalleeFailed(1, 100.3, 486, "", leg=2), now=0.3)
    assert commands == [
        _ring(1, "sip:bob@192.0.2.1", 3),
        _ring(1, "sip:bob@192.0.2.2", 4, fork=True),
    ]
    hops = [reg.live[1].hops]
    for leg in range(3, 40):
        commands = reg.handle(CalleeFailed(1, 101.0, 486, "", leg=leg), now=1.0)
        if any(isinstance(c, ReleaseCall) for c in commands) or 1 not in reg.live:
            break
        hops.append(reg.live[1].hops)
    assert commands == [ReleaseCall(1, 486, "Busy Here", q850_for_sip(486))]
    assert max(hops) <= 3


def test_unreachable_contacts_forward_to_the_unreachable_target() -> None:
    reg = CallRegistry(account_plan(unreachable="5550"), SETTINGS)
    reg.handle(offered(number="bob"), now=0.0)
    reg.handle(CalleeFailed(1, 100.1, 408, "", leg=0), now=0.1)
    assert reg.handle(CalleeFailed(1, 100.2, 503, "", leg=1), now=0.2) == [
        PlaceCallee(1, "sip:5550@10.0.0.1:5060", "sip:alice@example.com", "a", leg=2)
    ]


def test_no_answer_forward_after_its_delay_keeps_the_no_answer_timer() -> None:
    reg = CallRegistry(account_plan(no_answer="carol"), SETTINGS)
    reg.handle(offered(number="bob"), now=0.0)
    reg.handle(CalleeRinging(1, 100.5, 180, leg=0), now=0.5)
    assert reg.next_deadline() == 10.0
    assert reg.expire(9.9) == []
    assert reg.expire(10.0) == [_ring(1, "sip:carol@192.0.2.3", 2)]
    assert reg.live[1].state is CallState.RINGING
    assert reg.handle(CalleeFailed(1, 110.1, 487, "", leg=0), now=10.1) == []  # dropped leg
    assert reg.next_deadline() == 60.0  # the caller's no-answer timer still holds
    reg.handle(CallAnswered(1, 111.0), now=11.0)
    assert reg.next_deadline() is None


def test_max_forwards_of_the_caller_limits_forwarding() -> None:
    reg = CallRegistry(account_plan(busy="carol"), SETTINGS)
    offer = CallOffered(1, 100.0, "sip:bob@engine", "sip:alice@example.com", "c", max_forwards=1)
    reg.handle(offer, now=0.0)
    reg.handle(CalleeFailed(1, 100.1, 486, "", leg=0), now=0.1)
    assert reg.handle(CalleeFailed(1, 100.2, 486, "", leg=1), now=0.2) == [
        ReleaseCall(1, 486, "Busy Here", q850_for_sip(486))
    ]


def test_callee_reason_wins_over_the_status_mapping() -> None:
    reg = CallRegistry(ROUTER)
    reg.handle(offered(), now=0.0)
    # 480 alone would be cause 18 (RFC 3398); the callee said 20, subscriber absent.
    assert reg.handle(CalleeFailed(1, 100.1, 480, "Unavailable", q850=20), now=0.1) == [
        ReleaseCall(1, 480, "Temporarily Unavailable", 20)
    ]
    reg.handle(ended(by=Party.GATEWAY, status=480), now=0.2)
    assert reg.finished[0].q850_cause == 20


@pytest.mark.parametrize(("q850", "expected"), [(None, 16), (31, 31)])
def test_answered_call_keeps_the_release_cause(q850: int | None, expected: int) -> None:
    reg = CallRegistry(ROUTER)
    reg.handle(offered(), now=0.0)
    reg.handle(CallAnswered(1, 101.0), now=1.0)
    reg.handle(CallEnded(1, 102.0, Party.CALLEE, 200, "", "PCMU", "PCMA", q850), now=2.0)
    assert reg.finished[0].q850_cause == expected
