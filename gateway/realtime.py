"""Real-time scheduling for the threads that carry calls.

A call's set-up crosses the daemon's loop thread and the PJSIP engine's thread
a dozen times. On the fair scheduler each crossing may wait behind whatever
else holds the core (measured: half of the added p99 at 300 calls/s, see
docs/BENCHMARKS.md). Switches do the same: FreeSWITCH's packaged unit runs it
`SCHED_RR`, Asterisk has `highpriority`. Callgate asks for `SCHED_RR` on the
loop thread and the engine's threads only; the daemon's writer threads and
anything started later stay on the fair scheduler. The kernel still leaves
other tasks a share of each second (`sched_rt_runtime_us`, 95 % by default).
"""

from __future__ import annotations

import os


class RealtimeRefused(Exception):
    """The kernel did not grant the real-time priority; the message says what to change."""


def enter_realtime(priority: int, *, threads_inherit: bool) -> None:
    """Run the calling thread `SCHED_RR` at `priority` (1-99; 0 leaves it as it is).

    With `threads_inherit` false, threads and processes it starts afterwards go
    back to the fair scheduler (`SCHED_RESET_ON_FORK`)."""
    if priority == 0:
        return
    policy = os.SCHED_RR if threads_inherit else os.SCHED_RR | os.SCHED_RESET_ON_FORK
    try:
        # pid 0 is the calling thread: Linux schedules threads, not processes.
        os.sched_setscheduler(0, policy, os.sched_param(priority))
    except OSError as exc:
        raise RealtimeRefused(
            f"the kernel refused real-time priority {priority} ({exc.strerror}); allow it with "
            f"LimitRTPRIO={priority} in the systemd unit (or CAP_SYS_NICE), or set "
            "[daemon] realtime_priority = 0"
        ) from None
