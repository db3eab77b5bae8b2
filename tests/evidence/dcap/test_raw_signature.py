"""A raw r||s signature becomes the DER ``cryptography`` would write for it (`pki._der_integer`), and a
zero r or s is refused before any verification."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from affidavit.evidence.dcap import pki

_HALF = st.one_of(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 32).map(lambda zeros: b"\0" * zeros + b"\x80" * (32 - zeros)),
    st.integers(0, 31).map(lambda zeros: b"\0" * zeros + b"\x01" + b"\xff" * (31 - zeros)),
)


@given(_HALF, _HALF)
def test_der_of_a_raw_signature_is_cryptographys(r: bytes, s: bytes) -> None:
    der_r, der_s = pki._der_integer(r), pki._der_integer(s)
    ri, si = int.from_bytes(r, "big"), int.from_bytes(s, "big")
    if not ri or not si:
        assert (der_r is None) == (not ri) and (der_s is None) == (not si)
        return
    assert der_r is not None and der_s is not None
    assert b"\x30" + bytes((len(der_r) + len(der_s),)) + der_r + der_s == encode_dss_signature(ri, si)


def test_raw_signatures_verify_and_a_zero_half_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    data = b"signed bytes"
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert pki.raw_ecdsa_ok(key.public_key(), raw, data)
    assert not pki.raw_ecdsa_ok(key.public_key(), raw, data + b"!")
    assert not pki.raw_ecdsa_ok(key.public_key(), b"\0" * 32 + raw[32:], data)
    assert not pki.raw_ecdsa_ok(key.public_key(), raw[:32] + b"\0" * 32, data)
    assert not pki.raw_ecdsa_ok(key.public_key(), raw[:63], data)
