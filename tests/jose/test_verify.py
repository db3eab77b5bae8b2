"""The shared JWS signature check: every RFC 7518 RS/PS/ES algorithm, and False (never an exception)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from affidavit.jose import ALGORITHMS, HASHES, signature_ok

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {"256": ec.generate_private_key(ec.SECP256R1()), "384": ec.generate_private_key(ec.SECP384R1())}
DATA = b"header.payload"


def _sign(alg: str) -> tuple[object, bytes]:
    family, hash_cls = alg[:2], HASHES[alg[2:]]
    if family == "RS":
        return RSA_KEY.public_key(), RSA_KEY.sign(DATA, padding.PKCS1v15(), hash_cls())
    if family == "PS":
        pss = padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=padding.PSS.DIGEST_LENGTH)
        return RSA_KEY.public_key(), RSA_KEY.sign(DATA, pss, hash_cls())
    key = EC_KEYS.get(alg[2:], EC_KEYS["384"])
    size = (key.curve.key_size + 7) // 8
    r, s = decode_dss_signature(key.sign(DATA, ec.ECDSA(hash_cls())))
    return key.public_key(), r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.mark.parametrize("alg", sorted(a for a in ALGORITHMS if a != "ES512"))
def test_each_algorithm_verifies_and_rejects_a_flipped_bit(alg: str) -> None:
    key, signature = _sign(alg)
    assert signature_ok(alg, key, DATA, signature)
    assert not signature_ok(alg, key, DATA + b"x", signature)
    bad = bytearray(signature)
    bad[len(bad) // 2] ^= 1
    assert not signature_ok(alg, key, DATA, bytes(bad))


def test_algorithm_must_fit_the_key() -> None:
    rsa_pub, rsa_sig = _sign("RS256")
    ec_pub, ec_sig = _sign("ES256")
    assert not signature_ok("ES256", rsa_pub, DATA, rsa_sig)
    assert not signature_ok("RS256", ec_pub, DATA, ec_sig)
    assert not signature_ok("HS256", rsa_pub, DATA, rsa_sig)
    assert not signature_ok("none", rsa_pub, DATA, b"")


@given(st.sampled_from(sorted(ALGORITHMS | {"HS256", "none", ""})), st.binary(max_size=200))
def test_any_signature_bytes_give_a_boolean(alg: str, signature: bytes) -> None:
    for key in (RSA_KEY.public_key(), EC_KEYS["256"].public_key(), None):
        assert signature_ok(alg, key, DATA, signature) is False


def _ecdsa_raw(key: ec.EllipticCurvePrivateKey, hash_name: str) -> bytes:
    size = (key.curve.key_size + 7) // 8
    r, s = decode_dss_signature(key.sign(DATA, ec.ECDSA(HASHES[hash_name]())))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def test_an_es_algorithm_is_tied_to_its_curve() -> None:
    """RFC 7518 §3.4: ES256 is P-256 (64-byte signature), ES384 P-384, ES512 P-521; a valid ECDSA signature
    with the alg's hash on another curve is not that alg's signature."""
    p256, p384 = EC_KEYS["256"], EC_KEYS["384"]
    assert not signature_ok("ES256", p384.public_key(), DATA, _ecdsa_raw(p384, "256"))
    assert not signature_ok("ES384", p256.public_key(), DATA, _ecdsa_raw(p256, "384"))
    assert not signature_ok("ES512", p384.public_key(), DATA, _ecdsa_raw(p384, "512"))
    p521 = ec.generate_private_key(ec.SECP521R1())
    assert signature_ok("ES512", p521.public_key(), DATA, _ecdsa_raw(p521, "512"))
    assert not signature_ok("ES256", p521.public_key(), DATA, _ecdsa_raw(p521, "256"))


def test_sign_compact_refuses_an_es_alg_on_another_curve() -> None:
    from affidavit.jose import JoseError, sign_compact

    with pytest.raises(JoseError) as err:
        sign_compact({"alg": "ES256"}, b"{}", EC_KEYS["384"])
    assert err.value.code == "unsupported_alg"
