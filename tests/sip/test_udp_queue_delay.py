"""The UDP endpoint knows how long a datagram sat in the kernel before it was read, and
says when the kernel would not give its socket the receive buffer asked for.

Overload control sheds new calls on it (`calls.max_receive_delay`): a node past its
capacity keeps its event loop turning while its sockets queue megabytes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest
import structlog

from gateway.sip import transport as transport_module
from gateway.sip.limits import ParseLimits
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.transport import Peer, UdpEndpoint, open_udp

OPTIONS = (
    b"OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-%d\r\n"
    b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\n"
    b"Call-ID: q-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)


async def _waits(hold: float, count: int) -> list[float]:
    """Send `count` datagrams, keep the loop from reading them for `hold` seconds, and
    return what `Peer.waited` said for each as the endpoint handled it."""
    waits: list[float] = []
    handled = asyncio.Event()

    def on_message(_message: SipRequest | SipResponse, peer: Peer) -> None:
        waits.append(peer.waited())
        handled.set()

    endpoint = UdpEndpoint(ParseLimits(), on_message, lambda *_: None, lambda _ip: True)
    transport = await open_udp("127.0.0.1", 0, endpoint)
    port = transport.get_extra_info("sockname")[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        # Linux switches timestamping on for the whole host a moment after the first
        # socket asks (deferred work); until then SIOCGSTAMP answers "now". Probe until a
        # datagram held for 20 ms says so (at most 1 s), so the measured ones are stamped.
        for attempt in range(50):
            sender.sendto(OPTIONS % (0, attempt), ("127.0.0.1", port))
            time.sleep(0.02)  # noqa: ASYNC251 -- the probe waits in the kernel
            await asyncio.wait_for(handled.wait(), 5.0)
            handled.clear()
            if waits[-1] >= 0.015:
                break
        waits.clear()
        for index in range(1, count + 1):
            sender.sendto(OPTIONS % (index, index), ("127.0.0.1", port))
        time.sleep(hold)  # noqa: ASYNC251 -- blocks the loop on purpose: datagrams wait in the kernel
        while len(waits) < count:
            await asyncio.wait_for(handled.wait(), 5.0)
            handled.clear()
    transport.close()
    return waits


async def test_a_datagram_read_late_reports_its_time_in_the_queue() -> None:
    waits = await _waits(hold=0.2, count=3)
    assert len(waits) == 3
    assert all(0.2 <= wait < 2.0 for wait in waits), waits


async def test_a_datagram_read_at_once_reports_almost_no_wait() -> None:
    waits = await _waits(hold=0.0, count=1)
    assert waits[0] < 0.15, waits  # a loop turn, with room for a busy CI machine


def _rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


async def test_a_receive_buffer_capped_by_the_kernel_is_logged_with_the_sysctl_to_raise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As root SO_RCVBUFFORCE would grant any size: make it fail, as it does without
    # CAP_NET_ADMIN, so the size falls back to SO_RCVBUF, capped at net.core.rmem_max.
    monkeypatch.setattr(transport_module, "SO_RCVBUFFORCE", -1)
    cap = _rmem_max()
    endpoint = UdpEndpoint(ParseLimits(), lambda *_: None, lambda *_: None, lambda _ip: True)
    with structlog.testing.capture_logs() as logs:
        transport = await open_udp("127.0.0.1", 0, endpoint, receive_buffer=cap + 65536)
    port = transport.get_extra_info("sockname")[1]
    transport.close()
    (warning,) = [entry for entry in logs if entry["event"] == "udp_receive_buffer_capped"]
    assert warning["listener"] == f"127.0.0.1:{port}"  # the port bound, not the 0 asked for
    assert warning["asked"] == cap + 65536
    assert warning["granted"] == cap
    assert f"net.core.rmem_max >= {cap + 65536}" in warning["hint"]


async def test_a_granted_receive_buffer_logs_nothing() -> None:
    endpoint = UdpEndpoint(ParseLimits(), lambda *_: None, lambda *_: None, lambda _ip: True)
    with structlog.testing.capture_logs() as logs:
        transport = await open_udp("127.0.0.1", 0, endpoint, receive_buffer=1 << 20)
    transport.close()
    assert not [entry for entry in logs if entry["event"] == "udp_receive_buffer_capped"]
