"""TokenVerifier's JWKS refetch (issue 11): rate-limited after failures too, single-flight, and never in
the way of a token whose kid is already known."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from affidavit.relying_party import RelyingPartyError, TokenVerifier
from tests.test_relying_party import _Issuer, jwk_of, make_key, sign


@pytest.fixture
def issuer() -> Iterator[_Issuer]:
    srv = _Issuer()
    yield srv
    srv.stop()


def test_failed_refetches_are_rate_limited(issuer: _Issuer) -> None:
    key, cert = make_key("k1")
    issuer.jwks = {"keys": [jwk_of(cert, "one")]}
    clock = [time.time()]
    with TokenVerifier(issuer.url, min_refetch_interval=30, clock=lambda: clock[0]) as verifier:
        claims = {"iss": issuer.url, "exp": clock[0] + 600}
        assert verifier.verify(sign(claims, key, "one")).kid == "one"
        clock[0] += 31
        issuer.jwks_fail = True  # the issuer's JWKS is down
        for n in range(20):
            with pytest.raises(RelyingPartyError) as info:
                verifier.verify(sign(claims, key, f"bogus-{n}"))
            assert info.value.code == "unknown_kid"
        assert issuer.jwks_hits == 2  # the first fetch, and one failed refetch for 20 bogus kids
        assert verifier.verify(sign(claims, key, "one")).kid == "one"  # the known key still works
        clock[0] += 31
        issuer.jwks_fail = False
        with pytest.raises(RelyingPartyError):
            verifier.verify(sign(claims, key, "bogus-again"))
        assert issuer.jwks_hits == 3


def test_a_first_fetch_that_fails_is_not_retried_per_token(issuer: _Issuer) -> None:
    key, _ = make_key("k1")
    issuer.jwks_fail = True
    clock = [time.time()]
    with TokenVerifier(issuer.url, min_refetch_interval=30, clock=lambda: clock[0]) as verifier:
        for _ in range(10):
            with pytest.raises(RelyingPartyError) as info:
                verifier.verify(sign({"iss": issuer.url}, key, "one"))
            assert info.value.code == "metadata_unavailable"
        assert issuer.jwks_hits == 1


def test_a_known_kid_never_waits_for_a_slow_refetch(issuer: _Issuer) -> None:
    key, cert = make_key("k1")
    issuer.jwks = {"keys": [jwk_of(cert, "one")]}
    clock = [time.time()]
    with TokenVerifier(issuer.url, min_refetch_interval=30, clock=lambda: clock[0]) as verifier:
        claims = {"iss": issuer.url, "exp": clock[0] + 600}
        good = sign(claims, key, "one")
        verifier.verify(good)
        clock[0] += 31
        issuer.jwks_delay = 2.0
        slow = threading.Thread(target=lambda: pytest.raises(RelyingPartyError, verifier.verify,
                                                             sign(claims, key, "new")))
        waiters = [threading.Thread(target=lambda: pytest.raises(RelyingPartyError, verifier.verify,
                                                                 sign(claims, key, "new")))
                   for _ in range(5)]
        slow.start()
        time.sleep(0.3)  # the refetch is under way
        for w in waiters:
            w.start()
        start = time.perf_counter()
        assert verifier.verify(good).kid == "one"
        assert time.perf_counter() - start < 0.5
        slow.join()
        for w in waiters:
            w.join()
        assert issuer.jwks_hits == 2  # single flight: six tokens with the new kid, one refetch
