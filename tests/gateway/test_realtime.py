"""Real-time scheduling of the calling thread, and what the threads it starts get."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable

from gateway.realtime import enter_realtime

# sched_getscheduler() reports the reset-on-fork flag ORed into the policy.
_POLICY_MASK = ~os.SCHED_RESET_ON_FORK


def _on_thread(work: Callable[[], object]) -> object:
    """`work()` on a new thread (scheduling is per thread); its result or exception."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception as exc:  # handed to the test
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]


def _policy() -> int:
    return os.sched_getscheduler(0) & _POLICY_MASK


def _enter_then_start_thread(inherit: bool) -> tuple[int, int, int]:
    enter_realtime(7, threads_inherit=inherit)
    child = _on_thread(_policy)
    assert isinstance(child, int)
    return _policy(), os.sched_getparam(0).sched_priority, child


def test_the_calling_thread_runs_round_robin_and_its_new_threads_do_not() -> None:
    assert _on_thread(lambda: _enter_then_start_thread(inherit=False)) == (
        os.SCHED_RR,
        7,
        os.SCHED_OTHER,
    )
    assert _policy() == os.SCHED_OTHER  # only the thread that asked


def test_threads_inherit_when_asked() -> None:
    # The engine thread asks before libInit() so PJSIP's media threads run RR too.
    assert _on_thread(lambda: _enter_then_start_thread(inherit=True)) == (
        os.SCHED_RR,
        7,
        os.SCHED_RR,
    )


def test_priority_zero_changes_nothing() -> None:
    def work() -> int:
        enter_realtime(0, threads_inherit=False)
        return _policy()

    assert _on_thread(work) == os.SCHED_OTHER


_REFUSED = """
import resource
from gateway.realtime import RealtimeRefused, enter_realtime
resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
try:
    enter_realtime(5, threads_inherit=False)
except RealtimeRefused as exc:
    print(exc)
"""


def test_refusal_says_what_to_change() -> None:
    # An unprivileged user with RLIMIT_RTPRIO 0: what a unit without LimitRTPRIO= gets
    # (root may always; so as root, the child runs as nobody).
    out = subprocess.run(
        [sys.executable, "-c", _REFUSED],
        user=65534 if os.geteuid() == 0 else None,
        capture_output=True,
        text=True,
        check=True,
        cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    ).stdout
    assert "refused real-time priority 5 (Operation not permitted)" in out
    assert "LimitRTPRIO=5" in out and "realtime_priority = 0" in out
