"""Caller ID presentation (RFC 3323/3325), pure: what each kind of callee leg sees."""

from __future__ import annotations

from gateway.calls.callerid import (
    ANONYMOUS_FROM,
    CallerId,
    asserted_uri,
    identity_uri,
    requests_privacy,
)
from gateway.calls.dialplan import AccountRoute, DialPlan, PrefixRoute, RouteChoice, TrunkTarget
from gateway.calls.registry import CallRegistry
from gateway.calls.routing import CallRequest, Forwarding, Routed
from media.events import CallOffered, PlaceCallee

PAI = "P-Asserted-Identity"


def test_identity_goes_to_trusted_peers_only() -> None:
    alice = CallerId("sip:+4930123@gw.example", "Alice")
    assert alice.towards(trusted=False) == ('"Alice" <sip:+4930123@gw.example>', ())
    assert alice.towards(trusted=True) == (
        '"Alice" <sip:+4930123@gw.example>',
        ((PAI, '"Alice" <sip:+4930123@gw.example>'),),
    )
    assert CallerId("sip:1@h").towards(trusted=False) == ("sip:1@h", ())


def test_private_callers_are_anonymous_and_asserted_only_to_trusted_peers() -> None:
    alice = CallerId("sip:+4930123@gw.example", 'Al "the" Ice', private=True)
    assert alice.towards(trusted=False) == (ANONYMOUS_FROM, ())
    assert alice.towards(trusted=True) == (
        ANONYMOUS_FROM,
        ((PAI, '"Al \\"the\\" Ice" <sip:+4930123@gw.example>'), ("Privacy", "id")),
    )


def test_privacy_header_and_asserted_identity_parsing() -> None:
    assert requests_privacy("id") and requests_privacy("user; critical")
    assert requests_privacy("header;id")
    assert not requests_privacy("none") and not requests_privacy("") and not requests_privacy("x")
    assert (
        asserted_uri('"Carrier" <sip:+4930999@carrier.example>') == "sip:+4930999@carrier.example"
    )
    assert asserted_uri("<sip:+1@a>, <tel:+1>") == "sip:+1@a"
    assert asserted_uri("<<broken") == "" and asserted_uri("") == ""
    assert identity_uri("sip:alice@[::1]:5070", "+4930123") == "sip:+4930123@[::1]"
    assert identity_uri("tel:+1555", "+4930123") == "tel:+4930123"
    assert identity_uri("sip:alice@h", "") == "sip:alice@h"


TRUNKS = {
    "carrier": TrunkTarget("carrier", "10.0.0.1", trusted=True),
    "partner": TrunkTarget("partner", "10.0.0.2"),
}


def plan() -> DialPlan:
    return DialPlan(
        [
            PrefixRoute("+49", (RouteChoice("carrier"),), transit=True),
            PrefixRoute("+44", (RouteChoice("partner"),), transit=True),
        ],
        TRUNKS,
        accounts={
            "alice": AccountRoute(Forwarding("alice"), display="Sales", number="+4930123456"),
            "hidden": AccountRoute(Forwarding("hidden"), private=True),
        },
        trusted_inbound=frozenset({"carrier"}),
    )


def caller_id_of(request: CallRequest) -> CallerId | None:
    decision = plan().route(request)
    assert isinstance(decision, Routed), decision
    return decision.caller_id


def test_accounts_present_their_configured_identity() -> None:
    request = CallRequest("+4930999999", "sip:alice@192.0.2.1", account="alice", display="Phone")
    assert caller_id_of(request) == CallerId("sip:+4930123456@192.0.2.1", "Sales")
    own = CallRequest("+4930999999", "sip:2025550123@192.0.2.1", account="hidden", display="Me")
    assert caller_id_of(own) == CallerId("sip:+12025550123@192.0.2.1", "Me", private=True)


def test_asserted_identity_is_believed_from_trusted_trunks_only() -> None:
    pai = '"Bob" <sip:+4930555@carrier.example>'
    trusted = CallRequest("+4930999999", "sip:x@c", inbound_trunk="carrier", asserted=pai)
    assert caller_id_of(trusted) == CallerId("sip:+4930555@carrier.example")
    spoofed = CallRequest("+4930999999", "sip:x@p", inbound_trunk="partner", asserted=pai)
    assert caller_id_of(spoofed) == CallerId("sip:x@p")
    from_phone = CallRequest("+4930999999", "sip:alice@p", account="alice", asserted=pai)
    assert caller_id_of(from_phone) == CallerId("sip:+4930123456@p", "Sales")


def test_callee_legs_carry_the_presentation_of_their_target() -> None:
    reg = CallRegistry(plan())
    for call, number in ((1, "+4930999999"), (2, "+442071234567")):
        offer = CallOffered(
            call,
            100.0,
            f"sip:{number}@engine",
            "sip:alice@192.0.2.1",
            "c",
            account="alice",
            privacy="id",
        )
        (place,) = reg.handle(offer, now=0.0)
        assert isinstance(place, PlaceCallee)
        assert place.caller_uri == ANONYMOUS_FROM
        if call == 1:  # trusted carrier: the identity, asserted, with Privacy: id
            assert place.headers == (
                (PAI, '"Sales" <sip:+4930123456@192.0.2.1>'),
                ("Privacy", "id"),
            )
        else:
            assert place.headers == ()
