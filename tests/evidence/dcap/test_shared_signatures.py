"""A warm DcapVerifier checks the signatures platforms share (CA certificates, CRLs, QE identity) once:
a new platform costs its own three ECDSA verifications, a new FMSPC one more; a memo never vouches for
other bytes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from affidavit.evidence import EvidenceError
from affidavit.evidence.dcap import DcapVerifier, TrustAnchors, load_collateral, pki
from affidavit.simulate import SimulatedPki
from affidavit.simulate.platform import PlatformTcb, SimulatedPlatform

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


@pytest.fixture
def ecdsa_count(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    count = [0]
    real = pki.ecdsa_ok

    def counting(*args: object) -> bool:
        count[0] += 1
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pki, "ecdsa_ok", counting)
    yield count


def _platform(simulated: SimulatedPki, name: str, fmspc: str) -> SimulatedPlatform:
    return SimulatedPlatform(
        simulated, name=name, fmspc=bytes.fromhex(fmspc), ca="platform", tee="sgx", tcb=PlatformTcb(),
        qe_svn=8, pce_id=b"\0\0", now=NOW,
    )


def test_new_platforms_and_fmspcs_pay_only_for_their_own_signatures(ecdsa_count: list[int]) -> None:
    simulated = SimulatedPki.create(seed=7, now=NOW)
    verifier = DcapVerifier(TrustAnchors.from_pem(simulated.root_pem))
    first = _platform(simulated, "p0", "00906ED50000")
    collateral = load_collateral(first.collateral(now=NOW))
    verifier.verify(first.sgx_quote(), collateral, NOW)
    cold = ecdsa_count[0]
    assert cold == 9  # PCK CA, PCK, TCB signer, TCB Info, QE identity, 2 CRLs, QE report, quote

    ecdsa_count[0] = 0
    verifier.verify(first.sgx_quote(report_data=b"again"), collateral, NOW)
    assert ecdsa_count[0] == 1  # a platform's next quote: its own signature

    for i in range(1, 4):
        ecdsa_count[0] = 0
        verifier.verify(_platform(simulated, f"p{i}", "00906ED50000").sgx_quote(), collateral, NOW)
        assert ecdsa_count[0] == 3  # PCK certificate, QE report, quote

    other = _platform(simulated, "q0", "00A067110000")
    ecdsa_count[0] = 0
    verifier.verify(other.sgx_quote(), load_collateral(other.collateral(now=NOW)), NOW)
    assert ecdsa_count[0] == 4  # and the new FMSPC's TCB Info


def test_a_remembered_signature_never_covers_other_bytes() -> None:
    simulated = SimulatedPki.create(seed=8, now=NOW)
    verifier = DcapVerifier(TrustAnchors.from_pem(simulated.root_pem))
    platform = _platform(simulated, "p0", "00906ED50000")
    good = platform.collateral(now=NOW)
    verifier.verify(platform.sgx_quote(), load_collateral(good), NOW)
    # Same signature, other TCB Info text: the memo is keyed by what was signed.
    text = good["tcb_info"].replace('"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18')
    forged = dict(good, tcb_info=text)
    assert forged["tcb_info"] != good["tcb_info"]
    with pytest.raises(EvidenceError) as info:
        verifier.verify(platform.sgx_quote(), load_collateral(forged), NOW)
    assert info.value.code == "collateral_signature_invalid"


def test_the_memo_is_bounded() -> None:
    seen = pki.Seen(limit=16)
    simulated = SimulatedPki.create(seed=9, now=NOW)
    verifier = DcapVerifier(TrustAnchors.from_pem(simulated.root_pem), cache_size=16)
    verifier._seen = seen
    platform = _platform(simulated, "p0", "00906ED50000")
    collateral = load_collateral(platform.collateral(now=NOW))
    for i in range(40):
        verifier.verify(_platform(simulated, f"p{i}", "00906ED50000").sgx_quote(), collateral, NOW)
    assert len(seen.signatures) <= 16 and len(seen._names) <= 16 and len(seen._keys) <= 16
    assert len(verifier._chains) <= 16 and len(verifier._platform) <= 16
