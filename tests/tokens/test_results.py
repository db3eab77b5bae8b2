from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from azure.security.attestation._generated.models import (
    PolicyCertificatesModificationResult,
    PolicyCertificatesResult,
    PolicyResult,
)
from azure.security.attestation._models import AttestationPolicyToken
from cryptography.hazmat.primitives.serialization import Encoding

from affidavit.store import policy_hash
from affidavit.tokens import (
    ATTESTATION_TOKEN_LIFETIME,
    POLICY_RESULT_LIFETIME,
    SigningKey,
    TokenError,
    certificate_jwk,
    certificate_thumbprint,
    certificates_modification_claims,
    encode_jwt,
    parse_jws,
    policy_certificates_claims,
    policy_get_claims,
    policy_reset_claims,
    policy_set_claims,
    policy_text_from_jws,
    policy_token_hash,
    timed_claims,
    unsigned_policy_jws,
    verify_jws,
)

from .conftest import ISSUER, NOW, Pki
from .test_jws import LIVE_UNSIGNED, POLICY


def test_live_hash_vectors() -> None:
    # maa-api §7.4: values live MAA returned
    assert policy_token_hash(LIVE_UNSIGNED) == "pyhI2FKMjRkvpvwS07hLclAyvsi5O4TrnzL5OPsIxzM"
    assert policy_hash(POLICY) == "z0FRjKS0ssQTNur1V6BV8WIrh9M3fzgTo0EfHRvapWU"


def test_unsigned_policy_jws_is_what_the_sdk_sends() -> None:
    assert unsigned_policy_jws(POLICY) == LIVE_UNSIGNED == str(AttestationPolicyToken(POLICY))
    text = "version=1.0;\n// ü\nauthorizationrules{};"
    assert policy_text_from_jws(parse_jws(unsigned_policy_jws(text))) == text


def test_timed_claims() -> None:
    c = timed_claims(ISSUER + "/", NOW, POLICY_RESULT_LIFETIME)
    assert c == {"iss": ISSUER, "iat": int(NOW.timestamp()), "nbf": int(NOW.timestamp()),
                 "exp": int(NOW.timestamp()) + 3600}
    assert ATTESTATION_TOKEN_LIFETIME.total_seconds() == 28800


def test_thumbprint_and_jwk(pki: Pki) -> None:
    der = pki.leaf.public_bytes(Encoding.DER)
    expected = hashlib.sha1(der).hexdigest().upper()
    assert certificate_thumbprint(pki.leaf) == certificate_thumbprint(der) == expected
    jwk = certificate_jwk(pki.leaf)
    assert jwk == {"alg": "RS256", "kty": "RSA", "use": "sig", "x5c": [base64.b64encode(der).decode()]}
    assert certificate_jwk(pki.ec_cert)["kty"] == "EC"


def test_set_reset_get_claims_deserialize_in_the_sdk(pki: Pki) -> None:
    signed = policy_set_claims("a.b.c", pki.self_cert)
    assert signed["x-ms-policy-token-hash"] == policy_token_hash("a.b.c")
    model = PolicyResult.deserialize(signed)
    assert model.policy_resolution == "Updated"
    assert model.policy_token_hash == hashlib.sha256(b"a.b.c").digest()
    assert model.policy_signer.x5_c == [base64.b64encode(pki.self_cert.public_bytes(Encoding.DER)).decode()]
    assert "x-ms-policy-signer" not in policy_set_claims("a.b.", None)
    assert policy_reset_claims() == {"x-ms-policy-result": "Removed"}
    assert PolicyResult.deserialize(policy_reset_claims()).policy_resolution == "Removed"
    assert PolicyResult.deserialize(policy_get_claims(LIVE_UNSIGNED)).policy == LIVE_UNSIGNED


def test_certificate_claims_deserialize_in_the_sdk(pki: Pki) -> None:
    listed = PolicyCertificatesResult.deserialize(policy_certificates_claims([pki.ca, pki.self_cert]))
    assert [k.x5_c[0] for k in listed.policy_certificates.keys] == [
        base64.b64encode(c.public_bytes(Encoding.DER)).decode() for c in (pki.ca, pki.self_cert)
    ]
    assert policy_certificates_claims([]) == {"x-ms-policy-certificates": {"keys": []}}
    claims = certificates_modification_claims(pki.ca, present=True)
    added = PolicyCertificatesModificationResult.deserialize(claims)
    assert added.certificate_resolution == "IsPresent"
    assert added.certificate_thumbprint == certificate_thumbprint(pki.ca)
    removed = certificates_modification_claims(pki.ca.public_bytes(Encoding.DER), present=False)
    assert removed["x-ms-policycertificates-result"] == "IsAbsent"


def test_result_token_signs(signing_key: SigningKey) -> None:
    claims = {**timed_claims(ISSUER, NOW, POLICY_RESULT_LIFETIME), **policy_reset_claims()}
    assert parse_jws(encode_jwt(claims, signing_key, jku=None)).payload == claims


def test_recorded_live_signed_policy_put() -> None:
    """Our parse, signature check and PolicyResult claims reproduce live MAA's answer exactly."""
    from .recorded import POLICY_RESULT_TOKEN, RECORDED_AT, SIGNED_POLICY_JWS

    jws = parse_jws(SIGNED_POLICY_JWS)
    assert jws.alg == "RSA256"
    signer = verify_jws(jws, now=RECORDED_AT)
    assert signer is not None
    assert policy_text_from_jws(jws) == POLICY
    assert policy_token_hash(SIGNED_POLICY_JWS) == "h6bWT3Mqp8UQ2ciVtxhlk3WsMH8cnFgEjpEcfA6ySs4"

    answer = parse_jws(POLICY_RESULT_TOKEN).payload
    assert answer is not None
    timed = {k: answer.pop(k) for k in ("exp", "iat", "iss", "nbf")}
    assert answer == policy_set_claims(SIGNED_POLICY_JWS, signer)
    issued = datetime.fromtimestamp(timed["iat"], UTC)
    assert timed == timed_claims(timed["iss"], issued, POLICY_RESULT_LIFETIME)

    # the signer certificate expired in 2022: today the same body is refused
    with pytest.raises(TokenError) as err:
        verify_jws(jws, now=NOW.replace(year=2026))
    assert err.value.code == "signer_expired"
