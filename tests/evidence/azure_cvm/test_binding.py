"""The AK rule and the user-data check on a simulated TDX CVM (software vTPM, simulated Intel PKI)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from affidavit.evidence.azure_cvm import (
    AkMismatchError,
    AzureCvmEvidence,
    AzureCvmVerifier,
    HclFormatError,
    VtpmQuote,
)
from affidavit.evidence.dcap import DcapVerifier, TrustAnchors, load_collateral
from affidavit.simulate import SimulatedPlatform
from affidavit.simulate.azure_cvm import SoftVtpm, report_data_for

NOW = datetime(2025, 6, 10, tzinfo=UTC)
SIM = SimulatedPlatform.create(fmspc="00B0F0F00000", ca="platform", tee="tdx", now=NOW, name="binding")
COLLATERAL = load_collateral(json.dumps(SIM.collateral(now=NOW)))
VERIFIER = AzureCvmVerifier(dcap=DcapVerifier(TrustAnchors.from_pem(SIM.root_pem)))


def _evidence(claims_vtpm: SoftVtpm, quoting: SoftVtpm, user_data: bytes = bytes(64)) -> AzureCvmEvidence:
    claims = claims_vtpm.runtime_claims(user_data=user_data)
    message, signature = quoting.quote()
    ak = len(quoting.ak_public).to_bytes(2, "big") + quoting.ak_public
    return AzureCvmEvidence(
        vtpm=VtpmQuote(message, signature, quoting.pcrs, tuple(quoting.pcrs), ak),
        runtime_claims=claims,
        td_quote=SIM.tdx_quote(report_data=report_data_for(claims)),
    )


def test_the_quote_must_come_from_hclakpub() -> None:
    a, b = SoftVtpm(), SoftVtpm()
    assert VERIFIER.verify(_evidence(a, a), now=NOW, tdx_collateral=COLLATERAL).tee == "tdxvm"
    with pytest.raises(AkMismatchError):  # a valid quote and AikPub, but of another vTPM
        VERIFIER.verify(_evidence(a, b), now=NOW, tdx_collateral=COLLATERAL)


def test_pcr_set_must_be_the_quoted_selection() -> None:
    a = SoftVtpm()
    ev = _evidence(a, a)
    bad = AzureCvmEvidence(
        vtpm=VtpmQuote(ev.vtpm.message, ev.vtpm.signature, ev.vtpm.pcrs, (0, 1), ev.vtpm.ak_public),
        runtime_claims=ev.runtime_claims,
        td_quote=ev.td_quote,
    )
    with pytest.raises(HclFormatError, match="PcrSet"):
        VERIFIER.verify(bad, now=NOW, tdx_collateral=COLLATERAL)


def test_expected_user_data() -> None:
    a = SoftVtpm()
    data = bytes(range(48))
    ev = _evidence(a, a, user_data=data + bytes(16))
    VERIFIER.verify(ev, now=NOW, tdx_collateral=COLLATERAL, expected_user_data=data)
    with pytest.raises(HclFormatError, match="user-data"):
        VERIFIER.verify(ev, now=NOW, tdx_collateral=COLLATERAL, expected_user_data=bytes(48))
