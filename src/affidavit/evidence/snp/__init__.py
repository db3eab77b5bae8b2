"""AMD SEV-SNP attestation reports, verified offline and purely: bytes, certificates, pinned roots, CRLs
and ``now`` in; an `SnpResult` or one `SnpError` out (reference: ../shared/docs/sev-snp.md).

Usage::

    result = verify_report(report_bytes, vek_der, chain_pem, now=now)        # AMD's roots by default
    result.claims["x-ms-sevsnpvm-launchmeasurement"], result.product, result.reported_tcb

    verifier = SnpVerifier(AmdTrust.amd())   # keep one: it caches verified chains
    verifier.verify(report_bytes, vek_der, chain_pem, now, crl=crl_der)

Modules, after go-sev-guest's split: `report` (parse, every version 1-5 and both TCB layouts), `certs`
(certificate loading, strict outer DER checks, VEK extensions), `trust` (`AmdTrust`: pinned ARKs and
the ASK/ASVKs shipped in ``amd/``), `authenticate` (chain, CRLs, report signature), `appraise`
(signing key vs certificate kind, product, TCB and chip id matching, `SnpOptions`), `claims`,
`verifier`.

Every failure is an `SnpError` (an `EvidenceError`) whose ``code`` is one of:

``snp_report_malformed``, ``snp_unsupported_version``, ``snp_unsupported_signature_algorithm``,
``snp_report_unsigned``, ``snp_certificate_malformed``, ``snp_vek_missing``, ``snp_chain_untrusted``,
``snp_key_kind_mismatch``, ``snp_product_mismatch``, ``snp_product_unknown``,
``snp_certificate_not_valid``, ``snp_signature_invalid``, ``snp_tcb_mismatch``, ``snp_chip_id_mismatch``,
``snp_crl_invalid``, ``snp_crl_unavailable``, ``snp_revoked``, ``snp_policy_violation``,
``snp_trust_invalid``, ``snp_endorsement_malformed`` (UVM endorsements, `uvm`).

`maa` decodes MAA's SevSnpVm ``report`` document (``SnpReport``, ``VcekCertChain``, ``Endorsements``).
"""

from affidavit.evidence.snp.appraise import SnpOptions
from affidavit.evidence.snp.authenticate import VerifiedChain, load_crls, verify_chain
from affidavit.evidence.snp.certs import VekExtensions, load_certificate, load_certificates, vek_extensions
from affidavit.evidence.snp.claims import AFFIDAVIT_PREFIX, maa_claims, platform_claims
from affidavit.evidence.snp.errors import CODES, SnpError
from affidavit.evidence.snp.report import (
    GENOA,
    MILAN,
    PRODUCTS,
    REPORT_SIZE,
    TURIN,
    SnpReport,
    TcbVersion,
    parse_report,
    product_from_cpuid,
)
from affidavit.evidence.snp.trust import AmdTrust
from affidavit.evidence.snp.verifier import SnpResult, SnpVerifier, verify_report

__all__ = [
    "AFFIDAVIT_PREFIX",
    "CODES",
    "GENOA",
    "MILAN",
    "PRODUCTS",
    "REPORT_SIZE",
    "TURIN",
    "AmdTrust",
    "SnpError",
    "SnpOptions",
    "SnpReport",
    "SnpResult",
    "SnpVerifier",
    "TcbVersion",
    "VekExtensions",
    "VerifiedChain",
    "load_certificate",
    "load_certificates",
    "load_crls",
    "maa_claims",
    "parse_report",
    "platform_claims",
    "product_from_cpuid",
    "vek_extensions",
    "verify_chain",
    "verify_report",
]
