"""The vectors' exhaustive mutants: every byte of each integrity-protected region, flipped, is rejected;
bytes the oracle saw survive (unprotected fields) are never what a verdict depends on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from affidavit.evidence import EvidenceError
from affidavit.evidence.azure_cvm import (
    AzureCvmEvidence,
    AzureCvmVerifier,
    VtpmQuote,
    check_hcl_structure,
    parse_hcl_report,
    verify_vtpm,
)
from tests.evidence.azure_cvm.test_vectors import SNP_CASES, snp_case_evidence
from tests.evidence.azure_cvm.vectors import (
    TDX_TIMES,
    case,
    dcap,
    parse_time,
    split_evidence,
    tdx_collateral,
    tdx_evidence,
)

Judge = Callable[[AzureCvmEvidence], object]


def _flip(data: bytes, offset: int, xor: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= xor
    return bytes(out)


def _mutate(evidence: AzureCvmEvidence, target: str, offset: int, xor: int) -> AzureCvmEvidence:
    v = evidence.vtpm
    if target == "hcl":
        return dataclasses.replace(evidence, hcl_report=_flip(evidence.hcl_report or b"", offset, xor))
    if target == "tpm_message":
        return dataclasses.replace(
            evidence, vtpm=dataclasses.replace(v, message=_flip(v.message, offset, xor))
        )
    if target == "tpm_signature":
        return dataclasses.replace(
            evidence, vtpm=dataclasses.replace(v, signature=_flip(v.signature, offset, xor))
        )
    if target == "pcr":
        index, pos = divmod(offset, 32)
        pcrs = dict(v.pcrs)
        pcrs[index] = _flip(pcrs[index], pos, xor)
        return dataclasses.replace(evidence, vtpm=VtpmQuote(v.message, v.signature, pcrs))
    if target == "td":
        return dataclasses.replace(evidence, td_quote=_flip(evidence.td_quote or b"", offset, xor))
    if target == "vcek":
        return dataclasses.replace(evidence, vcek_chain=_flip(evidence.vcek_chain or b"", offset, xor))
    raise AssertionError(target)


def _offsets(spec: str) -> Iterator[int]:
    lo, hi = (int(x, 16) for x in spec.split("-"))
    return iter(range(lo, hi + 1))


def _rejected(judge: Judge, evidence: AzureCvmEvidence) -> bool:
    try:
        judge(evidence)
    except EvidenceError:
        return True
    return False


def _run(c: dict[str, Any], evidence: AzureCvmEvidence, judge: Judge, classes: set[str] | None = None) -> int:
    mutants = c["mutants"]
    xor = int(mutants["xor"], 16)
    assert not _rejected(judge, evidence), "the unmutated evidence must pass the judge"
    checked = 0
    for name, cls in mutants["classes"].items():
        if classes is not None and name not in classes:
            continue
        survivors = {int(o, 16) for o in cls["still_verified"]}
        for offset in _offsets(cls["range"]):
            mutated = _mutate(evidence, cls["target"], offset, xor)
            if cls["must_fail"]:
                assert _rejected(judge, mutated), f"{name}: flip at {offset:#x} was accepted"
            elif offset in survivors:
                assert not _rejected(judge, mutated), (
                    f"{name}: unprotected byte {offset:#x} changed the verdict"
                )
            checked += 1
    return checked


@pytest.mark.slow
def test_tdx_mutants_all_rejected() -> None:
    c = case("trustee-az-tdx-vtpm", "hcl-tdx-td-quote-vtpm")
    verifier = AzureCvmVerifier(dcap=dcap())
    now = TDX_TIMES["collateral_2025-02.json"]
    collateral = tdx_collateral("collateral_2025-02.json")

    def judge(e: AzureCvmEvidence) -> object:
        return verifier.verify(e, now=now, nonce=b"challenge", tdx_collateral=collateral)

    assert _run(c, tdx_evidence(), judge) > 4000


@pytest.mark.parametrize(
    ("set_name", "name", "file"),
    [
        ("kinvolk-az-cvm-vtpm", "hcl-tdx-no-td-quote", "hcl-report-tdx.bin"),
        ("constellation-azure", "azure-tdx-hcl-no-td-quote", "tdx_hclreport.bin"),
    ],
)
def test_tdx_structure_mutants_rejected(set_name: str, name: str, file: str) -> None:
    """Judged on hcl_structure_ok, as the vectors say for TDREPORTs without their TD quote."""
    from tests.evidence.azure_cvm.vectors import AZ

    c = case(set_name, name)
    assert c["mutants"]["judged_on"] == "hcl_structure_ok"

    def judge(e: AzureCvmEvidence) -> object:
        return check_hcl_structure(parse_hcl_report(e.hcl_report or b""))

    evidence = AzureCvmEvidence(vtpm=tdx_evidence().vtpm, hcl_report=(AZ / set_name / file).read_bytes())
    assert _run(c, evidence, judge) > 2000


SNP_PROTECTED_WITHOUT_SNP = {
    "hcl_header_magic",
    "hcl_header_other_fields",
    "request_data_report_type_hash_type_var_size",
    "request_data_data_size_version",
    "variable_data",
    "tpm_quote_message",
    "tpm_quote_signature",
    "pcr_values",
}


@pytest.mark.parametrize(
    ("set_name", "name"),
    [c for c in SNP_CASES if c[1] != "hcl-report-milan-v2"]
    + [("trustee-az-snp-vtpm-milan", "hcl-report-milan-v2")],
)
def test_snp_mutants_of_the_tpm_and_hcl_parts_rejected(set_name: str, name: str) -> None:
    """The SNP sets' mutants that do not need the SNP signature: HCL layout, binding, vTPM."""
    c = case(set_name, name)
    nonce = bytes.fromhex(c["nonce_hex"])
    now = parse_time(c["verify_at"])

    def judge(e: AzureCvmEvidence) -> object:
        runtime = check_hcl_structure(parse_hcl_report(e.hcl_report or b""))
        return verify_vtpm(e.vtpm, runtime.ak_key, nonce, now)

    assert _run(c, snp_case_evidence(set_name, name), judge, SNP_PROTECTED_WITHOUT_SNP) > 1500


@pytest.mark.slow
@pytest.mark.parametrize(("set_name", "name"), SNP_CASES[1:])
def test_snp_mutants_with_snp_package(set_name: str, name: str) -> None:
    pytest.importorskip("affidavit.evidence.snp", reason="affidavit.evidence.snp is built on branch wip/snp")
    from affidavit.evidence.azure_cvm import snp_verifier_from_package

    verifier = AzureCvmVerifier(snp=snp_verifier_from_package())
    c = case(set_name, name)
    nonce = bytes.fromhex(c["nonce_hex"])

    def judge(e: AzureCvmEvidence) -> object:
        return verifier.verify(e, now=parse_time(c["verify_at"]), nonce=nonce)

    _run(c, split_evidence(set_name, name), judge)  # the split form carries the VCEK as DER
