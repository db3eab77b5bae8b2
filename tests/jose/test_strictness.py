"""One strictness for every JOSE reader: the relying party, policy management (tokens) and the TPM
protocol refuse the same things, because they all read through ``affidavit.jose``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from affidavit import jose
from affidavit.jose import JoseError, b64url, parse_compact, public_jwk, public_key_from_jwk, verify_signature

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
WEAK = rsa.generate_private_key(public_exponent=65537, key_size=1024)
P256 = ec.generate_private_key(ec.SECP256R1())
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _raw_jws(header_text: str, payload: bytes, key: rsa.RSAPrivateKey) -> str:
    """A JWS whose header is exactly ``header_text`` (duplicates included), RS256-signed by ``key``."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = f"{b64url(header_text.encode())}.{b64url(payload)}"
    sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(sig)}"


DUPLICATE_HEADER = '{"alg":"none","alg":"RS256","typ":"JWT"}'


def test_duplicate_members_are_refused_by_every_reader() -> None:
    from affidavit.relying_party import RelyingPartyError, decode_unverified
    from affidavit.service.tpm_protocol import TpmProtocolError, verify_request
    from affidavit.tokens import TokenError, parse_jws

    token = _raw_jws(DUPLICATE_HEADER, b'{"iss":"x"}', KEY)
    with pytest.raises(JoseError) as err:
        parse_compact(token)
    assert err.value.code == "bad_json"
    with pytest.raises(RelyingPartyError):
        decode_unverified(token)
    with pytest.raises(TokenError) as terr:
        parse_jws(token)
    assert terr.value.code == "bad_json"
    with pytest.raises(TpmProtocolError):
        verify_request({"request": token})
    dup_payload = _raw_jws('{"alg":"RS256"}', b'{"iss":"a","iss":"b"}', KEY)
    with pytest.raises(RelyingPartyError):
        decode_unverified(dup_payload)
    with pytest.raises(TokenError):
        parse_jws(dup_payload)


def test_nan_is_not_json() -> None:
    with pytest.raises(JoseError) as err:
        jose.loads_object(b'{"exp": NaN}', "payload")
    assert err.value.code == "bad_json"


def test_alg_allow_list_per_use() -> None:
    jws = parse_compact(jose.sign_compact({"alg": "PS256"}, b"{}", KEY))
    verify_signature(jws, KEY.public_key(), jose.TPM_REQUEST_ALGS)  # attReq: PS256 as MAA specifies
    for allowed in (jose.TOKEN_ALGS, jose.POLICY_ALGS):  # tokens: RS256/ES256; policy JWS: RS256 only
        with pytest.raises(JoseError) as err:
            verify_signature(jws, KEY.public_key(), allowed)
        assert err.value.code == "unsupported_alg"
    assert jose.TOKEN_ALGS == {"RS256", "ES256"}
    none = parse_compact(b64url(b'{"alg":"none"}') + "." + b64url(b"{}") + ".")
    for allowed in (jose.TOKEN_ALGS, jose.TPM_REQUEST_ALGS, jose.POLICY_ALGS):
        with pytest.raises(JoseError):
            verify_signature(none, KEY.public_key(), allowed)
    crit = parse_compact(jose.sign_compact({"alg": "RS256", "crit": ["exp"]}, b"{}", KEY))
    with pytest.raises(JoseError):
        verify_signature(crit, KEY.public_key(), jose.TOKEN_ALGS)


def test_rsa_under_2048_bits_is_refused_by_every_reader() -> None:
    from affidavit.relying_party import keys_from_jwks
    from affidavit.service.tpm_protocol import TpmProtocolError, jwk_public_key

    weak_jwk = public_jwk(WEAK.public_key())
    with pytest.raises(JoseError) as err:
        public_key_from_jwk(weak_jwk)
    assert err.value.code == "bad_key"
    assert keys_from_jwks({"keys": [{**weak_jwk, "kid": "w"}, {**public_jwk(KEY.public_key()), "kid": "k"}]}
                          ).keys() == {"k"}
    with pytest.raises(TpmProtocolError):
        jwk_public_key(weak_jwk)
    jws = parse_compact(jose.sign_compact({"alg": "RS256"}, b"{}", WEAK))
    with pytest.raises(JoseError) as err:
        verify_signature(jws, WEAK.public_key(), jose.TOKEN_ALGS)
    assert err.value.code == "bad_key"


def test_weak_policy_signer_is_a_bad_certificate() -> None:
    from affidavit.tokens import TokenError, parse_jws, verify_jws
    from tests.tokens.conftest import make_cert

    cert = make_cert("weak signer", WEAK)
    from cryptography.hazmat.primitives.serialization import Encoding

    header = {"alg": "RSA256", "x5c": [jose.b64std_encode(cert.public_bytes(Encoding.DER))]}
    jws = parse_jws(jose.sign_compact({**header, "alg": "RS256"}, b'{"AttestationPolicy":""}', WEAK))
    with pytest.raises(TokenError) as err:
        verify_jws(jws, now=NOW)
    assert err.value.code == "bad_certificate"


def test_jwk_round_trip() -> None:
    for key in (KEY.public_key(), P256.public_key()):
        back = public_key_from_jwk(public_jwk(key))
        assert public_jwk(back) == public_jwk(key)
    assert jose.canonical_jwk({"n": "x", "e": "AQAB", "kty": "RSA"}) == '{"e":"AQAB","kty":"RSA","n":"x"}'


def test_es256_signs_and_verifies() -> None:
    jws = parse_compact(jose.sign_compact({"alg": "ES256"}, b'{"a":1}', P256))
    verify_signature(jws, P256.public_key(), jose.TOKEN_ALGS)
    flipped = bytearray(jws.signature)
    flipped[5] ^= 1
    bad = jose.CompactJws(jws.text, jws.header, jws.payload, jws.signing_input, bytes(flipped))
    with pytest.raises(JoseError) as err:
        verify_signature(bad, P256.public_key(), jose.TOKEN_ALGS)
    assert err.value.code == "bad_signature"


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_input_parses_or_is_a_jose_error(text: str | bytes) -> None:
    try:
        jws = parse_compact(text)
    except JoseError:
        return
    try:
        jws.payload_object()
    except JoseError:
        pass


_VALUES = st.one_of(st.text(max_size=40), st.integers(), st.lists(st.text(max_size=20), max_size=2))


@given(st.dictionaries(st.sampled_from(["kty", "n", "e", "crv", "x", "y", "x5c"]), _VALUES, max_size=6))
def test_any_jwk_is_a_key_or_a_jose_error(jwk: dict[str, object]) -> None:
    try:
        public_key_from_jwk(jwk, use_x5c=True)
    except JoseError:
        pass


def test_header_json_text_is_exactly_what_is_signed() -> None:
    token = jose.sign_compact({"alg": "RS256", "kid": "k"}, json.dumps({"x": 1}).encode(), KEY)
    jws = parse_compact(token)
    assert jws.header == {"alg": "RS256", "kid": "k"} and json.loads(jws.payload) == {"x": 1}
