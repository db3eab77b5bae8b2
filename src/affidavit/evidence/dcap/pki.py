"""Certificate chains, CRLs and collateral signatures, checked once and summarised for reuse.

`verify_pck_chain` and `verify_collateral` do all time-independent work (signatures, structure,
revocation lists) and return summaries that carry the validity window; `check_time` then costs a few
comparisons per quote.

A first quote from a new platform pays for all of it, so that pass does each thing once: a certificate
signature repeated across chains (the PCK CA in the PCK chain and the PCK CRL chain, the TCB signer in
the TCB Info and QE identity chains) is verified once per pass (`Seen`, keyed by TBS, signature and
signer key, so a differently signed copy is checked again); a root is trusted by its public key (looked
up by its DER SPKI), and its self-signature is verified only for an edition that is not a pinned
certificate; names, SPKIs and the PCK SGX extension are read from the signed DER (`names`, `pck`), not
from `cryptography`'s Python objects; the signed bytes are hashed once per signature; CRL revocation is
looked up rather than listed. That is 7 ECDSA verifications and 2 CRL signatures for an uncached quote.

This module is also the collateral cache's gate (`verify_collateral_item`, used by
`affidavit.collateral.verify`): one implementation of Intel's chain, CRL and signature rules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import SignatureAlgorithmOID

from affidavit.bounded import BoundedDict
from affidavit.evidence import EvidenceError, der
from affidavit.evidence.dcap.collateral import SgxCollateral
from affidavit.evidence.dcap.names import Names, cert_names, common_name, crl_issuer, pck_ca_kind
from affidavit.evidence.dcap.pck import PckExtension, pck_extension_in
from affidavit.evidence.dcap.trust import TrustAnchors

ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_ECDSA_PREHASHED = ec.ECDSA(utils.Prehashed(hashes.SHA256()))


def fail(code: str, message: str) -> EvidenceError:
    return EvidenceError(message, code=code)


def ecdsa_ok(
    key: ec.EllipticCurvePublicKey, der_signature: bytes, data: bytes, digest: bytes | None = None
) -> bool:
    """The one place DCAP checks an ECDSA-SHA256 signature (so tests and benchmarks can count them).

    ``digest``: SHA-256 of ``data`` when the caller already has it (the signature memo does), so the
    signed bytes are hashed once."""
    try:
        if digest is not None:
            key.verify(der_signature, digest, _ECDSA_PREHASHED)
        else:
            key.verify(der_signature, data, ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def _der_integer(value: bytes) -> bytes | None:
    """The DER INTEGER of a positive big-endian number (as ``encode_dss_signature`` writes it: minimal,
    a zero byte before a high bit), None for zero."""
    digits = value.lstrip(b"\0")
    if not digits:
        return None
    if digits[0] & 0x80:
        digits = b"\0" + digits
    return b"\x02" + bytes((len(digits),)) + digits


def raw_ecdsa_ok(
    key: ec.EllipticCurvePublicKey,
    sig: bytes,
    data: bytes,
    seen: tuple[Seen, bytes] | None = None,
) -> bool:
    """Check a raw r||s P-256 signature; with ``seen`` = (memo, the key's SPKI), each distinct signature
    once."""
    if len(sig) != 64:
        return False
    r, s = _der_integer(sig[:32]), _der_integer(sig[32:])
    if r is None or s is None:
        return False
    der_sig = b"\x30" + bytes((len(r) + len(s),)) + r + s  # at most 70 bytes: a one-byte length
    if seen is not None:
        return seen[0].verify(key, seen[1], der_sig, data)
    return ecdsa_ok(key, der_sig, data)


def p256_key(cert: x509.Certificate, what: str, code: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise fail(code, f"{what}: unreadable public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise fail(code, f"{what}: key is not ECDSA P-256")
    return key


class Seen:
    """Signatures verified and certificates read, remembered across one verification pass or, held by a
    `DcapVerifier`, across all its quotes. The PCK CA appears in every PCK chain of its kind and in the
    PCK CRL issuer chain, the TCB signer in every TCB Info and QE identity chain, the root everywhere; a
    verifier that remembers them pays only for what is new to it (a new platform: its PCK certificate,
    QE report and quote; a new FMSPC: its TCB Info).

    ``signatures``: verified signatures as (SHA-256 of the signed bytes, signature, signer SPKI): a hit
    needs the same bytes signed by the same key with the same signature. Names and keys are remembered by
    certificate DER (the bytes ``cryptography`` parsed the certificate from), so a different certificate
    is always read afresh. ``limit``: entries per table (None: unbounded, for one pass).
    """

    def __init__(self, limit: int | None = None) -> None:
        size = limit if limit is not None else 1 << 62
        self.signatures: BoundedDict[tuple[bytes, bytes, bytes], bool] = BoundedDict(size)
        self._names: BoundedDict[bytes, Names] = BoundedDict(size)
        self._keys: BoundedDict[bytes, tuple[ec.EllipticCurvePublicKey, bytes]] = BoundedDict(size)

    def names(
        self, cert: x509.Certificate, cert_der: bytes, code: str, what: str, trust: TrustAnchors | None = None
    ) -> Names:
        """`cert_names` of ``cert``, parsed from ``cert_der``; for a root, ``trust`` has the pinned ones'."""
        names = self._names.get(cert_der)
        if names is None and trust is not None:
            names = trust.pinned.get(cert_der)
        if names is None:
            names = cert_names(cert, code, what, cert_der)
            self._names.put(cert_der, names)
        return names

    def key(
        self, cert: x509.Certificate, cert_der: bytes, names: Names, what: str, code: str
    ) -> tuple[ec.EllipticCurvePublicKey, bytes]:
        """The certificate's P-256 key and its SPKI (as in the DER, ``names.spki``)."""
        found = self._keys.get(cert_der)
        if found is None:
            found = (p256_key(cert, what, code), names.spki)
            self._keys.put(cert_der, found)
        return found

    def verify(
        self, key: ec.EllipticCurvePublicKey, key_spki: bytes, signature: bytes, signed: bytes
    ) -> bool:
        """An ECDSA-SHA256 (DER) signature by ``key``, each distinct one checked once."""
        digest = hashlib.sha256(signed).digest()
        memo = (digest, signature, key_spki)
        if memo in self.signatures:
            return True
        if not ecdsa_ok(key, signature, signed, digest):
            return False
        self.signatures.put(memo, True)
        return True


def signed_by(
    cert: x509.Certificate,
    tbs: bytes,
    key: ec.EllipticCurvePublicKey,
    key_spki: bytes,
    seen: Seen | None = None,
) -> bool:
    """Whether ``key`` (whose SPKI is ``key_spki``) signed ``cert`` (whose TBS bytes are ``tbs``), each
    distinct signature checked once per ``seen``."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return False
    if seen is not None:
        return seen.verify(key, key_spki, cert.signature, tbs)
    return ecdsa_ok(key, cert.signature, tbs)


def crl_tbs(crl_der: bytes, what: str) -> bytes:
    """The signed part of a CRL, cut from its DER (``tbs_certlist_bytes`` re-encodes every entry: ~100 µs
    for a PCK CRL of 44 entries)."""
    try:
        return der.first_element(der.read_one(crl_der, der.TAG_SEQUENCE)[1], der.TAG_SEQUENCE)
    except EvidenceError as exc:
        raise fail("collateral_malformed", f"{what} does not decode: {exc.message}") from None


def crl_signed_by(
    crl: x509.CertificateRevocationList,
    tbs: bytes,
    key: ec.EllipticCurvePublicKey,
    key_spki: bytes,
    seen: Seen,
) -> bool:
    """An ECDSA-SHA256 CRL signature over ``tbs`` (`crl_tbs`)."""
    if crl.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return False
    return seen.verify(key, key_spki, crl.signature, tbs)


@dataclass(frozen=True)
class Window:
    """A validity interval; ``parts`` names each bound for error messages."""

    not_before: datetime
    not_after: datetime
    parts: tuple[tuple[str, str, datetime, datetime], ...]  # (code, what, not_before, not_after)

    @staticmethod
    def of(parts: list[tuple[str, str, datetime, datetime]]) -> Window:
        return Window(max(p[2] for p in parts), min(p[3] for p in parts), tuple(parts))


# Window parts whose upper bound is a collateral nextUpdate (not a certificate's notAfter): the only
# bounds a collateral grace period may stretch.
GRACEABLE = frozenset({"crl_expired", "collateral_expired"})


def check_time(now: datetime, *windows: Window, grace: timedelta = timedelta(0)) -> bool:
    """Raise for the first item (in Intel's order) not valid at ``now``.

    A TCB Info, QE identity or CRL past its nextUpdate by at most ``grace`` passes; the result says
    whether any did (QvE's collateral_expiration_status). Certificate validity and every lower bound
    stay strict.
    """
    expired = False
    for w in windows:
        if w.not_before <= now <= w.not_after:
            continue
        for code, what, nb, na in w.parts:
            if now > na:
                if code in GRACEABLE and now <= na + grace:
                    expired = True
                    continue
                within = f", beyond the grace period of {grace}" if code in GRACEABLE and grace else ""
                raise fail(
                    code, f"{what} expired at {na.isoformat()} (verification time {now.isoformat()}{within})"
                )
            if now < nb:
                raise fail(
                    code, f"{what} is not valid before {nb.isoformat()} (verification time {now.isoformat()})"
                )
    return expired


def _cert_window(cert: x509.Certificate, what: str) -> tuple[str, str, datetime, datetime]:
    return ("certificate_expired", what, cert.not_valid_before_utc, cert.not_valid_after_utc)


def _crl_window(crl: x509.CertificateRevocationList, what: str) -> tuple[str, str, datetime, datetime]:
    if crl.next_update_utc is None:
        raise fail("collateral_malformed", f"{what} has no nextUpdate")
    return ("crl_expired", what, crl.last_update_utc, crl.next_update_utc)


@dataclass(frozen=True)
class VerifiedChain:
    """A PCK chain whose signatures lead to a trust anchor."""

    leaf: x509.Certificate
    intermediate: x509.Certificate
    root: x509.Certificate
    leaf_key: ec.EllipticCurvePublicKey
    leaf_issuer: bytes  # DER name content (see `names`)
    root_spki: bytes
    intermediate_spki: bytes
    extension: PckExtension
    ca: str  # "processor" | "platform"
    window: Window


def _check_root(
    root: x509.Certificate,
    root_der: bytes,
    names: Names,
    trust: TrustAnchors,
    what: str,
    code: str,
    seen: Seen,
) -> tuple[ec.EllipticCurvePublicKey, bytes]:
    """The trust anchor a chain's root certificate carries, with its SPKI.

    Trust is the root's public key. A root certificate byte-equal to a pinned one (``trust.certificates``)
    is the pinned certificate; any other edition must be self-signed by the trusted key (once per
    ``seen``), so its validity window and names are Intel's, not whoever assembled the chain.
    """
    key_spki = names.spki  # looked up as DER: the root's own key object is never needed
    anchor = trust.keys.get(key_spki)
    if anchor is None:
        raise fail(code, f"{what} ({names.cn!r}) does not carry a trusted root key")
    if names.issuer != names.subject:
        raise fail(code, f"{what} is not a self-issued root")
    if root_der not in trust.pinned and not signed_by(root, names.tbs, anchor, key_spki, seen):
        raise fail(code, f"{what} is not self-signed by its trusted key")
    return anchor, key_spki


CertDer = tuple[x509.Certificate, bytes]  # a certificate and the DER it was parsed from


def load_pck_chain_der(pem: bytes) -> tuple[CertDer, CertDer, CertDer]:
    """The three certificates of a PCK chain (leaf, intermediate, root), unverified, each with its DER."""
    from affidavit import x509load

    # Names, keys and the SGX extension are read from the DER (`names`), so the lazy fields are left be.
    certs = x509load.load_pem_certificates_der(
        pem, lambda m: fail("pck_chain_malformed", m), "PCK certificate chain", limit=3, touch=False
    )
    if len(certs) != 3:
        raise fail("pck_chain_malformed", f"PCK certificate chain has {len(certs)} certificates, expected 3")
    return certs[0], certs[1], certs[2]


def load_pck_chain(pem: bytes) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    """The three certificates of a PCK chain (leaf, intermediate, root), unverified."""
    leaf, inter, root = load_pck_chain_der(pem)
    return leaf[0], inter[0], root[0]


def ca_type(intermediate: x509.Certificate, names: Names | None = None) -> str:
    if names is None:
        names = cert_names(intermediate, "pck_chain_malformed", "PCK CA certificate")
    cn = names.cn
    kind = pck_ca_kind(cn)
    if kind is None:
        raise fail("pck_chain_malformed", f"PCK issuer {cn!r} is neither the Processor nor the Platform CA")
    return kind


def verify_pck_chain(pem: bytes, trust: TrustAnchors, seen: Seen | None = None) -> VerifiedChain:
    """Check the chain's signatures up to a trust anchor; fields that fail to decode are malformed."""
    try:
        return _verify_pck_chain(pem, trust, Seen() if seen is None else seen)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise fail("pck_chain_malformed", f"PCK certificate chain does not decode: {exc}") from None


def _verify_pck_chain(pem: bytes, trust: TrustAnchors, seen: Seen) -> VerifiedChain:
    (leaf, leaf_der), (inter, inter_der), (root, root_der) = load_pck_chain_der(pem)
    code = "pck_chain_untrusted"
    leaf_names = seen.names(leaf, leaf_der, "pck_chain_malformed", "PCK certificate")
    inter_names = seen.names(inter, inter_der, "pck_chain_malformed", "PCK CA certificate")
    root_names = seen.names(root, root_der, "pck_chain_malformed", "PCK chain root", trust)
    if "SGX Root CA" not in root_names.cn or "SGX PCK Certificate" not in leaf_names.cn:
        raise fail("pck_chain_malformed", "PCK chain certificates have unexpected subjects")
    ca = ca_type(inter, inter_names)
    anchor, root_spki = _check_root(root, root_der, root_names, trust, "PCK chain root", code, seen)
    inter_key, inter_spki = seen.key(inter, inter_der, inter_names, "PCK CA certificate", code)
    if inter_names.issuer != root_names.subject or not signed_by(
        inter, inter_names.tbs, anchor, root_spki, seen
    ):
        raise fail(code, "PCK CA certificate is not signed by the trusted root")
    leaf_key = p256_key(leaf, "PCK certificate", code)
    if leaf_names.issuer != inter_names.subject or not signed_by(leaf, leaf_names.tbs, inter_key, inter_spki):
        raise fail(code, "PCK certificate is not signed by its CA")
    window = Window.of(
        [
            _cert_window(root, "Root CA certificate (PCK chain)"),
            _cert_window(inter, "PCK CA certificate"),
            _cert_window(leaf, "PCK certificate"),
        ]
    )
    return VerifiedChain(
        leaf=leaf,
        intermediate=inter,
        root=root,
        leaf_key=leaf_key,
        leaf_issuer=leaf_names.issuer,
        root_spki=root_spki,
        intermediate_spki=inter_spki,
        extension=pck_extension_in(leaf_names.extensions),
        ca=ca,
        window=window,
    )


def revoked(crl: x509.CertificateRevocationList, serial: int) -> bool:
    """Whether ``crl`` lists ``serial`` (a lookup in Rust: iterating entries in Python costs ~1 µs each,
    and a PCK CRL can hold thousands)."""
    try:
        return crl.get_revoked_certificate_by_serial_number(serial) is not None
    except ValueError as exc:
        raise fail("collateral_malformed", f"CRL entries do not decode: {exc}") from None


@dataclass(frozen=True)
class VerifiedCollateral:
    """Collateral whose chains, CRLs and signatures check out against a trust anchor."""

    collateral: SgxCollateral
    root_spki: bytes
    pck_crl_issuer: bytes  # DER name content (see `names`)
    pck_crl_issuer_spki: bytes
    window: Window


@dataclass(frozen=True)
class SignerChain:
    """A two-certificate collateral issuer chain (signer, root) that leads to a trust anchor."""

    signer: x509.Certificate
    signer_names: Names
    key: ec.EllipticCurvePublicKey
    key_spki: bytes
    root_names: Names
    anchor: ec.EllipticCurvePublicKey
    anchor_spki: bytes


# The role a collateral issuer chain's signer must have (a substring of its common name), by document.
TCB_SIGNER_ROLE = "TCB Signing"  # TCB Info and QE identity
PCK_CRL_SIGNER_ROLE = "CA"  # the PCK CRL: the Processor or Platform CA


def signer_chain(
    chain: tuple[x509.Certificate, ...],
    ders: tuple[bytes, ...],
    trust: TrustAnchors,
    what: str,
    role: str,
    seen: Seen,
) -> SignerChain:
    """Check a collateral issuer chain (``ders``: each certificate's DER): exactly (signer, root), the
    root a trust anchor, the signer's common name containing ``role``, issued (names as DER) and signed
    (ECDSA-SHA256) by the root."""
    code = "collateral_chain_untrusted"
    if len(chain) != 2 or len(ders) != 2:
        raise fail(code, f"{what} has {len(chain)} certificates, expected 2 (signer, root)")
    signer, root = chain
    names = seen.names(signer, ders[0], "collateral_malformed", f"{what} signer")
    root_names = seen.names(root, ders[1], "collateral_malformed", f"{what} root", trust)
    anchor, anchor_spki = _check_root(root, ders[1], root_names, trust, f"{what} root", code, seen)
    if role not in names.cn:
        raise fail(code, f"{what} signer {names.cn!r} is not an {role!r} certificate")
    key, key_spki = seen.key(signer, ders[0], names, f"{what} signer", code)
    if names.issuer != root_names.subject or not signed_by(signer, names.tbs, anchor, anchor_spki, seen):
        raise fail(code, f"{what} signer is not signed by the trusted root")
    return SignerChain(signer, names, key, key_spki, root_names, anchor, anchor_spki)


def check_root_crl(
    crl: x509.CertificateRevocationList,
    crl_der: bytes,
    keys: list[tuple[ec.EllipticCurvePublicKey, bytes]],
    root_subject: bytes | None,
    seen: Seen,
) -> None:
    """The Root CA CRL is signed by one of ``keys`` (anchor, SPKI) and, when the root certificate is
    known, issued by its subject."""
    tbs = crl_tbs(crl_der, "Root CA CRL")
    issuer = crl_issuer(tbs, "collateral_malformed", "Root CA CRL")
    if root_subject is not None and issuer != root_subject:
        raise fail("crl_invalid", "Root CA CRL is not issued by the trusted root")
    if not any(crl_signed_by(crl, tbs, key, key_spki, seen) for key, key_spki in keys):
        raise fail("crl_invalid", "Root CA CRL is not signed by the trusted root")


def check_pck_crl(
    crl: x509.CertificateRevocationList, crl_der: bytes, issuer_chain: SignerChain, seen: Seen
) -> bytes:
    """The PCK CRL is issued (names as DER) and signed by its issuer chain's CA; returns its issuer."""
    tbs = crl_tbs(crl_der, "PCK CRL")
    issuer = crl_issuer(tbs, "collateral_malformed", "PCK CRL")
    if issuer != issuer_chain.signer_names.subject or not crl_signed_by(
        crl, tbs, issuer_chain.key, issuer_chain.key_spki, seen
    ):
        raise fail("crl_invalid", "PCK CRL is not signed by its issuer chain's CA")
    return issuer


def check_not_revoked(root_crl: x509.CertificateRevocationList, cert: x509.Certificate, what: str) -> None:
    if revoked(root_crl, cert.serial_number):
        raise fail("collateral_revoked", f"{what} certificate is revoked by the Root CA CRL")


def check_signed_document(chain: SignerChain, signature: bytes, body: bytes, what: str, seen: Seen) -> None:
    """A TCB Info or QE identity: ``signature`` (raw r||s) by the chain's signer over the exact ``body``."""
    if not raw_ecdsa_ok(chain.key, signature, body, (seen, chain.key_spki)):
        raise fail("collateral_signature_invalid", f"{what} signature does not verify")


WindowPart = tuple[str, str, datetime, datetime]  # (code, what, not_before, not_after)


def chain_window_parts(chain: tuple[x509.Certificate, ...], what: str) -> list[WindowPart]:
    return [
        _cert_window(chain[0], f"{what} signer certificate"),
        _cert_window(chain[1], f"Root CA certificate ({what})"),
    ]


def verify_collateral(c: SgxCollateral, trust: TrustAnchors, seen: Seen | None = None) -> VerifiedCollateral:
    """Check every collateral chain, CRL and signature against the trust anchors.

    ``seen``: certificate signatures already verified in this pass (e.g. the PCK CA by the PCK chain).
    """
    try:
        return _verify_collateral(c, trust, Seen() if seen is None else seen)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise fail("collateral_malformed", f"collateral certificates or CRLs do not decode: {exc}") from None


def _verify_collateral(c: SgxCollateral, trust: TrustAnchors, seen: Seen) -> VerifiedCollateral:
    der_of = c.certificate_der
    tcb = signer_chain(
        c.tcb_info_issuer_chain,
        der_of["tcb_info_issuer_chain"],
        trust,
        "TCB Info issuer chain",
        TCB_SIGNER_ROLE,
        seen,
    )
    qe = signer_chain(
        c.qe_identity_issuer_chain,
        der_of["qe_identity_issuer_chain"],
        trust,
        "QE identity issuer chain",
        TCB_SIGNER_ROLE,
        seen,
    )
    crl = signer_chain(
        c.pck_crl_issuer_chain,
        der_of["pck_crl_issuer_chain"],
        trust,
        "PCK CRL issuer chain",
        PCK_CRL_SIGNER_ROLE,
        seen,
    )
    root_spki, root_key = tcb.anchor_spki, tcb.anchor
    if qe.anchor_spki != root_spki or crl.anchor_spki != root_spki:
        raise fail("collateral_chain_untrusted", "collateral issuer chains end in different roots")
    root_cert = c.tcb_info_issuer_chain[1]
    check_root_crl(c.root_ca_crl, c.der["root_ca_crl"], [(root_key, root_spki)], tcb.root_names.subject, seen)
    pck_crl_issuer = check_pck_crl(c.pck_crl, c.der["pck_crl"], crl, seen)
    tcb_signer, qe_signer, crl_signer = tcb.signer, qe.signer, crl.signer
    for cert, what in (
        (tcb_signer, "TCB Info signing"),
        (qe_signer, "QE identity signing"),
        (crl_signer, "PCK CRL issuer"),
    ):
        check_not_revoked(c.root_ca_crl, cert, what)
    check_signed_document(tcb, c.tcb_info_signature, c.tcb_info_json, "TCB Info", seen)
    check_signed_document(qe, c.qe_identity_signature, c.qe_identity_json, "QE identity", seen)
    parts = [
        _crl_window(c.root_ca_crl, "Root CA CRL"),
        _crl_window(c.pck_crl, "PCK CRL"),
        _cert_window(crl_signer, "PCK CRL issuer certificate"),
        _cert_window(c.pck_crl_issuer_chain[1], "Root CA certificate (PCK CRL chain)"),
        _cert_window(tcb_signer, "TCB Info signing certificate"),
        _cert_window(root_cert, "Root CA certificate (TCB Info chain)"),
        ("collateral_expired", "TCB Info", c.tcb_info.issue_date, c.tcb_info.next_update),
        _cert_window(qe_signer, "QE identity signing certificate"),
        _cert_window(c.qe_identity_issuer_chain[1], "Root CA certificate (QE identity chain)"),
        ("collateral_expired", "QE identity", c.qe_identity.issue_date, c.qe_identity.next_update),
    ]
    return VerifiedCollateral(
        collateral=c,
        root_spki=root_spki,
        pck_crl_issuer=pck_crl_issuer,
        pck_crl_issuer_spki=crl.key_spki,
        window=Window.of(parts),
    )


def verify_collateral_item(
    kind: str,
    body: bytes,
    signature: bytes,
    chain: tuple[x509.Certificate, ...],
    trust: TrustAnchors,
    root_crl: x509.CertificateRevocationList | None,
) -> list[WindowPart]:
    """One collateral item alone, as a cache admits it, with the checks `verify_collateral` makes on it.

    ``kind``: "root_ca_crl" (``body`` its DER; signed by a trust anchor), "pck_crl" (DER; ``chain``
    its issuer chain) or "tcb_info" / "qe_identity" (``body`` the exact signed JSON, ``signature`` raw
    r||s). ``root_crl``: a verified Root CA CRL, to check the signer against. Returns the window parts
    of the item's certificates and CRL (the caller checks them, and the document's own dates, at its
    ``now``).
    """
    seen = Seen()
    try:
        ders = tuple(cert.public_bytes(Encoding.DER) for cert in chain)
        if kind == "root_ca_crl":
            crl = x509.load_der_x509_crl(body)
            check_root_crl(crl, body, list(zip(trust.keys.values(), trust.keys, strict=True)), None, seen)
            return [_crl_window(crl, "Root CA CRL")]
        if kind == "pck_crl":
            signer = signer_chain(chain, ders, trust, "PCK CRL issuer chain", PCK_CRL_SIGNER_ROLE, seen)
            crl = x509.load_der_x509_crl(body)
            check_pck_crl(crl, body, signer, seen)
            parts = [_crl_window(crl, "PCK CRL")]
            what = "PCK CRL issuer"
        elif kind in ("tcb_info", "qe_identity"):
            what = "TCB Info" if kind == "tcb_info" else "QE identity"
            signer = signer_chain(chain, ders, trust, f"{what} issuer chain", TCB_SIGNER_ROLE, seen)
            check_signed_document(signer, signature, body, what, seen)
            parts = []
        else:
            raise fail("collateral_malformed", f"not a collateral kind: {kind}")
        if root_crl is not None:
            check_not_revoked(root_crl, signer.signer, what)
        return [*chain_window_parts(chain, f"{what} issuer chain"), *parts]
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise fail("collateral_malformed", f"{kind} certificates or CRL do not decode: {exc}") from None


def check_chain_against(chain: VerifiedChain, vc: VerifiedCollateral) -> None:
    """Revocation and platform match of one PCK chain under one collateral set (time-independent)."""
    if chain.root_spki != vc.root_spki:
        raise fail("pck_chain_untrusted", "PCK chain and collateral end in different trusted roots")
    crls = vc.collateral
    if revoked(crls.root_ca_crl, chain.intermediate.serial_number):
        raise fail("ca_revoked", "the PCK CA certificate is revoked by the Root CA CRL")
    if chain.leaf_issuer != vc.pck_crl_issuer or chain.intermediate_spki != vc.pck_crl_issuer_spki:
        raise fail(
            "crl_mismatch",
            f"the PCK CRL is issued by {common_name(vc.pck_crl_issuer)!r}, not by the "
            f"quote's PCK CA {common_name(chain.leaf_issuer)!r}",
        )
    if revoked(crls.pck_crl, chain.leaf.serial_number):
        raise fail("pck_revoked", f"the PCK certificate (serial {chain.leaf.serial_number:x}) is revoked")
    tcb = vc.collateral.tcb_info
    ext = chain.extension
    if tcb.fmspc != ext.fmspc:
        raise fail(
            "tcb_info_mismatch",
            f"TCB Info is for FMSPC {tcb.fmspc.hex().upper()}, the PCK certificate "
            f"has {ext.fmspc.hex().upper()}",
        )
    if tcb.pce_id != ext.pce_id:
        raise fail(
            "tcb_info_mismatch",
            f"TCB Info is for PCE-ID {tcb.pce_id.hex()}, the PCK certificate has {ext.pce_id.hex()}",
        )
