"""In-process cost of the edge's REGISTER path, without sockets or SIPp.

Feeds SIPp-shaped REGISTER pairs (no credentials -> 401, then MD5 digest
credentials -> 200) straight into the edge's UDP protocol object and times
only the edge's work (CPU time around `datagram_received`); the
client side (building datagrams, computing the digest response) is outside
the timed region. The figure is microseconds per REGISTER pair and the pairs
per second one core could carry at that cost; the baseline, measured in the
same run, is the bare header split of the same datagrams (`sip_parser`), the
least any Python edge has to do per message.

Run: python bench/sip_register_path.py [--pairs 2000] [--batches 20] [--profile FILE]
(`--profile` writes a cProfile dump of one extra pass; read it with pstats.)

Instructions per message, which a shared machine cannot blur:
`--instructions KIND N` builds N datagrams of one kind (`challenge`: no
credentials, answered 401; `first`: credentials with a nonce's first use;
`refresh`: the nonce reused, nc 2, 3, ...), then hands them to the edge
inside `functools.reduce`, the only region callgrind collects with

    valgrind --tool=callgrind --toggle-collect=functools_reduce \
        .venv/bin/python bench/sip_register_path.py --instructions refresh 1000

Ir (the `totals:` line of the callgrind.out file) / N is the edge's
instructions per message of that kind.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import hashlib
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after ROOT: bench/smpp.py must not shadow smpp/

from sip_parser import baseline_split  # noqa: E402

from gateway.config.sip import SipAuthConfig, SipConfig, SipProtectionConfig  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.sip.admission import AdmissionRequest, Reject  # noqa: E402
from gateway.sip.directory import Account, Directory, format_ha1, parse_ha1  # noqa: E402
from gateway.sip.edge import SipEdge  # noqa: E402
from gateway.sip.transport import UdpEndpoint  # noqa: E402

REALM = "callgate"
ACCOUNTS = 200
EDGE = ("127.0.0.1", 5060)
CLIENT = ("127.0.0.1", 40000)
REFRESHES = 5  # authenticated REGISTERs per challenge in the nonce-reuse mode
_NONCE = re.compile(rb'nonce="([^"]+)"')


class _Refuse:
    """Admission policy stub: REGISTER never reaches it."""

    def admit(self, request: AdmissionRequest, now: float) -> Reject:
        return Reject(403, "Forbidden")


class Wire:
    """Stands in for the asyncio datagram transport: keeps the last datagram sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, payload: bytes, _address: object = None) -> None:
        self.sent.append(payload)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, _name: str, default: object = None) -> object:
        return default  # no socket: the endpoint cannot read receive times


def _edge() -> tuple[SipEdge, UdpEndpoint, Wire]:
    config = SipConfig(
        auth=SipAuthConfig(realm=REALM, algorithms=("MD5",)),
        protection=SipProtectionConfig(packet_rate=1e9, packet_burst=10**9),
    )
    accounts = {
        f"bench{n}": Account(
            f"bench{n}", parse_ha1(format_ha1(f"bench{n}", REALM, f"pw-{n}"), "x"), None
        )
        for n in range(ACCOUNTS)
    }
    edge = SipEdge(config, Metrics(), EDGE, Directory(accounts, []), _Refuse())
    endpoint = UdpEndpoint(edge._limits(), edge.on_message, edge.on_bad_message, edge._allow_packet)
    wire = Wire()
    endpoint.connection_made(wire)  # type: ignore[arg-type]
    return edge, endpoint, wire


def _register(n: int, cseq: int, authorization: str = "") -> bytes:
    user = f"bench{n % ACCOUNTS}"
    auth = f"{authorization}\r\n" if authorization else ""
    return (
        f"REGISTER sip:{EDGE[0]}:{EDGE[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {CLIENT[0]}:{CLIENT[1]};branch=z9hG4bK-{n}-{cseq}\r\n"
        f"From: <sip:{user}@example.test>;tag={n}-1\r\n"
        f"To: <sip:{user}@example.test>\r\n"
        f"Call-ID: {n}-bench@{CLIENT[0]}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{CLIENT[0]}:{CLIENT[1]};transport=UDP>\r\n"
        "Expires: 3600\r\n"
        f"{auth}"
        "Max-Forwards: 70\r\n"
        "User-Agent: SIPp register\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _authorization(n: int, nonce: str, nc: int = 1) -> str:
    user = f"bench{n % ACCOUNTS}"
    uri = f"sip:{EDGE[0]}:{EDGE[1]}"
    ha1 = hashlib.md5(f"{user}:{REALM}:pw-{n % ACCOUNTS}".encode()).hexdigest()
    ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
    cnonce = f"{n:08x}"
    count = f"{nc:08x}"
    response = hashlib.md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Authorization: Digest username="{user}",realm="{REALM}",cnonce="{cnonce}",'
        f'nc={count},qop=auth,uri="{uri}",nonce="{nonce}",response="{response}",'
        "algorithm=MD5"
    )


def _exchange(
    endpoint: UdpEndpoint, wire: Wire, datagram: bytes, status: bytes
) -> tuple[bytes, int]:
    """Hand one datagram to the edge: (its answer, CPU nanoseconds the edge spent)."""
    t0 = time.thread_time_ns()
    endpoint.datagram_received(datagram, CLIENT)
    spent = time.thread_time_ns() - t0
    answer = wire.sent.pop()
    if not answer.startswith(b"SIP/2.0 " + status + b" "):
        raise RuntimeError(f"expected {status.decode()}, got {answer[:200]!r}")
    return answer, spent


def run_pairs(endpoint: UdpEndpoint, wire: Wire, start: int, pairs: int) -> int:
    """Handle `pairs` REGISTER pairs; returns CPU nanoseconds spent inside the edge."""
    total = 0
    for n in range(start, start + pairs):
        challenge, spent = _exchange(endpoint, wire, _register(n, 1), b"401")
        match = _NONCE.search(challenge)
        assert match is not None
        second = _register(n, 2, _authorization(n, match.group(1).decode()))
        _answer, spent_second = _exchange(endpoint, wire, second, b"200")
        total += spent + spent_second
    return total


def run_refreshes(endpoint: UdpEndpoint, wire: Wire, start: int, calls: int) -> int:
    """As a phone refreshing with nonce reuse (register_refresh.xml): per call one
    401, then REFRESHES authenticated REGISTERs with nc 1..REFRESHES. Returns CPU
    nanoseconds spent inside the edge for all of them."""
    total = 0
    for n in range(start, start + calls):
        challenge, total_first = _exchange(endpoint, wire, _register(n, 1), b"401")
        total += total_first
        match = _NONCE.search(challenge)
        assert match is not None
        nonce = match.group(1).decode()
        for nc in range(1, REFRESHES + 1):
            datagram = _register(n, 1 + nc, _authorization(n, nonce, nc))
            total += _exchange(endpoint, wire, datagram, b"200")[1]
    return total


def instructions_run(kind: str, count: int) -> None:
    """`count` datagrams of `kind`, built first, then handled inside functools.reduce
    (see the module note: callgrind collects only there)."""
    _edge_obj, endpoint, wire = _edge()
    run_pairs(endpoint, wire, 0, 400)
    start = 10**6
    if kind == "challenge":
        datagrams = [_register(n, 1) for n in range(start, start + count)]
    else:
        per_nonce = 1 if kind == "first" else REFRESHES
        nonces = {}
        for n in range(start, start + max(1, count // per_nonce)):
            answer, _spent = _exchange(endpoint, wire, _register(n, 1), b"401")
            match = _NONCE.search(answer)
            assert match is not None
            nonces[n] = match.group(1).decode()
        counts = range(1, 2) if kind == "first" else range(2, 2 + per_nonce)
        datagrams = [
            _register(n, 1 + nc, _authorization(n, nonce, nc))
            for nc in counts
            for n, nonce in nonces.items()
        ]
        if kind == "refresh":  # nc 1 first, outside the counted region
            for n, nonce in nonces.items():
                _exchange(endpoint, wire, _register(n, 2, _authorization(n, nonce, 1)), b"200")
    expected = b"SIP/2.0 401 " if kind == "challenge" else b"SIP/2.0 200 "
    receive = endpoint.datagram_received
    wire.sent.clear()
    functools.reduce(lambda _, datagram: receive(datagram, CLIENT), datagrams, None)
    if len(wire.sent) != len(datagrams) or not all(a.startswith(expected) for a in wire.sent):
        raise RuntimeError(f"expected {len(datagrams)} x {expected!r}")


def baseline_ns(pairs: int) -> int:
    """The bare header split of a pair's two datagrams, same count."""
    first = _register(1, 1)
    second = _register(1, 2, _authorization(1, "x" * 43))
    clock = time.thread_time_ns
    spent = 0
    for _ in range(pairs):
        t0 = clock()
        baseline_split(first)
        spent += clock() - t0
        t0 = clock()
        baseline_split(second)
        spent += clock() - t0
    return spent


def measure(pairs: int, batches: int) -> tuple[float, float, float]:
    """(edge per pair, edge per authenticated REGISTER with nonce reuse, baseline per
    pair) in microseconds, fastest batch of each."""
    _edge_obj, endpoint, wire = _edge()
    run_pairs(endpoint, wire, 0, 2000)  # warm up; every account is bound from here on
    # Refreshes of existing bindings with new Call-IDs, as in the SIPp run.
    best = min(run_pairs(endpoint, wire, (b + 1) * 10**6, pairs) for b in range(batches))
    calls = max(1, pairs // REFRESHES)
    reuse = min(
        run_refreshes(endpoint, wire, (b + 1) * 10**6 + 5 * 10**5, calls) for b in range(batches)
    )
    base = min(baseline_ns(pairs) for _ in range(batches))
    return best / pairs / 1000, reuse / (calls * REFRESHES) / 1000, base / pairs / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=2000, help="REGISTER pairs per batch")
    parser.add_argument("--batches", type=int, default=20, help="the fastest batch counts")
    parser.add_argument("--profile", type=Path, help="write a cProfile dump of one more batch")
    parser.add_argument(
        "--instructions",
        nargs=2,
        metavar=("KIND", "N"),
        help="challenge|first|refresh and a count: only handle those (for callgrind)",
    )
    args = parser.parse_args()
    if args.instructions is not None:
        kind, count = args.instructions
        if kind not in ("challenge", "first", "refresh"):
            parser.error("KIND is challenge, first or refresh")
        instructions_run(kind, int(count))
        return
    per_pair, per_refresh, base_pair = measure(args.pairs, args.batches)
    print(
        f"REGISTER pair (401 + 200) in the edge: {per_pair:.1f} us CPU "
        f"-> {1e6 / per_pair:,.0f} pairs/s on one core without socket I/O; "
        f"baseline bare header split of both: {base_pair:.1f} us "
        f"(fastest of {args.batches} batches of {args.pairs})"
    )
    print(
        f"authenticated REGISTER with nonce reuse (one 401 per {REFRESHES}): "
        f"{per_refresh:.1f} us CPU -> {1e6 / per_refresh:,.0f}/s on one core without socket I/O"
    )
    if args.profile is not None:
        _edge_obj, endpoint, wire = _edge()
        run_pairs(endpoint, wire, 0, 2000)
        profiler = cProfile.Profile()
        profiler.enable()
        run_pairs(endpoint, wire, 10**9, args.pairs)
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"profile written to {args.profile}")


if __name__ == "__main__":
    main()
