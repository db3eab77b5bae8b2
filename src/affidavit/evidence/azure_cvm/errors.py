"""Azure CVM evidence errors: one family under ``EvidenceError``, each with a stable ``code``."""

from __future__ import annotations

from affidavit.evidence import EvidenceError


class AzureCvmError(EvidenceError):
    """Base of every Azure confidential-VM (HCL report / vTPM) evidence failure."""

    code = "azure_cvm_invalid"


class HclFormatError(AzureCvmError):
    """The HCL report, its request data, the runtime claims JSON or a TDREPORT is malformed."""

    code = "azure_cvm_malformed"


class HclBindingError(AzureCvmError):
    """SHA-256 of the runtime claims is not the hardware report's REPORT_DATA (upper half zero), or a
    TDREPORT's TEE_TCB_INFO / TDINFO hash does not match."""

    code = "azure_cvm_binding_mismatch"


class AkMismatchError(AzureCvmError):
    """The vTPM key that signed the quote is not the runtime claims' ``HCLAkPub``."""

    code = "azure_cvm_ak_mismatch"


class TdReportMismatchError(AzureCvmError):
    """The TD quote's body is not the HCL report's TDREPORT (another TD, or a swapped quote)."""

    code = "azure_cvm_tdreport_mismatch"


class NotAttestableError(AzureCvmError):
    """The evidence is well formed but cannot be authenticated (a TDREPORT without its TD quote, a
    Trusted Launch report without a hardware report, no SNP verifier configured)."""

    code = "azure_cvm_not_attestable"


class HardwareMismatchError(AzureCvmError):
    """The hardware evidence is not the kind the HCL report declares, or breaks the paravisor rules
    (SNP VMPL not 0)."""

    code = "azure_cvm_hardware_mismatch"


class EncryptionKeyError(AzureCvmError):
    """The ephemeral encryption key, or its certification by the AK, is not acceptable."""

    code = "azure_cvm_enckey_invalid"
