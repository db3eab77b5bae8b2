"""Quote checks: TPM-generated magic and type, the AK's signature, the nonce, the PCR digest."""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from affidavit.evidence.tpm import constants as c
from affidavit.evidence.tpm.errors import TpmNonceError, TpmPcrError, TpmQuoteError, TpmSignatureError
from affidavit.evidence.tpm.replay import PcrValues
from affidavit.evidence.tpm.structures import Attest, PcrSelection, Signature, TpmPublic

_HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    c.ALG_SHA1: hashes.SHA1,
    c.ALG_SHA256: hashes.SHA256,
    c.ALG_SHA384: hashes.SHA384,
    c.ALG_SHA512: hashes.SHA512,
}


def check_quote_structure(attest: Attest) -> None:
    if attest.magic != c.TPM_GENERATED_VALUE:
        raise TpmQuoteError(f"TPMS_ATTEST magic 0x{attest.magic:08x} is not TPM_GENERATED_VALUE")
    if attest.type != c.ST_ATTEST_QUOTE:
        raise TpmQuoteError(f"TPMS_ATTEST type 0x{attest.type:04x} is not TPM_ST_ATTEST_QUOTE")


def verify_signature(message: bytes, sig: Signature, ak: TpmPublic, *, allow_sha1: bool = False) -> None:
    """Verify ``sig`` over the raw TPMS_ATTEST bytes with the AK, honouring the AK's fixed scheme."""
    if ak.scheme != c.ALG_NULL and (sig.sig_alg != ak.scheme or sig.hash_alg != ak.scheme_hash):
        raise TpmSignatureError(
            f"signature scheme 0x{sig.sig_alg:04x}/0x{sig.hash_alg:04x} is not the AK's "
            f"0x{ak.scheme:04x}/0x{ak.scheme_hash:04x}"
        )
    hash_cls = _HASHES.get(sig.hash_alg)
    if hash_cls is None:
        raise TpmSignatureError(f"unsupported signature hash 0x{sig.hash_alg:04x}")
    if sig.hash_alg == c.ALG_SHA1 and not allow_sha1:
        raise TpmSignatureError("SHA-1 quote signatures are not allowed")
    key = ak.public_key
    try:
        if sig.sig_alg == c.ALG_RSASSA and isinstance(key, rsa.RSAPublicKey):
            key.verify(sig.rsa, message, padding.PKCS1v15(), hash_cls())
        elif sig.sig_alg == c.ALG_RSAPSS and isinstance(key, rsa.RSAPublicKey):
            _verify_pss(key, sig.rsa, message, hash_cls)
        elif sig.sig_alg == c.ALG_ECDSA and isinstance(key, ec.EllipticCurvePublicKey):
            der = utils.encode_dss_signature(sig.r, sig.s)
            key.verify(der, message, ec.ECDSA(hash_cls()))
        else:
            raise TpmSignatureError(f"signature algorithm 0x{sig.sig_alg:04x} does not fit the AK's key type")
    except InvalidSignature:
        raise TpmSignatureError("the quote signature does not verify with the AK") from None


def _verify_pss(
    key: rsa.RSAPublicKey, sig: bytes, message: bytes, hash_cls: type[hashes.HashAlgorithm]
) -> None:
    # libtpms signs with salt = hash length; older TPMs use the maximum salt.
    try:
        key.verify(sig, message, padding.PSS(padding.MGF1(hash_cls()), padding.PSS.DIGEST_LENGTH), hash_cls())
    except InvalidSignature:
        key.verify(sig, message, padding.PSS(padding.MGF1(hash_cls()), padding.PSS.MAX_LENGTH), hash_cls())


def check_nonce(attest: Attest, nonce: bytes) -> None:
    if not hmac.compare_digest(attest.extra_data, nonce):
        raise TpmNonceError("the quote's extraData is not the expected nonce")


def pcr_digest(selection: tuple[PcrSelection, ...], pcrs: PcrValues, hash_alg: int) -> bytes:
    """H_sig(selected PCR values): banks in selection order, indices ascending within a bank."""
    fn = c.HASH_FUNCS.get(hash_alg)
    if fn is None:
        raise TpmPcrError(f"cannot compute a PCR digest with hash 0x{hash_alg:04x}")
    h = fn()
    for sel in selection:
        bank = pcrs.get(sel.bank)
        size = c.HASH_SIZES[sel.hash_alg]
        for i in sel.pcrs:
            value = None if bank is None else bank.get(i)
            if value is None:
                raise TpmPcrError(f"no value given for quoted PCR {sel.bank}:{i}")
            if len(value) != size:
                raise TpmPcrError(f"PCR {sel.bank}:{i} value is {len(value)} bytes, not {size}")
            h.update(value)
    return bytes(h.digest())


def check_pcr_digest(attest: Attest, sig: Signature, pcrs: PcrValues) -> PcrValues:
    """Check the PCR values against the quote; returns exactly the quoted values (nothing unquoted)."""
    expected = pcr_digest(attest.pcr_select, pcrs, sig.hash_alg)
    if not hmac.compare_digest(expected, attest.pcr_digest):
        raise TpmPcrError("the PCR values do not match the quote's pcrDigest")
    return {sel.bank: {i: pcrs[sel.bank][i] for i in sel.pcrs} for sel in attest.pcr_select}

