"""TPM evidence errors: one family under ``EvidenceError``, each with a stable ``code``."""

from __future__ import annotations

from affidavit.evidence import EvidenceError


class TpmError(EvidenceError):
    """Base of every TPM evidence failure."""

    code = "tpm_invalid"


class TpmFormatError(TpmError):
    """A TPM structure (TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC, PCR file) is malformed."""

    code = "tpm_malformed"


class TpmQuoteError(TpmError):
    """The attestation structure is not a TPM-generated quote (magic, type) or violates quote rules."""

    code = "tpm_quote_invalid"


class TpmSignatureError(TpmError):
    """The quote signature does not verify with the AK, or uses a scheme the AK or policy forbids."""

    code = "tpm_signature_invalid"


class TpmNonceError(TpmError):
    """The quote's extraData is not the expected nonce."""

    code = "tpm_nonce_mismatch"


class TpmPcrError(TpmError):
    """PCR values do not match the quote's pcrDigest, or required PCRs are not quoted."""

    code = "tpm_pcr_mismatch"


class TpmAkError(TpmError):
    """The attestation key is not trusted (certificate chain, registration, attributes)."""

    code = "tpm_aik_untrusted"


class EventLogError(TpmError):
    """The TCG event log cannot be parsed."""

    code = "tpm_eventlog_malformed"


class EventLogReplayError(TpmError):
    """Replaying the event log does not yield the quoted PCR values."""

    code = "tpm_eventlog_replay_mismatch"


class EventDataError(TpmError):
    """An event's data is not what its digest covers: the data was altered or forged."""

    code = "tpm_event_data_mismatch"
