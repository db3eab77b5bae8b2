from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from azure.security.attestation import AttestationToken
from azure.security.attestation._models import AttestationPolicyToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from affidavit.service.errors import classify
from affidavit.tokens import (
    MAX_X5C,
    TokenError,
    certificate_from_jws,
    check_signer_trusted,
    parse_jws,
    policy_text_from_jws,
    signer_chain,
    verify_jws,
)

from .conftest import NOW, Pki, make_cert

POLICY = "version=1.0; authorizationrules{=> permit();}; issuancerules{};"
# The unsigned PUT body live MAA accepted for POLICY (maa-api §7.1).
LIVE_UNSIGNED = (
    "eyJhbGciOiJub25lIn0.eyJBdHRlc3RhdGlvblBvbGljeSI6ICJkbVZ5YzJsdmJqMHhMakE3SUdGMWRHaHZjbWw2WVhScGIyNXlkV3"
    "hsYzNzOVBpQndaWEp0YVhRb0tUdDlPeUJwYzNOMVlXNWpaWEoxYkdWemUzMDcifQ."
)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def sign_jws(header: dict, payload: dict | None, key, *, raw_payload: bytes | None = None) -> str:  # noqa: ANN001
    body = b"" if payload is None else json.dumps(payload).encode()
    if raw_payload is not None:
        body = raw_payload
    signing_input = b64u(json.dumps(header).encode()) + "." + b64u(body)
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64u(sig)


def sdk_signed(policy: str | None, pki: Pki) -> str:
    if policy is None:
        return str(AttestationToken(body=None, signing_key=pki.self_key, signing_certificate=pki.self_cert))
    return str(AttestationPolicyToken(policy, signing_key=pki.self_key, signing_certificate=pki.self_cert))


def test_live_unsigned_policy_body() -> None:
    jws = parse_jws(LIVE_UNSIGNED)
    assert jws.header == {"alg": "none"} and not jws.signed
    assert verify_jws(jws, now=NOW) is None
    assert policy_text_from_jws(jws) == POLICY


def test_sdk_unsigned_reset_body() -> None:
    reset = str(AttestationToken(body=None))
    assert reset == "eyJhbGciOiJub25lIn0.."
    jws = parse_jws(reset)
    assert jws.payload is None and verify_jws(jws, now=NOW) is None
    assert policy_text_from_jws(jws) is None


def test_sdk_signed_policy_verifies(pki: Pki) -> None:
    token = sdk_signed(POLICY, pki)
    jws = parse_jws(token)
    assert jws.alg == "RSA256" and "x5c" in jws.header["jwk"]
    signer = verify_jws(jws, now=NOW)
    assert signer is not None
    assert signer.public_bytes(Encoding.DER) == pki.self_cert.public_bytes(Encoding.DER)
    assert policy_text_from_jws(jws) == POLICY


def test_sdk_signed_reset_verifies(pki: Pki) -> None:
    jws = parse_jws(sdk_signed(None, pki))
    assert jws.payload is None and jws.text.split(".")[1] == ""
    assert verify_jws(jws, now=NOW) is not None
    assert policy_text_from_jws(jws) is None


def test_standard_rs256_with_top_level_x5c(pki: Pki) -> None:
    chain = [b64(pki.leaf.public_bytes(Encoding.DER)), b64(pki.ca.public_bytes(Encoding.DER))]
    header = {"alg": "RS256", "x5c": chain}
    token = sign_jws(header, {"AttestationPolicy": b64u(POLICY.encode())}, pki.leaf_key)
    jws = parse_jws(token + "\r\n")  # a trailing newline from a text/plain body is tolerated
    assert verify_jws(jws, now=NOW) == pki.leaf
    assert [c.subject for c in signer_chain(jws)] == [pki.leaf.subject, pki.ca.subject]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h: {**h, "alg": "HS256"}, "unsupported_alg"),
        (lambda h: {**h, "alg": "ES256"}, "unsupported_alg"),
        (lambda h: {**h, "alg": "PS256"}, "unsupported_alg"),
        (lambda h: {**h, "crit": ["exp"]}, "unsupported_alg"),
        (lambda h: {"alg": "RS256"}, "missing_signer"),
        (lambda h: {"alg": "RS256", "x5c": "MIIB"}, "bad_certificate"),
        (lambda h: {"alg": "RS256", "x5c": ["!!!"]}, "bad_base64"),
        (lambda h: {"alg": "RS256", "x5c": [b64(b"not a certificate")]}, "bad_certificate"),
    ],
)
def test_rejected_headers(pki: Pki, mutate, code: str) -> None:  # noqa: ANN001
    header = mutate({"alg": "RS256", "x5c": [b64(pki.self_cert.public_bytes(Encoding.DER))]})
    token = sign_jws(header, {"AttestationPolicy": b64u(POLICY.encode())}, pki.self_key)
    with pytest.raises(TokenError) as err:
        verify_jws(parse_jws(token), now=NOW)
    assert err.value.code == code


def test_x5c_and_jwk_x5c_must_agree(pki: Pki) -> None:
    header = {
        "alg": "RS256",
        "x5c": [b64(pki.self_cert.public_bytes(Encoding.DER))],
        "jwk": {"x5c": [b64(pki.leaf.public_bytes(Encoding.DER))]},
    }
    with pytest.raises(TokenError) as err:
        verify_jws(parse_jws(sign_jws(header, {}, pki.self_key)), now=NOW)
    assert err.value.code == "bad_certificate"


def test_bad_signature(pki: Pki) -> None:
    token = sdk_signed(POLICY, pki)
    h, p, _ = token.split(".")
    other = sign_jws({"alg": "RSA256"}, {"AttestationPolicy": b64u(b"x")}, pki.leaf_key).split(".")[2]
    evil = b64u(json.dumps({"AttestationPolicy": b64u(b"evil")}).encode())
    for forged in (f"{h}.{p}.{other}", f"{h}.{evil}." + token.split(".")[2]):
        with pytest.raises(TokenError) as err:
            verify_jws(parse_jws(forged), now=NOW)
        assert err.value.code == "bad_signature"
        assert classify(err.value) == (400, "InvalidOperation")  # a bad signature is not a bad chain
    # a signed header with the signature stripped is not an unsigned token
    with pytest.raises(TokenError):
        verify_jws(parse_jws(f"{h}.{p}."), now=NOW)


def test_none_with_signature_rejected() -> None:
    with pytest.raises(TokenError) as err:
        verify_jws(parse_jws(LIVE_UNSIGNED + "AAAA"), now=NOW)
    assert err.value.code == "bad_signature"


def test_signer_validity_is_checked(pki: Pki) -> None:
    header = {"alg": "RSA256", "jwk": {"x5c": [b64(pki.expired.public_bytes(Encoding.DER))]}}
    token = sign_jws(header, {"AttestationPolicy": b64u(POLICY.encode())}, pki.self_key)
    with pytest.raises(TokenError) as err:
        verify_jws(parse_jws(token), now=NOW)
    assert err.value.code == "signer_expired"
    assert verify_jws(parse_jws(token), now=NOW - timedelta(days=100)) == pki.expired
    with pytest.raises(TokenError) as err:
        verify_jws(parse_jws(sdk_signed(POLICY, pki)), now=NOW - timedelta(days=31))
    assert err.value.code == "signer_not_yet_valid"


def test_ec_signer_is_refused(pki: Pki) -> None:
    header = {"alg": "RS256", "x5c": [b64(pki.ec_cert.public_bytes(Encoding.DER))]}
    token = sign_jws(header, {}, pki.self_key)
    with pytest.raises(TokenError) as err:
        verify_jws(parse_jws(token), now=NOW)
    assert err.value.code == "bad_certificate"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "malformed_jws"),
        ("a.b", "malformed_jws"),
        ("a.b.c.d", "malformed_jws"),
        ("eyJhbGciOiJub25lIn0.eyJ+.", "bad_base64"),
        ("eyJhbGciOiJub25lIn0.e.", "bad_base64"),
        (b64u(b"[1]") + "..", "bad_json"),
        (b64u(b"{}") + "..", "malformed_jws"),
        (b64u(b'{"alg":"none","alg":"RS256"}') + "..", "bad_json"),
        ("eyJhbGciOiJub25lIn0." + b64u(b'{"a":NaN}') + ".", "bad_json"),
        ("eyJhbGciOiJub25lIn0." + b64u(b"\xff\xfe") + ".", "bad_json"),
        ("eyJhbGciOiJub25lIn0." + b64u(b"[" * 100000) + ".", "bad_json"),
        ("eyJhbGciOiJub25lIn0." + b64u(b'"text"') + ".", "bad_json"),
    ],
)
def test_malformed_envelopes(text: str, code: str) -> None:
    with pytest.raises(TokenError) as err:
        parse_jws(text)
    assert err.value.code == code
    assert classify(err.value) == (400, "InvalidOperation")


def test_non_ascii_bytes() -> None:
    with pytest.raises(TokenError) as err:
        parse_jws("é.a.b".encode())
    assert err.value.code == "malformed_jws"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"policy": "x"}, "missing_claim"),
        ({"AttestationPolicy": 5}, "bad_claim"),
        ({"AttestationPolicy": "***"}, "bad_base64"),
        ({"AttestationPolicy": b64u(b"\xff\xfe")}, "bad_claim"),
    ],
)
def test_policy_text_errors(payload: dict, code: str) -> None:
    jws = parse_jws("eyJhbGciOiJub25lIn0." + b64u(json.dumps(payload).encode()) + ".")
    with pytest.raises(TokenError) as err:
        policy_text_from_jws(jws)
    assert err.value.code == code


def test_policy_text_is_utf8() -> None:
    text = "version=1.0; // ünïcödé\nauthorizationrules{=> permit();};"
    body = b64u(json.dumps({"AttestationPolicy": b64u(text.encode())}).encode())
    jws = parse_jws("eyJhbGciOiJub25lIn0." + body + ".")
    assert policy_text_from_jws(jws) == text


@pytest.mark.parametrize(
    "claim", ["policyCertificate", "maa-policyCertificate", "x-ms-policyCertificate", "aas-policyCertificate"]
)
def test_certificate_from_sdk_style_payload(pki: Pki, claim: str) -> None:
    # the SDK's certificates:add body: {"policyCertificate": {"kty": "RSA", "x5c": [...]}}, RSA256/jwk.x5c
    body = {claim: {"kty": "RSA", "x5c": [b64(pki.leaf.public_bytes(Encoding.DER))]}}
    token = str(AttestationToken(body=body, signing_key=pki.self_key, signing_certificate=pki.self_cert))
    jws = parse_jws(token)
    assert verify_jws(jws, now=NOW) == pki.self_cert
    assert certificate_from_jws(jws) == pki.leaf


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (None, "missing_claim"),
        ({"other": 1}, "missing_claim"),
        ({"policyCertificate": "MII"}, "bad_claim"),
        ({"policyCertificate": {"kty": "RSA"}}, "bad_claim"),
        ({"policyCertificate": {"x5c": []}}, "bad_claim"),
        ({"policyCertificate": {"x5c": ["AAAA"]}}, "bad_certificate"),
        ({"policyCertificate": {"x5c": ["A"]}, "aas-policyCertificate": {"x5c": ["B"]}}, "bad_claim"),
    ],
)
def test_certificate_payload_errors(payload: dict | None, code: str) -> None:
    body = b"" if payload is None else json.dumps(payload).encode()
    with pytest.raises(TokenError) as err:
        certificate_from_jws(parse_jws("eyJhbGciOiJub25lIn0." + b64u(body) + "."))
    assert err.value.code == code


def test_signer_trust(pki: Pki) -> None:
    check_signer_trusted(pki.self_cert, [pki.self_cert], now=NOW)  # registered itself
    check_signer_trusted(pki.leaf, [pki.ca], now=NOW)  # issued by a registered CA
    check_signer_trusted(pki.leaf, [pki.self_cert, pki.ca], now=NOW)
    for trusted, chain in (([pki.self_cert], ()), ([pki.leaf], [pki.ca]), ([], [pki.ca])):
        signer = pki.ca if trusted == [pki.leaf] else pki.leaf
        with pytest.raises(TokenError) as err:
            check_signer_trusted(signer, trusted, chain=chain, now=NOW)
        assert err.value.code == "untrusted_signer"
    # through an intermediate carried in x5c
    from cryptography.hazmat.primitives.asymmetric import rsa

    mid_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    mid = make_cert("Mid CA", mid_key, issuer="Policy CA", issuer_key=pki.ca_key, ca=True)
    low = make_cert("Low signer", pki.self_key, issuer="Mid CA", issuer_key=mid_key)
    check_signer_trusted(low, [pki.ca], chain=[low, mid], now=NOW)
    with pytest.raises(TokenError):
        check_signer_trusted(low, [pki.ca], now=NOW)
    # a registered certificate that is not a CA cannot vouch for another one
    fake_issued = make_cert("Leaf2", mid_key, issuer="Self signer", issuer_key=pki.self_key)
    with pytest.raises(TokenError):
        check_signer_trusted(fake_issued, [pki.self_cert], now=NOW)


def _exercise(text: str | bytes) -> None:
    try:
        jws = parse_jws(text)
        verify_jws(jws, now=NOW)
        policy_text_from_jws(jws)
        certificate_from_jws(jws)
    except TokenError:
        pass


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_random_input_gives_result_or_token_error(text: str | bytes) -> None:
    _exercise(text)


@given(
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=3000),
    st.sampled_from(list(".A_-=+/é{}\"\x00 ")),
)
def test_mutated_tokens_give_result_or_token_error(pki: Pki, which: int, pos: int, char: str) -> None:
    cert_body = {"policyCertificate": {"kty": "RSA", "x5c": [b64(pki.leaf.public_bytes(Encoding.DER))]}}
    token = [
        LIVE_UNSIGNED,
        "eyJhbGciOiJub25lIn0..",
        sdk_signed(POLICY, pki),
        str(AttestationToken(body=cert_body, signing_key=pki.self_key, signing_certificate=pki.self_cert)),
    ][which]
    pos %= len(token) + 1
    _exercise(token[:pos] + char + token[pos + 1:])
    _exercise(token[:pos] + char + token[pos:])
    _exercise(token[:pos] + token[pos + 1:])


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@given(_json_values)
def test_random_json_headers_and_payloads(obj: object) -> None:
    segment = b64u(json.dumps(obj).encode())
    claims = b64u(json.dumps({"AttestationPolicy": obj, "policyCertificate": obj}).encode())
    for text in (
        f"{segment}.{segment}.",
        f"eyJhbGciOiJSUzI1NiJ9.{segment}.AAAA",
        f"eyJhbGciOiJub25lIn0.{claims}.",
        b64u(json.dumps({"alg": "RSA256", "jwk": obj, "x5c": obj}).encode()) + f".{claims}.AAAA",
    ):
        _exercise(text)


@pytest.mark.parametrize("where", ["x5c", "jwk.x5c"])
def test_x5c_is_bounded_before_any_certificate_is_decoded(pki: Pki, where: str) -> None:
    """Past MAX_X5C entries the list is refused as such: entry 2 onwards are not even base64."""
    signer = b64(pki.self_cert.public_bytes(Encoding.DER))

    def header(entries: list[str]) -> dict:
        if where == "x5c":
            return {"alg": "RS256", "x5c": entries}
        return {"alg": "RSA256", "jwk": {"x5c": entries}}

    at_limit = [signer] * MAX_X5C
    assert verify_jws(parse_jws(sign_jws(header(at_limit), {}, pki.self_key)), now=NOW) == pki.self_cert
    with pytest.raises(TokenError) as err:
        verify_jws(parse_jws(sign_jws(header([signer] + ["!!!"] * MAX_X5C), {}, pki.self_key)), now=NOW)
    assert err.value.code == "bad_certificate" and f"at most {MAX_X5C}" in err.value.message
    assert classify(err.value)[0] == 400


def test_policy_certificate_x5c_is_bounded() -> None:
    body = {"policyCertificate": {"kty": "RSA", "x5c": ["AAAA"] * (MAX_X5C + 1)}}
    with pytest.raises(TokenError) as err:
        certificate_from_jws(parse_jws("eyJhbGciOiJub25lIn0." + b64u(json.dumps(body).encode()) + "."))
    assert err.value.code == "bad_claim" and f"at most {MAX_X5C}" in err.value.message
