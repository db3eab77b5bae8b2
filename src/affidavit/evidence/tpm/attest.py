"""TPM 2.0 through the evidence contract (``evidence.contract``): the TPM protocol's ``att_data``
(``EvidenceInput.document``), bound to the challenge's qualifying data (``EvidenceInput.nonce``), verified
by the worker's :class:`TpmVerifier` under the policy's ``require_valid_aik_cert`` / ``required_pcr_mask``.
No collateral; no TCB status; the boot-log documents (``events``, ``bootEvents``, ``pcrs``) are for the
policy only; the client's ``custom_claims`` are ``CustomClaim`` incoming claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from affidavit.evidence.contract import CustomClaim, EvidenceInput, VerifiedEvidence, VerifyOptions
from affidavit.evidence.tpm.errors import TpmFormatError
from affidavit.evidence.tpm.request import ClientEvidence, extract_evidence
from affidavit.evidence.tpm.verify import TpmEvidence, TpmVerifier
from affidavit.jose import JoseError, public_key_from_jwk

# Claims of the TPM verifier's result that are JSON documents for policies, not token claims.
TPM_JSON_CLAIMS = frozenset({"events", "bootEvents", "pcrs"})


@dataclass(frozen=True)
class ParsedTpm:
    evidence: ClientEvidence
    ak_public: Any  # TPM2B_PUBLIC bytes, a public key from a JWK, or None (the certificate's key)
    nonce: bytes


class TpmEvidenceVerifier:
    """``EvidenceVerifier[ParsedTpm, None]``: the TPM protocol's ``att_data`` (``EvidenceInput.document``),
    bound to the challenge's qualifying data (``EvidenceInput.nonce``)."""

    def __init__(self, verifier: TpmVerifier) -> None:
        self._verifier = verifier  # shared by request threads: its bounded caches are thread-safe

    def parse(self, submitted: EvidenceInput) -> ParsedTpm:
        if submitted.document is None or submitted.nonce is None:
            raise TpmFormatError("TPM evidence arrives only through the TPM protocol (att_data, a challenge)")
        evidence = extract_evidence(submitted.document)
        aik = evidence.aik_pub
        ak_public: object = aik
        if isinstance(aik, dict):
            try:
                ak_public = public_key_from_jwk(aik, "aik_pub")
            except JoseError as exc:
                raise TpmFormatError(exc.message) from None
        return ParsedTpm(evidence, ak_public, submitted.nonce)

    async def collateral(self, parsed: ParsedTpm) -> None:
        return None

    def verify(
        self, parsed: ParsedTpm, collateral: None, now: datetime, options: VerifyOptions
    ) -> VerifiedEvidence:
        ev = parsed.evidence
        tpm_evidence = TpmEvidence(
            quote=ev.quote,
            signature=ev.signature,
            pcrs=ev.pcr_map(),
            ak_public=parsed.ak_public,
            ak_certificate=ev.aik_cert,
            event_log=ev.event_log,
        )
        props: Mapping[str, Any] = options.properties
        result = self._verifier.verify(
            tpm_evidence,
            parsed.nonce,
            now,
            require_valid_aik_cert=bool(props.get("require_valid_aik_cert", True)),
            required_pcr_mask=int(props.get("required_pcr_mask", 0xFFFFFF)),
        )
        claims = {k: v for k, v in result.claims.items() if k not in TPM_JSON_CLAIMS}
        documents = {k: v for k, v in result.claims.items() if k in TPM_JSON_CLAIMS}
        return VerifiedEvidence(
            claims=claims,
            policy_claims=documents,
            custom_claims=tuple(CustomClaim(n, v, t) for n, v, t in ev.custom_claims),
        )


