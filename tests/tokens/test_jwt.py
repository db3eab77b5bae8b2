from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt as pyjwt
import pytest
from azure.security.attestation import AttestationSigner, AttestationToken
from azure.security.attestation._models import AttestationTokenValidationException

from affidavit.tokens import (
    SigningKey,
    TokenError,
    encode_jwt,
    jwks,
    jwks_uri,
    openid_configuration,
    timed_claims,
    unsecured_jwt,
)

from .conftest import ISSUER, NOW


def _segment(token: str, i: int) -> bytes:
    s = token.split(".")[i]
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _claims(lifetime: timedelta = timedelta(hours=8)) -> dict[str, object]:
    from datetime import UTC, datetime

    return {**timed_claims(ISSUER + "/", datetime.now(UTC), lifetime), "x-ms-ver": "1.0", "b": [1, "ü"]}


def test_header_is_exactly_maas(signing_key: SigningKey) -> None:
    token = encode_jwt({"a": 1}, signing_key, jku=jwks_uri(ISSUER))
    assert _segment(token, 0) == (
        b'{"alg":"RS256","jku":"https://affidavit.test:8443/certs","kid":"' + signing_key.kid.encode()
        + b'","typ":"JWT"}'
    )
    assert "=" not in token and token.count(".") == 2
    assert json.loads(_segment(encode_jwt({"a": 1}, signing_key, jku=None), 0)) == {
        "alg": "RS256", "kid": signing_key.kid, "typ": "JWT",
    }


def test_pyjwt_verifies_against_jwks(signing_key: SigningKey, other_key: SigningKey) -> None:
    claims = _claims()
    token = encode_jwt(claims, signing_key, jku=jwks_uri(ISSUER))
    keyset = pyjwt.PyJWKSet.from_dict(jwks([other_key, signing_key]))
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = next(k for k in keyset.keys if k.key_id == kid)
    decoded = pyjwt.decode(token, key.key, algorithms=["RS256"], issuer=ISSUER)
    assert decoded == json.loads(json.dumps(claims))
    # the other key does not verify it; a flipped payload byte does not verify either
    wrong = next(k for k in keyset.keys if k.key_id == other_key.kid)
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, wrong.key, algorithms=["RS256"])
    h, p, s = token.split(".")
    tampered = h + "." + p[:-2] + ("A" if p[-2] != "A" else "B") + p[-1] + "." + s
    with pytest.raises(pyjwt.InvalidTokenError):
        pyjwt.decode(tampered, key.key, algorithms=["RS256"])


def test_sdk_validates_token_with_certs(signing_key: SigningKey, other_key: SigningKey) -> None:
    token = encode_jwt(_claims(), signing_key, jku=jwks_uri(ISSUER))
    signers = [AttestationSigner(k["x5c"], k["kid"]) for k in jwks([other_key, signing_key])["keys"]]
    parsed = AttestationToken(token=token)
    parsed._validate_token(signers, validate_issuer=True, issuer=ISSUER)
    assert parsed.key_id == signing_key.kid and parsed.algorithm == "RS256"
    # the kid lets the SDK find our key even when /certs lists it second; a key absent from /certs fails
    stranger = encode_jwt(_claims(), other_key, jku=None)
    with pytest.raises(AttestationTokenValidationException):
        AttestationToken(token=stranger)._validate_token(signers[1:])


def test_expired_token_fails_sdk_validation(signing_key: SigningKey) -> None:
    token = encode_jwt(_claims(-timedelta(seconds=10)), signing_key, jku=None)
    signers = [AttestationSigner(k["x5c"], k["kid"]) for k in jwks([signing_key])["keys"]]
    with pytest.raises(AttestationTokenValidationException):
        AttestationToken(token=token)._validate_token(signers)


def test_unsecured_token_shape() -> None:
    token = unsecured_jwt({"x-ms-policy-hash": "abc"}, jku=jwks_uri(ISSUER), kid="k1")
    assert token.endswith(".") and token.count(".") == 2
    header = {"alg": "none", "jku": ISSUER + "/certs", "kid": "k1", "typ": "JWT"}
    assert json.loads(_segment(token, 0)) == header
    AttestationToken(token=token)._validate_token([])  # the SDK accepts alg none without signers
    assert pyjwt.decode(token, options={"verify_signature": False}) == {"x-ms-policy-hash": "abc"}


def test_unserializable_claims_are_a_token_error(signing_key: SigningKey) -> None:
    with pytest.raises(TokenError) as err:
        encode_jwt({"t": NOW}, signing_key, jku=None)
    assert err.value.code == "unserializable_claims"
    with pytest.raises(TokenError):
        unsecured_jwt({"x": float("nan")})


def test_openid_configuration() -> None:
    from affidavit.attestation_types import claims_supported

    doc = openid_configuration(ISSUER + "/", claims_supported())
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == ISSUER + "/certs"
    assert doc["response_types_supported"] == ["token", "none"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "x-ms-sgx-mrenclave" in doc["claims_supported"]
