"""RTP port slices: one per pjsua account, so accounts never try each other's ports.

pjsua keeps the next RTP port per account, and every account starts at the
configured first port and steps by two per leg. Two accounts carrying calls
at the same time (the engine's own for caller legs, a trunk's for callee
legs) therefore walk the same ports in lockstep: nearly every leg first
tried a port the other account held, paying a socket, a failed bind and a
PJSIP error line (18 % of the engine thread's samples at 150 calls/s).
Disjoint slices remove the collisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

PORTS_PER_LEG = 2
"""RTP on an even port, RTCP on the next one."""


@dataclass(frozen=True, slots=True)
class PortSlice:
    """Ports `start` .. `start + span - 1` for one account's legs."""

    start: int
    span: int

    @property
    def rtp_range(self) -> int:
        """pjsua's `portRange`: the last RTP port it binds is `start + rtp_range`."""
        return self.span - PORTS_PER_LEG


@dataclass(frozen=True, slots=True)
class PortPlan:
    """The engine's own account's slice and each outbound trunk account's."""

    engine: PortSlice
    trunks: dict[str, PortSlice]


def minimum_span(trunks: int) -> int:
    """The fewest ports that give every account at least one leg's pair."""
    return PORTS_PER_LEG * (2 * trunks if trunks else 1)


def plan_ports(start: int, span: int, trunks: Sequence[str]) -> PortPlan:
    """Slice `span` ports from `start` among the engine's account and `trunks`.

    The engine's account carries every caller leg and the callee legs to
    registered contacts, so it keeps half the ports (all of them without
    trunks); the trunk accounts share the other half equally, in name order
    so that the same trunks always get the same slices.
    """
    if span < minimum_span(len(trunks)):
        raise ValueError(
            f"{span} RTP ports cannot be shared by the engine and {len(trunks)} trunk "
            f"accounts; at least {minimum_span(len(trunks))} are needed"
        )
    if not trunks:
        return PortPlan(PortSlice(start, _even(span)), {})
    own = _even(span // 2)
    each = _even((span - own) // len(trunks))
    slices = {
        name: PortSlice(start + own + index * each, each)
        for index, name in enumerate(sorted(trunks))
    }
    return PortPlan(PortSlice(start, own), slices)


def _even(ports: int) -> int:
    return ports - ports % PORTS_PER_LEG
