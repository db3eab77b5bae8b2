"""The built-in attestation types' verifier factories (``AttestationType.verifier`` points here).

Each factory is called once per worker with the :class:`ServiceState` and wires the state's long-lived
objects (the DCAP verifier and its caches, the collateral provider, the TPM verifier) into an
``evidence.contract.EvidenceVerifier``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from affidavit.evidence.contract import CustomClaim, EvidenceInput, VerifiedEvidence, VerifyOptions

if TYPE_CHECKING:
    from affidavit.evidence.sgx.attest import DcapEvidenceVerifier
    from affidavit.evidence.sgx.collateral import SgxCollateral
    from affidavit.evidence.sgx.verifier import Platform
    from affidavit.evidence.tpm import TpmVerifier
    from affidavit.service.state import ServiceState
    from affidavit.service.tpm_protocol import ClientEvidence

# Claims of the TPM verifier's result that are JSON documents for policies, not token claims.
TPM_JSON_CLAIMS = frozenset({"events", "bootEvents", "pcrs"})


class _StateCollateral:
    """The state's collateral provider, looked up per call (it is set after the verifiers are built)."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state

    async def get(self, platform: Platform) -> SgxCollateral:
        return await self._state.collateral.get(platform)  # type: ignore[no-any-return]


def _dcap(
    state: ServiceState, type_name: str, tee: str, *, open_enclave: bool = False
) -> DcapEvidenceVerifier:
    from affidavit.evidence.sgx.attest import DcapEvidenceVerifier

    return DcapEvidenceVerifier(
        type_name=type_name,
        tee=tee,
        verifier=state.verifier,
        provider=_StateCollateral(state),
        open_enclave=open_enclave,
        platform_lookup=state.platform_of,
    )


def sgx_enclave(state: ServiceState) -> DcapEvidenceVerifier:
    return _dcap(state, "SgxEnclave", "sgx")


def open_enclave(state: ServiceState) -> DcapEvidenceVerifier:
    return _dcap(state, "OpenEnclave", "sgx", open_enclave=True)


def tdx_vm(state: ServiceState) -> DcapEvidenceVerifier:
    return _dcap(state, "TdxVm", "tdx")


@dataclass(frozen=True)
class ParsedTpm:
    evidence: ClientEvidence
    ak_public: Any  # TPM2B_PUBLIC bytes, a public key from a JWK, or None (the certificate's key)
    nonce: bytes


class TpmEvidenceVerifier:
    """``EvidenceVerifier[ParsedTpm, None]``: the TPM protocol's ``att_data`` (``EvidenceInput.document``),
    bound to the challenge's qualifying data (``EvidenceInput.nonce``)."""

    def __init__(self, verifier: TpmVerifier, lock: threading.Lock) -> None:
        self._verifier = verifier
        self._lock = lock  # the verifier's caches are plain dicts

    def parse(self, submitted: EvidenceInput) -> ParsedTpm:
        from affidavit.service.tpm_protocol import TpmProtocolError, extract_evidence, jwk_public_key

        if submitted.document is None or submitted.nonce is None:
            raise TpmProtocolError("TPM evidence arrives only through the TPM protocol")
        evidence = extract_evidence(submitted.document)
        aik = evidence.aik_pub
        ak_public = aik if isinstance(aik, bytes) or aik is None else jwk_public_key(aik, "aik_pub")
        return ParsedTpm(evidence, ak_public, submitted.nonce)

    async def collateral(self, parsed: ParsedTpm) -> None:
        return None

    def verify(
        self, parsed: ParsedTpm, collateral: None, now: datetime, options: VerifyOptions
    ) -> VerifiedEvidence:
        from affidavit.evidence.tpm import TpmEvidence

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
        with self._lock:
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


def tpm(state: ServiceState) -> TpmEvidenceVerifier:
    return TpmEvidenceVerifier(state.tpm_verifier, state.tpm_lock)
