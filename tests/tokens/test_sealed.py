"""AzureGuest's sealed response: round trip, tampering, and any input gives a JWT or a TokenError."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from affidavit.tokens import TokenError
from affidavit.tokens.sealed import seal_token, unseal_token

KEY = rsa.generate_private_key(65537, 2048)
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJ4IjoxfQ.c2ln"


def _decrypt(ciphertext: bytes) -> bytes:
    return KEY.decrypt(ciphertext, padding.PKCS1v15())


def test_round_trip_and_maa_envelope() -> None:
    token = seal_token(JWT, KEY.public_key())
    envelope = json.loads(base64.urlsafe_b64decode(token + "=="))
    assert set(envelope) == {"AuthenticationData", "EncryptedInnerKey", "EncryptionParams", "Jwt"}
    assert envelope["EncryptionParams"]["BlockMode"] == "ChainingModeGCM"
    assert len(base64.b64decode(envelope["EncryptionParams"]["Iv"])) == 12
    assert len(base64.b64decode(envelope["EncryptedInnerKey"])) == 256
    assert unseal_token(token, _decrypt) == JWT


@pytest.mark.parametrize("field", ["Jwt", "AuthenticationData"])
def test_a_flipped_ciphertext_or_tag_byte_fails(field: str) -> None:
    envelope = json.loads(base64.urlsafe_b64decode(seal_token(JWT, KEY.public_key()) + "=="))
    raw = bytearray(base64.b64decode(envelope[field]))
    raw[0] ^= 1
    envelope[field] = base64.b64encode(bytes(raw)).decode()
    tampered = base64.urlsafe_b64encode(json.dumps(envelope).encode()).decode()
    with pytest.raises(TokenError):
        unseal_token(tampered, _decrypt)


@given(
    st.one_of(
        st.text(max_size=300), st.binary(max_size=300).map(lambda b: base64.urlsafe_b64encode(b).decode())
    )
)
def test_any_token_unseals_or_raises_token_error(token: str) -> None:
    try:
        unseal_token(token, lambda c: bytes(32))
    except TokenError:
        pass
