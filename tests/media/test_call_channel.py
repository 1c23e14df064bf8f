"""The calls' channel between the daemon and the engine thread, over a real socket pair."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import typing

import pytest

from media.call_channel import (
    MAX_MESSAGE,
    POLL_EVERY_S,
    WAKE,
    EngineEnd,
    ParentEnd,
    channel_pair,
    decode,
    encode,
)
from media.engine import EngineSettings, PjsipEngine
from media.events import (
    CallCommand,
    CallEnded,
    CallEvent,
    CallOffered,
    Party,
    PlaceCallee,
    ReleaseCall,
)


def _place(call: int) -> PlaceCallee:
    return PlaceCallee(call=call, target=f"sip:{call}@127.0.0.1", caller_uri="sip:a@127.0.0.1")


def _ended(call: int) -> CallEnded:
    return CallEnded(
        call=call,
        at=1.0,
        ended_by=Party.CALLER,
        status=200,
        reason="Normal",
        caller_codec="PCMU",
        callee_codec="PCMU",
    )


def test_a_batch_too_large_for_one_message_is_split_and_keeps_its_order() -> None:
    batch = [_place(n) for n in range(5_000)]
    messages = encode(batch)
    assert len(messages) > 1
    assert all(len(message) <= MAX_MESSAGE for message in messages)
    assert [item for message in messages for item in decode(message)] == batch


def test_an_item_too_large_for_any_message_is_left_out_and_the_rest_kept() -> None:
    huge = PlaceCallee(call=2, target="sip:x@127.0.0.1", caller_uri="x" * MAX_MESSAGE)
    messages = encode([_place(1), huge, _place(3)])
    assert [item for message in messages for item in decode(message)] == [_place(1), _place(3)]


def test_a_message_that_is_not_a_list_is_refused() -> None:
    with pytest.raises(TypeError):
        decode(b"\x80\x05K\x01.")  # pickled int


async def test_commands_reach_the_engine_end_in_one_message_per_loop_turn_with_a_wake_up() -> None:
    loop = asyncio.get_running_loop()
    parent_sock, child_sock = channel_pair()
    engine_sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    engine_sip.bind(("127.0.0.1", 0))
    engine_sip.setblocking(False)
    parent = ParentEnd(parent_sock, loop, lambda batch: None)
    engine = EngineEnd(child_sock)
    try:
        parent.wake_engine_at(*engine_sip.getsockname())
        commands: list[CallCommand] = [_place(1), ReleaseCall(call=2, status=486, reason="Busy")]
        for command in commands:
            parent.submit(command)
        assert engine.commands() == []  # sent at the end of the loop turn, not per command
        await asyncio.sleep(0)
        assert engine.commands() == commands
        assert await loop.sock_recv(engine_sip, 64) == WAKE
        assert engine.commands() == []
    finally:
        parent.close()
        engine.close()
        engine_sip.close()


async def test_commands_answering_delivered_events_leave_before_the_loop_turn_ends() -> None:
    """The engine waits for a route to place the callee: the answer does not wait for
    whatever else the daemon's loop turn runs."""
    loop = asyncio.get_running_loop()
    parent_sock, child_sock = channel_pair()
    engine = EngineEnd(child_sock)

    def route(batch: list[CallEvent]) -> None:  # call control answers each event at once
        for event in batch:
            parent.submit(_place(event.call))

    parent = ParentEnd(parent_sock, loop, route)
    try:
        engine.send_events([_ended(1), _ended(2)])
        parent.read()  # what the loop's reader does once the socket is readable
        assert engine.commands() == [_place(1), _place(2)]  # no await: already sent
    finally:
        parent.close()
        engine.close()


async def test_a_busy_loop_polling_between_its_work_reads_at_most_every_poll_interval() -> None:
    """The SIP edge calls `poll` after each datagram: a route request is answered within
    the burst, not after it, and an idle channel costs one recv per POLL_EVERY_S at most."""
    loop = asyncio.get_running_loop()
    parent_sock, child_sock = channel_pair()
    engine = EngineEnd(child_sock)
    now = [100.0]
    delivered: list[CallEvent] = []

    def route(batch: list[CallEvent]) -> None:
        delivered.extend(batch)
        for event in batch:
            parent.submit(_place(event.call))

    parent = ParentEnd(parent_sock, loop, route, clock=lambda: now[0])
    try:
        engine.send_events([_ended(1)])
        parent.poll()  # just created: counts as just read
        assert delivered == []
        now[0] += POLL_EVERY_S
        parent.poll()
        assert delivered == [_ended(1)]
        assert engine.commands() == [_place(1)]  # answered within the poll
        engine.send_events([_ended(2)])
        now[0] += POLL_EVERY_S / 2
        parent.poll()  # read too recently
        assert delivered == [_ended(1)]
        parent.read()  # the loop's own reader is never held back
        assert delivered == [_ended(1), _ended(2)]
    finally:
        parent.close()
        engine.close()


async def test_the_engine_sends_an_offer_at_once_and_other_events_at_the_end_of_its_turn() -> None:
    loop = asyncio.get_running_loop()
    parent_sock, child_sock = channel_pair()
    delivered: list[CallEvent] = []
    parent = ParentEnd(parent_sock, loop, delivered.extend)
    settings = EngineSettings("127.0.0.1", 0, 8, 1, 20000, 100, ("PCMU/8000",), 1)
    engine = PjsipEngine(settings, loop, channel=EngineEnd(child_sock))
    engine.attach_channel()
    offer = CallOffered(2, 1.0, "sip:1000@127.0.0.1", "sip:a@127.0.0.1", "abc")
    try:
        engine._emit(_ended(1))  # the B2BUA's emit hook, on the engine thread
        parent.read()
        assert delivered == []  # held for the end of the libHandleEvents() turn
        engine._emit(offer)  # the route is waited for: the offer takes what is held with it
        parent.read()
        assert delivered == [_ended(1), offer]
        engine._emit(_ended(3))
        engine._flush_events()  # the end of the turn
        parent.read()
        assert delivered == [_ended(1), offer, _ended(3)]
    finally:
        parent.close()
        child_sock.close()


async def test_events_from_the_engine_end_are_delivered_in_order() -> None:
    loop = asyncio.get_running_loop()
    parent_sock, child_sock = channel_pair()
    delivered: list[CallEvent] = []
    got_all = loop.create_future()

    def deliver(batch: list[CallEvent]) -> None:
        delivered.extend(batch)
        if len(delivered) == 5 and not got_all.done():
            got_all.set_result(None)

    parent = ParentEnd(parent_sock, loop, deliver)
    engine = EngineEnd(child_sock)
    try:
        engine.send_events([_ended(1), _ended(2)])
        engine.send_events([_ended(3)])
        engine.send_events([_ended(4), _ended(5)])
        await asyncio.wait_for(got_all, 5)
        assert [event.call for event in delivered if isinstance(event, CallEnded)] == [
            1,
            2,
            3,
            4,
            5,
        ]
    finally:
        parent.close()
        engine.close()


async def test_events_a_full_socket_holds_back_go_on_a_later_turn_in_order() -> None:
    loop = asyncio.get_running_loop()
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # fills after a few
    engine = EngineEnd(child_sock)
    delivered: list[CallEvent] = []
    try:
        for call in range(200):
            engine.send_events([_ended(call)])
        held_back = len(engine._channel.waiting)
        assert held_back  # the parent has not read: some are held back
        engine.retry()
        assert len(engine._channel.waiting) == held_back  # a retry adds nothing of its own
        parent = ParentEnd(parent_sock, loop, delivered.extend)
        while engine._channel.waiting or len(delivered) < 200:
            engine.retry()
            await asyncio.sleep(0)  # the parent's reader runs
        assert [event.call for event in delivered if isinstance(event, CallEnded)] == list(
            range(200)
        )
        parent.close()
    finally:
        engine.close()


def test_a_bad_message_is_dropped_and_the_next_ones_still_arrive() -> None:
    parent_sock, child_sock = channel_pair()
    engine = EngineEnd(child_sock)
    try:
        parent_sock.send(b"not a pickle")
        parent_sock.send(encode([_place(7)])[0])
        assert engine.commands() == [_place(7)]
    finally:
        engine.close()
        parent_sock.close()


def test_the_engine_end_sees_the_parent_go() -> None:
    parent_sock, child_sock = channel_pair()
    engine = EngineEnd(child_sock)
    parent_sock.close()
    assert engine.commands() == []
    assert engine.closed
    engine.send_events([_ended(1)])  # nobody listens: dropped, no error
    engine.close()


async def test_the_parent_end_reads_what_is_left_when_the_engine_goes() -> None:
    loop = asyncio.get_running_loop()
    parent_sock, child_sock = channel_pair()
    delivered: list[CallEvent] = []
    parent = ParentEnd(parent_sock, loop, delivered.extend)
    engine = EngineEnd(child_sock)
    engine.send_events([_ended(9)])
    engine.close()
    parent.read()
    assert [event.call for event in delivered if isinstance(event, CallEnded)] == [9]
    assert parent.closed


def test_every_event_and_command_crosses_with_all_its_fields() -> None:
    """Each kind, every field set to a value of its own, round-trips through the
    channel's encoding (they pickle by position, not through dataclass state)."""
    items: list[object] = []
    for kind in (*typing.get_args(CallEvent), *typing.get_args(CallCommand)):
        values: dict[str, object] = {}
        for number, field in enumerate(dataclasses.fields(kind)):
            annotation = str(field.type)
            if "Party" in annotation:
                values[field.name] = Party.TARGET
            elif annotation.startswith("int"):
                values[field.name] = 1000 + number
            elif annotation.startswith("float"):
                values[field.name] = 0.5 + number
            elif annotation.startswith("bool"):
                values[field.name] = True
            else:
                values[field.name] = f"value-{number}"
        items.append(kind(**values))
    [message] = encode(items)
    assert decode(message) == items
    assert [type(item) for item in decode(message)] == [type(item) for item in items]
