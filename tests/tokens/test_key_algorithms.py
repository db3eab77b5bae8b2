"""ES256 keys, keys whose private half stays outside (an HSM's signer), and next keys in the ring."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from affidavit.tokens import KeyRing, NextKey, SigningKey, SoftwareSigner, TokenError, encode_jwt, jwks

from .conftest import ISSUER, NOW


class OutsideSigner:
    """A signer that is not a SoftwareSigner: what an HSM's looks like to SigningKey."""

    def __init__(self, private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        corrupt: bool = False) -> None:
        self._inner = SoftwareSigner(private)
        self.corrupt = corrupt
        self.location = "pkcs11:token=t;object=o"
        self.calls = 0

    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        sig = self._inner.sign(data)
        return sig[:-1] + bytes([sig[-1] ^ 1]) if self.corrupt else sig


def _verify(token: str, key: SigningKey) -> dict[str, object]:
    (entry,) = jwks([key])["keys"]
    return jwt.decode(token, jwt.PyJWK(entry).key, algorithms=[key.algorithm], options={"verify_aud": False})


def test_es256_key_signs_tokens_pyjwt_verifies() -> None:
    key = SigningKey.generate(ISSUER, now=NOW, algorithm="ES256")
    assert key.algorithm == "ES256" and key.bits == 256
    (entry,) = jwks([key])["keys"]
    assert (entry["kty"], entry["crv"], entry["alg"]) == ("EC", "P-256", "ES256") and "n" not in entry
    token = encode_jwt({"iss": ISSUER, "x": 1}, key, jku=ISSUER + "/certs")
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert _verify(token, key)["x"] == 1
    assert SigningKey.from_pem(key.to_pem()).kid == key.kid


@pytest.mark.parametrize("private", [rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                     ec.generate_private_key(ec.SECP256R1())], ids=["rsa", "ec"])
def test_a_key_outside_signs_its_own_certificate(
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
) -> None:
    signer = OutsideSigner(private)
    key = SigningKey.for_signer(ISSUER, signer, now=NOW)
    key.certificate.verify_directly_issued_by(key.certificate)  # self-signed by the outside key
    assert x509.load_der_x509_certificate(key.certificate_der).public_key() == private.public_key()
    assert key.location == "pkcs11:token=t;object=o" and signer.calls == 2  # the TBS and the self-test
    with pytest.raises(TokenError, match="no private key in this process"):
        key.private_key  # noqa: B018
    assert _verify(encode_jwt({"iss": ISSUER}, key, jku=None), key)["iss"] == ISSUER
    published = SigningKey.from_certificate(key.certificate_der)
    assert published.kid == key.kid and published.signer is None
    with pytest.raises(TokenError, match="only published"):
        published.sign(b"x")


def test_a_signer_that_does_not_hold_the_key_is_refused() -> None:
    with pytest.raises(TokenError, match="does not verify"):
        SigningKey.for_signer(ISSUER, OutsideSigner(ec.generate_private_key(ec.SECP256R1()), corrupt=True),
                              now=NOW)
    key = SigningKey.generate(ISSUER, now=NOW, algorithm="ES256")
    with pytest.raises(TokenError, match="do not match"):
        SigningKey.from_certificate(key.certificate, OutsideSigner(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(TokenError, match="RSA \\(RS256\\) or EC P-256"):
        SigningKey.for_signer(ISSUER, OutsideSigner(ec.generate_private_key(ec.SECP384R1())), now=NOW)


def test_next_keys_are_published_before_they_sign(signing_key: SigningKey, other_key: SigningKey) -> None:
    at = NOW + timedelta(hours=1)
    ring = KeyRing(signing_key, (), next=(NextKey(other_key, at),))
    assert [k.kid for k in ring.published(NOW)] == [signing_key.kid, other_key.kid]
    assert ring.valid_until == at and ring.find(other_key.kid) is other_key
    assert KeyRing(signing_key).valid_until is None
