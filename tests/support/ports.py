"""Free loopback ports for peers that cannot bind port 0 and report back (SIPp, Kannel, PostgreSQL).

The port was free a moment ago; another process could take it before the
peer binds it (a small race, acceptable for tests and benchmarks).
"""

from __future__ import annotations

import random
import socket
from collections import deque


def _free_port(kind: socket.SocketKind, host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_udp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_DGRAM, host)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_STREAM, host)


_MEDIA_BASES = range(10_000, 20_000 - 3, 2)
"""Below the engine's default RTP range (20000-39999) and the kernel's ephemeral ports
(32768-60999 on Linux): a base picked there cannot be taken by a socket some process
binds to port 0, or by an engine's RTP, before SIPp binds it (CI saw both)."""


_handed_out: deque[int] = deque(maxlen=64)
"""Bases given recently: a SIPp started a moment ago may not have bound its ports yet,
so the probe alone would hand the next SIPp an overlapping window (CI saw EADDRINUSE)."""


def free_media_port(host: str = "127.0.0.1") -> int:
    """A base for SIPp's `-mp`: SIPp binds the base and base+2 (audio and video RTP, with
    their RTCP at +1 and +3), so all four must be free, not just the first."""
    for _ in range(100):
        base = random.choice(_MEDIA_BASES)
        if any(abs(base - given) < 4 for given in _handed_out):
            continue
        probes = []
        try:
            for offset in range(4):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((host, base + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        _handed_out.append(base)
        return base
    raise RuntimeError("no four consecutive free UDP ports for SIPp media")
