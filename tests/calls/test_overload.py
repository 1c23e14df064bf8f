"""Node-wide call admission: pure unit tests with a fake clock."""

from __future__ import annotations

from dataclasses import replace

from gateway.calls.overload import CallAdmission, EngineIntake, OverloadLimits, OverloadPolicy
from gateway.sip.admission import AdmissionRequest, Admit, AuthenticatedOnly, Reject

LIMITS = OverloadLimits(
    max_new_per_second=10, burst=5, max_concurrent=3, max_loop_lag=0.2, retry_after=7
)


def test_rate_is_a_token_bucket() -> None:
    admission = CallAdmission(LIMITS)
    verdicts = [admission.check(100.0, 0, 0.0) for _ in range(8)]
    assert verdicts == [None] * 5 + ["rate"] * 3
    # 0.25 s later 2.5 tokens are back: two calls, not three.
    assert [admission.check(100.25, 0, 0.0) for _ in range(3)] == [None, None, "rate"]
    # A long pause refills to the burst, not beyond.
    assert [admission.check(1000.0, 0, 0.0) for _ in range(6)] == [None] * 5 + ["rate"]


def test_concurrency_and_lag_are_checked_first() -> None:
    admission = CallAdmission(LIMITS)
    assert admission.check(0.0, 3, 0.0) == "concurrent"
    assert admission.check(0.0, 0, 0.5) == "lag"
    assert admission.check(0.0, 2, 0.1) is None


def _invite(call_id: str) -> AdmissionRequest:
    return _request("INVITE", call_id=call_id)


def _request(method: str, trunk: str | None = "t", call_id: str = "") -> AdmissionRequest:
    return AdmissionRequest(
        method=method,
        account=None,
        trunk=trunk,
        source=("192.0.2.1", 5060),
        request_uri="sip:1@x",
        from_uri="sip:a@x",
        to_uri="sip:1@x",
        transaction=f"{call_id}|v" if call_id else "",
        call_id=call_id,
    )


def test_policy_answers_503_with_retry_after_and_counts() -> None:
    rejected: list[str] = []
    policy = OverloadPolicy(
        AuthenticatedOnly(), CallAdmission(LIMITS), lambda: 3, lambda: 0.0, rejected.append
    )
    decision = policy.admit(_request("INVITE"), 0.0)
    assert decision == Reject(503, "Service Unavailable", (("Retry-After", "7"),))
    assert rejected == ["concurrent"]
    # Other methods and policy refusals pass through untouched.
    assert policy.admit(_request("MESSAGE"), 0.0) == Admit()
    assert policy.admit(_request("INVITE", trunk=None), 0.0) == Reject(403, "Forbidden")


def test_retransmissions_get_the_same_verdict_without_spending_tokens() -> None:
    limits = OverloadLimits(
        max_new_per_second=1,
        burst=1,
        max_concurrent=10,
        max_loop_lag=1.0,
        retry_after=5,
        remembered=2,
    )
    rejected: list[str] = []
    intake = EngineIntake()
    policy = OverloadPolicy(
        AuthenticatedOnly(),
        CallAdmission(limits),
        lambda: 0,
        lambda: 0.0,
        rejected.append,
        intake=intake,
    )

    assert policy.admit(_invite("a"), 0.0) == Admit()
    assert policy.admit(_invite("a"), 0.0) == Admit()  # retransmission: no token needed
    assert isinstance(policy.admit(_invite("b"), 0.0), Reject)
    assert isinstance(policy.admit(_invite("b"), 5.0), Reject)  # still the first verdict
    assert rejected == ["rate"]
    intake.offered("a")  # the engine took "a" up long ago (no intake delay)
    assert policy.admit(_invite("c"), 5.0) == Admit()  # "a" was forgotten (remembered=2)


def test_engine_intake_delay_is_the_oldest_waiting_invite() -> None:
    intake = EngineIntake(forget_after=32.0)
    assert intake.delay(100.0) == 0.0
    intake.admitted("a", 100.0)
    intake.admitted("b", 100.4)
    intake.admitted("a", 100.9)  # a retransmission keeps its first time
    assert intake.delay(101.0) == 1.0
    intake.offered("a")
    assert abs(intake.delay(101.0) - 0.6) < 1e-9
    intake.offered("b")
    assert intake.delay(101.0) == 0.0 and intake.depth() == 0
    # One the engine never takes up is forgotten after the transaction timeout.
    intake.admitted("lost", 200.0)
    assert intake.delay(231.0) == 31.0
    assert intake.delay(233.0) == 0.0 and intake.depth() == 0


def test_policy_sheds_while_the_engine_lags_and_recovers() -> None:
    rejected: list[str] = []
    up = [True]
    intake = EngineIntake()
    limits = OverloadLimits(
        max_new_per_second=100,
        burst=100,
        max_concurrent=100,
        max_loop_lag=1.0,
        retry_after=5,
        max_engine_delay=0.5,
    )
    policy = OverloadPolicy(
        AuthenticatedOnly(),
        CallAdmission(limits),
        lambda: 0,
        lambda: 0.0,
        rejected.append,
        intake=intake,
        engine_up=lambda: up[0],
    )

    assert policy.admit(_invite("c1"), 10.0) == Admit()
    assert policy.admit(_invite("c2"), 10.4) == Admit()  # c1 has waited 0.4 s: still fine
    assert isinstance(policy.admit(_invite("c3"), 10.6), Reject)  # 0.6 s: engine is behind
    assert rejected == ["engine"]
    intake.offered("c1")
    intake.offered("c2")
    assert policy.admit(_invite("c4"), 10.7) == Admit()  # caught up: admitted again
    up[0] = False
    assert isinstance(policy.admit(_invite("c5"), 10.8), Reject)
    assert rejected == ["engine", "engine_down"]


def test_an_invite_that_waited_in_the_receive_queue_is_shed_without_a_token() -> None:
    rejected: list[str] = []
    limits = replace(LIMITS, max_receive_delay=0.05)
    policy = OverloadPolicy(
        AuthenticatedOnly(), CallAdmission(limits), lambda: 0, lambda: 0.0, rejected.append
    )
    late = replace(_invite("late"), waited=0.2)
    assert policy.admit(late, 0.0) == Reject(503, "Service Unavailable", (("Retry-After", "7"),))
    assert rejected == ["queue"]
    # The shed INVITE spent no token: the whole burst is still there for calls read in time.
    timely = [policy.admit(replace(_invite(f"c{n}"), waited=0.01), 0.0) for n in range(6)]
    assert timely.count(Admit()) == LIMITS.burst
    # An emergency call is held to capacity only, however late it was read.
    assert CallAdmission(limits).check(0.0, 0, 0.0, 0.0, 0.2, emergency=True) is None


def test_emergency_calls_are_never_shed_for_rate_or_lag_but_respect_capacity() -> None:
    rejected: list[str] = []
    active = [0]
    limits = OverloadLimits(
        max_new_per_second=1, burst=1, max_concurrent=3, max_loop_lag=0.1, retry_after=5
    )
    policy = OverloadPolicy(
        AuthenticatedOnly(),
        CallAdmission(limits),
        lambda: active[0],
        lambda: 9.0,  # the loop is far behind
        rejected.append,
        emergency=lambda request: request.request_uri.startswith("sip:911@"),
    )
    emergency = replace(_request("INVITE"), request_uri="sip:911@x")
    assert isinstance(policy.admit(_invite("ordinary"), 0.0), Reject)
    assert policy.admit(replace(emergency, transaction="e1|v"), 0.0) == Admit()
    assert policy.admit(replace(emergency, transaction="e2|v"), 0.0) == Admit()
    active[0] = 3  # the engine is full: even an emergency call cannot get a leg
    assert isinstance(policy.admit(replace(emergency, transaction="e3|v"), 0.0), Reject)
    assert rejected == ["lag", "concurrent"]


def test_a_transfer_is_admitted_like_a_new_call_but_is_no_engine_intake() -> None:
    limits = OverloadLimits(
        max_new_per_second=1, burst=1, max_concurrent=10, max_loop_lag=1.0, retry_after=5
    )
    rejected: list[str] = []
    intake = EngineIntake()
    policy = OverloadPolicy(
        AuthenticatedOnly(), CallAdmission(limits), lambda: 1, lambda: 0.0, rejected.append, intake
    )
    assert policy.admit(_request("REFER", call_id="call-1"), 0.0) == Admit()
    assert intake.depth() == 0  # the call is in the engine already
    assert policy.admit(_invite("b"), 0.0) == Reject(
        503, "Service Unavailable", (("Retry-After", "5"),)
    )  # the transfer took the token
    assert isinstance(policy.admit(_request("REFER", call_id="call-2"), 0.1), Reject)
    assert rejected == ["rate", "rate"]
