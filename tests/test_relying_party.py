"""Relying-party verification: MAA-shaped tokens signed by a local key, served by a real loopback server."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from affidavit.relying_party import (
    ExpectationFailed,
    Expectations,
    RelyingPartyError,
    TokenVerifier,
    keys_from_jwks,
    verify_token,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_key(cn: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert


def maa_kid(cert: x509.Certificate) -> str:
    # MAA's instance kids are standard base64 of 32 bytes, '=' and '+' included: the kid is an opaque string.
    return base64.b64encode(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()).decode()


def jwk_of(cert: x509.Certificate, kid: str) -> dict[str, Any]:
    return {
        "kid": kid,
        "kty": "RSA",
        "x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()],
    }


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str | None, alg: str = "RS256") -> str:
    header: dict[str, Any] = {"alg": alg, "jku": "https://issuer.example/certs", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    h = b64url(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = key.sign(f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{h}.{p}.{b64url(sig)}"


@pytest.fixture(scope="module")
def signer() -> tuple[rsa.RSAPrivateKey, x509.Certificate, str]:
    key, cert = make_key("https://issuer.example")
    return key, cert, maa_kid(cert)


@pytest.fixture(scope="module")
def maa_payload(vectors: Path) -> dict[str, Any]:
    path = vectors / "sgx/azure-maa-openenclave-claims/maa2022_token_runtimedata_binary.decoded.json"
    return json.loads(path.read_text())["payload"]


def fresh(payload: dict[str, Any], issuer: str, now: float) -> dict[str, Any]:
    claims = dict(payload)
    claims.update(iss=issuer, iat=int(now), nbf=int(now), exp=int(now) + 28800)
    return claims


NOW = 1_700_000_000.0


def test_maa_shaped_token_verifies_and_expectations_hold(signer, maa_payload) -> None:
    key, cert, kid = signer
    token = sign(fresh(maa_payload, "https://issuer.example", NOW), key, kid)
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    expect = Expectations(
        mrsigner=frozenset({maa_payload["x-ms-sgx-mrsigner"].upper()}),
        mrenclave=frozenset({maa_payload["x-ms-sgx-mrenclave"]}),
        min_svn=maa_payload["x-ms-sgx-svn"],
    )
    result = verify_token(token, keys, issuer="https://issuer.example/", now=NOW, expectations=expect)
    assert result.claims["x-ms-sgx-mrsigner"] == maa_payload["x-ms-sgx-mrsigner"]
    assert result.kid == kid and not result.unsecured


@pytest.mark.parametrize(
    ("expect", "claim"),
    [
        (Expectations(mrsigner=frozenset({"00" * 32})), "x-ms-sgx-mrsigner"),
        (Expectations(min_svn=10_000), "x-ms-sgx-svn"),
        (Expectations(product_id=77), "x-ms-sgx-product-id"),
        (Expectations(tcb_statuses=frozenset({"UpToDate"})), "x-ms-sgx-tcb-status"),
        (Expectations(secure_boot=True), "secureBootEnabled"),
        (Expectations(claims={"x-ms-attestation-type": frozenset({"tdxvm"})}), "x-ms-attestation-type"),
    ],
)
def test_failed_expectation_names_the_claim(signer, maa_payload, expect, claim) -> None:
    key, cert, kid = signer
    token = sign(fresh(maa_payload, "https://issuer.example", NOW), key, kid)
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    with pytest.raises(ExpectationFailed) as info:
        verify_token(token, keys, issuer="https://issuer.example", now=NOW, expectations=expect)
    assert info.value.claim == claim
    assert claim in str(info.value)


def test_debug_enclave_refused_unless_allowed(signer, maa_payload) -> None:
    key, cert, kid = signer
    claims = fresh(maa_payload, "https://issuer.example", NOW)
    claims["x-ms-sgx-is-debuggable"] = True
    token = sign(claims, key, kid)
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    with pytest.raises(ExpectationFailed, match="debug"):
        verify_token(token, keys, issuer=None, now=NOW, expectations=Expectations())
    verify_token(token, keys, issuer=None, now=NOW, expectations=Expectations(allow_debug=True))


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda c: c.update(exp=NOW - 3600), "expired"),
        (lambda c: c.update(nbf=NOW + 3600), "not_yet_valid"),
        (lambda c: c.update(iss="https://evil.example"), "wrong_issuer"),
        (lambda c: c.pop("exp"), "token_malformed"),
        (lambda c: c.update(exp="tomorrow"), "token_malformed"),
    ],
)
def test_claim_checks_fail_closed(signer, maa_payload, mutate, code) -> None:
    key, cert, kid = signer
    claims = fresh(maa_payload, "https://issuer.example", NOW)
    mutate(claims)
    token = sign(claims, key, kid)
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    with pytest.raises(RelyingPartyError) as info:
        verify_token(token, keys, issuer="https://issuer.example", now=NOW)
    assert info.value.code == code


def test_nonce_is_checked(signer) -> None:
    key, cert, kid = signer
    token = sign({"exp": NOW + 60, "nonce": "abc"}, key, kid)
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    verify_token(token, keys, issuer=None, now=NOW, nonce="abc")
    with pytest.raises(RelyingPartyError) as info:
        verify_token(token, keys, issuer=None, now=NOW, nonce="abd")
    assert info.value.code == "nonce_mismatch"


def test_every_flipped_signature_or_payload_byte_is_rejected(signer) -> None:
    key, cert, kid = signer
    token = sign({"exp": NOW + 60, "x-ms-sgx-mrsigner": "ab" * 32}, key, kid)
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    h, p, s = token.split(".")
    raw_p, raw_s = base64.urlsafe_b64decode(p + "=="), base64.urlsafe_b64decode(s + "==")
    for i in range(len(raw_p)):
        bad = bytearray(raw_p)
        bad[i] ^= 0x01
        with pytest.raises(RelyingPartyError):
            verify_token(f"{h}.{b64url(bytes(bad))}.{s}", keys, issuer=None, now=NOW)
    for i in range(0, len(raw_s), 7):
        bad = bytearray(raw_s)
        bad[i] ^= 0x80
        with pytest.raises(RelyingPartyError) as info:
            verify_token(f"{h}.{p}.{b64url(bytes(bad))}", keys, issuer=None, now=NOW)
        assert info.value.code == "bad_signature"


def test_unknown_kid_other_key_and_alg_none(signer) -> None:
    key, cert, kid = signer
    other_key, other_cert = make_key("other")
    keys = keys_from_jwks({"keys": [jwk_of(cert, kid)]})
    with pytest.raises(RelyingPartyError) as info:
        verify_token(sign({"exp": NOW + 60}, key, "nope"), keys, issuer=None, now=NOW)
    assert info.value.code == "unknown_kid"
    with pytest.raises(RelyingPartyError) as info:
        verify_token(sign({"exp": NOW + 60}, other_key, kid), keys, issuer=None, now=NOW)
    assert info.value.code == "bad_signature"
    unsecured = b64url(b'{"alg":"none","typ":"JWT"}') + "." + b64url(b'{"exp":1800000000}') + "."
    with pytest.raises(RelyingPartyError) as info:
        verify_token(unsecured, keys, issuer=None, now=NOW)
    assert info.value.code == "alg_not_allowed"
    assert verify_token(unsecured, keys, issuer=None, now=NOW, allow_unsecured=True).unsecured
    with pytest.raises(RelyingPartyError) as info:
        verify_token(sign({"exp": NOW + 60}, key, kid, alg="HS256"), keys, issuer=None, now=NOW)
    assert info.value.code == "alg_not_allowed"


def test_jwks_n_e_form_and_ec_keys() -> None:
    key, _ = make_key("n-e")
    nums = key.public_key().public_numbers()
    jwk = {
        "kid": "k1",
        "kty": "RSA",
        "n": b64url(nums.n.to_bytes(256, "big")),
        "e": b64url(nums.e.to_bytes(3, "big")),
    }
    keys = keys_from_jwks({"keys": [jwk, {"kty": "RSA"}, "junk"]})
    assert list(keys) == ["k1"]
    verify_token(sign({"exp": NOW + 60}, key, "k1"), keys, issuer=None, now=NOW)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    h = b64url(b'{"alg":"ES256","kid":"e1"}')
    p = b64url(b'{"exp":1800000000}')
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(ec_key.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256())))
    token = f"{h}.{p}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    assert verify_token(token, {"e1": ec_key.public_key()}, issuer=None, now=NOW).kid == "e1"


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_is_a_typed_error(text: str) -> None:
    with pytest.raises(RelyingPartyError):
        verify_token(text, {}, issuer=None, now=NOW)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_arbitrary_segments_are_a_typed_error(header: bytes, payload: bytes) -> None:
    with pytest.raises(RelyingPartyError):
        verify_token(f"{b64url(header)}.{b64url(payload)}.{b64url(b'x')}", {}, issuer=None, now=NOW)


# -- the fetching verifier against a real loopback server ---------------------------------------------------


class _Issuer:
    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_hits = 0
        self.jwks_fail = False  # answer /certs with 503
        self.jwks_delay = 0.0  # seconds /certs takes
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": base, "jwks_uri": base + "/certs"}
                elif self.path == "/certs":
                    issuer.jwks_hits += 1
                    time.sleep(issuer.jwks_delay)
                    if issuer.jwks_fail:
                        self.send_error(503)
                        return
                    body = issuer.jwks
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def issuer() -> Iterator[_Issuer]:
    srv = _Issuer()
    yield srv
    srv.stop()


def test_verifier_fetches_keys_and_follows_rotation_rate_limited(issuer: _Issuer) -> None:
    k1, c1 = make_key("k1")
    k2, c2 = make_key("k2")
    issuer.jwks = {"keys": [jwk_of(c1, "one")]}
    clock = [time.time()]
    with TokenVerifier(issuer.url, min_refetch_interval=30, clock=lambda: clock[0]) as verifier:
        claims = {"iss": issuer.url, "exp": clock[0] + 600}
        assert verifier.verify(sign(claims, k1, "one")).claims["iss"] == issuer.url
        issuer.jwks = {"keys": [jwk_of(c1, "one"), jwk_of(c2, "two")]}
        # A new kid right after a fetch: refused without hammering the issuer.
        with pytest.raises(RelyingPartyError) as info:
            verifier.verify(sign(claims, k2, "two"))
        assert info.value.code == "unknown_kid"
        assert issuer.jwks_hits == 1
        clock[0] += 31
        claims["exp"] = clock[0] + 600
        assert verifier.verify(sign(claims, k2, "two")).kid == "two"
        assert issuer.jwks_hits == 2


def test_verifier_reports_unreachable_issuer() -> None:
    with TokenVerifier("http://127.0.0.1:9", timeout=2) as verifier:
        with pytest.raises(RelyingPartyError) as info:
            verifier.verify("a.b.c")
        assert info.value.code in {"metadata_unavailable", "token_malformed"}


# -- algorithms: what the issuers sign, each ES alg on its own curve -----------------------------------------


def _jose_token(alg: str, key: Any, kid: str) -> str:
    from affidavit import jose

    return jose.sign_compact({"alg": alg, "kid": kid, "typ": "JWT"}, b'{"exp":1800000000}', key)


P384 = ec.generate_private_key(ec.SECP384R1())


@pytest.mark.parametrize("alg, key", [("PS256", "rsa"), ("RS384", "rsa"), ("ES384", "p384")])
def test_only_rs256_and_es256_are_accepted_by_default(signer, alg: str, key: str) -> None:
    """Affidavit signs RS256 or ES256 and MAA RS256: any other alg is refused unless the caller asks."""
    rsa_key, cert, kid = signer
    private = rsa_key if key == "rsa" else P384
    keys = {kid: rsa_key.public_key() if key == "rsa" else P384.public_key()}
    token = _jose_token(alg, private, kid)
    with pytest.raises(RelyingPartyError) as info:
        verify_token(token, keys, issuer=None, now=NOW)
    assert info.value.code == "alg_not_allowed"
    assert verify_token(token, keys, issuer=None, now=NOW, algorithms=frozenset({alg})).kid == kid


def test_an_es_alg_is_tied_to_its_curve() -> None:
    """ES256 on a P-384 key (a 96-byte signature over SHA-256) is refused, even when ES384 is allowed too."""
    h = b64url(b'{"alg":"ES256","kid":"p384","typ":"JWT"}')
    p = b64url(b'{"exp":1800000000}')
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(P384.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256())))
    token = f"{h}.{p}.{b64url(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"
    for algorithms in (None, frozenset({"ES256", "ES384"})):
        extra = {} if algorithms is None else {"algorithms": algorithms}
        with pytest.raises(RelyingPartyError) as info:
            verify_token(token, {"p384": P384.public_key()}, issuer=None, now=NOW, **extra)
        assert info.value.code == "bad_signature"
