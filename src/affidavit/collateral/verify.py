"""The check every collateral item passes before it enters the cache: signature, chain, validity.

This is the gate, not the verifier: the DCAP verifier checks the assembled collateral again against
each quote. Both use one implementation of Intel's chain, CRL and signature rules
(`affidavit.evidence.dcap.pki`: issuer chains of exactly signer and root, the signer's role, names
compared as DER, ECDSA-SHA256 only, a root edition other than a pinned certificate self-signed by its
trusted key); this module only decodes an item, checks validity at ``now`` and maps the verdict to
`CollateralError`. Trust is anchored on root public keys. Pure: items, anchors and ``now`` in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.collateral import CollateralError
from affidavit.collateral.items import PCK_CRL, ROOT_CA_CRL, CollateralItem, invalid
from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap import pki
from affidavit.evidence.dcap.trust import TrustAnchors, spki

_MAX_CHAIN = 4  # certificates read from an item's PEM chain (pki then requires exactly two)


def _expired(message: str) -> CollateralError:
    return CollateralError(message, code="collateral_expired")


def _check_window(what: str, start: datetime, end: datetime, now: datetime) -> None:
    if now < start:
        raise invalid(f"{what} is not valid before {start:%Y-%m-%dT%H:%M:%SZ} (now {now:%Y-%m-%dT%H:%M:%SZ})")
    if now > end:
        raise _expired(f"{what} expired at {end:%Y-%m-%dT%H:%M:%SZ} (now {now:%Y-%m-%dT%H:%M:%SZ})")


def _decode(item: CollateralItem) -> tuple[bytes, bytes]:
    """The item's signed bytes and raw signature (b"" for CRLs)."""
    try:
        if item.key.kind in (ROOT_CA_CRL, PCK_CRL):
            return bytes.fromhex(item.body), b""
        return item.body.encode(), bytes.fromhex(item.signature)
    except ValueError as exc:
        raise invalid(f"{item.key} is not hex where hex belongs") from exc


def verify_item(
    item: CollateralItem,
    anchors: Sequence[ec.EllipticCurvePublicKey],
    now: datetime,
    root_crl: CollateralItem | None = None,
) -> None:
    """Raise ``CollateralError`` unless ``item`` is authentic and valid at ``now``.

    ``root_crl`` (a verified root CA CRL item) adds the revocation check of the item's signer.
    """
    from affidavit import x509load
    from affidavit.evidence.dcap.collateral import parse_crl

    if not anchors:
        raise invalid("no trust anchors configured")
    trust = TrustAnchors({spki(k): k for k in anchors})
    body, signature = _decode(item)
    chain: tuple[x509.Certificate, ...] = ()
    if item.key.kind != ROOT_CA_CRL:
        what = f"{item.key} issuer chain"
        chain = tuple(x509load.load_pem_certificates(item.chain.encode(), invalid, what, limit=_MAX_CHAIN))
    try:
        revocations = None if root_crl is None else parse_crl(root_crl.body, "root_ca_crl")
        parts = pki.verify_collateral_item(item.key.kind, body, signature, chain, trust, revocations)
    except EvidenceError as exc:
        code = "collateral_revoked" if exc.code == "collateral_revoked" else "collateral_invalid"
        raise CollateralError(f"{item.key}: {exc.message}", code=code) from None
    for _code, what, not_before, not_after in parts:
        _check_window(what, not_before, not_after, now)
    _check_window(str(item.key), item.issue_date, item.next_update, now)
