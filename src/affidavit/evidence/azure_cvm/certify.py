"""The AzureGuest ephemeral encryption key and its TPM2_Certify by the AK (azure-cvm.md §5.4).

The token is sealed to this key, and Key Vault wraps released keys to it, so it must be exactly the
key the AK certified: a TPM-resident (fixedTPM, fixedParent) RSA decryption key, not a signing key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from affidavit.evidence.azure_cvm.errors import EncryptionKeyError
from affidavit.evidence.azure_cvm.verify import tpmt_rsassa_signature
from affidavit.evidence.tpm import TpmError, TpmPublic, parse_attest, parse_public, parse_signature
from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.quote import verify_signature
from affidavit.evidence.tpm.structures import OA_DECRYPT, OA_FIXED_PARENT, OA_FIXED_TPM, OA_SIGN
from affidavit.evidence.tpm.verify import public_from_key


@dataclass(frozen=True)
class CertifiedKey:
    public: TpmPublic
    key: rsa.RSAPublicKey


def tpm2b_public_prefix(data: bytes) -> bytes:
    """The TPM2B_PUBLIC at the start of ``data`` (a tool may append the Name after it)."""
    if len(data) >= 2:
        size = int.from_bytes(data[:2], "big")
        if 0 < size <= len(data) - 2:
            return data[: 2 + size]
    return data


def check_encryption_key(
    enc_key_pub: bytes, certify_info: bytes, certify_signature: bytes, ak: rsa.RSAPublicKey
) -> CertifiedKey:
    """``EncKeyPub`` certified by the AK: the signature over ``EncKeyCertifyInfo`` verifies with the AK,
    the attest is TPM-generated and of type CERTIFY, its certified Name is ``EncKeyPub``'s Name, and the
    key is an RSA fixedTPM/fixedParent decryption key without the sign attribute."""
    try:
        enc = parse_public(tpm2b_public_prefix(bytes(enc_key_pub)))
        attest = parse_attest(bytes(certify_info))
        sig = parse_signature(tpmt_rsassa_signature(bytes(certify_signature)))
        if attest.magic != c.TPM_GENERATED_VALUE or attest.type != c.ST_ATTEST_CERTIFY:
            raise EncryptionKeyError("EncKeyCertifyInfo is not a TPM-generated TPMS_ATTEST of type CERTIFY")
        verify_signature(attest.raw, sig, public_from_key(ak))
    except TpmError as exc:
        if isinstance(exc, EncryptionKeyError):
            raise
        raise EncryptionKeyError(f"ephemeral key certification: {exc.message}") from None
    if not hmac.compare_digest(attest.certified_name, enc.name):
        raise EncryptionKeyError("the AK certified another key than EncKeyPub")
    attrs = enc.object_attributes
    need = OA_DECRYPT | OA_FIXED_TPM | OA_FIXED_PARENT
    if attrs & need != need or attrs & OA_SIGN:
        raise EncryptionKeyError(
            f"EncKeyPub attributes 0x{attrs:08x} are not a fixedTPM, fixedParent decrypt-only key"
        )
    if not isinstance(enc.public_key, rsa.RSAPublicKey) or enc.public_key.key_size < 2048:
        raise EncryptionKeyError("EncKeyPub is not an RSA key of at least 2048 bits")
    return CertifiedKey(enc, enc.public_key)
