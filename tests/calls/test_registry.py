"""The call state machine, pure: events in, commands out, a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.calls.control import CallControl
from gateway.calls.registry import (
    CALLEE_FAILURES,
    TRANSITIONS,
    CallInput,
    CallRegistry,
    CallSettings,
    CallState,
    Cause,
    Disposition,
    caller_answer_for,
)
from gateway.calls.routing import (
    CallRequest,
    PrefixRoute,
    Refusal,
    StaticRouter,
    StaticRoutes,
    Target,
    dialed_number,
)
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

ROUTER = StaticRouter(
    StaticRoutes(
        (
            PrefixRoute("1", "10.0.0.1", 5060),
            PrefixRoute("12", "10.0.0.2", 5070, "tcp"),
            PrefixRoute("49", "::1", 5080),
        )
    )
)


def offered(call: int = 1, number: str = "1555", at: float = 100.0) -> CallOffered:
    return CallOffered(call, at, f"sip:{number}@engine", "sip:alice@example.com", f"cid-{call}")


def ended(
    call: int = 1, by: Party = Party.CALLER, status: int = 200, at: float = 110.0
) -> CallEnded:
    return CallEnded(call, at, by, status, "", "PCMU", "PCMA")


def test_static_router_longest_prefix_and_unknown() -> None:
    assert ROUTER.route(CallRequest("1555", "")) == Target("sip:1555@10.0.0.1:5060")
    assert ROUTER.route(CallRequest("1255", "")) == Target("sip:1255@10.0.0.2:5070;transport=tcp")
    assert ROUTER.route(CallRequest("4930", "")) == Target("sip:4930@[::1]:5080")
    assert ROUTER.route(CallRequest("999", "")) == Refusal(404, "Not Found")
    assert ROUTER.route(CallRequest("", "")) == Refusal(404, "Not Found")


def test_dialed_number() -> None:
    assert dialed_number("sip:+4930123@gw;user=phone") == "+4930123"
    assert dialed_number("tel:+4930123") == "+4930123"
    assert dialed_number("sip:gw.example.com") == ""
    assert dialed_number("garbage") == ""


def test_answered_call_lifecycle() -> None:
    reg = CallRegistry(ROUTER)
    assert reg.handle(offered(), now=0.0) == [
        PlaceCallee(1, "sip:1555@10.0.0.1:5060", "sip:alice@example.com")
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
    assert reg.take_finished() == [record]
    assert reg.take_finished() == []


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


@given(_EVENTS)
def test_any_event_order_keeps_the_books_straight(script: list[tuple[str, int, int]]) -> None:
    reg = CallRegistry(ROUTER, CallSettings(no_answer_timeout=3.0))
    now = 0.0
    for kind, call, status in script:
        now += 1.0
        event: CallEvent | None = {
            "offer": offered(call, at=now) if call not in reg.live else None,
            "offer_bad": offered(call, number="9", at=now) if call not in reg.live else None,
            "ring": CalleeRinging(call, now, status),
            "answer": CallAnswered(call, now),
            "fail": CalleeFailed(call, now, status, ""),
            "end": ended(call, at=now),
            "stop": EngineStopped(now, "", crashed=False),
            "tick": None,
        }[kind]
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
