"""Registrar lookup by account (user part) across domains, for calls to an account."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.registrar import ContactSpec, RegisterResult, Registrar, Wildcard

AORS = ("sip:alice@a.test", "sip:alice@b.test", "sip:bob@a.test")


def make_registrar() -> Registrar:
    return Registrar(max_contacts_per_aor=3, min_expires=60, max_expires=7200, default_expires=600)


def register(reg: Registrar, aor: str, uri: str, expires: int, now: float, cseq: int) -> None:
    contacts: list[ContactSpec] | Wildcard = (
        Wildcard.STAR if uri == "*" else [ContactSpec(uri=uri, expires=expires)]
    )
    result = reg.register(
        aor,
        contacts,
        call_id=f"{aor}-{uri}",
        cseq=cseq,
        header_expires=0 if uri == "*" else None,
        source="udp:192.0.2.1:5060",
        now=now,
    )
    assert isinstance(result, RegisterResult), result


def test_an_accounts_contacts_in_every_domain() -> None:
    reg = make_registrar()
    register(reg, AORS[0], "sip:alice@192.0.2.1:5060", 600, 0.0, 1)
    register(reg, AORS[1], "sip:alice@192.0.2.2:5060", 300, 0.0, 1)
    register(reg, AORS[2], "sip:bob@192.0.2.3:5060", 600, 0.0, 1)
    assert [b.contact_uri for b in reg.lookup_user("alice", 1.0)] == [
        "sip:alice@192.0.2.1:5060",  # fresher first (same q)
        "sip:alice@192.0.2.2:5060",
    ]
    assert reg.lookup_user("carol", 1.0) == []
    assert [b.contact_uri for b in reg.lookup_user("alice", 400.0)] == ["sip:alice@192.0.2.1:5060"]
    reg.sweep(700.0)
    assert reg.lookup_user("alice", 700.0) == []
    assert reg._aors_of_user == {}  # the index forgets emptied AORs


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(AORS),
        st.sampled_from(["sip:x@192.0.2.9:5060", "sip:y@192.0.2.9:5070", "*"]),
        st.sampled_from([0, 60, 600]),
        st.sampled_from([0.0, 30.0, 400.0]),
        st.booleans(),
    ),
    max_size=30,
)


@settings(deadline=None)  # a loaded machine must not fail it
@given(_STEPS)
def test_lookup_user_is_the_union_of_its_aors(
    steps: list[tuple[str, str, int, float, bool]],
) -> None:
    reg = make_registrar()
    now = 0.0
    for cseq, (aor, uri, expires, advance, sweep) in enumerate(steps, start=1):
        now += advance
        if sweep:
            reg.sweep(now)
        register(reg, aor, uri, expires, now, cseq)
        for user in ("alice", "bob"):
            expected = {
                (b.aor, b.contact_uri)
                for a in AORS
                if a.startswith(f"sip:{user}@")
                for b in reg.lookup(a, now)
            }
            assert {(b.aor, b.contact_uri) for b in reg.lookup_user(user, now)} == expected
