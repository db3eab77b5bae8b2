"""DCAP quote verification in Intel's order (sgx-dcap.md §5), with per-instance caches.

A `DcapVerifier` remembers what does not change between quotes: verified collateral (by digest),
verified PCK chains (by their PEM bytes), the pairing of the two (revocation, FMSPC), QE report
signatures (a platform's QE report repeats across its quotes) and decoded attestation keys. Each cache
entry records only a check that passed on exactly those bytes, so reuse never weakens a check; time
validity is re-checked on every call. A quote then costs its own ECDSA verification, a hash and parsing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from affidavit.bounded import BoundedDict
from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap.claims import body_claims
from affidavit.evidence.dcap.collateral import SgxCollateral
from affidavit.evidence.dcap.pck import PckExtension, pck_extension_of
from affidavit.evidence.dcap.pki import (
    Seen,
    VerifiedChain,
    VerifiedCollateral,
    ca_type,
    check_chain_against,
    check_time,
    load_pck_chain,
    raw_ecdsa_ok,
    verify_collateral,
    verify_pck_chain,
)
from affidavit.evidence.dcap.quote import Quote, TdReportBody, parse_quote
from affidavit.evidence.dcap.tcb import (
    TcbOutcome,
    check_identity_kind,
    evaluate,
    match_qe_identity,
    tdx_module_level,
)
from affidavit.evidence.dcap.tcbinfo import IdentityTcbLevel
from affidavit.evidence.dcap.trust import TrustAnchors

_P256 = ec.SECP256R1()
_NO_GRACE = timedelta(0)


@dataclass(frozen=True)
class Platform:
    """What collateral a quote needs."""

    fmspc: str  # upper-case hex
    ca: str  # "processor" | "platform"
    tee: str  # "sgx" | "tdx"


def platform_of(quote: bytes | Quote) -> Platform:
    """Read FMSPC, PCK CA and TEE from a quote's (unverified) PCK certificate."""
    q = quote if isinstance(quote, Quote) else parse_quote(quote)
    leaf, inter, _ = load_pck_chain(q.pck_chain_pem)
    try:
        return Platform(fmspc=pck_extension_of(leaf).fmspc.hex().upper(), ca=ca_type(inter), tee=q.tee)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise EvidenceError(
            f"PCK certificate chain does not decode: {exc}", code="pck_chain_malformed"
        ) from None


def collateral_hashes(collateral: SgxCollateral, evidence: bytes) -> dict[str, str]:
    """The seven ``x-ms-sgx-collateral`` values (lowercase hex SHA-256).

    quotehash: the evidence bytes as submitted (for Open Enclave, the OE report with its header);
    tcbinfohash / qeidhash: the exact signed ``tcbInfo`` / ``enclaveIdentity`` JSON text;
    tcbinfocertshash / qeidcertshash: the issuer chain as concatenated DER, signer first;
    tcbinfocrlhash / qeidcrlhash: the DER Root CA CRL (the CRL that covers those chains).
    """

    def h(b: bytes) -> str:
        return hashlib.sha256(b).hexdigest()

    der = collateral.der
    root_crl = h(der["root_ca_crl"])
    return {
        "qeidcertshash": h(der["qe_identity_issuer_chain"]),
        "qeidcrlhash": root_crl,
        "qeidhash": h(collateral.qe_identity_json),
        "quotehash": h(evidence),
        "tcbinfocertshash": h(der["tcb_info_issuer_chain"]),
        "tcbinfocrlhash": root_crl,
        "tcbinfohash": h(collateral.tcb_info_json),
    }


@dataclass(frozen=True)
class DcapResult:
    """A verified quote: Intel's TCB status with advisories, the parsed quote and MAA claims."""

    tee: str
    tcb_status: str
    advisory_ids: tuple[str, ...]
    quote: Quote
    report_data: bytes
    claims: dict[str, Any]
    collateral_hashes: dict[str, str]
    qe_tcb_status: str = ""
    platform_tcb_status: str = ""
    tdx_module_tcb_status: str | None = None
    tcb_date: datetime | None = None
    tcb_evaluation_data_number: int = 0
    fmspc: str = ""
    pck: PckExtension | None = field(default=None, repr=False)
    collateral_expired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tee": self.tee,
            "status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "qe_tcb_status": self.qe_tcb_status,
            "platform_tcb_status": self.platform_tcb_status,
            "tdx_module_tcb_status": self.tdx_module_tcb_status,
            "tcb_date": None if self.tcb_date is None else self.tcb_date.isoformat(),
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
            "fmspc": self.fmspc,
            "collateral_expired": self.collateral_expired,
            "report_data": self.report_data.hex(),
            "claims": self.claims,
            "collateral_hashes": self.collateral_hashes,
        }


class DcapVerifier:
    """Verifies DCAP quotes against one set of trust anchors, caching what repeats."""

    def __init__(self, trust: TrustAnchors | None = None, *, cache_size: int = 16384) -> None:
        """``cache_size``: platforms remembered (PCK chains, QE report outcomes, attestation keys); a
        tenth as many collateral sets (one per FMSPC and TEE in use). Keys are digests, so an entry costs
        its verified objects only: about 3 KiB per platform."""
        self.trust = trust if trust is not None else TrustAnchors.intel()
        collateral_sets = max(16, cache_size // 10)
        self._collateral: BoundedDict[bytes, VerifiedCollateral] = BoundedDict(collateral_sets)
        self._chains: BoundedDict[bytes, VerifiedChain] = BoundedDict(cache_size)
        self._pairs: BoundedDict[tuple[bytes, bytes], bool] = BoundedDict(cache_size)
        self._platform: BoundedDict[bytes, TcbOutcome] = BoundedDict(cache_size)
        self._att_keys: BoundedDict[bytes, ec.EllipticCurvePublicKey] = BoundedDict(cache_size)
        self._hashes: BoundedDict[bytes, dict[str, str]] = BoundedDict(collateral_sets)
        self._bad_chains: BoundedDict[bytes, EvidenceError] = BoundedDict(cache_size)  # PEM digest -> failure
        # Signatures of the CA certificates, CRLs and collateral documents that platforms share.
        self._seen = Seen(limit=cache_size)

    def _verified_collateral(self, c: SgxCollateral, seen: Seen) -> VerifiedCollateral:
        vc = self._collateral.get(c.digest)
        if vc is None:
            vc = verify_collateral(c, self.trust, seen)
            self._collateral.put(c.digest, vc)
        return vc

    def _verified_chain(self, pem: bytes, pem_id: bytes, seen: Seen) -> VerifiedChain:
        chain = self._chains.get(pem_id)
        if chain is None:
            failed = self._bad_chains.get(pem_id)
            if failed is not None:
                raise EvidenceError(failed.message, code=failed.code)
            try:
                chain = verify_pck_chain(pem, self.trust, seen)
            except EvidenceError as exc:
                self._bad_chains.put(pem_id, exc)
                raise
            self._chains.put(pem_id, chain)
        return chain

    def platform(self, quote: bytes | Quote) -> Platform:
        """What collateral ``quote`` needs, read from its PCK certificate only once the PCK chain has
        verified to one of this verifier's trust anchors (``pck_chain_untrusted`` otherwise): collateral
        is never fetched for a platform whose quotes could not verify. Chains are cached as in
        :meth:`verify`, failures too (bounded), so a flood of one bad chain costs one check."""
        q = quote if isinstance(quote, Quote) else parse_quote(quote)
        pem = q.pck_chain_pem
        chain = self._verified_chain(pem, hashlib.sha256(pem).digest(), self._seen)
        return Platform(fmspc=chain.extension.fmspc.hex().upper(), ca=chain.ca, tee=q.tee)

    def _attestation_key(self, raw: bytes) -> ec.EllipticCurvePublicKey:
        key = self._att_keys.get(raw)
        if key is None:
            try:
                key = ec.EllipticCurvePublicKey.from_encoded_point(_P256, b"\x04" + raw)
            except ValueError:
                raise EvidenceError(
                    "the attestation key is not a P-256 point", code="quote_signature_invalid"
                ) from None
            self._att_keys.put(raw, key)
        return key

    def _platform_checks(
        self, q: Quote, pem_id: bytes, chain: VerifiedChain, vc: VerifiedCollateral, collateral: SgxCollateral
    ) -> IdentityTcbLevel | None:
        """Checks that depend only on the platform's chain, QE report and TCB (cached by the caller).

        Returns the TDX module's TCB level (None for SGX and module version 0).
        """
        pair = (collateral.digest, pem_id)
        if pair not in self._pairs:
            check_chain_against(chain, vc)
            self._pairs.put(pair, True)
        check_identity_kind(collateral.tcb_info, collateral.qe_identity, q.tee)
        # F. The TDX module identity comes before the QE report in QVL's order.
        module_level = None
        if isinstance(q.body, TdReportBody):
            module_level = tdx_module_level(collateral.tcb_info, q.body)
        # E. The QE report signature by the PCK key.
        if not raw_ecdsa_ok(chain.leaf_key, q.qe_report_signature, q.qe_report.raw):
            raise EvidenceError(
                "the QE report signature does not verify with the PCK key", code="qe_report_signature_invalid"
            )
        return module_level

    def verify(
        self,
        quote: bytes | Quote,
        collateral: SgxCollateral,
        now: datetime,
        *,
        collateral_grace: timedelta = _NO_GRACE,
    ) -> DcapResult:
        """Verify ``quote`` (bytes, or already parsed) at time ``now`` (timezone-aware).

        ``collateral_grace``: how long past its nextUpdate a TCB Info, QE identity or CRL is still
        accepted (the result is then flagged ``collateral_expired``); certificates stay strict.
        """
        if now.tzinfo is None:
            raise EvidenceError("verification time must be timezone-aware", code="invalid_time")
        if collateral_grace < _NO_GRACE:
            raise EvidenceError("the collateral grace period must not be negative", code="invalid_time")
        q = quote if isinstance(quote, Quote) else parse_quote(quote)
        evidence = q.raw if isinstance(quote, Quote) else bytes(quote)
        pem = q.pck_chain_pem
        pem_id = hashlib.sha256(pem).digest()
        # B. PCK chain, C/D. collateral (signatures once per set), then validity at `now` on every call.
        seen = self._seen
        chain = self._verified_chain(pem, pem_id, seen)
        vc = self._verified_collateral(collateral, seen)
        # Only time checks see the grace: every cache below holds time-independent results.
        expired = check_time(now, chain.window, vc.window, grace=collateral_grace)
        body = q.body
        tcb_bytes = body.raw[:120] + body.raw[584:600] if isinstance(body, TdReportBody) else b""
        # Fixed-size parts (the TEE name is three letters), so the concatenation is unambiguous.
        parts = (collateral.digest, pem_id, q.tee.encode(), q.qe_report.raw, q.qe_report_signature, tcb_bytes)
        memo_key = hashlib.sha256(b"".join(parts)).digest()
        outcome: TcbOutcome | None = self._platform.get(memo_key)
        module_level = self._platform_checks(q, pem_id, chain, vc, collateral) if outcome is None else None
        # E. The binding of the attestation key and the quote signature: per quote, never cached.
        bound = hashlib.sha256(q.attestation_key + q.qe_auth_data).digest()
        if q.qe_report.raw[320:352] != bound:
            raise EvidenceError(
                "the QE report data does not bind the attestation key and QE auth data",
                code="qe_report_data_mismatch",
            )
        qe_level = match_qe_identity(q.qe_report, collateral.qe_identity) if outcome is None else None
        if not raw_ecdsa_ok(self._attestation_key(q.attestation_key), q.signature, q.signed_region):
            raise EvidenceError(
                "the quote signature does not verify with the attestation key", code="quote_signature_invalid"
            )
        if outcome is None:
            assert qe_level is not None
            # G. Platform TCB level and status convergence.
            outcome = evaluate(collateral.tcb_info, chain.extension, body, qe_level, module_level)
            self._platform.put(memo_key, outcome)
        tcb_info = collateral.tcb_info
        hashes = self._hashes.get(collateral.digest)
        if hashes is None:
            hashes = collateral_hashes(collateral, b"")
            self._hashes.put(collateral.digest, hashes)
        hashes = {**hashes, "quotehash": hashlib.sha256(evidence).hexdigest()}
        claims = body_claims(q.body)
        if expired:
            claims["x-ms-sgx-collateral-expired"] = True
        return DcapResult(
            tee=q.tee,
            tcb_status=outcome.status,
            advisory_ids=outcome.advisory_ids,
            quote=q,
            report_data=q.body.report_data,
            claims=claims,
            collateral_hashes=hashes,
            qe_tcb_status=outcome.qe_level.status,
            platform_tcb_status=outcome.platform_level.status,
            tdx_module_tcb_status=None if outcome.module_level is None else outcome.module_level.status,
            tcb_date=outcome.platform_level.tcb_date,
            tcb_evaluation_data_number=tcb_info.tcb_evaluation_data_number,
            fmspc=chain.extension.fmspc.hex().upper(),
            pck=chain.extension,
            collateral_expired=expired,
        )


def verify_quote(
    quote: bytes,
    collateral: SgxCollateral,
    trust: TrustAnchors | None,
    now: datetime,
    *,
    collateral_grace: timedelta = timedelta(0),
) -> DcapResult:
    """Uncached one-shot verification (a fresh `DcapVerifier`)."""
    return DcapVerifier(trust).verify(quote, collateral, now, collateral_grace=collateral_grace)
