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
