"""Digest authentication core: RFC vectors, parser, nonces, replay, authenticator."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.digest import (
    Authenticated,
    Challenge,
    DigestAlgorithm,
    DigestAuthenticator,
    DigestCredentials,
    DigestError,
    Failed,
    NonceCounter,
    NonceService,
    NonceStatus,
    Rejected,
    UnsupportedSchemeError,
    challenge_header,
    expected_response,
    ha1,
    parse_credentials,
    verify,
)

MD5 = DigestAlgorithm.MD5
SHA256 = DigestAlgorithm.SHA256
SECRET = b"0123456789abcdef-test-secret"
LIFETIME = 300.0
REALM = "callgate.test"
URI = "sip:callgate.test"

# RFC 7616 §3.9.1
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def rfc7616_header(algorithm: str, response: str) -> str:
    return (
        f'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", nc=00000001, '
        f'cnonce="{RFC7616_CNONCE}", qop=auth, response="{response}", opaque="{RFC7616_OPAQUE}"'
    )


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        (SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        (MD5, "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_example_verifies(algorithm: DigestAlgorithm, response: str) -> None:
    credentials = parse_credentials(rfc7616_header(algorithm.value, response))
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    assert credentials.algorithm is algorithm
    assert expected_response(credentials, "GET", key) == response
    assert verify(credentials, "GET", key)
    assert not verify(credentials, "POST", key)
    wrong = ha1("Mufasa", "http-auth@example.org", "Circle of life", algorithm)
    assert not verify(credentials, "GET", wrong)


def test_rfc2617_example_verifies() -> None:
    header = (
        'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
        ' qop=auth,\r\n nc=00000001,\r\n cnonce="0a4f113b",\r\n'
        ' response="6629fae49393a05397450978507c4ef1",\r\n'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    credentials = parse_credentials(header)
    assert credentials.algorithm is MD5  # absent algorithm means MD5
    assert credentials.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", MD5)
    assert verify(credentials, "GET", key)
    assert not verify(credentials, "GET", ha1("Mufasa", "testrealm@host.com", "x", MD5))


def test_sipp_3_6_1_authorization_verifies() -> None:
    """Captured from SIPp v3.6.1 ``[authentication username=alice password=s3cret]``."""
    header = (
        'Digest username="alice",realm="callgate.test",cnonce="6b8b4567",nc=00000001,'
        'qop=auth,uri="sip:127.0.0.1:40751",'
        'nonce="QI1eedgwgyu8jDV4NJBlCjojeVT2zMHpMFMczCMVOeU",'
        'response="051f16400dc3cef3d6e2d4ebf57aadd7",algorithm=MD5'
    )
    credentials = parse_credentials(header)
    assert verify(credentials, "REGISTER", ha1("alice", "callgate.test", "s3cret", MD5))
    assert not verify(credentials, "REGISTER", ha1("alice", "callgate.test", "s3cre7", MD5))


def test_ha1_matches_hashlib() -> None:
    assert ha1("u", "r", "p", MD5) == hashlib.md5(b"u:r:p").hexdigest()
    assert ha1("u", "r", "p", SHA256) == hashlib.sha256(b"u:r:p").hexdigest()
    assert ha1("ü", "r", "p", SHA256) == hashlib.sha256("ü:r:p".encode()).hexdigest()


def test_auth_int_hashes_the_body() -> None:
    key = ha1("bob", REALM, "pw", SHA256)
    base = DigestCredentials(
        username="bob",
        realm=REALM,
        nonce="n",
        uri=URI,
        response="0" * 64,
        algorithm=SHA256,
        qop="auth-int",
        cnonce="c",
        nc="00000001",
        opaque=None,
    )
    response = expected_response(base, "INVITE", key, b"v=0\r\n")
    credentials = parse_credentials(
        f'Digest username="bob", realm="{REALM}", nonce="n", uri="{URI}", '
        f'response="{response}", algorithm=SHA-256, qop=auth-int, cnonce="c", nc=00000001'
    )
    assert verify(credentials, "INVITE", key, b"v=0\r\n")
    assert not verify(credentials, "INVITE", key, b"v=1\r\n")


# --- parser ---------------------------------------------------------------------------------


def test_parse_quoted_escapes_case_and_spacing() -> None:
    header = (
        'digest USERNAME = "a\\"b\\\\c" ,Realm="r",NONCE="n",  uri="sip:x",'
        'Response="' + "A" * 32 + '",qop="auth",cnonce="c",nc=0000000A,extension=token'
    )
    credentials = parse_credentials(header)
    assert credentials.username == 'a"b\\c'
    assert credentials.response == "a" * 32  # normalised to lower case
    assert credentials.qop == "auth"  # quoted qop is accepted too
    assert credentials.nc == "0000000A"
    assert credentials.nonce_count == 10


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Digest",
        "Digest ",
        'Digest username="a"',  # missing params
        'Digest username="a", username="b", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '"',
        'Digest USERNAME="a", username="b", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '"',
        'Digest username="a" realm="r"',  # no comma
        'Digest username="a", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '",',
        'Digest username="unterminated, realm="r"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="zz"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="' + "0" * 64 + '"',
        'Digest username="a", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '", algorithm=MD5-sess',
        'Digest username="a", realm="r", nonce="n", uri="u", response="'
        + "0" * 64
        + '", algorithm=SHA-512-256',
        'Digest username="a", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '", qop=auth',  # no cnonce / nc
        'Digest username="a", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '", qop=auth, cnonce="c", nc=1',  # nc not 8 hex
        'Digest username="a", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '", qop=auth-conf, cnonce="c", nc=00000001',
        'Digest username="a", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '", cnonce="c"',  # cnonce without qop
        'Digest username="a", realm="r", nonce="n", uri="u", response="'
        + "0" * 32
        + '", userhash=true',
        'Digest username="a\nb", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '"',
        'Digest username="a\udcffb", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '"',
        'Digest username="", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '"',
    ],
)
def test_parse_rejects_with_400(header: str) -> None:
    with pytest.raises(DigestError) as raised:
        parse_credentials(header)
    assert raised.value.status == 400
    assert raised.value.reason


def test_other_scheme_is_a_401_not_a_400() -> None:
    with pytest.raises(UnsupportedSchemeError) as raised:
        parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    assert raised.value.status == 401


@settings(max_examples=500)
@given(st.text())
def test_fuzz_parse_raises_only_digest_error(text: str) -> None:
    try:
        parse_credentials(text)
    except DigestError as error:
        assert error.status in (400, 401)


_param_names = st.sampled_from(
    ["username", "realm", "nonce", "uri", "response", "algorithm", "qop", "nc", "cnonce", "x"]
)
_param_values = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20).map(
        lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
    st.from_regex(r"[A-Za-z0-9\-]{1,10}", fullmatch=True),
)


@settings(max_examples=500)
@given(st.lists(st.tuples(_param_names, _param_values), max_size=12), st.sampled_from([",", ", "]))
def test_fuzz_structured_params(params: list[tuple[str, str]], separator: str) -> None:
    header = "Digest " + separator.join(f"{name}={value}" for name, value in params)
    try:
        credentials = parse_credentials(header)
    except DigestError as error:
        assert error.status == 400
    else:
        assert credentials.username
        assert len(credentials.response) in (32, 64)
        assert verify(credentials, "REGISTER", "0" * 32) in (True, False)


# --- challenge ------------------------------------------------------------------------------


def test_challenge_header_shape() -> None:
    header = challenge_header('a"b', "NONCE", SHA256, stale=True, opaque="op")
    assert header == (
        'Digest realm="a\\"b", nonce="NONCE", opaque="op", algorithm=SHA-256, '
        'qop="auth", stale=true'
    )
    assert "stale" not in challenge_header("r", "n", MD5, stale=False)
    with pytest.raises(ValueError):
        challenge_header("bad\r\nrealm", "n", MD5, stale=False)


# --- nonces ---------------------------------------------------------------------------------


def test_nonce_valid_stale_invalid() -> None:
    service = NonceService(SECRET, LIFETIME)
    nonce = service.issue(1000.0, REALM)
    assert service.check(nonce, 1000.0, REALM) is NonceStatus.VALID
    assert service.check(nonce, 1000.0 + LIFETIME, REALM) is NonceStatus.VALID
    assert service.check(nonce, 1000.0 + LIFETIME + 0.001, REALM) is NonceStatus.STALE
    assert service.check(nonce, 999.0, REALM) is NonceStatus.STALE  # clock reset
    assert service.check(nonce, 1000.0, "other.realm") is NonceStatus.INVALID
    other = NonceService(b"another-secret-of-16+bytes", LIFETIME)
    assert other.check(nonce, 1000.0, REALM) is NonceStatus.INVALID


def test_nonce_bound_to_source() -> None:
    service = NonceService(SECRET, LIFETIME)
    nonce = service.issue(5.0, REALM, "192.0.2.1")
    assert service.check(nonce, 5.0, REALM, "192.0.2.1") is NonceStatus.VALID
    assert service.check(nonce, 5.0, REALM, "192.0.2.2") is NonceStatus.INVALID
    assert service.check(nonce, 5.0, REALM) is NonceStatus.INVALID


def test_nonces_differ_in_the_same_instant_and_are_tokens() -> None:
    service = NonceService(SECRET, LIFETIME)
    first, second = service.issue(1.0, REALM), service.issue(1.0, REALM)
    assert first != second
    assert all(c.isalnum() or c in "-_" for c in first)


@given(st.text(max_size=60))
def test_garbage_nonces_are_invalid(text: str) -> None:
    service = NonceService(SECRET, LIFETIME)
    assert service.check(text, 0.0, REALM) is NonceStatus.INVALID


def test_tampered_or_non_canonical_nonce_is_invalid() -> None:
    service = NonceService(SECRET, LIFETIME)
    nonce = service.issue(1.0, REALM)
    flipped = nonce[:-1] + ("A" if nonce[-1] != "A" else "B")
    assert service.check(flipped, 1.0, REALM) is NonceStatus.INVALID
    assert service.check(nonce + "=", 1.0, REALM) is NonceStatus.INVALID
    assert service.check(nonce[:5] + "\n" + nonce[5:], 1.0, REALM) is NonceStatus.INVALID


def test_short_secret_refused() -> None:
    with pytest.raises(ValueError):
        NonceService(b"short", LIFETIME)


# --- nonce counter --------------------------------------------------------------------------


def test_nonce_count_must_strictly_increase() -> None:
    counter = NonceCounter(max_entries=10, lifetime=LIFETIME)
    assert counter.advance("n", 1, issued_at=0.0, now=1.0)
    assert not counter.advance("n", 1, issued_at=0.0, now=1.0)
    assert counter.advance("n", 3, issued_at=0.0, now=2.0)
    assert not counter.advance("n", 2, issued_at=0.0, now=2.0)
    assert counter.advance("other", 1, issued_at=0.0, now=2.0)


def test_nonce_counter_bounded_and_never_reopens_replay() -> None:
    counter = NonceCounter(max_entries=2, lifetime=LIFETIME)
    assert counter.advance("a", 1, issued_at=1.0, now=3.0)
    assert counter.advance("b", 1, issued_at=2.0, now=3.0)
    assert counter.advance("c", 1, issued_at=3.0, now=3.0)  # evicts "a"
    assert len(counter) == 2
    assert counter.evictions == 1
    assert not counter.advance("a", 1, issued_at=1.0, now=4.0)  # forgotten: refused
    assert not counter.advance("z", 1, issued_at=0.5, now=4.0)  # older than forgotten
    assert counter.advance("d", 1, issued_at=3.5, now=4.0)  # newer nonces are fine


def test_nonce_counter_drops_expired() -> None:
    counter = NonceCounter(max_entries=10, lifetime=10.0)
    counter.advance("a", 1, issued_at=0.0, now=0.0)
    counter.advance("b", 1, issued_at=5.0, now=5.0)
    assert counter.sweep(now=10.0) == 0
    assert counter.sweep(now=10.5) == 1
    assert len(counter) == 1
    assert not counter.advance("b", 2, issued_at=5.0, now=15.5)  # expired
    assert len(counter) == 0


# --- authenticator --------------------------------------------------------------------------


class Accounts:
    """A fake account store: HA1 per algorithm, computed from passwords."""

    def __init__(self, passwords: Mapping[str, str], algorithms: tuple[DigestAlgorithm, ...]):
        self._ha1 = {
            user: {a.value: ha1(user, REALM, pw, a) for a in algorithms}
            for user, pw in passwords.items()
        }
        self.calls = 0

    def __call__(self, username: str, realm: str) -> Mapping[str, str] | None:
        self.calls += 1
        return self._ha1.get(username) if realm == REALM else None


def make_authenticator(
    algorithms: tuple[DigestAlgorithm, ...] = (SHA256, MD5), max_entries: int = 100
) -> DigestAuthenticator:
    return DigestAuthenticator(
        NonceService(SECRET, LIFETIME),
        NonceCounter(max_entries=max_entries, lifetime=LIFETIME),
        algorithms=algorithms,
    )


def challenge_param(header: str, name: str) -> str:
    for part in header.split(", "):
        key, _, value = part.partition("=")
        if key.removeprefix("Digest ") == name:
            return value.strip('"')
    raise KeyError(name)


def sipp_authorization(
    challenge: str,
    user: str,
    password: str,
    method: str = "REGISTER",
    uri: str = URI,
    nc: int = 1,
    cnonce: str = "0a4f113b5d6e7f80",
) -> str:
    """An Authorization built the way SIPp's createAuthHeaderDigest builds it."""
    algorithm = DigestAlgorithm(challenge_param(challenge, "algorithm"))
    realm = challenge_param(challenge, "realm")
    nonce = challenge_param(challenge, "nonce")
    nc_text = f"{nc:08x}"
    h = hashlib.md5 if algorithm is MD5 else hashlib.sha256
    key = h(f"{user}:{realm}:{password}".encode()).hexdigest()
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    response = h(f"{key}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return (
        f'Digest username="{user}",realm="{realm}",cnonce="{cnonce}",nc={nc_text},qop=auth,'
        f'uri="{uri}",nonce="{nonce}",response="{response}",algorithm={algorithm.value}'
    )


def authenticate(
    auth: DigestAuthenticator,
    header: str | None,
    accounts: Accounts,
    now: float = 10.0,
    uri: str = URI,
    source: str = "",
) -> object:
    return auth.authenticate(
        method="REGISTER",
        request_uri=uri,
        authorization=header,
        realm=REALM,
        lookup=accounts,
        now=now,
        source=source,
    )


def test_no_credentials_gets_sha256_then_md5_challenges() -> None:
    auth = make_authenticator()
    outcome = authenticate(auth, None, Accounts({}, (MD5,)))
    assert isinstance(outcome, Challenge)
    assert not outcome.stale
    assert [challenge_param(h, "algorithm") for h in outcome.headers] == ["SHA-256", "MD5"]
    assert all('qop="auth"' in h for h in outcome.headers)


@pytest.mark.parametrize("index", [0, 1])
def test_sipp_style_round_trip(index: int) -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "s3cret"}, (SHA256, MD5))
    challenge = authenticate(auth, None, accounts)
    assert isinstance(challenge, Challenge)
    header = sipp_authorization(challenge.headers[index], "alice", "s3cret")
    outcome = authenticate(auth, header, accounts, now=11.0)
    expected = (SHA256, MD5)[index]
    assert outcome == Authenticated("alice", expected)


def test_nonce_reuse_with_higher_nc_then_replay() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (SHA256, MD5))
    challenge = authenticate(auth, None, accounts)
    assert isinstance(challenge, Challenge)
    first = sipp_authorization(challenge.headers[0], "alice", "pw", nc=1)
    second = sipp_authorization(challenge.headers[0], "alice", "pw", nc=2)
    assert isinstance(authenticate(auth, first, accounts, now=11.0), Authenticated)
    assert isinstance(authenticate(auth, second, accounts, now=12.0), Authenticated)
    replay = authenticate(auth, second, accounts, now=13.0)
    assert isinstance(replay, Challenge)
    assert replay.stale


def test_wrong_password_and_unknown_user_fail_alike() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (SHA256, MD5))
    challenge = authenticate(auth, None, accounts)
    assert isinstance(challenge, Challenge)
    wrong = authenticate(
        auth, sipp_authorization(challenge.headers[0], "alice", "nope"), accounts, now=11.0
    )
    unknown = authenticate(
        auth, sipp_authorization(challenge.headers[0], "mallory", "pw"), accounts, now=11.0
    )
    assert isinstance(wrong, Failed)
    assert wrong.username == "alice"
    assert isinstance(unknown, Failed)
    assert unknown.username == "mallory"
    assert len(wrong.headers) == len(unknown.headers) == 2


def test_expired_nonce_gets_stale_challenge_without_lookup() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (SHA256,))
    challenge = authenticate(auth, None, accounts, now=0.0)
    assert isinstance(challenge, Challenge)
    header = sipp_authorization(challenge.headers[0], "alice", "pw")
    outcome = authenticate(auth, header, accounts, now=LIFETIME + 1)
    assert isinstance(outcome, Challenge)
    assert outcome.stale
    assert all("stale=true" in h for h in outcome.headers)
    assert accounts.calls == 0


def test_forged_nonce_gets_plain_challenge_without_lookup() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (SHA256,))
    fake = challenge_header(REALM, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", SHA256, False)
    outcome = authenticate(auth, sipp_authorization(fake, "alice", "pw"), accounts)
    assert isinstance(outcome, Challenge)
    assert not outcome.stale
    assert accounts.calls == 0


def test_nonce_from_another_source_is_refused() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (SHA256,))
    challenge = authenticate(auth, None, accounts, source="192.0.2.1")
    assert isinstance(challenge, Challenge)
    header = sipp_authorization(challenge.headers[0], "alice", "pw")
    assert isinstance(authenticate(auth, header, accounts, source="192.0.2.9"), Challenge)
    assert isinstance(authenticate(auth, header, accounts, source="192.0.2.1"), Authenticated)


def test_uri_mismatch_is_400() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (SHA256,))
    challenge = authenticate(auth, None, accounts)
    assert isinstance(challenge, Challenge)
    header = sipp_authorization(challenge.headers[0], "alice", "pw", uri="sip:elsewhere.test")
    outcome = authenticate(auth, header, accounts)
    assert isinstance(outcome, Rejected)
    assert outcome.status == 400


def test_other_realm_or_disabled_algorithm_is_rechallenged() -> None:
    auth = make_authenticator(algorithms=(SHA256,))
    accounts = Accounts({"alice": "pw"}, (SHA256, MD5))
    challenge = authenticate(auth, None, accounts)
    assert isinstance(challenge, Challenge)
    md5_challenge = challenge.headers[0].replace("SHA-256", "MD5")
    downgraded = authenticate(auth, sipp_authorization(md5_challenge, "alice", "pw"), accounts)
    assert isinstance(downgraded, Challenge)
    other_realm = sipp_authorization(challenge.headers[0].replace(REALM, "x.test"), "alice", "pw")
    assert isinstance(authenticate(auth, other_realm, accounts), Challenge)
    assert accounts.calls == 0


def test_account_without_ha1_for_algorithm_is_offered_what_it_has() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (MD5,))
    challenge = authenticate(auth, None, accounts)
    assert isinstance(challenge, Challenge)
    outcome = authenticate(auth, sipp_authorization(challenge.headers[0], "alice", "pw"), accounts)
    assert isinstance(outcome, Challenge)
    assert [challenge_param(h, "algorithm") for h in outcome.headers] == ["MD5"]
    retry = authenticate(auth, sipp_authorization(outcome.headers[0], "alice", "pw"), accounts)
    assert retry == Authenticated("alice", MD5)


def test_no_qop_is_refused_and_garbage_is_400_and_basic_is_challenged() -> None:
    auth = make_authenticator()
    accounts = Accounts({"alice": "pw"}, (MD5,))
    nonce = NonceService(SECRET, LIFETIME).issue(10.0, REALM)
    key = ha1("alice", REALM, "pw", MD5)
    ha2 = hashlib.md5(f"REGISTER:{URI}".encode()).hexdigest()
    response = hashlib.md5(f"{key}:{nonce}:{ha2}".encode()).hexdigest()
    rfc2069 = (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
        f'response="{response}"'
    )
    assert authenticate(auth, rfc2069, accounts) == Rejected(400, "qop=auth required")
    garbage = authenticate(auth, "Digest ,,,", accounts)
    assert isinstance(garbage, Rejected)
    assert garbage.status == 400
    assert isinstance(authenticate(auth, "Basic Zm9vOmJhcg==", accounts), Challenge)


def test_opaque_must_come_back() -> None:
    auth = DigestAuthenticator(
        NonceService(SECRET, LIFETIME), NonceCounter(10, LIFETIME), (MD5,), opaque="op1"
    )
    accounts = Accounts({"alice": "pw"}, (MD5,))
    challenge = authenticate(auth, None, accounts)
    assert isinstance(challenge, Challenge)
    assert 'opaque="op1"' in challenge.headers[0]
    header = sipp_authorization(challenge.headers[0], "alice", "pw")
    assert isinstance(authenticate(auth, header, accounts), Challenge)  # a client that drops opaque
    with_opaque = header + ',opaque="op1"'
    assert authenticate(auth, with_opaque, accounts) == Authenticated("alice", MD5)


_GOOD = 'username="a", realm="r", nonce="n", uri="u", response="' + "0" * 32 + '"'


@pytest.mark.parametrize(
    "params",
    [
        _GOOD + ",",  # trailing comma
        _GOOD + ", ",
        "junk " + _GOOD,  # garbage before the first item
        _GOOD.replace(', realm="r"', ' realm="r"'),  # two items without a comma
        _GOOD.replace(', realm="r"', ', ;realm="r"'),  # garbage between items
        _GOOD + ', x="a"b',  # garbage after a quoted value
    ],
)
def test_parameter_list_must_be_whole(params: str) -> None:
    """Items are accepted only when they cover the text from end to end."""
    with pytest.raises(DigestError) as raised:
        parse_credentials("Digest " + params)
    assert raised.value.reason == "malformed Digest parameters"


def test_quoted_values_keep_commas_and_escaped_quotes() -> None:
    credentials = parse_credentials("Digest " + _GOOD.replace('"a"', r'"a, \"b\" \\ c"'))
    assert credentials.username == 'a, "b" \\ c'
    assert credentials.realm == "r"


def test_a_reused_nonce_skips_the_mac_only_from_the_source_that_proved_it() -> None:
    """Refreshes reuse the nonce (nc 2, 3, ...): the MAC was checked for its first use,
    from that source. Another source presenting it must pass the MAC, bound to the
    first source, and fail (a copied nonce does not travel)."""
    accounts = Accounts({"alice": "secret"}, (MD5,))
    auth = make_authenticator(algorithms=(MD5,))
    challenge = authenticate(auth, None, accounts, source="192.0.2.1")
    assert isinstance(challenge, Challenge)
    header = challenge.headers[0]
    first = authenticate(
        auth, sipp_authorization(header, "alice", "secret"), accounts, source="192.0.2.1"
    )
    assert isinstance(first, Authenticated)
    again = sipp_authorization(header, "alice", "secret", nc=2)
    elsewhere = authenticate(auth, again, accounts, source="192.0.2.2")
    assert isinstance(elsewhere, Challenge) and not elsewhere.stale
    refreshed = authenticate(auth, again, accounts, source="192.0.2.1")
    assert isinstance(refreshed, Authenticated)


def test_remembered_ha2_is_per_algorithm_method_and_uri() -> None:
    """H(A2) is memoised: each (algorithm, method, URI) must still get its own."""
    for algorithm, digest in ((MD5, hashlib.md5), (SHA256, hashlib.sha256)):
        secret_ha1 = ha1("alice", REALM, "s3cret", algorithm)
        for method, uri in (("REGISTER", URI), ("INVITE", URI), ("REGISTER", URI + ";x=1")):
            ha2 = digest(f"{method}:{uri}".encode()).hexdigest()
            response = digest(f"{secret_ha1}:n0nce:00000001:c0:auth:{ha2}".encode()).hexdigest()
            credentials = parse_credentials(
                f'Digest username="alice",realm="{REALM}",nonce="n0nce",uri="{uri}",'
                f'response="{response}",algorithm={algorithm.value},qop=auth,nc=00000001,'
                'cnonce="c0"'
            )
            assert verify(credentials, method, secret_ha1)
            assert not verify(credentials, "BYE", secret_ha1)
