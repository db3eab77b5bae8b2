"""The one error type of the SEV-SNP verifier, and its stable codes."""

from __future__ import annotations

from affidavit.evidence import EvidenceError

REPORT_MALFORMED = "snp_report_malformed"
UNSUPPORTED_VERSION = "snp_unsupported_version"
UNSUPPORTED_SIGNATURE_ALGO = "snp_unsupported_signature_algorithm"
UNSIGNED_REPORT = "snp_report_unsigned"
CERTIFICATE_MALFORMED = "snp_certificate_malformed"
CHAIN_UNTRUSTED = "snp_chain_untrusted"
KEY_KIND_MISMATCH = "snp_key_kind_mismatch"
PRODUCT_MISMATCH = "snp_product_mismatch"
PRODUCT_UNKNOWN = "snp_product_unknown"
CERTIFICATE_NOT_VALID = "snp_certificate_not_valid"
SIGNATURE_INVALID = "snp_signature_invalid"
TCB_MISMATCH = "snp_tcb_mismatch"
CHIP_ID_MISMATCH = "snp_chip_id_mismatch"
CRL_INVALID = "snp_crl_invalid"
CRL_UNAVAILABLE = "snp_crl_unavailable"
REVOKED = "snp_revoked"
POLICY_VIOLATION = "snp_policy_violation"
TRUST_INVALID = "snp_trust_invalid"
VEK_MISSING = "snp_vek_missing"
ENDORSEMENT_MALFORMED = "snp_endorsement_malformed"

CODES = frozenset(
    {
        REPORT_MALFORMED, UNSUPPORTED_VERSION, UNSUPPORTED_SIGNATURE_ALGO, UNSIGNED_REPORT,
        CERTIFICATE_MALFORMED, CHAIN_UNTRUSTED, KEY_KIND_MISMATCH, PRODUCT_MISMATCH, PRODUCT_UNKNOWN,
        CERTIFICATE_NOT_VALID, SIGNATURE_INVALID, TCB_MISMATCH, CHIP_ID_MISMATCH, CRL_INVALID,
        CRL_UNAVAILABLE, REVOKED, POLICY_VIOLATION, TRUST_INVALID, VEK_MISSING, ENDORSEMENT_MALFORMED,
    }
)


class SnpError(EvidenceError):
    """An SEV-SNP report, its certificates or its CRL failed a check; ``code`` says which (see `CODES`)."""

    code = REPORT_MALFORMED

    def __init__(self, message: str, code: str = REPORT_MALFORMED) -> None:
        super().__init__(message, code=code)
