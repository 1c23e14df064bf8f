"""The pure parts of trunk DNS: SRV ordering, next hops, and what config accepts."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.config.accounts import TrunkConfig
from gateway.config.base import nameserver_address
from gateway.config.sip import SipConfig
from gateway.sip.dns import DnsFailure, SipResolver, Srv, order_srv
from gateway.sip.limits import ParseLimits
from gateway.sip.proxy import Hop, hop_to
from gateway.sip.transport import StreamConnection, connect_stream, server_tls_context
from tests.support.tls import self_signed


def test_srv_lowest_priority_first_then_by_weight() -> None:
    records = [
        Srv(20, 0, 5060, "backup"),
        Srv(10, 1, 5060, "small"),
        Srv(10, 9, 5060, "big"),
        Srv(10, 0, 5060, "zero"),
    ]
    # rand() just below 0.9 of the total weight 10 falls in "big" (the second in order)...
    assert [r.target for r in order_srv(records, lambda: 0.5)] == [
        "big",
        "small",
        "zero",
        "backup",
    ]
    # ... and below 0.1 in "small".
    assert [r.target for r in order_srv(records, lambda: 0.05)][:2] == ["small", "big"]


@given(
    st.lists(
        st.builds(
            Srv,
            st.integers(0, 3),
            st.integers(0, 5),
            st.just(5060),
            st.sampled_from("abcdefgh"),
        ),
        max_size=8,
    ),
    st.floats(0, 0.999999),
)
def test_srv_order_keeps_every_record_and_sorts_priorities(records: list[Srv], r: float) -> None:
    ordered = order_srv(records, itertools.repeat(r).__next__)
    assert sorted(ordered, key=repr) == sorted(records, key=repr)
    assert [x.priority for x in ordered] == sorted(x.priority for x in records)


def test_hops_of_names_and_addresses() -> None:
    assert hop_to("udp", "carrier.test", None) == Hop("udp", "carrier.test", 5060, srv=True)
    assert hop_to("tls", "carrier.test", None) == Hop("tls", "carrier.test", 5061, srv=True)
    assert hop_to("udp", "carrier.test", 5080) == Hop("udp", "carrier.test", 5080)
    assert hop_to("udp", "[2001:db8::1]", None) == Hop("udp", "2001:db8::1", 5060)


def test_nameserver_addresses() -> None:
    assert nameserver_address("192.0.2.53") == ("192.0.2.53", 53)
    assert nameserver_address("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert nameserver_address("2001:db8::53") == ("2001:db8::53", 53)
    assert nameserver_address("[2001:db8::53]:5353") == ("2001:db8::53", 5353)
    assert nameserver_address("[::1]") == ("::1", 53)
    for bad in ("ns.example", "1.2.3.4:0", "1.2.3.4:x", "[::1", ""):
        assert nameserver_address(bad) is None, bad
    with pytest.raises(ValidationError, match=r"ns\.example"):
        SipConfig(dns_servers=("ns.example",))


def test_trunk_host_is_an_address_or_a_dns_name() -> None:
    assert TrunkConfig(name="t", host="SBC.Carrier.Example.").host == "sbc.carrier.example"
    assert TrunkConfig(name="t", host="[2001:db8::1]").host == "2001:db8::1"
    assert TrunkConfig(name="t", host="sbc.example").port is None
    for bad in ("under_score.example", "-lead.example", "a..b", "1.2.3.4.5", "x" * 64 + ".com"):
        with pytest.raises(ValidationError):
            TrunkConfig(name="t", host=bad)
    with pytest.raises(ValidationError, match="1 to 65535"):
        TrunkConfig(name="t", host="sbc.example", port=0)


async def test_a_failed_lookup_is_remembered_briefly() -> None:
    """Nothing listens on the nameserver: the lookup fails once, then the failure is cached
    (retransmissions do not each wait for the DNS timeout)."""
    now = [1000.0]
    resolver = SipResolver(("127.0.0.1:9",), timeout=0.2, clock=lambda: now[0])
    with pytest.raises(DnsFailure):
        await resolver.resolve("sbc.carrier.test", "udp", 5060)
    with pytest.raises(DnsFailure):
        resolver.cached("sbc.carrier.test", "udp", 5060)
    now[0] += 60
    assert resolver.cached("sbc.carrier.test", "udp", 5060) is None


async def test_tls_to_a_resolved_address_checks_the_certificate_against_the_name(
    tmp_path: Path,
) -> None:
    """The edge connects to the address a trunk's name resolved to; the certificate must
    carry that name (RFC 5922), not merely the address."""
    cert, key = self_signed(tmp_path, "sbc.carrier.test")  # also valid for 127.0.0.1
    server = await asyncio.start_server(
        lambda _r, w: w.close(), "127.0.0.1", 0, ssl=server_tls_context(str(cert), str(key))
    )
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context(cafile=str(cert))

    def connection() -> StreamConnection:
        return StreamConnection(
            "tls", ParseLimits(), lambda *_: None, lambda *_: None, lambda _ip: True, 5.0, {}
        )

    try:
        await connect_stream("127.0.0.1", port, connection(), client, "sbc.carrier.test")
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect_stream("127.0.0.1", port, connection(), client, "other.carrier.test")
    finally:
        server.close()
        await server.wait_closed()


def test_the_answer_cache_is_bounded() -> None:
    now = [0.0]
    resolver = SipResolver(("127.0.0.1:9",), clock=lambda: now[0], max_entries=3)
    for n in range(3):
        resolver._remember((f"n{n}.test", "udp", None), 60.0, [("192.0.2.1", 5060)])
    now[0] = 10.0
    resolver._remember(("n3.test", "udp", None), 60.0, [("192.0.2.3", 5060)])
    assert resolver.cached("n0.test", "udp", None) is None  # the oldest went
    assert resolver.cached("n3.test", "udp", None) == [("192.0.2.3", 5060)]
    now[0] = 65.0  # n1 and n2 expired: they go before anything live
    resolver._remember(("n4.test", "udp", None), 60.0, [("192.0.2.4", 5060)])
    resolver._remember(("n5.test", "udp", None), 60.0, [("192.0.2.5", 5060)])
    assert resolver.cached("n3.test", "udp", None) is not None
    assert len(resolver._cache) == 3
