"""Configuration of call detail records (CDRs): how they are written to the store."""

from __future__ import annotations

from pydantic import Field

from gateway.config.base import Section


class CdrConfig(Section):
    """Call detail records: one row per call in the store's `cdrs` table."""

    write_delay: float = Field(default=0.5, ge=0, le=10)
    """Seconds CDR changes (call offered, answered, ended) gather before one write to
    the store (0: write each at once). A crash loses at most this window plus a
    write in flight; a clean stop loses nothing."""
    max_pending: int = Field(default=100_000, ge=100, le=10_000_000)
    """Calls whose CDR changes may wait for the store at once. While the store is
    down they queue in memory up to this bound; changes of further calls are
    dropped (counted in `callgate_cdr_dropped_total`, logged) instead of
    growing without limit or slowing calls down."""
    heartbeat_interval: float = Field(default=5.0, gt=0, le=300)
    """Seconds between the node's "still alive" marks in the store. After a crash,
    the next start closes the calls the crashed run left open as failed
    (`node_restart`), ending them at its last mark: answered time after it (at
    most this interval) is not billed."""
