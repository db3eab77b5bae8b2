"""A simulated SNP CVM (simulated AMD PKI from wip/snp, software vTPM): the whole AzureGuest evidence path,
and its failures. Skipped until ``affidavit.evidence.snp`` / ``affidavit.simulate.snp`` are merged."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from affidavit.evidence import EvidenceError
from affidavit.evidence.azure_cvm import (
    AzureCvmEvidence,
    AzureCvmVerifier,
    HardwareMismatchError,
    HclBindingError,
    VtpmQuote,
    check_encryption_key,
    snp_verifier_from_package,
)
from affidavit.simulate.azure_cvm import SoftVtpm, hcl_report, report_data_for

NOW = datetime(2025, 6, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Any:
    snp = pytest.importorskip(
        "affidavit.simulate.snp", reason="affidavit.simulate.snp is built on branch wip/snp"
    )
    pki = snp.SimulatedAmdPki.create(now=NOW)
    return snp, pki, pki.vcek(now=NOW)


def _evidence(sim: Any, vtpm: SoftVtpm, **report: Any) -> AzureCvmEvidence:
    snp, _, vek = sim
    claims = vtpm.runtime_claims()
    report.setdefault("report_data", report_data_for(claims))
    signed = vek.report(**report)
    message, signature = vtpm.quote()
    quote = VtpmQuote(
        message,
        signature,
        vtpm.pcrs,
        tuple(vtpm.pcrs),
        len(vtpm.ak_public).to_bytes(2, "big") + vtpm.ak_public,
    )
    return AzureCvmEvidence(vtpm=quote, runtime_claims=claims, snp_report=signed, vcek_chain=vek.chain_pem)


def test_simulated_snp_cvm_verifies_end_to_end(sim: Any) -> None:
    _, pki, _ = sim
    verifier = AzureCvmVerifier(snp=snp_verifier_from_package(pki.trust()))
    vtpm = SoftVtpm()
    result = verifier.verify(_evidence(sim, vtpm), now=NOW)
    assert result.tee == "sevsnpvm" and result.hardware_claims["x-ms-sevsnpvm-vmpl"] == 0
    _, pub, info, sig = vtpm.certified_key()
    check_encryption_key(pub, info, sig, result.ak)
    # the same evidence as one HCL report blob
    blob = hcl_report(
        _evidence(sim, vtpm).snp_report or b"", vtpm.runtime_claims(), report_type=2, buffer=2600
    )
    assert (
        verifier.verify(
            dataclasses.replace(_evidence(sim, vtpm), hcl_report=blob, runtime_claims=None, snp_report=None),
            now=NOW,
        ).tee
        == "sevsnpvm"
    )


def test_snp_failures(sim: Any) -> None:
    _, pki, _ = sim
    verifier = AzureCvmVerifier(snp=snp_verifier_from_package(pki.trust()))
    vtpm = SoftVtpm()
    with pytest.raises(HardwareMismatchError):  # not the paravisor's VMPL
        verifier.verify(_evidence(sim, vtpm, vmpl=1), now=NOW)
    with pytest.raises(HclBindingError):  # REPORT_DATA of other claims
        verifier.verify(_evidence(sim, vtpm, report_data=bytes(64)), now=NOW)
    with pytest.raises(EvidenceError):  # AMD's real roots do not know the simulated PKI
        AzureCvmVerifier(snp=snp_verifier_from_package()).verify(_evidence(sim, vtpm), now=NOW)
    other = SoftVtpm()
    ev = _evidence(sim, vtpm)
    message, signature = other.quote()
    with pytest.raises(EvidenceError):  # a quote by another TPM's AK
        verifier.verify(
            dataclasses.replace(ev, vtpm=dataclasses.replace(ev.vtpm, message=message, signature=signature)),
            now=NOW,
        )


def test_a_chain_of_begin_lines_is_refused_without_quadratic_work(sim: Any) -> None:
    """The seam splits the chain by PEM armour: 64 KiB of BEGIN lines without an END took a lazy
    regular expression 1.6 s (quadratic); more BEGIN lines than a bundle may hold are refused at once."""
    import time

    _, pki, vek = sim
    verify = snp_verifier_from_package(pki.trust())
    chain = b"-----BEGIN CERTIFICATE-----" * (64 * 1024 // 27)
    start = time.perf_counter()
    with pytest.raises(EvidenceError):
        verify(vek.report(), chain, NOW)
    assert time.perf_counter() - start < 0.3


def test_the_seam_checks_the_crl_it_is_given_and_its_product(sim: Any) -> None:
    """With CRLs looked up (``crl`` not None) the chain must be of their product; a revoked VCEK is
    refused; ``require_crl`` refuses a report without its ARK's CRL."""
    snp, pki, vek = sim
    verify = snp_verifier_from_package(pki.trust())
    report = vek.report()
    empty = pki.crl([], now=NOW)
    assert verify(report, vek.chain_pem, NOW, (empty,), "Milan")["x-ms-sevsnpvm-vmpl"] == 0
    revoked = pki.crl([vek.certificate.serial_number], issuer="ask", now=NOW)
    for crl, product, code in (((empty,), "Genoa", "snp_crl_unavailable"), ((), None, "snp_crl_unavailable"),
                               ((empty, revoked), "Milan", "snp_revoked")):
        with pytest.raises(EvidenceError) as caught:
            verify(report, vek.chain_pem, NOW, crl, product)
        assert caught.value.code == code
    strict = snp_verifier_from_package(pki.trust(), require_crl=True)
    with pytest.raises(EvidenceError) as caught:
        strict(report, vek.chain_pem, NOW, (), "Milan")
    assert caught.value.code == "snp_crl_unavailable"
    assert strict(report, vek.chain_pem, NOW, (empty,), "Milan")
