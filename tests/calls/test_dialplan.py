"""The dial plan, pure: prefixes, regions, refusals, priority and weight, emergency calls."""

from __future__ import annotations

import random
import tomllib
from collections import Counter

import pytest
from pydantic import ValidationError

from gateway.calls.dialplan import (
    AccountRoute,
    DialPlan,
    PrefixRoute,
    Regions,
    RouteChoice,
    TrunkTarget,
)
from gateway.calls.routing import CallRequest, Forwarding, Numbers, Refusal, Routed, Target
from gateway.config.models import CallgateConfig

TRUNKS = {
    "a": TrunkTarget("a", "10.0.0.1"),
    "b": TrunkTarget("b", "10.0.0.2", 5070, "tcp", channels=2),
    "v6": TrunkTarget("v6", "2001:db8::1", 5080),
    "sos": TrunkTarget("sos", "10.0.0.9"),
}


def plan(*routes: PrefixRoute, **kwargs: object) -> DialPlan:
    return DialPlan(list(routes), TRUNKS, **kwargs)  # type: ignore[arg-type]


def targets_of(decision: object) -> tuple[Target, ...]:
    assert isinstance(decision, Routed), decision
    return decision.targets


def trunks_of(decision: object) -> list[str]:
    assert isinstance(decision, Routed), decision
    return [t.trunk for t in decision.targets]


def test_longest_prefix_wins_and_uris_carry_port_and_transport() -> None:
    dp = plan(
        PrefixRoute("1", (RouteChoice("a"),)),
        PrefixRoute("12", (RouteChoice("b"),)),
        PrefixRoute("49", (RouteChoice("v6"),)),
    )
    assert targets_of(dp.route(CallRequest("1555", ""))) == (Target("sip:1555@10.0.0.1:5060", "a"),)
    assert targets_of(dp.route(CallRequest("1255", ""))) == (
        Target("sip:1255@10.0.0.2:5070;transport=tcp", "b", 2),
    )
    decision = dp.route(CallRequest("4930", ""))
    assert isinstance(decision, Routed)
    assert decision.targets[0].uri == "sip:4930@[2001:db8::1]:5080"


def test_plus_prefixes_match_e164_in_the_callers_region() -> None:
    regions = Regions("US", accounts={"berlin": "DE"}, trunks={"carrier": "GB"})
    dp = plan(
        PrefixRoute("+49", (RouteChoice("a"),)),
        PrefixRoute("+44", (RouteChoice("b"),)),
        PrefixRoute("+1", (RouteChoice("v6"),)),
        regions=regions,
    )
    berlin = dp.route(CallRequest("030 1234567", "sip:0301111111@x", account="berlin"))
    assert isinstance(berlin, Routed)
    assert berlin.targets[0].uri == "sip:+49301234567@10.0.0.1:5060"  # E.164 to the trunk
    assert berlin.numbers == Numbers("+49301111111", "+49301234567")
    assert trunks_of(dp.route(CallRequest("2025550123", "", account="nobody"))) == ["v6"]
    routed = dp.route(CallRequest("02071234567", "sip:2025550123@x", inbound_trunk="carrier"))
    # Inbound trunk numbers are read in the trunk's region; the route has no transit: 403.
    assert routed == Refusal(403, "Forbidden", Numbers("+442025550123", "+442071234567"))


def test_refusals_404_484_403() -> None:
    dp = plan(PrefixRoute("+1", (RouteChoice("a"),)), PrefixRoute("7", (RouteChoice("b"),)))
    assert dp.route(CallRequest("999", "")) == Refusal(404, "Not Found")
    assert dp.route(CallRequest("", "")) == Refusal(404, "Not Found")
    assert dp.route(CallRequest("alice", "")) == Refusal(404, "Not Found")
    assert dp.route(CallRequest("+4930", "")) == Refusal(484, "Address Incomplete")
    assert dp.route(CallRequest("7000", "", inbound_trunk="t")) == Refusal(403, "Forbidden")
    transit = plan(PrefixRoute("7", (RouteChoice("b"),), transit=True))
    assert trunks_of(transit.route(CallRequest("7000", "", inbound_trunk="t"))) == ["b"]


def test_priority_orders_trunks_and_weight_shares_each_priority() -> None:
    route = PrefixRoute(
        "",
        (
            RouteChoice("sos", priority=1),
            RouteChoice("a", priority=0, weight=3),
            RouteChoice("b", priority=0, weight=1),
        ),
    )
    dp = plan(route, rng=random.Random(7))
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        order = trunks_of(dp.route(CallRequest("5551234", "")))
        assert sorted(order[:2]) == ["a", "b"] and order[2] == "sos"
        firsts[order[0]] += 1
    assert 0.7 < firsts["a"] / 4000 < 0.8, firsts  # 3:1


def test_emergency_numbers_go_to_emergency_trunks_as_dialled_without_limits() -> None:
    dp = plan(
        PrefixRoute("", (RouteChoice("b"),)),
        regions=Regions("GB"),
        emergency_trunks=("sos", "b"),
        emergency_numbers=("5555",),
    )
    for number in ("999", "112", "5555"):
        decision = dp.route(CallRequest(number, ""))
        assert isinstance(decision, Routed) and decision.emergency
        assert decision.targets == (
            Target(f"sip:{number}@10.0.0.9:5060", "sos"),
            Target(f"sip:{number}@10.0.0.2:5070;transport=tcp", "b"),  # no channel limit
        )
    assert not dp.route(CallRequest("02071234567", "")).emergency  # type: ignore[union-attr]
    # The edge asks the same question before admitting (emergency calls are not shed).
    assert all(dp.is_emergency(CallRequest(n, "")) for n in ("999", "112", "5555"))
    assert not dp.is_emergency(CallRequest("02071234567", ""))
    assert not dp.is_emergency(CallRequest("", ""))


def test_emergency_without_emergency_trunks_uses_routes_by_priority() -> None:
    dp = plan(PrefixRoute("9", (RouteChoice("b", 1), RouteChoice("a", 0))))
    decision = dp.route(CallRequest("911", "", inbound_trunk="t"))  # no transit needed
    assert isinstance(decision, Routed) and decision.emergency
    assert [(t.trunk, t.channels) for t in decision.targets] == [("a", None), ("b", None)]
    assert plan().route(CallRequest("911", "")) == Refusal(404, "Not Found")


def _config(routes: str, calls: str = "") -> CallgateConfig:
    text = f"""
[[trunks]]
name = "a"
host = "10.0.0.1"
channels = 5
region = "DE"

[[trunks]]
name = "b"
host = "10.0.0.2"
transport = "tcp"

[[trunks]]
name = "in"
allow = ["192.0.2.0/24"]

[[accounts]]
name = "alice"
region = "GB"

[calls]
{calls or 'default_region = "FR"'}
{routes}
"""
    return CallgateConfig.model_validate(tomllib.loads(text))


def test_from_config_names_regions_and_shorthand() -> None:
    config = _config(
        """
[[calls.routes]]
prefix = "+"
trunks = ["b", "a"]

[[calls.routes]]
prefix = "+44"
trunks = [{ trunk = "a", weight = 5 }, { trunk = "b", priority = 2 }]
transit = true
""",
        calls='default_region = "FR"\nemergency = { trunks = ["a"], numbers = ["4242"] }',
    )
    dp = DialPlan.from_config(config)
    assert trunks_of(dp.route(CallRequest("0612345678", "", account="bob"))) == ["b", "a"]
    gb = dp.route(CallRequest("02071234567", "", account="alice"))
    assert isinstance(gb, Routed)
    assert gb.targets[0] == Target("sip:+442071234567@10.0.0.1:5060", "a", 5)
    assert gb.numbers.callee_e164 == "+442071234567"
    emergency = dp.route(CallRequest("4242", ""))
    assert isinstance(emergency, Routed) and emergency.emergency
    assert emergency.targets == (Target("sip:4242@10.0.0.1:5060", "a"),)


@pytest.mark.parametrize(
    ("routes", "calls", "message"),
    [
        ('[[calls.routes]]\nprefix = "1"\ntrunks = ["nope"]', "", "unknown trunk nope"),
        ('[[calls.routes]]\nprefix = "1"\ntrunks = ["in"]', "", "unknown trunk in"),
        ('[[calls.routes]]\nprefix = "1"\ntrunks = []', "", "at least 1"),
        ('[[calls.routes]]\nprefix = "x"\ntrunks = ["a"]', "", "a prefix is digits"),
        ("", 'emergency = { trunks = ["zz"] }', "unknown trunk zz"),
        ("", 'emergency = { numbers = ["11a"] }', "is not a number"),
        ("", 'default_region = "XX"', "not a region code"),
    ],
)
def test_config_errors(routes: str, calls: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(routes, calls=calls)


class Phones:
    def __init__(self, **contacts: list[str]) -> None:
        self.by_account = contacts

    def contacts(self, account: str) -> list[tuple[str, str]]:
        return [(uri, "") for uri in self.by_account.get(account, [])]


def accounts_plan(phones: Phones, **always: str) -> DialPlan:
    accounts = {
        name: AccountRoute(
            Forwarding(name, unreachable="+4930123456" if name == "bob" else ""),
            always=always.get(name, ""),
        )
        for name in ("alice", "bob", "carol", "dave")
    }
    return plan(
        PrefixRoute("+49", (RouteChoice("a"),)),
        accounts=accounts,
        contacts=phones,
        max_hops=2,
    )


def test_an_account_forks_to_all_its_contacts() -> None:
    dp = accounts_plan(Phones(alice=["sip:alice@192.0.2.1", "sip:alice@192.0.2.2;transport=tcp"]))
    decision = dp.route(CallRequest("alice", "sip:c@x", inbound_trunk="t"))  # no transit needed
    assert isinstance(decision, Routed) and decision.fork
    assert decision.targets == (
        Target("sip:alice@192.0.2.1"),
        Target("sip:alice@192.0.2.2;transport=tcp"),
    )
    assert decision.forwarding is not None and decision.forwarding.account == "alice"


def test_unregistered_account_gets_480_or_its_unreachable_forward() -> None:
    dp = accounts_plan(Phones())
    assert dp.route(CallRequest("alice", "")) == Refusal(480, "Temporarily Unavailable")
    forwarded = dp.route(CallRequest("bob", ""))
    assert isinstance(forwarded, Routed) and forwarded.hops == 1
    assert forwarded.targets[0].uri == "sip:+4930123456@10.0.0.1:5060"


def test_unconditional_forward_and_loops_end_with_483() -> None:
    phones = Phones(carol=["sip:carol@192.0.2.7"])
    dp = accounts_plan(phones, alice="carol")
    decision = dp.route(CallRequest("alice", ""))
    assert isinstance(decision, Routed) and decision.fork and decision.hops == 1
    assert decision.targets == (Target("sip:carol@192.0.2.7"),)
    assert decision.forwarding is not None and decision.forwarding.account == "carol"
    looping = accounts_plan(phones, alice="dave", dave="alice")
    assert looping.route(CallRequest("alice", "")) == Refusal(483, "Too Many Hops")


def test_from_config_forwarding_defaults_caller_id_and_trust() -> None:
    text = """
[[trunks]]
name = "a"
host = "10.0.0.1"
trusted = true

[[accounts]]
name = "alice"
forward = { busy = "bob", no_answer_after = 7.5 }
caller_id = { name = "Sales", number = "+4930123456", private = true }

[[accounts]]
name = "bob"
forward = { always = "+4930999999" }

[calls.forward]
no_answer = "carol"
unreachable = "+4930555555"
max_hops = 1

[[calls.routes]]
prefix = "+49"
trunks = ["a"]
"""
    dp = DialPlan.from_config(
        CallgateConfig.model_validate(tomllib.loads(text)), Phones(alice=["sip:alice@192.0.2.1"])
    )
    alice = dp.route(CallRequest("alice", "sip:x@192.0.2.9", account="bob"))
    assert isinstance(alice, Routed) and alice.fork
    assert alice.forwarding == Forwarding(
        "alice", busy="bob", no_answer="carol", no_answer_after=7.5, unreachable="+4930555555"
    )
    assert alice.targets[0].trusted is False  # a phone, not a trusted trunk
    bob = dp.route(CallRequest("bob", "sip:alice@192.0.2.1", account="alice"))
    assert isinstance(bob, Routed) and bob.hops == 1
    assert bob.targets == (Target("sip:+4930999999@10.0.0.1:5060", "a", trusted=True),)
    assert bob.caller_id is not None
    assert bob.caller_id.towards(trusted=True)[1][0][1] == '"Sales" <sip:+4930123456@192.0.2.1>'
