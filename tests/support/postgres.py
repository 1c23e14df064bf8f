"""A throwaway PostgreSQL server (Debian's postgresql package) on a free loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_tcp_port

_BIN_ROOT = Path("/usr/lib/postgresql")


def _bindir() -> Path:
    versions = sorted(_BIN_ROOT.glob("*/bin/initdb"))
    if not versions:
        raise RuntimeError("PostgreSQL is not installed; `make test` installs Debian's postgresql")
    return versions[-1].parent


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an asyncpg SQLAlchemy URL to a fresh cluster; stop and delete it afterwards."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="callgate-pg-"))
    data = root / "data"
    # initdb refuses to run as root: run the server as the postgres user then.
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_tcp_port()
    subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "callgate",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(root / "log"),
            "-o",
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+asyncpg://callgate@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
