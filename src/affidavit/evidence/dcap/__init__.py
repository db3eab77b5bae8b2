"""Intel DCAP quote verification (SGX and TDX), offline and pure: bytes, collateral, trust and ``now`` in.

Usage::

    verifier = DcapVerifier(TrustAnchors.intel())          # keep one: it caches verified collateral
    result = verifier.verify(quote_bytes, load_collateral(json_text), now)
    result.tcb_status, result.advisory_ids, result.claims, result.collateral_hashes

Every failure is an `EvidenceError` whose ``code`` is one of these stable strings:

parsing
    ``quote_malformed``, ``quote_truncated``, ``quote_oversized``, ``unsupported_quote_version``,
    ``unsupported_key_type``, ``unsupported_tee_type``, ``unsupported_qe_vendor``,
    ``unsupported_cert_data_type``, ``pck_chain_malformed``, ``pck_extension_invalid``,
    ``collateral_malformed``, ``trust_anchor_invalid``, ``invalid_time``
chains and collateral
    ``pck_chain_untrusted``, ``collateral_chain_untrusted``, ``crl_invalid``, ``crl_mismatch``,
    ``collateral_signature_invalid``, ``certificate_expired``, ``crl_expired``, ``collateral_expired``,
    ``pck_revoked``, ``ca_revoked``, ``collateral_revoked``, ``tcb_info_mismatch``
the quote
    ``qe_report_signature_invalid``, ``qe_report_data_mismatch``, ``qe_identity_mismatch``,
    ``quote_signature_invalid``, ``tdx_module_mismatch``, ``tcb_not_supported``

Outside this package: ``oe_report_malformed`` (`affidavit.evidence.openenclave`) and, in the CLI,
``input_unreadable``.

Semantics are Intel QVL's with strict time checks (as dcap-qvl): anything expired at ``now`` is an error,
whereas a TCB level or QE identity marked ``Revoked`` is a *result* (``tcb_status == "Revoked"``) that
policy must reject. A PCK certificate on the CRL is an error (``pck_revoked``).

Collateral grace: ``verify(..., collateral_grace=timedelta(hours=...))`` (also `verify_quote`) accepts a TCB
Info, QE identity or CRL up to that long past its nextUpdate, so a service can ride out a PCS outage with
the collateral its cache still serves (`affidavit.collateral` serves it within the same grace). Such a
result has ``collateral_expired = True`` (Intel QvE's ``collateral_expiration_status``) and the claim
``x-ms-sgx-collateral-expired: true``, absent otherwise, so a policy can refuse it. Certificate validity,
issue dates and thisUpdate stay strict; the default grace is zero (strict). Caches hold only
time-independent results, so a lenient call never makes a later strict one pass.
"""

from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap.collateral import SgxCollateral, load_collateral, signed_json
from affidavit.evidence.dcap.pck import SGX_EXTENSION_OID, PckExtension, parse_pck_extension
from affidavit.evidence.dcap.quote import (
    Quote,
    QuoteHeader,
    SgxReportBody,
    TdReportBody,
    parse_quote,
)
from affidavit.evidence.dcap.tcbinfo import (
    EnclaveIdentity,
    IdentityTcbLevel,
    TcbInfo,
    TcbLevel,
    TdxModuleIdentity,
    parse_enclave_identity,
    parse_tcb_info,
)
from affidavit.evidence.dcap.trust import TrustAnchors
from affidavit.evidence.dcap.verifier import (
    DcapResult,
    DcapVerifier,
    Platform,
    collateral_hashes,
    platform_of,
    verify_quote,
)

__all__ = [
    "SGX_EXTENSION_OID",
    "DcapResult",
    "DcapVerifier",
    "EnclaveIdentity",
    "EvidenceError",
    "IdentityTcbLevel",
    "PckExtension",
    "Platform",
    "Quote",
    "QuoteHeader",
    "SgxCollateral",
    "SgxReportBody",
    "TcbInfo",
    "TcbLevel",
    "TdReportBody",
    "TdxModuleIdentity",
    "TrustAnchors",
    "collateral_hashes",
    "load_collateral",
    "parse_enclave_identity",
    "parse_pck_extension",
    "parse_quote",
    "parse_tcb_info",
    "platform_of",
    "signed_json",
    "verify_quote",
]
