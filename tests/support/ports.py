"""Free loopback ports for peers that cannot bind port 0 and report back (SIPp, Kannel, PostgreSQL).

The port was free a moment ago; another process could take it before the
peer binds it (a small race, acceptable for tests and benchmarks).
"""

from __future__ import annotations

import socket


def _free_port(kind: socket.SocketKind, host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_udp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_DGRAM, host)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    return _free_port(socket.SOCK_STREAM, host)


def free_media_port(host: str = "127.0.0.1") -> int:
    """A base for SIPp's `-mp`: SIPp binds the base and base+2 (audio and video RTP, with
    their RTCP at +1 and +3), so all four must be free, not just the first."""
    for _ in range(100):
        base = free_udp_port(host)
        if base % 2 or base > 65531:
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
        return base
    raise RuntimeError("no four consecutive free UDP ports for SIPp media")
