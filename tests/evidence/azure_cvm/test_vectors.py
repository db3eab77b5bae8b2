"""Every case of ../shared/vectors/azure-cvm/*/expected.json: verdict, parsed fields and claims."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from affidavit.evidence import EvidenceError
from affidavit.evidence.azure_cvm import (
    AzureCvmEvidence,
    AzureCvmVerifier,
    NotAttestableError,
    check_hcl_structure,
    check_report_data,
    parse_hcl_report,
    parse_runtime_claims,
    parse_tdreport,
    parse_trustee_evidence,
    verify_vtpm,
)
from affidavit.evidence.tpm import TpmNonceError
from tests.evidence.azure_cvm.vectors import (
    AZ,
    TDX_TIMES,
    case,
    dcap,
    expected,
    parse_time,
    quote_bincode,
    quote_json,
    split_evidence,
    tdx_collateral,
    tdx_evidence,
)

HCL_FILES = [
    ("trustee-az-snp-vtpm-milan", "hcl-report-milan-v2", "hcl-report.bin"),
    ("trustee-az-snp-vtpm-milan", "evidence-v0", "split/evidence-v0/hcl_report.bin"),
    ("trustee-az-snp-vtpm-milan", "evidence-v1", "split/evidence-v1/hcl_report.bin"),
    ("trustee-az-snp-vtpm-milan", "evidence-v2", "split/evidence-v2/hcl_report.bin"),
    ("trustee-az-snp-vtpm-genoa", "evidence-genoa", "split/evidence-genoa/hcl_report.bin"),
    ("trustee-az-tdx-vtpm", "hcl-tdx-td-quote-vtpm", "hcl-report.bin"),
    ("kinvolk-az-cvm-vtpm", "hcl-snp-2023-vcek-unpublished", "hcl-report-snp.bin"),
    ("kinvolk-az-cvm-vtpm", "hcl-tdx-no-td-quote", "hcl-report-tdx.bin"),
    ("constellation-azure", "azure-tdx-hcl-no-td-quote", "tdx_hclreport.bin"),
]


@pytest.mark.parametrize(("set_name", "name", "file"), HCL_FILES, ids=[c[1] + "@" + c[0] for c in HCL_FILES])
def test_hcl_fields_and_structure(set_name: str, name: str, file: str) -> None:
    c = case(set_name, name)
    hcl = parse_hcl_report((AZ / set_name / file).read_bytes())
    want = c["hcl"]
    assert hcl.header_version == want["header_version"]
    assert hcl.report_size == want["report_size"]
    assert hcl.request_type == want["request_type"]
    assert hcl.report_type_name == want["report_type"]
    assert hcl.hash_type == want["report_data_hash_type"]
    assert len(hcl.claims) == want["variable_data_size"]
    assert hashlib.sha256(hcl.claims).hexdigest() == want["variable_data_sha256"]
    runtime = check_hcl_structure(hcl)  # binding (and TDREPORT hashes) hold: hcl_structure_ok
    assert c["expected"]["hcl_structure_ok"] is True
    assert list(runtime.keys) == want["jwk_kids"]
    assert runtime.keys["HCLAkPub"] == want["ak_jwk"]
    assert runtime.vm_configuration == want["vm_configuration"]
    assert (runtime.user_data.hex() if runtime.user_data is not None else None) == (
        want["user_data"].lower() if want["user_data"] else None
    )
    if "tdreport" in c:
        td = parse_tdreport(hcl.tdreport)
        t = c["tdreport"]
        assert td.report_data.hex() == t["report_data"]
        assert td.mrtd.hex() == t["tdinfo"]["mrtd"]
        assert td.mrseam.hex() == t["tee_tcb_info"]["mrseam"]
        assert td.tee_tcb_svn.hex() == t["tee_tcb_info"]["tee_tcb_svn"]
        assert td.xfam.hex() == t["tdinfo"]["xfam"]
        assert [r.hex() for r in td.rtmrs] == [t["tdinfo"][f"rtmr{i}"] for i in range(4)]


@pytest.mark.parametrize("collateral", sorted(TDX_TIMES))
def test_tdx_td_quote_vtpm_verifies(collateral: str) -> None:
    c = case("trustee-az-tdx-vtpm", "hcl-tdx-td-quote-vtpm")
    want = next(w for w in c["td_quote_tcb_with_existing_collateral"] if w["collateral"].endswith(collateral))
    result = AzureCvmVerifier(dcap=dcap()).verify(
        tdx_evidence(),
        now=TDX_TIMES[collateral],
        nonce=bytes.fromhex(c["nonce_hex"]),
        tdx_collateral=tdx_collateral(collateral),
    )
    assert c["expected"]["verified"] is True
    assert result.tee == "tdxvm"
    assert result.dcap.tcb_status == want["expected_tcb_status"]
    assert list(result.dcap.advisory_ids) == want["advisory_ids"]
    assert result.dcap.qe_tcb_status == want["qe_tcb_status"]
    body = c["td_quote"]["td_body"]
    for name, value in body.items():  # every TD body field the oracle lists, under MAA's tdx_* name
        claim = "tdx_td_attributes_debug" if name == "td_debug" else f"tdx_{name}"
        assert result.hardware_claims[claim] == value, claim
    assert result.dcap.fmspc.lower() == c["td_quote"]["fmspc"]
    assert result.tdreport is not None and result.tdreport.mac.hex() == c["tdreport"]["mac"]
    assert result.tpm.attest.extra_data.hex() == c["tpm"]["extra_data_nonce"]
    assert result.tpm.attest.pcr_digest.hex() == c["tpm"]["pcr_digest"]
    assert {f"pcr{i:02d}": v.hex() for i, v in result.tpm.pcrs["sha256"].items()} == c["tpm"]["pcrs_sha256"]


@pytest.mark.parametrize("form", ["evidence-v0", "evidence-v1"])
def test_tdx_trustee_json_and_split_forms_verify(form: str) -> None:
    c = case("trustee-az-tdx-vtpm", form)
    verifier = AzureCvmVerifier(dcap=dcap())
    for evidence in (
        parse_trustee_evidence((AZ / "trustee-az-tdx-vtpm" / f"{form}.json").read_bytes()),
        split_evidence("trustee-az-tdx-vtpm", form),
    ):
        result = verifier.verify(
            evidence,
            now=TDX_TIMES["collateral_2025-05.json"],
            nonce=bytes.fromhex(c["nonce_hex"]),
            tdx_collateral=tdx_collateral("collateral_2025-05.json"),
        )
        assert result.tee == "tdxvm"
        assert c["expected"]["verified"] is True


@pytest.mark.parametrize(
    ("set_name", "name", "file"),
    [
        ("kinvolk-az-cvm-vtpm", "hcl-tdx-no-td-quote", "hcl-report-tdx.bin"),
        ("constellation-azure", "azure-tdx-hcl-no-td-quote", "tdx_hclreport.bin"),
    ],
)
def test_tdx_without_td_quote_is_not_attestable(set_name: str, name: str, file: str) -> None:
    c = case(set_name, name)
    assert c["expected"]["verified"] is False and c["expected"]["hcl_structure_ok"] is True
    evidence = AzureCvmEvidence(vtpm=tdx_evidence().vtpm, hcl_report=(AZ / set_name / file).read_bytes())
    with pytest.raises(NotAttestableError) as info:
        AzureCvmVerifier(dcap=dcap()).verify(evidence, now=parse_time(None))
    assert info.value.code == "azure_cvm_not_attestable"
    assert "TD quote" in info.value.message


def test_kinvolk_vtpm_quote_with_akpub_verifies() -> None:
    c = case("kinvolk-az-cvm-vtpm", "vtpm-quote-akpub")
    d = AZ / "kinvolk-az-cvm-vtpm"
    ak = load_pem_public_key((d / "akpub.pem").read_bytes())
    result = verify_vtpm(quote_bincode((d / "quote.bin").read_bytes()), ak, b"challenge", parse_time(None))  # type: ignore[arg-type]
    assert c["expected"]["verified"] is True
    assert result.attest.pcr_digest.hex() == c["tpm"]["pcr_digest"]
    assert result.attest.qualified_signer.hex() == c["tpm"]["qualified_signer"]


SNP_CASES = [
    ("trustee-az-snp-vtpm-milan", "hcl-report-milan-v2"),
    ("trustee-az-snp-vtpm-milan", "evidence-v0"),
    ("trustee-az-snp-vtpm-milan", "evidence-v1"),
    ("trustee-az-snp-vtpm-milan", "evidence-v2"),
    ("trustee-az-snp-vtpm-genoa", "evidence-genoa"),
]


def snp_case_evidence(set_name: str, name: str) -> AzureCvmEvidence:
    d = AZ / set_name
    if name == "hcl-report-milan-v2":
        return AzureCvmEvidence(
            vtpm=quote_json(d / "tpm-quote-v1.json"),
            hcl_report=(d / "hcl-report.bin").read_bytes(),
            vcek_chain=(d / "vcek.pem").read_bytes(),
        )
    return parse_trustee_evidence((d / f"{name}.json").read_bytes())


@pytest.mark.parametrize(("set_name", "name"), SNP_CASES)
def test_snp_cases_tpm_part_and_binding(set_name: str, name: str) -> None:
    """Without the SNP verifier: layout, binding, AK and vTPM quote hold; the verdict is 'not attestable'."""
    c = case(set_name, name)
    evidence = snp_case_evidence(set_name, name)
    hcl = parse_hcl_report(evidence.hcl_report or b"")
    runtime = check_hcl_structure(hcl)
    nonce = bytes.fromhex(c["nonce_hex"])
    result = verify_vtpm(evidence.vtpm, runtime.ak_key, nonce, parse_time(c["verify_at"]))
    assert result.attest.pcr_digest.hex() == c["tpm"]["pcr_digest"]
    if "user_data_matches_report_data" in c:
        assert runtime.user_data is not None and runtime.user_data.startswith(nonce)
    with pytest.raises(NotAttestableError, match="no SEV-SNP report verifier"):
        AzureCvmVerifier().verify(evidence, now=parse_time(c["verify_at"]), nonce=nonce)


def test_wrong_nonce_is_rejected() -> None:
    c = case("trustee-az-snp-vtpm-milan", "negative-wrong-nonce")
    assert c["expected"]["verified"] is False
    evidence = snp_case_evidence("trustee-az-snp-vtpm-milan", "hcl-report-milan-v2")
    runtime = check_hcl_structure(parse_hcl_report(evidence.hcl_report or b""))
    with pytest.raises(TpmNonceError):
        verify_vtpm(evidence.vtpm, runtime.ak_key, bytes.fromhex(c["nonce_hex"]), parse_time(c["verify_at"]))


def test_constellation_partial_snp_binding() -> None:
    c = case("constellation-azure", "azure-snp-milan-v2-partial-hcl")
    d = AZ / "constellation-azure"
    report = (d / "snp_report.bin").read_bytes()
    runtime_bytes = (d / "snp_runtimedata.bin").read_bytes()
    check_report_data(runtime_bytes, report[0x50:0x90])
    runtime = parse_runtime_claims(runtime_bytes)
    assert runtime.vm_configuration == c["vm_configuration"]
    assert sorted(runtime.keys) == sorted(
        k["kid"] if isinstance(k, dict) else k for k in c["runtime_data_keys"]
    )


# ------------------------------------------------------------------ with affidavit.evidence.snp (merge)


def _snp_verifier() -> AzureCvmVerifier:
    pytest.importorskip("affidavit.evidence.snp", reason="affidavit.evidence.snp is built on branch wip/snp")
    from affidavit.evidence.azure_cvm import snp_verifier_from_package

    snp = snp_verifier_from_package()
    assert snp is not None
    return AzureCvmVerifier(snp=snp)


@pytest.mark.parametrize(("set_name", "name"), SNP_CASES)
def test_snp_cases_verify_with_snp_package(set_name: str, name: str) -> None:
    verifier = _snp_verifier()
    c = case(set_name, name)
    result = verifier.verify(
        snp_case_evidence(set_name, name), now=parse_time(c["verify_at"]), nonce=bytes.fromhex(c["nonce_hex"])
    )
    assert result.tee == "sevsnpvm"
    for claim, value in c.get("snp_claims", {}).items():
        if claim.startswith("x-ms-sevsnpvm-"):
            assert result.hardware_claims[claim] == value, claim


@pytest.mark.parametrize(
    ("set_name", "name", "evidence_of"),
    [
        ("kinvolk-az-cvm-vtpm", "hcl-snp-2023-vcek-unpublished", None),
        ("trustee-az-snp-vtpm-genoa", "negative-genoa-vcek-under-milan-chain", "milan-chain"),
    ],
)
def test_snp_negative_cases_with_snp_package(set_name: str, name: str, evidence_of: str | None) -> None:
    verifier = _snp_verifier()
    c = case(set_name, name)
    if evidence_of is None:
        d = AZ / set_name
        hcl = (d / "hcl-report-snp.bin").read_bytes()
        evidence = AzureCvmEvidence(
            vtpm=tdx_evidence().vtpm, hcl_report=hcl, vcek_chain=(d / "certs.pem").read_bytes()
        )
    else:
        genoa = parse_trustee_evidence((AZ / set_name / "evidence-genoa.json").read_bytes())
        milan_pem = (AZ / "trustee-az-snp-vtpm-milan" / "vcek.pem").read_bytes()
        chain = milan_pem[milan_pem.index(b"-----END CERTIFICATE-----") + 26 :]
        evidence = AzureCvmEvidence(
            vtpm=genoa.vtpm,
            hcl_report=genoa.hcl_report,
            vcek_chain=(AZ / set_name / "vcek-genoa.pem").read_bytes() + chain,
        )
    with pytest.raises(EvidenceError):
        verifier.verify(evidence, now=parse_time(c["verify_at"]))
    assert expected(set_name) and c["expected"]["verified"] is False
