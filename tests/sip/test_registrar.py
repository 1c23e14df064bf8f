"""Registrar core (RFC 3261 §10.3) on a fake clock, with property tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gateway.sip.registrar import (
    Binding,
    ContactSpec,
    OverflowPolicy,
    RegisterResult,
    Registrar,
    RegistrarError,
    Wildcard,
    parse_delta_seconds,
    parse_qvalue,
)

AOR = "sip:alice@callgate.test"
SOURCE = "192.0.2.1:5060;udp"
MIN, DEFAULT, MAX, CAP = 60, 3600, 7200, 3


def make_registrar(cap: int = CAP, **kwargs: object) -> Registrar:
    return Registrar(
        max_contacts_per_aor=cap,
        min_expires=MIN,
        max_expires=MAX,
        default_expires=DEFAULT,
        **kwargs,  # type: ignore[arg-type]
    )


def contact(uri: str = "sip:alice@192.0.2.1:5060", **kwargs: object) -> ContactSpec:
    return ContactSpec(uri=uri, **kwargs)  # type: ignore[arg-type]


def ok(result: RegisterResult | RegistrarError) -> RegisterResult:
    assert isinstance(result, RegisterResult), result
    return result


def register(
    registrar: Registrar,
    contacts: list[ContactSpec] | Wildcard,
    *,
    call_id: str = "call-1",
    cseq: int = 1,
    expires: int | None = None,
    now: float = 0.0,
) -> RegisterResult | RegistrarError:
    return registrar.register(
        AOR,
        contacts,
        call_id=call_id,
        cseq=cseq,
        header_expires=expires,
        source=SOURCE,
        now=now,
        user_agent="SIPp",
    )


def test_register_uses_default_then_header_then_param_expires() -> None:
    registrar = make_registrar()
    result = ok(register(registrar, [contact()]))
    (binding,) = result.bindings
    assert binding.expires_at == DEFAULT
    assert binding.received == SOURCE
    assert binding.user_agent == "SIPp"
    assert binding.q == 1.0
    result = ok(register(registrar, [contact()], cseq=2, expires=120))
    assert result.bindings[0].expires_at == 120
    result = ok(register(registrar, [contact(expires=300)], cseq=3, expires=120))
    assert result.bindings[0].expires_at == 300
    assert result.bindings[0].remaining(now=0.5) == 300


def test_expires_clamped_to_max() -> None:
    result = ok(register(make_registrar(), [contact()], expires=10**9))
    assert result.bindings[0].expires_at == MAX


def test_interval_too_brief() -> None:
    error = register(make_registrar(), [contact()], expires=MIN - 1)
    assert error == RegistrarError(423, "Interval Too Brief", {"Min-Expires": str(MIN)})


def test_expires_zero_removes_that_binding() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact("sip:a@h1"), contact("sip:a@h2")]))
    result = ok(register(registrar, [contact("sip:a@h1", expires=0)], cseq=2, now=1.0))
    assert [b.contact_uri for b in result.bindings] == ["sip:a@h2"]
    assert [b.contact_uri for b in result.removed] == ["sip:a@h1"]
    assert [b.contact_uri for b in registrar.lookup(AOR, 1.0)] == ["sip:a@h2"]


def test_last_occurrence_of_a_contact_wins() -> None:
    registrar = make_registrar()
    result = ok(register(registrar, [contact("sip:a@h1"), contact("sip:a@h1", expires=0)]))
    assert result.bindings == ()
    assert result.removed == ()
    assert len(registrar) == 0


def test_wildcard_requires_expires_zero_and_removes_all() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact("sip:a@h1"), contact("sip:a@h2")]))
    assert register(registrar, Wildcard.STAR, cseq=2) == RegistrarError(
        400, "Contact: * requires Expires: 0"
    )
    assert isinstance(register(registrar, Wildcard.STAR, cseq=2, expires=5), RegistrarError)
    result = ok(register(registrar, Wildcard.STAR, cseq=2, expires=0))
    assert result.bindings == ()
    assert len(result.removed) == 2
    assert registrar.lookup(AOR, 0.0) == []
    assert len(registrar) == 0


def test_wildcard_out_of_order_is_500_and_changes_nothing() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact()], cseq=5))
    error = register(registrar, Wildcard.STAR, cseq=5, expires=0)
    assert isinstance(error, RegistrarError)
    assert error.status == 500
    assert len(registrar.lookup(AOR, 0.0)) == 1
    # Another Call-ID may remove it whatever its CSeq.
    ok(register(registrar, Wildcard.STAR, call_id="call-2", cseq=1, expires=0))
    assert registrar.lookup(AOR, 0.0) == []


@pytest.mark.parametrize("cseq", [4, 5])
def test_same_call_id_lower_or_equal_cseq_is_500(cseq: int) -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact()], cseq=5))
    error = register(registrar, [contact()], cseq=cseq, expires=600)
    assert isinstance(error, RegistrarError)
    assert error.status == 500
    assert registrar.lookup(AOR, 0.0)[0].expires_at == DEFAULT


def test_other_call_id_may_update_with_any_cseq() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact()], cseq=5))
    result = ok(register(registrar, [contact()], call_id="reboot", cseq=1, expires=600))
    (binding,) = result.bindings
    assert (binding.call_id, binding.cseq, binding.expires_at) == ("reboot", 1, 600)


def test_request_is_atomic() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact("sip:a@h1")]))
    error = register(registrar, [contact("sip:a@h2"), contact("sip:a@h3", q=1.5)], cseq=2)
    assert isinstance(error, RegistrarError)
    assert error.status == 400
    assert [b.contact_uri for b in registrar.lookup(AOR, 0.0)] == ["sip:a@h1"]


def test_cap_rejects_with_403_by_default() -> None:
    registrar = make_registrar(cap=2)
    ok(register(registrar, [contact("sip:a@h1"), contact("sip:a@h2")]))
    error = register(registrar, [contact("sip:a@h3")], cseq=2)
    assert error == RegistrarError(403, "Too Many Contacts")
    # Refreshing an existing one is fine.
    ok(register(registrar, [contact("sip:a@h2")], cseq=3))


def test_cap_replace_oldest() -> None:
    registrar = make_registrar(cap=2, overflow=OverflowPolicy.REPLACE_OLDEST)
    ok(register(registrar, [contact("sip:a@h1")], now=0.0))
    ok(register(registrar, [contact("sip:a@h2")], cseq=2, now=10.0))
    result = ok(register(registrar, [contact("sip:a@h3")], cseq=3, now=20.0))
    assert sorted(b.contact_uri for b in result.bindings) == ["sip:a@h2", "sip:a@h3"]
    assert [b.contact_uri for b in result.removed] == ["sip:a@h1"]
    error = register(registrar, [contact(f"sip:a@x{i}") for i in range(3)], cseq=4, now=30.0)
    assert isinstance(error, RegistrarError)
    assert error.status == 403


def test_fetch_returns_bindings_without_changing_them() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact()], cseq=7))
    result = ok(register(registrar, [], cseq=1, now=100.0))
    assert result.bindings[0].cseq == 7
    assert result.updated == ()


def test_lookup_sorted_by_q_and_skips_expired() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact("sip:a@low", q=0.1), contact("sip:a@high", q=0.9)]))
    ok(register(registrar, [contact("sip:a@short", q=1.0, expires=MIN)], cseq=2))
    assert [b.contact_uri for b in registrar.lookup(AOR, 0.0)] == [
        "sip:a@short",
        "sip:a@high",
        "sip:a@low",
    ]
    assert [b.contact_uri for b in registrar.lookup(AOR, MIN)] == ["sip:a@high", "sip:a@low"]
    assert registrar.lookup("sip:nobody@callgate.test", 0.0) == []


def test_instance_id_replaces_binding_with_new_contact_uri() -> None:
    registrar = make_registrar()
    urn = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    ok(register(registrar, [contact("sip:a@10.0.0.1:5060", instance_id=urn, reg_id=1)]))
    result = ok(
        register(
            registrar,
            [contact("sip:a@10.0.0.1:6000", instance_id=urn, reg_id=1)],
            call_id="new",
            cseq=1,
        )
    )
    assert [b.contact_uri for b in result.bindings] == ["sip:a@10.0.0.1:6000"]


def test_sweep_removes_expired_and_reports_once() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact("sip:a@h1", expires=MIN), contact("sip:a@h2")]))
    assert registrar.sweep(MIN - 1) == []
    swept = registrar.sweep(MIN)
    assert [b.contact_uri for b in swept] == ["sip:a@h1"]
    assert registrar.sweep(MIN) == []
    assert len(registrar) == 1


def test_expired_binding_left_by_register_is_still_swept() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact("sip:a@h1", expires=MIN)]))
    ok(register(registrar, [contact("sip:a@h2")], cseq=2, now=MIN + 1))
    swept = registrar.sweep(MIN + 1)
    assert [b.contact_uri for b in swept] == ["sip:a@h1"]


def test_snapshot_and_restore() -> None:
    registrar = make_registrar()
    ok(register(registrar, [contact("sip:a@h1", expires=MIN), contact("sip:a@h2")]))
    snapshot = list(registrar.bindings())
    fresh = make_registrar()
    assert fresh.restore(snapshot, now=MIN + 1) == 1
    assert [b.contact_uri for b in fresh.lookup(AOR, MIN + 1)] == ["sip:a@h2"]
    assert [b.contact_uri for b in fresh.sweep(DEFAULT)] == ["sip:a@h2"]
    small = make_registrar(cap=1)
    small.restore(snapshot, now=0.0)
    assert [b.contact_uri for b in small.lookup(AOR, 0.0)] == ["sip:a@h2"]


def test_contact_spec_from_params() -> None:
    spec = ContactSpec.from_params(
        "sip:a@h",
        {"Q": "0.5", "expires": "600", "+sip.instance": '"<urn:uuid:1>"', "reg-id": "2"},
    )
    assert (spec.q, spec.expires, spec.instance_id, spec.reg_id) == (0.5, 600, "<urn:uuid:1>", 2)
    for bad in ({"q": "1.5"}, {"q": ".5"}, {"q": None}, {"expires": "-1"}, {"reg-id": "0"}):
        with pytest.raises(RegistrarError) as raised:
            ContactSpec.from_params("sip:a@h", bad)
        assert raised.value.status == 400


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0.0), ("1", 1.0), ("0.123", 0.123), ("1.000", 1.0), ("0.", 0.0)]
)
def test_qvalue_grammar(text: str, value: float) -> None:
    assert parse_qvalue(text) == value


@pytest.mark.parametrize("text", ["1.001", "2", "0.1234", "", "-0", "1e-1", "nan"])
def test_qvalue_grammar_rejects(text: str) -> None:
    with pytest.raises(RegistrarError):
        parse_qvalue(text)


def test_delta_seconds_saturates() -> None:
    assert parse_delta_seconds("0003600") == 3600
    assert parse_delta_seconds("9" * 50) == 2**32 - 1
    with pytest.raises(RegistrarError):
        parse_delta_seconds("1 0")


@given(st.text(max_size=12))
def test_from_params_raises_only_registrar_error(text: str) -> None:
    for name in ("q", "expires", "reg-id"):
        try:
            ContactSpec.from_params("sip:a@h", {name: text})
        except RegistrarError as error:
            assert error.status == 400


# --- properties -----------------------------------------------------------------------------

URIS = [f"sip:a@h{i}" for i in range(6)]
CALL_IDS = ["c1", "c2"]


class RegistrarMachine(RuleBasedStateMachine):
    """Random REGISTERs and sweeps against invariants of the binding table."""

    def __init__(self) -> None:
        super().__init__()
        self.registrar = make_registrar(cap=CAP)
        self.now = 0.0
        self.cseq = {c: 0 for c in CALL_IDS}
        self.swept: list[Binding] = []

    @rule(
        uris=st.lists(st.sampled_from(URIS), max_size=4, unique=True),
        expires=st.sampled_from([None, 0, MIN, 100, MAX * 2]),
        call_id=st.sampled_from(CALL_IDS),
        stale_cseq=st.booleans(),
    )
    def do_register(
        self, uris: list[str], expires: int | None, call_id: str, stale_cseq: bool
    ) -> None:
        if not stale_cseq:
            self.cseq[call_id] += 1
        before = {(b.aor, b.contact_uri): b for b in self.registrar.bindings()}
        result = register(
            self.registrar,
            [contact(u) for u in uris],
            call_id=call_id,
            cseq=self.cseq[call_id],
            expires=expires,
            now=self.now,
        )
        after = {(b.aor, b.contact_uri): b for b in self.registrar.bindings()}
        if isinstance(result, RegistrarError):
            assert before == after  # atomic
        else:
            assert list(result.bindings) == self.registrar.lookup(AOR, self.now)

    @rule(dt=st.floats(min_value=0, max_value=MAX))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def sweep(self) -> None:
        expected = sorted(
            (b for b in self.registrar.bindings() if b.expires_at <= self.now), key=repr
        )
        swept = self.registrar.sweep(self.now)
        assert sorted(swept, key=repr) == expected
        assert all(b.expires_at > self.now for b in self.registrar.bindings())
        self.swept.extend(swept)

    @precondition(lambda self: True)
    @invariant()
    def within_cap_and_consistent(self) -> None:
        live = self.registrar.lookup(AOR, self.now)
        assert len(live) <= CAP
        assert all(b.expires_at > self.now for b in live)
        assert all(b.expires_at <= self.now + MAX for b in live)
        qs = [b.q for b in live]
        assert qs == sorted(qs, reverse=True)
        assert len(self.registrar) == len(list(self.registrar.bindings()))


TestRegistrarMachine = RegistrarMachine.TestCase
TestRegistrarMachine.settings = settings(max_examples=200, stateful_step_count=30)
