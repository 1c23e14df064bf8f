"""Routing cost per call: the dial plan's decision next to a bare prefix lookup.

Python work per call is the engine's budget (DESIGN.md). For each kind of
call this times `DialPlan.route` (E.164 normalisation with phonenumbers,
emergency check, longest prefix, priority/weight order, caller ID) and, in
the same run, the baseline: a longest-prefix match over the same prefixes
that builds one target URI (what the plain prefix table did before the dial
plan). Reported: microseconds per decision (median of `--repeat` runs of
`--calls` decisions each), and the ratio; numbers are cached, so each kind
runs twice: the same call again and again ("repeat"), and a new number on
every call ("unique", the cost of a cache miss).

Run: python bench/routing.py [--calls 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.calls.dialplan import (
    AccountRoute,
    DialPlan,
    PrefixRoute,
    RouteChoice,
    TrunkTarget,
)
from gateway.calls.routing import CallRequest, Forwarding

PREFIXES = ("+1", "+44", "+49", "+4930", "+33", "1", "0")


class Phones:
    def contacts(self, account: str) -> list[tuple[str, str]]:
        return [("sip:bob@192.0.2.1:5060", ""), ("sip:bob@192.0.2.2:5060", "")]


def dial_plan() -> DialPlan:
    trunks = {n: TrunkTarget(n, f"10.0.0.{i}", channels=100) for i, n in enumerate("abc", 1)}
    choices = (RouteChoice("a", 0, 2), RouteChoice("b", 0, 1), RouteChoice("c", 1))
    return DialPlan(
        [PrefixRoute(p, choices) for p in PREFIXES],
        trunks,
        accounts={"bob": AccountRoute(Forwarding("bob"))},
        contacts=Phones(),
    )


def prefix_baseline() -> Callable[[CallRequest], str]:
    table = sorted(PREFIXES, key=len, reverse=True)

    def route(request: CallRequest) -> str:
        for prefix in table:
            if request.dialed.startswith(prefix):
                return f"sip:{request.dialed}@10.0.0.1:5060"
        return ""

    return route


CASES = {
    "national number": CallRequest("2025550123", "sip:alice@192.0.2.9", account="alice"),
    "E.164 number": CallRequest("+4930123456", "sip:+12025550123@192.0.2.9", inbound_trunk="t"),
    "account (fork)": CallRequest("bob", "sip:alice@192.0.2.9", account="alice"),
    "unknown (404)": CallRequest("999", "sip:alice@192.0.2.9", account="alice"),
}


def per_call_us(route: Callable[[CallRequest], object], requests: list[CallRequest]) -> float:
    start = time.perf_counter()
    for request in requests:
        route(request)
    return (time.perf_counter() - start) / len(requests) * 1e6


def unique(request: CallRequest, calls: int, run: int) -> list[CallRequest]:
    """`calls` variants of `request`, each with numbers not seen before."""
    if not request.dialed[-1].isdigit():
        return [replace(request, caller=f"sip:{run}{i:07d}@192.0.2.9") for i in range(calls)]
    stem = request.dialed[: -len(str(calls)) - 1]
    return [
        replace(request, dialed=f"{stem}{run}{i:0{len(str(calls))}d}", caller=f"sip:{i}@h")
        for i in range(calls)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plan, baseline = dial_plan(), prefix_baseline()
    print(f"{'call':<27} {'dial plan us':>13} {'prefix table us':>16} {'ratio':>7}")
    for name, request in CASES.items():
        for mode in ("repeat", "unique"):
            runs = [
                [request] * args.calls if mode == "repeat" else unique(request, args.calls, run)
                for run in range(args.repeat)
            ]
            ours = statistics.median(per_call_us(plan.route, r) for r in runs)
            base = statistics.median(per_call_us(baseline, r) for r in runs)
            label = f"{name} ({mode})"
            print(f"{label:<27} {ours:>13.1f} {base:>16.2f} {ours / base:>7.0f}x")


if __name__ == "__main__":
    main()
