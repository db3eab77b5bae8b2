"""TPM 2.0 evidence: quote verification, TCG event log parse and replay, MAA's TPM claims. Pure.

Public API (everything raises a ``TpmError`` subclass of ``EvidenceError`` with a stable ``code``):

Structures (big-endian TPM wire formats, strict):
- ``parse_attest(bytes) -> Attest`` — TPMS_ATTEST: ``magic``, ``type``, ``qualified_signer``,
  ``extra_data`` (the nonce), ``clock_info``, ``firmware_version``, ``pcr_select``
  (tuple of ``PcrSelection(hash_alg, pcrs)``), ``pcr_digest``; CERTIFY bodies in ``certified_name``.
- ``parse_signature(bytes) -> Signature`` — TPMT_SIGNATURE (RSASSA, RSAPSS, ECDSA; SHA-1/256/384/512).
- ``parse_public(bytes) -> TpmPublic`` — TPM2B_PUBLIC or bare TPMT_PUBLIC (RSA, ECC): ``public_key``
  (a ``cryptography`` key), ``name`` (nameAlg || H(TPMT_PUBLIC)), ``object_attributes``, ``scheme``.
- ``key_sha256_b64(key)`` — MAA's ``aikPubHash``.
- ``formats``: tools' and go-tpm-tools' PCR/attestation files (``parse_tools_pcrs``, ...).

Quote checks (``quote`` module): ``verify_signature``, ``check_nonce``, ``pcr_digest`` (uses the
signature's hash over the selected PCRs in selection order), ``check_pcr_digest``.

Event log (little-endian TCG formats):
- ``parse_event_log(bytes) -> EventLog`` — SHA-1 legacy or crypto-agile (Spec ID, every bank);
  ``EventLog.events`` are ``Event(seq, pcr, type, digests {alg id: bytes}, data, offset)``;
  ``startup_locality`` (PCR0 initial value), ``trailing`` (ignored zero padding).
- ``replay(log) -> {bank name: {pcr: bytes}}`` — only PCRs that have events.
- ``analyze_log(bytes | EventLog) -> LogAnalysis(log, replayed, status)``: per event, whether its
  digest covers its data (``coverage`` module: verified / mismatch / unverified / external /
  not_extended); ``.mismatches`` are forged-data events.

Verification entry point:
- ``verify_tpm(TpmEvidence(quote, signature, pcrs, ak_public, ak_certificate, ak_intermediates,
  event_log, more_quotes), nonce, TpmTrust(aik_roots, aik_intermediates, registered_aks), now, *,
  require_valid_aik_cert=True, required_pcr_mask=0xFFFFFF, allow_sha1_signature=False) -> TpmResult``.
  ``TpmResult.claims`` holds MAA's incoming TPM claims: ``aikValidated``, ``aikPubHash``,
  ``tpmVersion``, ``secureBootEnabled``, ``bootDebuggingDisabled``, ``iommuEnabled``,
  ``notSafeMode``, ``notWinPE``, ``vbsEnabled``, ``vbsReportPresent`` (where the log shows them), and
  the policy-1.2 JSON claims ``events``, ``bootEvents`` (``{"Events": [...]}``) and ``pcrs``
  (``{"PCRs": [...]}``) as Python dicts. ``bootEvents`` equals ``events`` (one log per call).
- ``TpmVerifier(trust).verify(evidence, nonce, now, **options)`` — the same, with a ``TpmCache``
  it owns: verified AK certificate chains, and an ``EventCache`` (per-event data checks and JSON are
  pure functions of (type, digests, data); most events repeat across a fleet's boots). Results share
  cached JSON values: treat them as read-only.
"""

from __future__ import annotations

from affidavit.evidence.tpm.aik import TpmTrust, verify_ak_certificate
from affidavit.evidence.tpm.analysis import LogAnalysis, analyze_log
from affidavit.evidence.tpm.errors import (
    EventDataError,
    EventLogError,
    EventLogReplayError,
    TpmAkError,
    TpmError,
    TpmFormatError,
    TpmNonceError,
    TpmPcrError,
    TpmQuoteError,
    TpmSignatureError,
)
from affidavit.evidence.tpm.eventlog import Event, EventLog, SpecId, parse_event_log
from affidavit.evidence.tpm.maa_json import events_json, pcrs_json
from affidavit.evidence.tpm.quote import check_nonce, check_pcr_digest, pcr_digest, verify_signature
from affidavit.evidence.tpm.replay import PcrValues, replay
from affidavit.evidence.tpm.structures import (
    Attest,
    ClockInfo,
    PcrSelection,
    Signature,
    TpmPublic,
    key_sha256_b64,
    marshal_pcr_selection,
    parse_attest,
    parse_pcr_selection,
    parse_public,
    parse_signature,
)
from affidavit.evidence.tpm.verify import (
    DEFAULT_REQUIRED_PCR_MASK,
    TpmCache,
    TpmEvidence,
    TpmResult,
    TpmVerifier,
    public_from_key,
    verify_tpm,
)

__all__ = [
    "DEFAULT_REQUIRED_PCR_MASK",
    "Attest",
    "ClockInfo",
    "Event",
    "EventDataError",
    "EventLog",
    "EventLogError",
    "EventLogReplayError",
    "LogAnalysis",
    "PcrSelection",
    "PcrValues",
    "Signature",
    "SpecId",
    "TpmAkError",
    "TpmError",
    "TpmEvidence",
    "TpmFormatError",
    "TpmNonceError",
    "TpmPcrError",
    "TpmPublic",
    "TpmQuoteError",
    "TpmResult",
    "TpmSignatureError",
    "TpmCache",
    "TpmTrust",
    "TpmVerifier",
    "analyze_log",
    "check_nonce",
    "check_pcr_digest",
    "events_json",
    "key_sha256_b64",
    "marshal_pcr_selection",
    "parse_attest",
    "parse_event_log",
    "parse_pcr_selection",
    "parse_public",
    "parse_signature",
    "pcr_digest",
    "pcrs_json",
    "public_from_key",
    "replay",
    "verify_ak_certificate",
    "verify_signature",
    "verify_tpm",
]
