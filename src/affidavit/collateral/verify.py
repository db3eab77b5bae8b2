"""The check every collateral item passes before it enters the cache: signature, chain, validity.

This is the gate, not the verifier: the DCAP verifier checks the assembled collateral again against
each quote. Trust is anchored on root public keys (Intel has issued two editions of its root
certificate with one key), never on certificate bytes. Pure: items, anchors and ``now`` in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from affidavit.collateral import CollateralError
from affidavit.collateral.items import PCK_CRL, ROOT_CA_CRL, CollateralItem, invalid

_MAX_CHAIN = 4


def _spki(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _expired(message: str) -> CollateralError:
    return CollateralError(message, code="collateral_expired")


def _check_window(what: str, start: datetime, end: datetime, now: datetime) -> None:
    if now < start:
        raise invalid(f"{what} is not valid before {start:%Y-%m-%dT%H:%M:%SZ} (now {now:%Y-%m-%dT%H:%M:%SZ})")
    if now > end:
        raise _expired(f"{what} expired at {end:%Y-%m-%dT%H:%M:%SZ} (now {now:%Y-%m-%dT%H:%M:%SZ})")


def verify_chain(
    pem: str,
    anchors: Sequence[ec.EllipticCurvePublicKey],
    now: datetime,
    root_crl: x509.CertificateRevocationList | None,
    what: str,
) -> x509.Certificate:
    """Check an issuer chain (signer first, root last) and return its signer certificate.

    The last certificate must be self-signed by a trust anchor key; each certificate must be issued and
    signed by the next, valid at ``now`` and, below the root, absent from the root CA CRL when given.
    """
    from affidavit import x509load

    certs = x509load.load_pem_certificates(pem.encode(), invalid, f"{what} issuer chain")
    if not 1 <= len(certs) <= _MAX_CHAIN:
        raise invalid(f"{what} issuer chain has {len(certs)} certificates")
    anchor_keys = {_spki(k) for k in anchors}
    root = certs[-1]
    if _spki(root.public_key()) not in anchor_keys:
        raise invalid(f"{what} issuer chain does not end in a trusted root key")
    for cert, issuer in zip(certs, [*certs[1:], root], strict=True):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            name = cert.subject.rfc4514_string()
            raise invalid(f"{what} issuer chain: {name} is not issued by the next certificate") from exc
        _check_window(
            f"{what} chain certificate {cert.subject.rfc4514_string()}",
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            now,
        )
    if root_crl is not None:
        for cert in certs[:-1]:
            if root_crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise CollateralError(
                    f"{what} signer {cert.subject.rfc4514_string()} is revoked by the root CA CRL",
                    code="collateral_revoked",
                )
    return certs[0]


def _verify_signed_json(item: CollateralItem, signer: x509.Certificate) -> None:
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise invalid(f"{item.key} signer key is not ECDSA")
    raw = bytes.fromhex(item.signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, item.body.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise invalid(f"{item.key}: signature does not verify") from exc


def _crl(item: CollateralItem) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(bytes.fromhex(item.body))


def verify_item(
    item: CollateralItem,
    anchors: Sequence[ec.EllipticCurvePublicKey],
    now: datetime,
    root_crl: CollateralItem | None = None,
) -> None:
    """Raise ``CollateralError`` unless ``item`` is authentic and valid at ``now``.

    ``root_crl`` (a verified root CA CRL item) adds the revocation check of the item's signer.
    """
    if not anchors:
        raise invalid("no trust anchors configured")
    revocations = _crl(root_crl) if root_crl is not None else None
    if item.key.kind == ROOT_CA_CRL:
        crl = _crl(item)
        if not any(crl.is_signature_valid(k) for k in anchors):
            raise invalid("root_ca_crl is not signed by a trusted root key")
    elif item.key.kind == PCK_CRL:
        signer = verify_chain(item.chain, anchors, now, revocations, str(item.key))
        crl = _crl(item)
        if crl.issuer != signer.subject or not crl.is_signature_valid(signer.public_key()):  # type: ignore[arg-type]
            raise invalid(f"{item.key} is not signed by the first certificate of its issuer chain")
    else:
        signer = verify_chain(item.chain, anchors, now, revocations, str(item.key))
        _verify_signed_json(item, signer)
    _check_window(str(item.key), item.issue_date, item.next_update, now)
