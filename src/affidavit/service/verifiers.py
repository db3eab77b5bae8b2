"""The built-in attestation types' verifier factories (``AttestationType.verifier`` points here).

Each factory is called once per worker with the :class:`ServiceState` and wires the state's long-lived
objects (the DCAP verifier and its caches, the collateral provider, the TPM verifier) into an
``evidence.contract.EvidenceVerifier``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from affidavit.evidence.dcap.attest import DcapEvidenceVerifier
    from affidavit.evidence.dcap.collateral import SgxCollateral
    from affidavit.evidence.dcap.verifier import Platform
    from affidavit.evidence.tpm.attest import TpmEvidenceVerifier
    from affidavit.service.state import ServiceState

class _StateCollateral:
    """The state's collateral provider, looked up per call (it is set after the verifiers are built)."""

    def __init__(self, state: ServiceState) -> None:
        self._state = state

    async def get(self, platform: Platform) -> SgxCollateral:
        return await self._state.collateral.get(platform)  # type: ignore[no-any-return]


def _dcap(
    state: ServiceState, type_name: str, tee: str, *, open_enclave: bool = False
) -> DcapEvidenceVerifier:
    from affidavit.evidence.dcap.attest import DcapEvidenceVerifier

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


def tpm(state: ServiceState) -> TpmEvidenceVerifier:
    from affidavit.evidence.tpm.attest import TpmEvidenceVerifier

    return TpmEvidenceVerifier(state.tpm_verifier)
