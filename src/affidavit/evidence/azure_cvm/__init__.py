"""Azure confidential VM guest evidence: the HCL report, its runtime claims, the vTPM quote. Pure.

The paravisor's HCL report (vTPM NV 0x01400001) carries the hardware report (SNP ATTESTATION_REPORT or
TDX TDREPORT) whose REPORT_DATA is SHA-256 of the runtime claims JSON, which names the vTPM's AK
(``HCLAkPub``). Verification (``shared/docs/azure-cvm.md`` §3, §5, §6.6):

1. hardware: SNP through the injected ``SnpReportVerifier`` seam (VMPL 0 required), or TDX through the
   DCAP verifier on the TD quote, whose body must equal the HCL report's TDREPORT fields (whose
   TEE_TCB_INFO / TDINFO SHA-384 hashes must hold); a TDREPORT alone is *not attestable*;
2. binding: REPORT_DATA == SHA-256(runtime claims) || 32 zero bytes;
3. AK: the vTPM quote verifies with ``HCLAkPub`` (and ``AikPub``, when given, is that key);
4. vTPM quote: nonce (when one is expected), selection == ``PcrSet``, PCR digest, TCG log replay, by
   ``affidavit.evidence.tpm``.

Unprotected fields (HCL header after the magic, request-data data_size/version, TDREPORT type/CPUSVN/
MAC) are parsed but never decide trust.

Error codes (``AzureCvmError`` subclasses of ``EvidenceError``; TPM failures keep their ``tpm_*``
codes, DCAP failures their SGX codes, SNP failures the SNP verifier's): ``azure_cvm_malformed``,
``azure_cvm_binding_mismatch``, ``azure_cvm_ak_mismatch``, ``azure_cvm_tdreport_mismatch``,
``azure_cvm_not_attestable``, ``azure_cvm_hardware_mismatch``, ``azure_cvm_enckey_invalid``.

API: ``parse_hcl_report``, ``parse_runtime_claims``, ``parse_tdreport``, ``check_report_data``,
``check_hcl_structure``, ``parse_trustee_evidence``, ``VtpmQuote``, ``AzureCvmEvidence``,
``AzureCvmVerifier(snp=, dcap=, tpm=).verify(evidence, now=, nonce=, tdx_collateral=,
expected_user_data=) -> AzureCvmResult``, ``verify_vtpm``, ``SnpReportVerifier``,
``snp_verifier_from_package()``; ``certify`` checks the ephemeral key (``check_encryption_key``).
"""

from __future__ import annotations

from affidavit.evidence.azure_cvm.certify import CertifiedKey, check_encryption_key
from affidavit.evidence.azure_cvm.errors import (
    AkMismatchError,
    AzureCvmError,
    EncryptionKeyError,
    HardwareMismatchError,
    HclBindingError,
    HclFormatError,
    NotAttestableError,
    TdReportMismatchError,
)
from affidavit.evidence.azure_cvm.hcl import (
    HclReport,
    RuntimeClaims,
    TdReport,
    check_report_data,
    parse_hcl_report,
    parse_runtime_claims,
    parse_tdreport,
    rsa_jwk_public_key,
)
from affidavit.evidence.azure_cvm.trustee import parse_trustee_evidence
from affidavit.evidence.azure_cvm.verify import (
    AzureCvmEvidence,
    AzureCvmResult,
    AzureCvmVerifier,
    SnpReportVerifier,
    VtpmQuote,
    check_hcl_structure,
    snp_verifier_from_package,
    verify_vtpm,
)

__all__ = [
    "AkMismatchError",
    "AzureCvmError",
    "AzureCvmEvidence",
    "AzureCvmResult",
    "AzureCvmVerifier",
    "CertifiedKey",
    "EncryptionKeyError",
    "HardwareMismatchError",
    "HclBindingError",
    "HclFormatError",
    "HclReport",
    "NotAttestableError",
    "RuntimeClaims",
    "SnpReportVerifier",
    "TdReport",
    "TdReportMismatchError",
    "VtpmQuote",
    "check_encryption_key",
    "check_hcl_structure",
    "check_report_data",
    "parse_hcl_report",
    "parse_runtime_claims",
    "parse_tdreport",
    "parse_trustee_evidence",
    "rsa_jwk_public_key",
    "snp_verifier_from_package",
    "verify_vtpm",
]
