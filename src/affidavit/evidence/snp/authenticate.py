"""Authentication: VCEK <- ASK <- ARK or VLEK <- ASVK <- ARK to a pinned ARK, CRLs, and the report signature.

Chain verification (`verify_chain`) is independent of time and of the report, so callers may cache its
result by the certificate bytes; validity windows (`check_validity`) and CRLs (`check_crls`) are checked
against ``now`` on every call. Every AMD signature is RSASSA-PSS / SHA-384 / MGF1-SHA-384 / salt 48, and
exactly that is required (sev-snp.md §3.1); the VEK's own key must be ECDSA P-384.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import SignatureAlgorithmOID

from affidavit.evidence.snp.certs import (
    VCEK_CN,
    VLEK_CN,
    CertFacts,
    CertInput,
    VekExtensions,
    cert_facts,
    cn,
    is_p384,
    issuer_cn,
    load_certificates,
    product_of_name,
    spki,
    split_chain,
    vek_extensions,
)
from affidavit.evidence.snp.errors import (
    CERTIFICATE_MALFORMED,
    CERTIFICATE_NOT_VALID,
    CHAIN_UNTRUSTED,
    CRL_INVALID,
    CRL_UNAVAILABLE,
    REVOKED,
    SIGNATURE_INVALID,
    UNSIGNED_REPORT,
    VEK_MISSING,
    SnpError,
)
from affidavit.evidence.snp.report import SnpReport
from affidavit.evidence.snp.trust import AmdTrust

AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_SHA384 = hashes.SHA384()
_ECDSA_SHA384 = ec.ECDSA(_SHA384)  # immutable parameter objects, made once
AMD_PSS_ALGORITHMS = frozenset(bytes.fromhex(h) for h in (
    # RSASSA-PSS {sha384, mgf1(sha384), saltLength 48}, without and with the explicit trailerField 1
    "304106092a864886f70d01010a3034a00f300d06096086480165030402020500a11c301a06092a864886f70d010108"
    "300d06096086480165030402020500a203020130",
    "304606092a864886f70d01010a3039a00f300d06096086480165030402020500a11c301a06092a864886f70d010108"
    "300d06096086480165030402020500a203020130a303020101",
))
"""The AlgorithmIdentifiers AMD writes for RSASSA-PSS SHA-384 salt 48 (with and without the explicit
trailerField 1): certificates carrying one of them are checked without asking `cryptography` to decode
the parameters again (any other encoding takes the general path of `pss_signed_by`)."""
MAX_CRL_BYTES = 1024 * 1024
"""AMD's CRLs are a few KB; larger input is refused before parsing."""
MAX_CRLS = 4


@dataclass(frozen=True)
class Window:
    role: str  # vek | intermediate | ark
    name: str  # CN
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class VerifiedChain:
    """A VEK whose signatures up to a pinned ARK verified (time not yet checked)."""

    product: str  # Milan | Genoa | Turin
    kind: str  # VCEK | VLEK
    vek: x509.Certificate
    intermediate: x509.Certificate
    ark: x509.Certificate
    vek_key: ec.EllipticCurvePublicKey
    extensions: VekExtensions
    windows: tuple[Window, ...]
    vek_product: str | None = None  # the product line of the VEK's productName extension


def pss_signed_by(
    cert: x509.Certificate | x509.CertificateRevocationList,
    issuer: x509.Certificate,
    facts: CertFacts | None = None,
) -> bool:
    """``cert`` (or CRL) carries an AMD RSASSA-PSS SHA-384 salt-48 signature by ``issuer``'s key.
    ``facts``: the certificate's `CertFacts` (its signed bytes, algorithm and signature as loaded)."""
    if facts is not None and facts.algorithm in AMD_PSS_ALGORITHMS:
        key = issuer.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        try:
            key.verify(facts.signature, facts.tbs, AMD_PSS, _SHA384)
        except (InvalidSignature, ValueError):
            return False
        return True
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        return False
    try:
        if not isinstance(cert.signature_hash_algorithm, hashes.SHA384):
            return False
    except UnsupportedAlgorithm:
        return False
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    tbs = cert.tbs_certificate_bytes if isinstance(cert, x509.Certificate) else cert.tbs_certlist_bytes
    try:
        key.verify(cert.signature, tbs, AMD_PSS, _SHA384)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_chain(
    vek: CertInput | None, chain: CertInput | Iterable[CertInput] | None, trust: AmdTrust
) -> VerifiedChain:
    """Find and verify the VEK's path to a pinned ARK.

    ``vek``: the VCEK/VLEK (DER, PEM or certificate); None to take it from ``chain``. ``chain``: the CA
    certificates that came with the evidence (ASK/ASVK, ARK; a VEK in it is ignored when ``vek`` is
    given), identified by CN; when it holds no ASK/ASVK the trust's shipped intermediates are used. An
    ARK in ``chain`` must equal the pinned one (by key); the pinned one is what verifies."""
    memo: dict[int, CertFacts] = {}

    def names(cert: x509.Certificate) -> CertFacts:
        """The certificate's `CertFacts`, once per certificate; the trust's own come precomputed."""
        found = trust.names.get(id(cert)) or memo.get(id(cert))
        if found is None:
            found = memo[id(cert)] = cert_facts(cert)
        return found

    def split(certs: list[x509.Certificate]) -> tuple[list[x509.Certificate], ...]:
        return split_chain(certs, lambda c: names(c).cn)

    given = load_certificates(chain, trust.known, memo)
    leaf = None
    if vek is not None:
        sent = load_certificates(vek, trust.known, memo)
        if len(sent) == 1:
            leaf = sent[0]
        else:  # a bundle (THIM's vcekCert + certificateChain): the VEK and its CAs
            veks = split(sent)[0]
            if len(veks) != 1:
                raise SnpError(f"expected one VCEK/VLEK in the VEK bundle, found {len(veks)}",
                               code=CERTIFICATE_MALFORMED)
            leaf = veks[0]
            given = [c for c in sent if c is not leaf] + given
    chain_veks, chain_inters, chain_arks = split(given)
    if leaf is None:
        if not chain_veks:
            raise SnpError("no VCEK or VLEK certificate was given", code=VEK_MISSING)
        leaf = chain_veks[0]
    leaf_facts = names(leaf)
    name, leaf_issuer = leaf_facts.cn, leaf_facts.issuer
    if name not in (VCEK_CN, VLEK_CN):
        raise SnpError(f"VEK subject CN is {name!r}, not {VCEK_CN} or {VLEK_CN}", code=CHAIN_UNTRUSTED)
    if not is_p384(leaf):
        raise SnpError(f"{name} key is not ECDSA P-384", code=CERTIFICATE_MALFORMED)
    ext = vek_extensions(leaf, leaf_facts)
    if name == VCEK_CN and ext.csp_id is not None:
        raise SnpError("a VCEK must not carry a cspId extension", code=CERTIFICATE_MALFORMED)
    if name == VLEK_CN and ext.hw_id is not None:
        raise SnpError("a VLEK must not carry a hwID extension", code=CERTIFICATE_MALFORMED)

    candidates: Sequence[x509.Certificate] = chain_inters or trust.intermediates
    intermediate = None
    for cand in candidates:
        if names(cand).subject == leaf_issuer and pss_signed_by(leaf, cand, leaf_facts):
            intermediate = cand
            break
    if intermediate is None:
        raise SnpError(
            f"no ASK/ASVK among the CA certificates verifies the VEK (issuer CN {issuer_cn(leaf)})",
            code=CHAIN_UNTRUSTED,
        )
    inter_facts = names(intermediate)
    inter_name, inter_issuer = inter_facts.cn, inter_facts.issuer
    kind = "VLEK" if inter_name.startswith("SEV-VLEK-") else "VCEK"
    if name != f"SEV-{kind}":
        raise SnpError(f"{name} is issued by {inter_name}, which signs only {kind}s", code=CHAIN_UNTRUSTED)
    product = product_of_name(inter_name)
    if product is None or not trust.is_ca(intermediate):
        raise SnpError(f"{inter_name} is not an AMD ASK/ASVK", code=CHAIN_UNTRUSTED)
    ark = trust.ark_for(product)
    if ark is None:
        raise SnpError(f"no pinned ARK for {product}", code=CHAIN_UNTRUSTED)
    for sent_ark in chain_arks:
        sent_name = names(sent_ark).cn
        if sent_ark is not ark and product_of_name(sent_name) == product and spki(sent_ark) != spki(ark):
            raise SnpError(f"the {sent_name} sent with the evidence is not the pinned AMD root",
                           code=CHAIN_UNTRUSTED)
    ark_facts = names(ark)
    ark_name = ark_facts.cn
    if inter_issuer != ark_facts.subject or not pss_signed_by(intermediate, ark, inter_facts):
        raise SnpError(f"{inter_name} is not signed by the pinned ARK-{product}", code=CHAIN_UNTRUSTED)
    if not trust.is_ca(ark):  # its self-signature was checked when the trust was built (AmdTrust)
        raise SnpError(f"pinned ARK-{product} is not a CA", code=CHAIN_UNTRUSTED)
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # is_p384 above
    windows = (
        Window("vek", name, leaf.not_valid_before_utc, leaf.not_valid_after_utc),
        trust.window("intermediate", inter_name, intermediate),
        trust.window("ark", ark_name, ark),
    )
    vek_product = product_of_name(ext.product_name) if ext.product_name is not None else None
    return VerifiedChain(product, kind, leaf, intermediate, ark, key, ext, windows, vek_product)


def check_validity(chain: VerifiedChain, now: datetime) -> None:
    """All three certificates are valid at ``now`` (aware)."""
    for w in chain.windows:
        if not w.not_before <= now <= w.not_after:
            raise SnpError(
                f"{w.role} {w.name} not valid at {now.isoformat()} "
                f"({w.not_before.isoformat()} .. {w.not_after.isoformat()})",
                code=CERTIFICATE_NOT_VALID,
            )


CrlInput = bytes | str | x509.CertificateRevocationList


def load_crls(data: CrlInput | Iterable[CrlInput] | None) -> list[x509.CertificateRevocationList]:
    """CRLs from DER, PEM (one or more blocks), `cryptography` objects or a sequence of those."""
    if data is None:
        return []
    if isinstance(data, x509.CertificateRevocationList):
        return [data]
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
        if not raw:
            return []
        if len(raw) > MAX_CRL_BYTES:
            raise SnpError(f"CRL larger than {MAX_CRL_BYTES} bytes", code=CRL_INVALID)
        try:
            if b"-----BEGIN X509 CRL-----" in raw:
                parts = [b"-----BEGIN X509 CRL-----" + p for p in raw.split(b"-----BEGIN X509 CRL-----")[1:]]
                crls = [x509.load_pem_x509_crl(p) for p in parts]
            else:
                crls = [x509.load_der_x509_crl(raw)]
            for crl in crls:  # parsed lazily: touch what the checks read, so a bad field fails here
                crl.issuer  # noqa: B018
                crl.last_update_utc  # noqa: B018
                crl.next_update_utc  # noqa: B018
                crl.signature_algorithm_oid  # noqa: B018
                list(crl)
                list(crl.extensions)
        except Exception as exc:  # noqa: BLE001 - ValueError, InvalidVersion, ...: all "not a CRL"
            raise SnpError(f"not a usable CRL: {exc}", code=CRL_INVALID) from None
        if len(crls) > MAX_CRLS:
            raise SnpError(f"more than {MAX_CRLS} CRLs", code=CRL_INVALID)
        return crls
    out: list[x509.CertificateRevocationList] = []
    for item in data:
        out.extend(load_crls(item))
        if len(out) > MAX_CRLS:
            raise SnpError(f"more than {MAX_CRLS} CRLs", code=CRL_INVALID)
    return out


def check_crl_signatures(
    chain: VerifiedChain, crls: Sequence[x509.CertificateRevocationList]
) -> list[tuple[x509.CertificateRevocationList, x509.Certificate]]:
    """Pair each CRL with the chain certificate that signed it (the ARK, or the ASK/ASVK); time-free."""
    paired = []
    for crl in crls:
        for issuer in (chain.ark, chain.intermediate):
            if crl.issuer == issuer.subject:
                if not pss_signed_by(crl, issuer):
                    raise SnpError(f"CRL of {cn(issuer)} has a bad signature", code=CRL_INVALID)
                paired.append((crl, issuer))
                break
        else:
            raise SnpError("CRL is issued by no certificate of this chain", code=CRL_INVALID)
    return paired


def check_crls(
    chain: VerifiedChain,
    paired: Sequence[tuple[x509.CertificateRevocationList, x509.Certificate]],
    now: datetime,
    *,
    require: bool = False,
) -> None:
    """Current at ``now`` and not revoking the chain: the ARK's CRL covers the ASK/ASVK (as AMD publishes
    it), an ASK/ASVK CRL covers the VEK. ``require``: an ARK-signed CRL must be among them."""
    if require and not any(issuer is chain.ark for _, issuer in paired):
        raise SnpError(f"no CRL of ARK-{chain.product} available", code=CRL_UNAVAILABLE)
    for crl, issuer in paired:
        this_update = crl.last_update_utc
        next_update = crl.next_update_utc
        if now < this_update or (next_update is not None and now > next_update):
            raise SnpError(
                f"CRL of {cn(issuer)} not current at {now.isoformat()} "
                f"({this_update.isoformat()} .. {next_update.isoformat() if next_update else 'open'})",
                code=CRL_INVALID,
            )
        subject = chain.intermediate if issuer is chain.ark else chain.vek
        if crl.get_revoked_certificate_by_serial_number(subject.serial_number) is not None:
            raise SnpError(f"{cn(subject)} (serial {subject.serial_number:x}) is revoked", code=REVOKED)


def verify_report_signature(report: SnpReport, key: ec.EllipticCurvePublicKey) -> None:
    """ECDSA P-384 / SHA-384 over bytes 0x000..0x29F with little-endian r and s (sev-snp.md §2.3)."""
    if report.signature_r == 0 and report.signature_s == 0:
        raise SnpError("the report carries no signature", code=UNSIGNED_REPORT)
    try:
        key.verify(
            encode_dss_signature(report.signature_r, report.signature_s),
            report.signed_bytes,
            _ECDSA_SHA384,
        )
    except (InvalidSignature, ValueError):
        raise SnpError("report signature does not verify with the VEK", code=SIGNATURE_INVALID) from None
